"""Run the whole book: execute every chapter, collect the scorecard, render the HTML.

Examples::

    python -m bertrepro.book                          # default profile (gpu with CUDA, else cpu)
    python -m bertrepro.book --profile smoke          # every chapter in seconds
    python -m bertrepro.book --chapters 03 05 --no-html
    python -m bertrepro.book --profile gpu --online   # let chapters reach the Hugging Face Hub

Each ``notebooks/NN_slug.ipynb`` runs in order, alone, in a fresh ``python3`` kernel (papermill),
with the parameters ``profile`` (and ``seed`` / ``device`` when given) injected after its cell
tagged ``parameters``. What the runner writes under the output folder (default ``book/_build``):

* ``executed/NN_slug.ipynb`` -- the executed chapter (kept, partially executed, when a cell fails);
* ``work/NN_slug/`` -- the chapter's working directory, emptied before each run, so a chapter sees
  the same empty folder it would see forked on its own;
* ``records/NN_slug.json`` -- its :func:`bertrepro.report.record` calls (``$BERTREPRO_RECORDS_DIR``);
* ``cache/`` -- artifacts chapters share (``$BERTREPRO_CACHE_DIR``), kept between runs;
* ``timings.json`` -- wall time per chapter; ``summary.md`` -- times and scorecard for a CI summary;
* ``scorecard.json`` -- every record plus counts by status and its provenance (commit, profile, seed,
  device, versions, each cached artifact read or made); ``scorecard.md`` -- its book page;
* ``src/`` and ``html/`` -- the assembled Jupyter Book source and its HTML (``html/index.html``);
* ``.book.lock`` -- locked while a run uses the folder: one run per output folder, a second one is
  refused naming the first (:mod:`bertrepro.bookguard`). Ctrl-C stops the chapter and its kernel,
  keeps its partial notebook, prints one line and exits with status 130.

While a chapter runs the terminal shows the chapter, its elapsed time and its latest progress bar
(:class:`ChapterProgress`): the chapter's :func:`bertrepro.progress.bar` calls write their state to a
file instead of the notebook, so an executed chapter keeps no progress bars. Papermill's injected
parameters cell is tagged ``remove-cell``: the HTML shows only the chapter's own parameters cell.

Unless ``--online`` is given the kernels run with the Hugging Face offline switches
(:data:`bertrepro.profiles.OFFLINE_ENV`) set, and the HTML is built with execution off, offline.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from . import bookguard, dryrun, plan, progress, report, scorecard
from .arguments import INTERRUPTED, plain_text
from .cache import ARTIFACTS_ENV
from .chapters import (NOTEBOOKS_DIR, find_chapters, hide_injected_parameters,
                       notebook_parameters, pairing_differences, read_notebook, select_chapters,
                       validate_parameters)
from .io import read_jsonl
from .progress import ChapterProgress
from .profiles import OFFLINE_ENV, PROFILES, resolve_device, resolve_profile

__all__ = [
    "ROOT",
    "provenance",
    "artifacts_log",
    "copy_chapter_sources",
    "BOOK_DIR",
    "BUILD_DIR",
    "KERNEL",
    "CACHE_ENV",
    "ChapterError",
    "BookBuildError",
    "ChapterResult",
    "BookResult",
    "run_chapter",
    "assemble_source",
    "build_html",
    "build",
    "main",
]

ROOT = Path(__file__).resolve().parent.parent
BOOK_DIR = ROOT / "book"
BUILD_DIR = BOOK_DIR / "_build"
KERNEL = "python3"
CACHE_ENV = "BERTREPRO_CACHE_DIR"


class ChapterError(RuntimeError):
    """A chapter failed: names the chapter, the cell and the exception, and where the notebook is kept."""

    def __init__(self, chapter: str, executed: Path, ename: str, evalue: str,
                 cell_index: int | None = None, exec_count: int | None = None, first_line: str | None = None):
        self.chapter, self.executed, self.ename, self.evalue = chapter, executed, ename, evalue
        self.cell_index, self.exec_count, self.first_line = cell_index, exec_count, first_line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "" if self.cell_index is None else f" in cell index {self.cell_index}"
        if self.exec_count is not None:
            where += f" (In [{self.exec_count}])"
        if self.first_line is not None:
            where += f": {self.first_line}"
        return (f"chapter {self.chapter} failed{where}\n  {self.ename}: {self.evalue}\n"
                f"  partially executed notebook kept at {self.executed}")


class BookBuildError(RuntimeError):
    """The HTML build (Jupyter Book / Sphinx) failed."""


@dataclass
class ChapterResult:
    """One executed chapter."""

    chapter: str
    source: Path
    executed: Path
    seconds: float
    records: list[report.Record] = field(default_factory=list)


@dataclass
class BookResult:
    """One run of the book."""

    profile: str
    chapters: list[ChapterResult]
    records: list[report.Record]
    output: Path
    html_index: Path | None


# ----------------------------------------------------------------------------------------------
# Running one chapter
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _environ(updates: Mapping[str, str | None]) -> Iterator[None]:
    """Set (str) or unset (None) environment variables for the kernels started inside the block."""
    saved = {k: os.environ.get(k) for k in updates}
    try:
        for k, v in updates.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# By message: a category from site-packages cannot be named in PYTHONWARNINGS (read before site).
_TQDM_WARNING_FILTER = "ignore:IProgress not found"


def artifacts_log(records_dir: str | os.PathLike, chapter: str) -> Path:
    """The JSON-lines file where a chapter's cached artifacts are logged (:data:`bertrepro.cache.ARTIFACTS_ENV`)."""
    return Path(records_dir) / f"{chapter}.artifacts.jsonl"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what :mod:`platform` knows, else "cpu"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def provenance(profile: str, seed: int | None, device: str | None, records_dir: Path,
               chapters: Sequence[str]) -> dict[str, Any]:
    """Where a book run's numbers come from: the commit (and whether the tree had uncommitted edits),
    profile, seed, device, versions, and each cached artifact a chapter read or wrote."""
    dev = resolve_device(device, profile)
    status = _git("status", "--porcelain", "--untracked-files=no")
    artifacts = [{"chapter": c, **a} for c in chapters for a in read_jsonl(artifacts_log(records_dir, c))]
    return {
        "git_sha": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status),
        "profile": profile, "seed": 0 if seed is None else seed,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
        "artifacts": artifacts,
    }


