"""Files: atomic writes, SHA-256 digests, JSON-lines logs and the shared artifact cache.

Every file the package writes goes through :func:`atomic_write_bytes` (a temporary file and
``os.replace``), so a crash never leaves half a file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["atomic_write_bytes", "atomic_write_text", "sha256_file", "read_jsonl", "append_jsonl", "truncate_jsonl",
           "cache_dir"]


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


def _fsync_dir(directory: Path) -> None:
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
    _fsync_dir(path.parent)
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
    """The lines of a JSON-lines file as dicts; [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line (a log line: a crash loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_jsonl(path: str | os.PathLike, step: int) -> None:
    """Drop the lines whose ``step`` is past ``step`` (logged after the checkpoint a resumed run restarts from)."""
    path = Path(path)
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def cache_dir(*parts: str) -> Path:
    """Directory for expensive artifacts chapters may share (a trained vocabulary, a pretrained model).

    ``$BERTREPRO_CACHE_DIR`` (the book runner sets it to ``book/_build/cache``), else ``./.bertrepro_cache``
    beside a standalone chapter. Each chapter rebuilds what it needs when the cache is empty.
    """
    root = Path(os.environ.get("BERTREPRO_CACHE_DIR") or ".bertrepro_cache")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
