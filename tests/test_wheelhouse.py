"""The offline install kit: a tiny wheel, packed in pieces, installs with no index; a corrupted or
missing piece is named."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from bertrepro import wheelhouse


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def tiny_wheel(folder, payload: bytes):
    """A valid pure-Python wheel ``tinypkg-1.0``: a module and a data file of ``payload``."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg/weights.bin": payload,
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join(_record_line(n, d) for n, d in files.items()) + "\ntinypkg-1.0.dist-info/RECORD,,\n"
    path = folder / "tinypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("tinypkg-1.0.dist-info/RECORD", record)
    return path


@pytest.fixture
def kit(tmp_path):
    src = tmp_path / "wheels"
    src.mkdir()
    payload = os.urandom(50_000)  # incompressible: the wheel is cut into several pieces
    tiny_wheel(src, payload)
    wheelhouse.pack(src, tmp_path / "kit", piece_size=16_000)
    (tmp_path / "requirements.txt").write_text("tinypkg==1.0\n")
    return tmp_path / "kit", payload


def test_pack_cuts_pieces_no_larger_than_the_limit(kit):
    path, _ = kit
    pieces = sorted((path / "pieces").iterdir())
    assert len(pieces) >= 3 and all(p.stat().st_size <= 16_000 for p in pieces)


def test_installs_offline_from_the_kit(kit, tmp_path):
    path, payload = kit
    target = tmp_path / "site"
    wheelhouse.install(path, tmp_path / "requirements.txt", pip_args=["--target", str(target)])
    assert (target / "tinypkg" / "weights.bin").read_bytes() == payload
    out = subprocess.run([sys.executable, "-c", "import tinypkg; print(tinypkg.VALUE)"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(target)})
    assert out.stdout.strip() == "42"


def test_a_corrupted_piece_is_named(kit, tmp_path):
    path, _ = kit
    piece = path / "pieces" / "tinypkg-1.0-py3-none-any.whl.part001"
    data = bytearray(piece.read_bytes())
    data[10] ^= 0xFF
    piece.write_bytes(bytes(data))
    with pytest.raises(wheelhouse.WheelhouseError, match=r"piece .*whl.part001 of tinypkg-1.0-py3-none-any.whl is "
                                                          r"corrupted"):
        wheelhouse.install(path, tmp_path / "requirements.txt", pip_args=["--target", str(tmp_path / "site")])
    assert wheelhouse.main(["install", str(path), "--requirements", str(tmp_path / "requirements.txt")]) == 1


def test_a_missing_piece_and_a_missing_manifest_are_named(kit, tmp_path):
    path, _ = kit
    (path / "pieces" / "tinypkg-1.0-py3-none-any.whl.part002").unlink()
    with pytest.raises(wheelhouse.WheelhouseError, match=r"part002 of .* is missing"):
        wheelhouse.unpack(path, tmp_path / "out")
    with pytest.raises(wheelhouse.WheelhouseError, match=r"is not a wheelhouse"):
        wheelhouse.unpack(tmp_path, tmp_path / "out")