def _kernel_env(chapter: str, records_dir: Path | None, cache_dir: Path | None, online: bool,
                progress_file: Path | None = None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        report.CHAPTER_ENV: chapter,
        report.RECORDS_ENV: None if records_dir is None else str(records_dir),
        # Every cached artifact the chapter reads or writes, for the scorecard's provenance.
        ARTIFACTS_ENV: None if records_dir is None else str(artifacts_log(records_dir, chapter)),
        CACHE_ENV: None if cache_dir is None else str(cache_dir),
        "PYTHONHASHSEED": "0",  # same set/dict iteration order in every run
        # bertrepro.progress.bar writes its state here instead of drawing into the notebook.
        progress.PROGRESS_ENV: None if progress_file is None else str(progress_file),
        # Library bars (datasets, the hub) would draw into the notebook: the book keeps none of them.
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        # Libraries import tqdm.auto, which warns in a kernel without ipywidgets; the book shows no bars.
        "PYTHONWARNINGS": ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), _TQDM_WARNING_FILTER) if w),
    }
    # chapters.setup() only *defaults* the offline switches, so --online must set them to "0".
    env.update({k: ("0" if online else v) for k, v in OFFLINE_ENV.items()})
    return env


def _locate_failure(executed: Path, source_nb, exc: Exception, chapter: str) -> ChapterError:
    """Turn a papermill / nbclient exception into a :class:`ChapterError` naming the cell."""
    src_cells = [c.source for c in source_nb.cells]
    source = getattr(exc, "source", None)
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    if evalue is None:
        evalue = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    exec_count = getattr(exc, "exec_count", None)
    if source is None and executed.exists():
        # A timeout or a dead kernel: the failing cell is the last one papermill started.
        with contextlib.suppress(Exception):
            started = [c for c in read_notebook(executed).cells
                       if c.cell_type == "code" and c.get("metadata", {}).get("papermill", {}).get("start_time")]
            if started:
                source, exec_count = started[-1].source, started[-1].get("execution_count")
    cell_index = src_cells.index(source) if source in src_cells else None
    first_line = None
    if source is not None:
        lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
        # The first line of code names the cell best; a cell of comments falls back to its first line.
        first_line = next((ln for ln in lines if not ln.startswith("#")), lines[0] if lines else "")
    return ChapterError(chapter, executed, ename, evalue, cell_index=cell_index, exec_count=exec_count,
                        first_line=first_line)


