"""One progress bar for the package.

Every loop that reports progress calls :func:`bar`. What the bar does depends on where it runs:

* **under the book runner** (``$BERTREPRO_PROGRESS_FILE`` names a file): nothing is printed into the
  notebook. The bar's latest state (description, ``n/total``, postfix, elapsed time) is written, at
  most once a second, to that JSON file, and the runner shows it in the terminal
  (:mod:`bertrepro.book`). The executed chapter keeps no trace of the bar.
* **in a Jupyter kernel** (JupyterLab, or papermill run by hand): one text line per bar, updated in
  place through an IPython display handle. JupyterLab shows it live; an executed notebook keeps
  only the bar's final line (or none for a bar made with ``leave=False``), never one line per update.
  No ``ipywidgets`` are needed, so there is no ``TqdmWarning``.
* **anywhere else** (a terminal, a script, a log file): a plain ``tqdm`` bar on stderr.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from tqdm.std import tqdm

__all__ = ["bar", "PROGRESS_ENV", "mode", "read_status", "format_status", "notice", "notices_path", "ChapterProgress"]

#: Environment variable the book runner sets to the path of the chapter's progress file.
PROGRESS_ENV = "BERTREPRO_PROGRESS_FILE"

# Bars that only write a file need no faster updates than this (seconds).
_FILE_MININTERVAL = 1.0
# A bar in a kernel sends a display update at most this often (seconds).
_KERNEL_MININTERVAL = 0.5
# Options that only make sense for a bar drawn on a terminal.
_TERMINAL_ONLY = ("file", "dynamic_ncols", "position", "ascii", "colour", "nrows")


def mode() -> str:
    """Where :func:`bar` draws: ``"book"``, ``"kernel"`` or ``"terminal"`` (see the module docstring)."""
    if os.environ.get(PROGRESS_ENV):
        return "book"
    if "ipykernel" in sys.modules:
        try:
            from IPython import get_ipython  # lazily: IPython is optional (only inside a kernel)
        except ImportError:  # pragma: no cover - ipykernel always brings IPython
            return "terminal"
        shell = get_ipython()
        if shell is not None and getattr(shell, "kernel", None) is not None:
            return "kernel"
    return "terminal"


class _NullIO:
    """A text sink: the bars below draw elsewhere, tqdm still wants a file."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def _base():
    return tqdm


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _file_bar_class():
    tqdm = _base()

    class FileBar(tqdm):
        """Writes its state to ``$BERTREPRO_PROGRESS_FILE`` instead of drawing."""

        monitor_interval = 0  # no monitor thread: every write comes from the loop's own thread

        def __init__(self, *args: Any, status_path: str, **kwargs: Any):
            self._status_path = Path(status_path)
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            closed = msg is not None or bool(self.disable)
            now = time.monotonic()
            # set_postfix() refreshes on every call; the file needs no more than one write a second.
            if not closed and now - getattr(self, "_last_write", -1e9) < _FILE_MININTERVAL:
                return True
            self._last_write = now
            d = self.format_dict
            state = {
                "desc": (d.get("prefix") or "").rstrip(": "),
                "n": d.get("n"),
                "total": d.get("total"),
                "unit": d.get("unit"),
                "postfix": d.get("postfix") or "",
                "elapsed": round(float(d.get("elapsed") or 0.0), 3),
                "closed": closed,
                "line": self.format_meter(**{**d, "ncols": 0}).strip(),
                "time": time.time(),
            }
            try:
                _write_atomic(self._status_path, json.dumps(state) + "\n")
            except OSError:
                pass  # the progress file is a convenience for the terminal; never fail a chapter over it
            return True

    return FileBar


def _kernel_bar_class():
    tqdm = _base()

    class KernelBar(tqdm):
        """One text line in the cell's output, updated in place through a display handle."""

        monitor_interval = 0  # display messages must come from the cell's own thread

        def __init__(self, *args: Any, **kwargs: Any):
            self._handle = None
            super().__init__(*args, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            from IPython.display import display  # lazily: IPython is optional (only inside a kernel)

            text = self.__str__() if msg is None else msg
            bundle = {"text/plain": text}
            if self._handle is None:
                if not text:
                    return True
                self._handle = display(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)
            return True

    return KernelBar


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str | None = None,
        disable: bool = False, **kwargs: Any):
    """A ``tqdm`` progress bar over ``iterable`` (or a manual one with ``total``); see the module docstring."""
    where = "terminal" if disable else mode()
    if where == "terminal":
        return _base()(iterable, total=total, desc=desc, disable=disable, **kwargs)
    for k in _TERMINAL_ONLY:
        kwargs.pop(k, None)
    if where == "book":
        kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.0)), _FILE_MININTERVAL)
        return _file_bar_class()(iterable, total=total, desc=desc, file=_NullIO(),
                                 status_path=os.environ[PROGRESS_ENV], **kwargs)
    kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.0)), _KERNEL_MININTERVAL)
    kwargs.setdefault("ncols", 100)
    return _kernel_bar_class()(iterable, total=total, desc=desc, file=_NullIO(), **kwargs)


