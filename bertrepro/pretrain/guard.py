"""What keeps a run's folder safe: one run at a time (a lock), no fresh run over an earlier run's files,
no leftovers of killed saves, and a stop (nothing saved) when training diverges.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

try:  # POSIX; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["RUN_FILES", "LOCK_FILE", "RunExistsError", "RunLockedError", "DivergedError", "RunLock",
           "check_output_dir", "previous_run_files", "claim_fresh_dir"]

# The files of a run: a fresh run refuses a folder holding any of them (unless told to overwrite).
RUN_FILES = ("metrics.jsonl", "eval.jsonl", "config.json", "model", "checkpoints")
LOCK_FILE = ".pretrain.lock"


class RunExistsError(ValueError):
    """A fresh run was pointed at a folder that holds an earlier run."""


class RunLockedError(RuntimeError):
    """Another live process is running in the same folder."""


class DivergedError(RuntimeError):
    """The loss or the gradient norm became non-finite; nothing was saved from that state."""


def check_output_dir(output_dir: object) -> Path:
    """``output_dir`` as a Path; an empty one (an unset shell variable) is an error, not the current folder."""
    if output_dir is None or not str(output_dir).strip():
        raise ValueError("the output directory is empty (an unset shell variable?); give the folder the run "
                         "writes to, e.g. --output-dir runs/smoke")
    return Path(output_dir)


class RunLock:
    """An exclusive ``flock`` on ``output_dir/.pretrain.lock`` holding the owner's PID.

    The operating system drops the lock when its process dies, so a killed run never blocks the next one.
    """

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{str(self.path.parent)!r} is in use by another run (PID {holder}); wait for "
                                 f"it to finish or stop it, or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def previous_run_files(output_dir: Path) -> list[str]:
    """The :data:`RUN_FILES` present in ``output_dir``."""
    return [name + ("/" if (output_dir / name).is_dir() else "") for name in RUN_FILES
            if (output_dir / name).exists()]


def claim_fresh_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse a fresh run in a folder holding an earlier run; with ``overwrite``, delete that run first."""
    found = previous_run_files(output_dir)
    if not found:
        return
    if not overwrite:
        raise RunExistsError(
            f"{str(output_dir)!r} already holds a previous run ({', '.join(found)}); pass --resume (resume=True) "
            f"to continue it, --overwrite (overwrite=True) to delete it and start again, or choose another "
            f"--output-dir")
    for name in (*RUN_FILES, "vocab.txt"):
        p = output_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