def run_chapter(path: str | os.PathLike, profile: str | None, out_dir: str | os.PathLike,
                parameters: Mapping[str, Any] | None = None, *, cwd: str | os.PathLike | None = None,
                records_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                online: bool = False, kernel_name: str = KERNEL, timeout: float | None = None,
                progress_file: str | os.PathLike | None = None) -> ChapterResult:
    """Execute one chapter notebook in a fresh kernel and return its wall time and records.

    Args:
        path: the chapter's ``.ipynb``; its stem (``03_positional_encoding``) is the chapter id.
        profile: ``smoke``, ``cpu`` or ``gpu`` (None: :func:`bertrepro.profiles.default_profile`).
        out_dir: folder for the executed notebook (same file name as ``path``).
        parameters: more parameters to inject (``seed``, ``device``); each must be declared in the
            notebook's ``parameters`` cell.
        cwd: the kernel's working directory (default: the notebook's own folder, as in Jupyter).
        records_dir: ``$BERTREPRO_RECORDS_DIR`` for the kernel; None unsets it, so records go to
            ``<cwd>/records`` exactly as for a chapter run on its own.
        cache_dir: ``$BERTREPRO_CACHE_DIR`` for the kernel; None unsets it (``<cwd>/.bertrepro_cache``).
        online: leave the Hugging Face offline switches off.
        kernel_name: the Jupyter kernel (``python3``).
        timeout: per-cell time limit in seconds (None: no limit).
        progress_file: where the chapter's progress bars write their state (``$BERTREPRO_PROGRESS_FILE``,
            read by :class:`ChapterProgress`); None: a temporary file, deleted afterwards. Either
            way the bars draw nothing into the executed notebook.

    The executed notebook's papermill-injected parameters cell is tagged ``remove-cell``.

    Returns:
        :class:`ChapterResult` with the chapter's records from this run.

    Raises:
        ValueError: unknown parameter or profile (listing the valid ones), missing notebook.
        ChapterError: a cell raised; names the chapter, the cell and the exception. The partially
            executed notebook is kept in ``out_dir``.
    """
    path = Path(path).resolve()
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"chapter notebook {path} does not exist or is not an .ipynb")
    chapter = path.stem
    params = {"profile": resolve_profile(profile), **dict(parameters or {})}
    validate_parameters(path, params)
    cwd = path.parent if cwd is None else Path(cwd).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / path.name
    rdir = Path(records_dir).resolve() if records_dir is not None else cwd / report.DEFAULT_RECORDS_DIR
    cdir = Path(cache_dir).resolve() if cache_dir is not None else None
    # Stale records of an earlier run must not survive into this one.
    report.chapter_file(chapter, rdir).unlink(missing_ok=True)
    artifacts_log(rdir, chapter).unlink(missing_ok=True)
    start = time.perf_counter()
    with _progress_file(progress_file, chapter) as pfile:
        try:
            with _environ(_kernel_env(chapter, None if records_dir is None else rdir, cdir, online, pfile)):
                _execute(path, executed, params, kernel_name=kernel_name, cwd=cwd, timeout=timeout)
        finally:
            if executed.exists():
                with contextlib.suppress(Exception):
                    hide_injected_parameters(executed)
    seconds = time.perf_counter() - start
    return ChapterResult(chapter=chapter, source=path, executed=executed, seconds=seconds,
                         records=report.collect(rdir, chapters=[chapter]))


