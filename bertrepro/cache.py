"""The artifact cache, keyed by what produced each artifact.

Chapters share expensive artifacts through :func:`bertrepro.io.cache_dir` (a WordPiece vocabulary,
the pre-trained models and their snapshots, chapter 12's measurements). Each artifact ``P`` (a file
or a folder) gets a manifest ``P.manifest.json`` beside it holding

* its **fingerprint**: a SHA-256 of its *inputs* (:func:`artifact_inputs`): the source of every
  ``bertrepro`` module the producing code imports, followed transitively with :mod:`ast`
  (:func:`code_closure`); its whole configuration; the digests of the corpus files; the torch
  version; the device type;
* those inputs themselves, so a mismatch can say what changed ("code changed: bertrepro/masking.py",
  "config changed: pretrain.max_steps 1000 -> 800");
* the SHA-256 of each of its files, so a truncated or hand-edited file is found and rebuilt with a
  warning naming it.

An artifact is reused only when its manifest's fingerprint equals the one computed now and every
file matches its checksum; anything else rebuilds it. Edits that cannot change an artifact (a
chapter's prose, plotting, the scorecard's rendering) are outside every closure, so they reuse it.
Writers hold a lock file (``.P.lock``) and build into a temporary name that is renamed into place
before the manifest is written, so a second book run sharing the cache waits and then reuses,
and never reads half an artifact.

Each reuse or build prints one line, and is appended to ``$BERTREPRO_ARTIFACTS_LOG`` (a JSON-lines
file the book runner sets per chapter) for the scorecard's provenance.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from . import progress
from .data import DEFAULT_CORPUS, wiki_vital_path
from .io import append_jsonl, atomic_write_text, sha256_file

__all__ = ["ARTIFACTS_ENV", "PACKAGE_DIR", "PRESENTATION", "code_closure", "corpus_digests", "artifact_inputs", "fingerprint", "VERSIONED",
           "library_versions", "describe_changes", "manifest_path", "check", "commit", "lock", "cached_file", "cached_dir",
           "log_artifact", "announce", "BOOK_ROOTS", "cache_key", "main"]

ARTIFACTS_ENV = "BERTREPRO_ARTIFACTS_LOG"
PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE = PACKAGE_DIR.name  # "bertrepro"
_MANIFEST_SUFFIX = ".manifest.json"
#: Modules that only present results (the scorecard's rendering and the paper's values, the book
#: runner, benchmarks) or manage the cache itself: an edit to them cannot change an artifact, so no
#: closure follows them.
PRESENTATION = ("report.py", "scorecard.py", "book.py", "bookguard.py", "plan.py", "bench.py", "chapters.py", "cache.py")


# ----------------------------------------------------------------------------------------------
# Inputs and fingerprints
# ----------------------------------------------------------------------------------------------


def _module_file(module: str, package_dir: Path) -> Path | None:
    """``bertrepro.pretrain.loop`` -> ``<package_dir>/pretrain/loop.py`` (or a package's ``__init__.py``)."""
    parts = module.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every ``bertrepro`` module ``path`` may import (top level or inside functions): the module named
    by each import, and ``module.name`` for each imported name (kept only where such a file exists)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == _PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".") if node.module else []
            if not target or target[0] != _PACKAGE:
                continue
            found.add(".".join(target))
            found.update(".".join(target + [a.name]) for a in node.names)
    return found


