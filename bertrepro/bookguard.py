"""What keeps a book run safe: its arguments checked before the first chapter, one run per output
folder, and a Ctrl-C that stops the chapter's kernel and says what was kept.

* :func:`check_arguments` refuses a negative seed, a device torch cannot use and an output folder that
  cannot be created or written (a file, a read-only folder) with one ``ValueError`` line, in
  seconds, before any chapter starts.
* :func:`output_lock` takes an exclusive ``flock`` on ``OUTPUT/.book.lock`` before the run touches
  anything else there. A second run on the same folder is refused at once, naming the holder's PID
  and command line. The operating system drops the lock when its process dies, so a run killed with
  SIGKILL never blocks the next one.
* :class:`BookInterrupted` is what a Ctrl-C becomes: the chapter that stopped, its partial notebook
  and the chapters finished before it; :func:`stop_kernels` shuts down the kernels the run started.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch

from .profiles import resolve_device

try:  # POSIX; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["LOCK_FILE", "MAX_SEED", "OutputInUseError", "BookInterrupted", "check_arguments", "output_lock",
           "quiet_interrupt", "interrupt_requested", "ignoring_sigint", "stop_kernels"]

LOCK_FILE = ".book.lock"
#: numpy's seeds are 32-bit; every chapter seeds numpy, torch and random with the book's seed.
MAX_SEED = 2**32 - 1


class OutputInUseError(ValueError):
    """Another live book run holds the output folder (bad input: exit 2)."""


class BookInterrupted(KeyboardInterrupt):
    """A Ctrl-C during a chapter: names the chapter, its partial notebook and the chapters kept."""

    def __init__(self, chapter: str, executed: Path, finished: int, seconds: float):
        self.chapter, self.executed, self.finished, self.seconds = chapter, executed, finished, seconds
        super().__init__(str(self))

    def __str__(self) -> str:
        before = (f"the {self.finished} chapter(s) finished before it in {self.executed.parent}" if self.finished
                  else "no chapter had finished before it")
        return (f"interrupted: chapter {self.chapter} stopped after {self.seconds:.1f} s and its kernel was shut "
                f"down; kept: its partial notebook {self.executed}; {before}; the scorecard of the last finished "
                f"run is unchanged")


def check_arguments(seed: int | None, device: str | None, profile: str, output: Path) -> None:
    """Refuse a bad seed, device or output folder with one ``ValueError`` naming it and the fix."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
    if device is not None:
        try:
            torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
        resolve_device(device, profile)  # CUDA asked for and not available: one ValueError
    _check_output(output)


def _check_output(output: Path) -> None:
    """``output`` is a folder, or can be made one, and a file can be written in it."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder; give a folder for the book's output")
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"--output {output} cannot be a folder: a part of its path is a file; give another "
                         f"folder") from None
    except OSError as e:
        raise ValueError(f"--output {output} is not writable ({e.strerror}); give a folder you can write to") from None


def _command_line() -> str:
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return " ".join(shlex.quote(a) for a in argv)


def _holder(fd: int) -> str:
    """What the holder wrote in the lock file: its PID and command line (it may be a moment late)."""
    text = ""
    for _ in range(20):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if text:
            break
        time.sleep(0.05)
    pid, _, cmd = text.partition("\n")
    return f"PID {pid or 'unknown'}" + (f": {cmd}" if cmd else "")


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``output`` for the block; another holder raises :class:`OutputInUseError`."""
    path = Path(output) / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUseError(f"--output {output} is in use by another book run ({_holder(fd)}); wait for it "
                                   f"to finish or stop it, or give another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_command_line()}\n".encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def stop_kernels(timeout: float = 5.0) -> list[int]:
    """Stop the Jupyter kernels this process started and that still run; returns their PIDs.

    SIGKILL at once: a kernel holds nothing to save (the runner keeps the notebook), and a kernel
    asked to stop mid-cell prints tracebacks of its closing sockets onto the runner's terminal."""
    import psutil  # lazily: only an interrupted book needs it (jupyter_client's dependency)

    kernels = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("ipykernel" in part for part in child.cmdline()):
                kernels.append(child)
    for k in kernels:
        with contextlib.suppress(psutil.Error):
            k.kill()
    psutil.wait_procs(kernels, timeout=timeout)
    return [k.pid for k in kernels]


_ctrl_c = threading.Event()


def interrupt_requested() -> bool:
    """Whether Ctrl-C came within the current :func:`quiet_interrupt` block (an error the kernel
    client raises while it is torn down then belongs to the interrupt, not to the chapter)."""
    return _ctrl_c.is_set()


def _sigint(signum: int, frame: object) -> None:
    # From the first Ctrl-C on, the kernel client's and asyncio's complaints about the kernel they lose
    # ("Kernel died", "Task exception was never retrieved") would bury the one line the runner prints.
    _ctrl_c.set()
    logging.disable(logging.CRITICAL)
    stop_kernels()
    raise KeyboardInterrupt


@contextlib.contextmanager
def quiet_interrupt() -> Iterator[None]:
    """Within the block, Ctrl-C stops the kernels, silences logging and raises ``KeyboardInterrupt``
    (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _ctrl_c.clear()
    previous = signal.signal(signal.SIGINT, _sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ignoring_sigint() -> Iterator[None]:
    """Ctrl-C is ignored within the block (main thread only): a clean-up that must not be cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