@contextlib.contextmanager
def _progress_file(progress_file: str | os.PathLike | None, chapter: str) -> Iterator[Path]:
    """The file the chapter's bars write to: ``progress_file``, or a temporary one deleted afterwards."""
    if progress_file is not None:
        yield Path(progress_file).resolve()
        return
    fd, tmp = tempfile.mkstemp(prefix=f"{chapter}.", suffix=".progress.json")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _execute(path: Path, executed: Path, params: Mapping[str, Any], *, kernel_name: str, cwd: Path,
             timeout: float | None) -> None:
    """Run the notebook with papermill; a failing cell becomes a :class:`ChapterError` naming it."""
    import papermill  # lazily: the runner's optional tooling, not needed to import the package
    from papermill.exceptions import PapermillExecutionError  # lazily: as papermill
    from traitlets.config import Config  # lazily: as papermill

    # IPC sockets: the kernel talks only to this machine (and ipykernel does not warn about plain TCP).
    engine_kwargs: dict[str, Any] = {"config": Config({"KernelManager": {"transport": "ipc"}})}
    if timeout is not None:
        engine_kwargs["execution_timeout"] = timeout
    try:
        papermill.execute_notebook(
            str(path), str(executed), parameters=dict(params), kernel_name=kernel_name, language="python",
            progress_bar=False, log_output=False, cwd=str(cwd), **engine_kwargs,
        )
    except PapermillExecutionError as e:
        raise _locate_failure(executed, read_notebook(path), e, path.stem) from None
    except Exception as e:  # timeout, dead kernel, kernel that cannot start
        raise _locate_failure(executed, read_notebook(path), e, path.stem) from e


# ----------------------------------------------------------------------------------------------
# The HTML
# ----------------------------------------------------------------------------------------------


def _check_config(book_dir: Path) -> None:
    import yaml  # lazily: only the HTML build reads the book's YAML (optional tooling)

    cfg_path = book_dir / "_config.yml"
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path} is missing")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    mode = (cfg.get("execute") or {}).get("execute_notebooks")
    if mode != "off":
        raise ValueError(f"{cfg_path}: execute.execute_notebooks is {mode!r}; it must be 'off' "
                         "(the runner executes the chapters; the HTML build only renders them)")
    if (book_dir / "_toc.yml").exists():
        raise ValueError(f"{book_dir / '_toc.yml'} exists, but the table of contents is generated from "
                         "notebooks/ by the runner; delete the file")


def _toc_yaml(chapters: Sequence[str]) -> str:
    lines = ["# Generated by python -m bertrepro.book: intro, the chapters, the scorecard, the glossary.",
             "format: jb-book", "root: intro", "parts:"]
    if chapters:
        lines += ["- caption: Chapters", "  chapters:"] + [f"  - file: {c}" for c in chapters]
    lines += ["- caption: Results and reference", "  chapters:", "  - file: scorecard", "  - file: glossary"]
    return "\n".join(lines) + "\n"


def assemble_source(book_dir: str | os.PathLike, src_dir: str | os.PathLike, executed: Sequence[Path],
                    scorecard_md: str) -> Path:
    """Build the Jupyter Book source folder: ``book/`` files, executed chapters, scorecard, ``_toc.yml``."""
    book_dir, src_dir = Path(book_dir), Path(src_dir)
    _check_config(book_dir)
    if src_dir.exists():
        shutil.rmtree(src_dir)
    src_dir.mkdir(parents=True)
    for item in book_dir.iterdir():
        if item.name == "_build":
            continue
        if item.is_dir():
            shutil.copytree(item, src_dir / item.name)
        else:
            shutil.copy2(item, src_dir / item.name)
    for nb in executed:
        shutil.copy2(nb, src_dir / nb.name)
    report.atomic_write_text(src_dir / "scorecard.md", scorecard_md)
    report.atomic_write_text(src_dir / "_toc.yml", _toc_yaml([nb.stem for nb in executed]))
    return src_dir


