"""Files: atomic writes, SHA-256 digests, JSON-lines logs and the shared artifact cache.

Every file the package writes goes through :func:`atomic_write_bytes` (a temporary file and
``os.replace``), so a crash never leaves half a file behind.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

__all__ = ["atomic_write_bytes", "atomic_write_text", "sha256_file", "read_jsonl", "append_jsonl", "truncate_jsonl",
           "finite_record", "fault_point", "fsync_dir", "FAULT_ENV", "cache_dir"]

# Crash testing: ``BERTREPRO_FAULT=save:3`` kills the process with SIGKILL in the middle of its third
# checkpoint save, ``append:2`` half-way through its second JSON-lines append (see :func:`fault_point`).
FAULT_ENV = "BERTREPRO_FAULT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL) when ``$BERTREPRO_FAULT`` is ``name:N`` and this is the N-th call for
    ``name`` in this process; otherwise do nothing. The fault-injection test uses it to crash a run in
    the middle of a checkpoint save or a log append, where a timed kill rarely lands."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or not spec.startswith(name + ":"):
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if str(_fault_counts[name]) == spec.split(":", 1)[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory entry (a rename) to disk; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: a crash never leaves half a file.

    The file gets the mode an ordinary ``open(path, "w")`` would give (``0o666`` less the umask, so
    0644 under the usual umask 022), not the owner-only 0600 of a temporary file. The data is flushed
    to disk before the rename and the directory entry after it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The PID in the name lets a later run remove what a killed writer left (bertrepro.pretrain.state).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file as dicts; [] when the file is absent.

    A final line cut short (no newline and not valid JSON: a crash in the middle of an append) is
    dropped with a warning naming the file. Any other line that is not a JSON object raises
    ``ValueError`` naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # the last line, without its newline: torn by a crash
                warnings.warn(f"{path}: dropping the incomplete last line {number} (the run stopped while "
                              f"writing it): {line[:60]!r}", stacklevel=2)
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg}): {line[:80]!r}; the file is "
                             f"corrupt: fix or delete that line") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {line[:80]!r}")
        records.append(record)
    return records


def finite_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with each non-finite float (NaN, inf) replaced by None and ``"nonfinite": true`` added,
    so that the line stays valid JSON (``json.dumps`` would write a bare ``NaN``)."""
    out = dict(record)
    bad = [k for k, v in out.items() if isinstance(v, float) and not math.isfinite(v)]
    for k in bad:
        out[k] = None
    if bad:
        out["nonfinite"] = True
    return out


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line, flushed and fsynced (a crash loses at most the line being written; a torn
    last line is dropped by :func:`read_jsonl`). Non-finite floats are written as null (:func:`finite_record`)."""
    data = (json.dumps(finite_record(record), allow_nan=False) + "\n").encode("utf-8")
    with open(path, "ab") as f:
        if os.environ.get(FAULT_ENV, "").startswith("append:"):
            f.write(data[: len(data) // 2])
            f.flush()
            fault_point("append")
            f.write(data[len(data) // 2:])
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())


def truncate_jsonl(path: str | os.PathLike, step: int) -> None:
    """Drop the lines whose ``step`` is past ``step`` (logged after the checkpoint a resumed run restarts
    from), and a torn last line."""
    path = Path(path)
    if path.is_file():
        keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(finite_record(r), allow_nan=False) + "\n" for r in keep))


def cache_dir(*parts: str) -> Path:
    """Directory for expensive artifacts chapters may share (a trained vocabulary, a pretrained model).

    ``$BERTREPRO_CACHE_DIR`` (the book runner sets it to ``book/_build/cache``), else ``./.bertrepro_cache``
    beside a standalone chapter. Each chapter rebuilds what it needs when the cache is empty.
    """
    root = Path(os.environ.get("BERTREPRO_CACHE_DIR") or ".bertrepro_cache")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
