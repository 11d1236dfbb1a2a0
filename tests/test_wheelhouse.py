"""The offline install kit: a tiny wheel, packed in pieces, installs with no index; a corrupted or
missing piece is named."""
from __future__ import annotations

import base64
import hashlib
import json
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
    assert wheelhouse.main(["install", str(path), "--requirements", str(tmp_path / "requirements.txt")]) == 2


def test_a_missing_piece_and_a_missing_manifest_are_named(kit, tmp_path):
    path, _ = kit
    (path / "pieces" / "tinypkg-1.0-py3-none-any.whl.part002").unlink()
    with pytest.raises(wheelhouse.WheelhouseError, match=r"part002 of .* is missing"):
        wheelhouse.unpack(path, tmp_path / "out")
    with pytest.raises(wheelhouse.WheelhouseError, match=r"is not a wheelhouse"):
        wheelhouse.unpack(tmp_path, tmp_path / "out")


def _edit_manifest(path, edit):
    manifest = json.loads((path / wheelhouse.MANIFEST).read_text())
    edit(manifest)
    (path / wheelhouse.MANIFEST).write_text(json.dumps(manifest))


def _rename_file(manifest, new):
    manifest["files"] = {new: entry for entry in manifest["files"].values()}


def test_a_file_name_that_climbs_out_of_the_destination_is_refused(kit, tmp_path):
    path, _ = kit
    _edit_manifest(path, lambda m: _rename_file(m, "../../escaped.whl"))
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(wheelhouse.WheelhouseError, match=r"'\.\./\.\./escaped\.whl' is not a plain file name"):
        wheelhouse.unpack(path, dest)
    assert not (tmp_path / "a" / "escaped.whl").exists() and not dest.exists()  # nothing written at all


@pytest.mark.parametrize("name", ["/tmp/abs.whl", "sub\\x.whl", "nul\0.whl", ".."])
def test_absolute_backslash_and_nul_names_are_refused(kit, tmp_path, name):
    path, _ = kit
    _edit_manifest(path, lambda m: _rename_file(m, name))
    with pytest.raises(wheelhouse.WheelhouseError, match=r"not a plain file name"):
        wheelhouse.unpack(path, tmp_path / "out")


def test_a_piece_outside_pieces_is_refused(kit, tmp_path):
    path, _ = kit
    outside = path / "outside.part000"
    outside.write_bytes(b"x")

    def edit(m):
        next(iter(m["files"].values()))["pieces"][0]["name"] = "../outside.part000"
    _edit_manifest(path, edit)
    with pytest.raises(wheelhouse.WheelhouseError, match=r"piece 0 has the name '\.\./outside\.part000', not a plain"):
        wheelhouse.unpack(path, tmp_path / "out")


@pytest.mark.parametrize("key", ["sha256", "size", "pieces"])
def test_an_entry_without_a_key_is_named(kit, tmp_path, key):
    path, _ = kit
    _edit_manifest(path, lambda m: next(iter(m["files"].values())).pop(key))
    with pytest.raises(wheelhouse.WheelhouseError, match=r"file 'tinypkg-1\.0-py3-none-any\.whl' needs"):
        wheelhouse.unpack(path, tmp_path / "out")


def test_a_piece_of_the_wrong_type_is_named(kit, tmp_path):
    path, _ = kit

    def edit(m):
        next(iter(m["files"].values()))["pieces"][1]["size"] = "big"
    _edit_manifest(path, edit)
    with pytest.raises(wheelhouse.WheelhouseError, match=r"piece 1 .*whole-number 'size'"):
        wheelhouse.unpack(path, tmp_path / "out")


def test_install_of_a_bad_kit_exits_2_with_one_line(kit, tmp_path):
    path, _ = kit
    _edit_manifest(path, lambda m: _rename_file(m, "../../escaped.whl"))
    done = subprocess.run([sys.executable, "-P", wheelhouse.__file__, "install", str(path),
                           "--requirements", str(tmp_path / "requirements.txt")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "escaped.whl" in lines[0] and "Traceback" not in done.stderr