def build_html(src_dir: str | os.PathLike, html_dir: str | os.PathLike, online: bool = False,
               log: Callable[[str], None] = print) -> Path:
    """Render ``src_dir`` with Jupyter Book (execution off) into ``html_dir``; return its ``index.html``.

    Sphinx warnings are printed; a failed build raises :class:`BookBuildError` with its output.
    """
    src_dir, html_dir = Path(src_dir).resolve(), Path(html_dir).resolve()
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(src_dir), "--path-output", str(src_dir), "--builder", "html", "--quiet"]
    env = dict(os.environ)
    if not online:
        env.update(OFFLINE_ENV)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    built = src_dir / "_build" / "html"
    if proc.returncode != 0 or not (built / "index.html").is_file():
        tail = "\n".join(output.strip().splitlines()[-40:])
        raise BookBuildError(f"jupyter-book build of {src_dir} failed (exit {proc.returncode}):\n{tail}")
    warnings = [ln for ln in output.splitlines() if "WARNING" in ln or "ERROR" in ln]
    for ln in warnings:
        log(f"  sphinx: {ln.strip()}")
    if html_dir.exists():
        shutil.rmtree(html_dir)
    shutil.move(str(built), str(html_dir))
    return html_dir / "index.html"


def copy_chapter_sources(notebooks: Sequence[Path], sources_dir: Path,
                         log: Callable[[str], None] = print) -> list[Path]:
    """Copy each chapter's ``NN_slug.py`` (its jupytext pair) into the HTML's ``_sources`` folder, beside
    the ``.ipynb`` the page's download button offers, so its ``.py`` entry links to a file. A notebook
    without a ``.py`` (not a book chapter: the book's are all paired) is named in the log."""
    sources_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for nb in notebooks:
        script = Path(nb).with_suffix(".py")
        if not script.is_file():
            log(f"  download: {Path(nb).name} has no paired .py; its page offers the .ipynb only")
            continue
        copied.append(Path(shutil.copy2(script, sources_dir / script.name)))
    return copied


# ----------------------------------------------------------------------------------------------
# The whole book
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    report.atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def build(profile: str | None = None, chapters: Sequence[str] | None = None, seed: int | None = None,
          device: str | None = None, online: bool = False, html: bool = True,
          output: str | os.PathLike = BUILD_DIR, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
          book_dir: str | os.PathLike = BOOK_DIR, log: Callable[[str], None] = print,
          progress_interval: float = 30.0, stream: Any = None) -> BookResult:
    """Run the chapters in order, write timings and the scorecard, and render the HTML.

    While a chapter runs, the terminal (``stream``, default stdout) shows the chapter, the elapsed
    time and its latest progress bar: rewritten in place on a terminal, a new line every
    ``progress_interval`` seconds otherwise (:class:`ChapterProgress`).

    The scorecard and the HTML hold exactly the chapters of this run. Everything is checked before
    the first chapter starts (chapter names, parameters, pairs, the book config), so a mistake fails
    in seconds, not after the first hour.

    Raises:
        ValueError: a bad chapter name, parameter or profile, an unpaired notebook, a bad book config.
        ChapterError: a chapter failed (timings and summary are still written).
        BookBuildError: the HTML build failed.
        OutputInUseError: another book run holds ``output`` (:func:`bertrepro.bookguard.output_lock`).
        BookInterrupted: Ctrl-C during a chapter; its kernel is shut down, its partial notebook kept.
    """
    output = Path(output).resolve()
    bookguard.check_arguments(seed, device, resolve_profile(profile), output)
    # One book per output folder, locked before anything there is touched; Ctrl-C gives one line.
    with bookguard.output_lock(output), bookguard.quiet_interrupt():
        return _build_locked(profile, chapters, seed, device, online, html, output, notebooks_dir, book_dir, log,
                             progress_interval, stream)