def read_status(path: str | os.PathLike) -> dict[str, Any] | None:
    """The latest state a bar wrote to ``path`` (None when there is none yet, or it cannot be read)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def format_status(state: dict[str, Any] | None) -> str:
    """One short line for a bar's state: ``pretraining 1200/6000 step, loss=3.210`` (empty when None)."""
    if not state:
        return ""
    desc = state.get("desc") or "progress"
    n, total = state.get("n"), state.get("total")
    count = f"{n}/{total}" if total else f"{n}"
    unit = state.get("unit") or "it"
    text = f"{desc} {count} {unit}"
    if state.get("postfix"):
        text += f", {state['postfix']}"
    return text


def notices_path(progress_file: str | os.PathLike) -> Path:
    """Where a chapter's :func:`notice` lines go: beside its progress file."""
    return Path(f"{progress_file}.notices")


def notice(text: str) -> None:
    """Under the book runner, show ``text`` in the terminal too, beside the chapter's progress line
    (:class:`ChapterProgress` prints the lines appended here); elsewhere do nothing: the caller's
    own ``print`` already reaches the terminal."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    try:
        with open(notices_path(path), "a", encoding="utf-8") as f:
            f.write(" ".join(text.split()) + "\n")
    except OSError:
        pass  # like the progress file: a convenience for the terminal, never a reason to fail a chapter


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class ChapterProgress:
    """Shows a running chapter in the terminal: its name, the elapsed time and its latest progress bar.

    The chapter's bars (:func:`bar`) write their state to ``progress_file``; a
    thread reads it. On a terminal (``tty``) one line is rewritten in place every ``refresh`` seconds;
    otherwise (CI logs) a new line is printed every ``interval`` seconds, and nothing in between, so
    a log gets at most one line per ``interval``.

    The chapter's notices (:func:`notice`: a cache entry being computed, and why) are printed on
    lines of their own as they come, above the rewritten line on a terminal.

    Use as a context manager around the chapter's execution; :meth:`finish` prints the result.
    """

    def __init__(self, prefix: str, label: str, progress_file: str | os.PathLike, *, stream: Any = None,
                 interval: float = 30.0, tty: bool | None = None, refresh: float = 1.0):
        self.prefix, self.label, self.progress_file = prefix, label, Path(progress_file)
        self.stream = sys.stdout if stream is None else stream
        self.interval, self.refresh = float(interval), float(refresh)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.lines = 0  # progress lines printed (not on a tty)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{label}", daemon=True)
        self._start = 0.0
        self._lock = threading.Lock()
        self._drawn = False  # a tty line is on screen
        self.notices_file = notices_path(self.progress_file)
        self._notices_read = 0  # bytes of the notices file already shown

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def line(self) -> str:
        """The current progress line: chapter, elapsed time and the bar's state."""
        text = f"{self.prefix} {self.label} {_elapsed(time.perf_counter() - self._start)}"
        state = format_status(read_status(self.progress_file))
        return text + (f" | {state}" if state else "")

    def __enter__(self) -> "ChapterProgress":
        self.progress_file.unlink(missing_ok=True)
        self.notices_file.unlink(missing_ok=True)
        self._start = time.perf_counter()
        self._write(f"{self.prefix} {self.label} ... ")
        self._thread.start()
        return self

    def _run(self) -> None:
        # Notices are shown within ``refresh`` seconds; a log gets progress lines every ``interval``.
        period = self.refresh if self.tty else min(self.refresh, self.interval)
        next_line = time.perf_counter() + self.interval
        while not self._stop.wait(period):
            with self._lock:
                if self._stop.is_set():
                    return
                self._show_notices()
                if self.tty:
                    self._write("\r\x1b[K" + self.line())
                    self._drawn = True
                elif time.perf_counter() >= next_line - 0.01:
                    self._write(("\n" if self.lines == 0 else "") + self.line() + "\n")
                    self.lines += 1
                    next_line = time.perf_counter() + self.interval

    def _show_notices(self) -> None:
        """Print the chapter's new :func:`notice` lines, each on its own line beside the progress line."""
        try:
            with open(self.notices_file, "rb") as f:
                f.seek(self._notices_read)
                data = f.read()
        except OSError:
            return
        complete = data[:data.rfind(b"\n") + 1]  # a line still being appended waits for the next look
        self._notices_read += len(complete)
        for text in complete.decode("utf-8", "replace").splitlines():
            line = f"{self.prefix} {self.label} | {text}\n"
            if self.tty:
                self._write("\r\x1b[K" + line + self.line())
                self._drawn = True
            else:
                self._write(("\n" if self.lines == 0 else "") + line)
                self.lines += 1

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        with self._lock:
            pass
        self._thread.join()
        self._show_notices()
        self.progress_file.unlink(missing_ok=True)
        self.notices_file.unlink(missing_ok=True)

    def finish(self, result: str) -> None:
        """Print the chapter's result (``12.3 s, 4 record(s)`` or ``FAILED after ...``)."""
        if self.tty and self._drawn:
            self._write(f"\r\x1b[K{self.prefix} {self.label} ... {result}\n")
        elif self.lines:
            self._write(f"{self.prefix} {self.label} ... {result}\n")
        else:
            self._write(f"{result}\n")