def code_closure(roots: Iterable[str], package_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{"bertrepro/<path>.py": sha256}`` for the modules ``roots`` import, transitively.

    ``roots`` are dotted names (``"bertrepro.pretrain.loop"``); each module's parent packages count
    too (importing a module runs their ``__init__.py``); the :data:`PRESENTATION` modules never do. ``package_dir`` is where the package's
    source lives (default: this package), so a copy of it can be fingerprinted.
    """
    package_dir = Path(package_dir) if package_dir is not None else PACKAGE_DIR
    todo, seen, files = list(roots), set(), {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, package_dir)
        if path is not None and path.relative_to(package_dir).as_posix() in PRESENTATION:
            continue
        if path is None:
            if module in roots:
                raise ValueError(f"no module {module!r} in {package_dir}; name a module of the package, e.g. "
                                 f"'{_PACKAGE}.masking'")
            continue  # an imported name that is not a module (a function or a class)
        files[f"{_PACKAGE}/{path.relative_to(package_dir).as_posix()}"] = sha256_file(path)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imported_modules(path, module))
    return dict(sorted(files.items()))


_digest_memo: dict[tuple[str, int, int], str] = {}


def corpus_digests(corpus: Any) -> dict[str, str]:
    """``{name: digest}`` of the corpus files behind ``corpus``: the embedded corpus's JSON file, or
    for a hub corpus its name (its files are fixed releases); a mapping of documents (tests) is hashed."""
    if isinstance(corpus, str):
        if corpus != DEFAULT_CORPUS:
            return {corpus: "hub dataset " + corpus}
        path = wiki_vital_path()
        st = path.stat()
        memo = (str(path), st.st_mtime_ns, st.st_size)
        if memo not in _digest_memo:
            _digest_memo[memo] = sha256_file(path)
        return {path.name: _digest_memo[memo]}
    blob = json.dumps(corpus, sort_keys=True, default=str) if isinstance(corpus, Mapping) else repr(corpus)
    return {"documents": hashlib.sha256(blob.encode("utf-8")).hexdigest()}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.loads(json.dumps(v, default=str))  # tuples -> lists, as the manifest stores them
    return out


def artifact_inputs(roots: Iterable[str], config: Mapping[str, Any], corpus: Any = None,
                    device: str | torch.device = "cpu", package_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything an artifact depends on: ``code`` (:func:`code_closure` of ``roots``), ``config``
    (flattened to dotted keys, e.g. ``pretrain.max_steps``), ``corpus`` (:func:`corpus_digests`;
    None: no corpus), the ``torch`` version, the ``versions`` of the other libraries whose code makes
    artifacts (:data:`VERSIONED`) and the ``device`` type."""
    return {"code": code_closure(roots, package_dir), "config": _flatten(config),
            "corpus": corpus_digests(corpus) if corpus is not None else {},
            "torch": torch.__version__, "versions": library_versions(), "device": torch.device(device).type}


#: Libraries besides torch whose versions are fingerprinted: the fast tokenizers, transformers'
#: models and tokenizers (the reference implementations), numpy (random draws and arrays).
VERSIONED = ("tokenizers", "transformers", "numpy")


def library_versions() -> dict[str, str]:
    """``{name: version}`` of :data:`VERSIONED` as installed ("absent" when not installed)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """The hex SHA-256 of ``inputs`` (canonical JSON)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """One line naming what differs between two :func:`artifact_inputs`, e.g.
    ``"code changed: bertrepro/masking.py; config changed: pretrain.max_steps 1000 -> 800"``."""
    parts = []
    if files := _changed_keys(old.get("code", {}), new.get("code", {})):
        parts.append("code changed: " + ", ".join(files))
    oc, nc = old.get("config", {}), new.get("config", {})
    if keys := _changed_keys(oc, nc):
        shown = [f"{k} {oc.get(k, '<absent>')!r} -> {nc.get(k, '<absent>')!r}".replace("'", "") for k in keys[:4]]
        parts.append("config changed: " + ", ".join(shown) + (f" (and {len(keys) - 4} more)" if len(keys) > 4 else ""))
    if names := _changed_keys(old.get("corpus", {}), new.get("corpus", {})):
        parts.append("corpus changed: " + ", ".join(names))
    if old.get("torch") != new.get("torch"):
        parts.append(f"torch changed: {old.get('torch')} -> {new.get('torch')}")
    ov, nv = old.get("versions", {}), new.get("versions", {})
    if names := _changed_keys(ov, nv):
        parts.append("versions changed: " + ", ".join(f"{n} {ov.get(n, '<absent>')} -> {nv.get(n, '<absent>')}"
                                                       for n in names))
    if old.get("device") != new.get("device"):
        parts.append(f"device changed: {old.get('device')} -> {new.get('device')}")
    return "; ".join(parts) or "the inputs differ"


# ----------------------------------------------------------------------------------------------
# Manifests
# ----------------------------------------------------------------------------------------------


def manifest_path(path: str | os.PathLike) -> Path:
    """``P.manifest.json`` beside the artifact ``P``."""
    path = Path(path)
    return path.with_name(path.name + _MANIFEST_SUFFIX)


def _files(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of an artifact's files (the file itself, or every file in the folder)."""
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {p.relative_to(path).as_posix(): sha256_file(p) for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.endswith(".tmp")}


def _file_path(path: Path, name: str) -> Path:
    return path if path.is_file() else path / name


def check(path: str | os.PathLike, inputs: Mapping[str, Any]) -> str | None:
    """None when the artifact at ``path`` may be reused for ``inputs``; else why not (one line).

    A damaged file (missing, truncated, edited: its checksum differs from the manifest's) also warns,
    naming the file."""
    path = Path(path)
    mpath = manifest_path(path)
    if not mpath.is_file():
        return "not in the cache" if not path.exists() else "no manifest (made before fingerprints or interrupted)"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        saved_fp, saved_inputs, files = manifest["fingerprint"], manifest["inputs"], manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"cache: the manifest {mpath} is unreadable ({e}); rebuilding {path.name}", stacklevel=2)
        return f"unreadable manifest {mpath.name}"
    if saved_fp != fingerprint(inputs):
        return describe_changes(saved_inputs, inputs)
    for name, digest in files.items():
        f = _file_path(path, name)
        if not f.is_file() or sha256_file(f) != digest:
            what = "missing" if not f.is_file() else "damaged (its checksum differs from the manifest's)"
            warnings.warn(f"cache: {f} is {what}; rebuilding {path.name}", stacklevel=2)
            return f"{f} is {what}"
    return None


def commit(path: str | os.PathLike, inputs: Mapping[str, Any]) -> str:
    """Write the manifest of the (complete) artifact at ``path``; returns its fingerprint."""
    path = Path(path)
    fp = fingerprint(inputs)
    manifest = {"fingerprint": fp, "inputs": inputs, "files": _files(path)}
    atomic_write_text(manifest_path(path), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return fp


@contextmanager
def lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the artifact ``path`` (the file ``.P.lock`` beside it) until the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _cache_root() -> Path:
    return Path(os.environ.get("BERTREPRO_CACHE_DIR") or ".bertrepro_cache").resolve()


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(_cache_root()).as_posix()
    except ValueError:
        return str(path)


_logged: set[tuple[str, str, str]] = set()


def log_artifact(path: str | os.PathLike, inputs: Mapping[str, Any], how: str, reason: str = "") -> None:
    """Record an artifact reused (``how="reused"``, printing one line) or ``"computed"`` (its line was
    printed by :func:`announce` before the build) in ``$BERTREPRO_ARTIFACTS_LOG`` when set; once per
    artifact and process, however often a chapter asks for it."""
    path, fp = Path(path), fingerprint(inputs)
    seen = (str(path.resolve()), fp, how)
    if seen in _logged:
        return
    _logged.add(seen)
    if how == "reused":
        print(f"cache: reused {_display(path)} (fingerprint {fp[:12]})")
    log = os.environ.get(ARTIFACTS_ENV)
    if log:
        append_jsonl(log, {"path": _display(path), "fingerprint": fp, "how": how})


def announce(path: str | os.PathLike, inputs: Mapping[str, Any], reason: str) -> None:
    """Print the one line saying that ``path`` is built now, and why (what changed, or nothing cached)."""
    line = f"cache: computing {_display(Path(path))} (fingerprint {fingerprint(inputs)[:12]}): {reason}"
    print(line, flush=True)
    progress.notice(line)  # under the book runner, the terminal shows it beside the chapter's progress


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _build(path: Path, inputs: Mapping[str, Any], build: Callable[[Path], Any], rebuild: bool) -> bool:
    """Under the lock: reuse, or build into a temporary name, rename into place and commit. True when reused."""
    with lock(path):
        reason = "rebuild requested" if rebuild else check(path, inputs)
        if reason is None:
            log_artifact(path, inputs, "reused")
            return True
        announce(path, inputs, reason)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _remove(tmp)
        try:
            build(tmp)
            if not tmp.exists():
                raise FileNotFoundError(f"the builder of {path} wrote nothing to {tmp}")
            manifest_path(path).unlink(missing_ok=True)  # no manifest while the artifact changes
            if path.is_dir():
                _remove(path)
            os.replace(tmp, path)
        finally:
            _remove(tmp)
        commit(path, inputs)
        log_artifact(path, inputs, "computed")
        return False


def cached_file(path: str | os.PathLike, inputs: Mapping[str, Any], build: Callable[[Path], Any],
                rebuild: bool = False) -> bool:
    """Make the file ``path`` with ``build(tmp_path)`` unless the cache holds it for ``inputs``.

    Returns True when the cached file was reused. ``build`` writes the file at the path it is given."""
    return _build(Path(path), inputs, build, rebuild)


def cached_dir(path: str | os.PathLike, inputs: Mapping[str, Any], build: Callable[[Path], Any],
               rebuild: bool = False) -> bool:
    """Like :func:`cached_file` for a folder: ``build(tmp_dir)`` fills a fresh folder (not yet created)."""
    return _build(Path(path), inputs, build, rebuild)


# ----------------------------------------------------------------------------------------------
# The cache key of a whole book run (CI's actions/cache)
# ----------------------------------------------------------------------------------------------

#: The modules whose closures cover every cached artifact of the book.
BOOK_ROOTS = ("bertrepro.pretrain.runs", "bertrepro.ablation.runs", "bertrepro.ablation.measure",
              "bertrepro.tokenization")


def cache_key(package_dir: str | os.PathLike | None = None) -> str:
    """A hash of every fingerprint input the book's artifacts share: the code closure of
    :data:`BOOK_ROOTS` (which holds every profile's numbers), the corpus, the torch version."""
    inputs = artifact_inputs(BOOK_ROOTS, {}, DEFAULT_CORPUS, "cpu", package_dir)
    return fingerprint(inputs)


def main(argv: list[str] | None = None) -> int:
    """``python -m bertrepro.cache key``: print :func:`cache_key` (CI keys its cache of the book's artifacts by it)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["key"]:
        print("usage: python -m bertrepro.cache key", file=sys.stderr)
        return 2
    print(cache_key())
    return 0


if __name__ == "__main__":
    sys.exit(main())