def _build_locked(profile: str | None, chapters: Sequence[str] | None, seed: int | None, device: str | None,
                  online: bool, html: bool, output: Path, notebooks_dir: str | os.PathLike,
                  book_dir: str | os.PathLike, log: Callable[[str], None], progress_interval: float,
                  stream: Any) -> BookResult:
    """:func:`build` once the arguments are checked and the output folder is locked."""
    prof = resolve_profile(profile)
    output = Path(output).resolve()
    extra = {k: v for k, v in (("seed", seed), ("device", device)) if v is not None}
    selected = _preflight(select_chapters(find_chapters(notebooks_dir), chapters), prof, extra,
                          Path(book_dir) if html else None)
    dirs = {k: output / k for k in ("executed", "records", "cache", "work")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    log(f"bertrepro book: {len(selected)} chapter(s), profile {prof}" + (", online" if online else ", offline")
        + f", output {output}")
    timings: dict[str, Any] = {"profile": prof, "chapters": {}}
    results, failure = _run_chapters(selected, prof, extra, dirs, timings, output, online=online,
                                     progress_interval=progress_interval, stream=stream)
    timings["total_seconds"] = round(sum(t["seconds"] for t in timings["chapters"].values()), 3)
    records = report.collect(dirs["records"], chapters=[r.chapter for r in results])
    prov = provenance(prof, seed, device, dirs["records"], [r.chapter for r in results])
    report.write_scorecard(records, output / "scorecard.json", profile=prof, provenance=prov)
    scorecard_md = scorecard.render_scorecard(records, profile=prof, provenance=prov)
    report.atomic_write_text(output / "scorecard.md", scorecard_md)
    html_index = None
    if failure is None and html:
        html_index = _html(book_dir, output, results, scorecard_md, timings, online=online, log=log)
    _write_json(output / "timings.json", timings)
    summary = scorecard.render_summary(records, timings, profile=prof, provenance=prov,
                                    failure=None if failure is None else " — ".join(
                                        ln.strip() for ln in str(failure).splitlines()[:2]))
    summary += "\n" + plan.predicted_vs_actual(prof, timings)
    report.atomic_write_text(output / "summary.md", summary)
    if failure is not None:
        raise failure
    counts = report.count_statuses(records)
    log("scorecard: " + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; total chapter time {timings['total_seconds']:.1f} s")
    return BookResult(profile=prof, chapters=results, records=records, output=output, html_index=html_index)


def _preflight(selected: list[Path], prof: str, extra: Mapping[str, Any], book_dir: Path | None) -> list[Path]:
    """Check every chapter's parameters and pairing, and the book config, before anything runs."""
    for nb in selected:
        validate_parameters(nb, {"profile": prof, **extra})
        py = nb.with_suffix(".py")
        if py.exists():
            diffs = pairing_differences(py, nb)
            if diffs:
                raise ValueError(f"{py.name} and {nb.name} are out of sync ({diffs[0]}); run `make sync`")
    if book_dir is not None:
        _check_config(book_dir)
    return selected


def _run_chapters(selected: Sequence[Path], prof: str, extra: Mapping[str, Any], dirs: Mapping[str, Path],
                  timings: dict[str, Any], output: Path, *, online: bool, progress_interval: float,
                  stream: Any) -> tuple[list[ChapterResult], ChapterError | None]:
    """Run the chapters in order, each in a fresh working folder, until one fails."""
    results: list[ChapterResult] = []
    n = len(selected)
    for i, nb in enumerate(selected, 1):
        work = dirs["work"] / nb.stem
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        start = time.perf_counter()
        monitor = ChapterProgress(f"[{i:02d}/{n:02d}]", nb.stem, dirs["work"] / f".{nb.stem}.progress.json",
                                  stream=stream, interval=progress_interval)
        try:
            with monitor:
                res = run_chapter(nb, prof, dirs["executed"], extra, cwd=work, records_dir=dirs["records"],
                                  cache_dir=dirs["cache"], online=online, progress_file=monitor.progress_file)
        except KeyboardInterrupt:
            raise _interrupted(nb, dirs, monitor, timings, len(results), time.perf_counter() - start) from None
        except ChapterError as e:
            secs = time.perf_counter() - start
            if e.ename == "KeyboardInterrupt" or bookguard.interrupt_requested():  # Ctrl-C, seen first by the kernel
                raise _interrupted(nb, dirs, monitor, timings, len(results), secs) from None
            monitor.finish(f"FAILED after {secs:.1f} s")
            timings["chapters"][nb.stem] = {"seconds": round(secs, 3), "status": "failed"}
            return results, e
        monitor.finish(f"{res.seconds:.1f} s" + (f", {len(res.records)} record(s)" if res.records else ""))
        timings["chapters"][nb.stem] = {"seconds": round(res.seconds, 3), "status": "ok"}
        results.append(res)
        _write_json(output / "timings.json", timings)
    return results, None


def _interrupted(nb: Path, dirs: Mapping[str, Path], monitor: ChapterProgress, timings: dict[str, Any],
                 finished: int, seconds: float) -> bookguard.BookInterrupted:
    """A Ctrl-C during chapter ``nb``: shut its kernel down, mark it in the terminal and the timings."""
    with bookguard.ignoring_sigint():  # a second Ctrl-C must not cut the clean-up short
        bookguard.stop_kernels()
        monitor.finish(f"INTERRUPTED after {seconds:.1f} s")
    timings["chapters"][nb.stem] = {"seconds": round(seconds, 3), "status": "interrupted"}
    return bookguard.BookInterrupted(nb.stem, dirs["executed"] / nb.name, finished, seconds)


def _html(book_dir: str | os.PathLike, output: Path, results: Sequence[ChapterResult], scorecard_md: str,
          timings: dict[str, Any], *, online: bool, log: Callable[[str], None]) -> Path:
    print("[html] jupyter-book build ...", end=" ", flush=True)
    start = time.perf_counter()
    src = assemble_source(book_dir, output / "src", [r.executed for r in results], scorecard_md)
    html_index = build_html(src, output / "html", online=online, log=log)
    copy_chapter_sources([r.source for r in results], output / "html" / "_sources", log)
    timings["html_seconds"] = round(time.perf_counter() - start, 3)
    print(f"{timings['html_seconds']:.1f} s -> {html_index}", flush=True)
    return html_index


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bertrepro.book", description=plain_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="run scale (default: gpu when CUDA is available, else cpu)")
    p.add_argument("--chapters", nargs="+", metavar="NN", help="run only these chapters (e.g. 01 03)")
    p.add_argument("--seed", type=int, default=None, help="seed passed to every chapter (default: its own, 0)")
    p.add_argument("--device", default=None, help="torch device passed to every chapter (e.g. cuda:0)")
    p.add_argument("--online", action="store_true", help="do not set the Hugging Face offline switches")
    p.add_argument("--no-html", dest="html", action="store_false", help="skip the Jupyter Book HTML build")
    p.add_argument("--output", type=Path, default=BUILD_DIR, help=f"output folder (default {BUILD_DIR})")
    p.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR,
                   help=f"folder of NN_slug.ipynb chapters (default {NOTEBOOKS_DIR})")
    plan.add_plan_arguments(p)
    p.add_argument("--dry-run", action="store_true",
                   help=f"run the gpu profile on the CPU with its counts cut (bertrepro.dryrun), into "
                        f"{dryrun.DRY_RUN_OUTPUT} unless --output is given")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry; returns the exit status (0 ok, 1 a chapter or the HTML failed, 2 bad input)."""
    args = _parser().parse_args(argv)
    if args.plan or args.json or args.measure:
        return plan.plan_main(args)
    dry = {}
    if args.dry_run:
        if args.profile not in (None, "gpu"):
            print(f"error: --dry-run runs the gpu profile; drop --profile {args.profile} or --dry-run", file=sys.stderr)
            return 2
        args.profile, args.device = "gpu", args.device or "cpu"
        args.output = BOOK_DIR.parent / dryrun.DRY_RUN_OUTPUT if args.output == BUILD_DIR else args.output
        dry = {dryrun.DRY_RUN_ENV: "1"}
    try:
        with _environ(dry):
            build(profile=args.profile, chapters=args.chapters, seed=args.seed, device=args.device,
                  online=args.online, html=args.html, output=args.output, notebooks_dir=args.notebooks)
    except ChapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BookBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return _report_interrupt(e, args.output)
    return 0


def _report_interrupt(e: KeyboardInterrupt, output: Path) -> int:
    """One line for a Ctrl-C (what stopped, what was kept); the exit status of a shell's Ctrl-C."""
    with bookguard.ignoring_sigint():
        if isinstance(e, bookguard.BookInterrupted):
            line = str(e)
        else:  # before the first chapter, between two, or in the HTML build
            bookguard.stop_kernels()
            line = f"interrupted outside a chapter; every file written so far in {Path(output).resolve()} is kept"
        print(line, file=sys.stderr, flush=True)
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
