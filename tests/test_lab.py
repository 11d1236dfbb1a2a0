"""`make lab`: JupyterLab opens a jupytext ``.py`` chapter as a notebook.

Starts the server the Makefile starts (its ``LAB_FLAGS``), headless on 127.0.0.1 with a random free
port and a token, asks the contents API for ``notebooks/01_self_attention.py`` as a notebook, checks
it has the chapter's cells, and stops the server.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "notebooks/01_self_attention.py"


def lab_flags() -> list[str]:
    """The ``LAB_FLAGS`` of the Makefile's ``lab`` target."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"^LAB_FLAGS\s*:?=\s*(.*?)\s*$", text, flags=re.M)
    assert m, "the Makefile defines LAB_FLAGS for `make lab`"
    return shlex.split(m.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read().decode("utf-8"))


def test_make_lab_target():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^lab\s*:", text, flags=re.M), "the Makefile has a `lab` target"
    flags = " ".join(lab_flags())
    assert "jupytext" in flags and "contents_manager_class" in flags
    assert "notebooks" in flags


@pytest.mark.slow
def test_lab_opens_a_py_chapter_as_a_notebook(tmp_path):
    pytest.importorskip("jupyterlab")
    pytest.importorskip("jupytext")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    cmd = [sys.executable, "-m", "jupyterlab", *lab_flags(), "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # as `make lab` does for root
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within 60 s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.3)
        model = _get(f"{base}/api/contents/{CHAPTER}?type=notebook&content=1", token)
        assert model["type"] == "notebook", model.get("type")
        cells = model["content"]["cells"]
        assert len(cells) > 5
        assert any(c["cell_type"] == "markdown" for c in cells) and any(c["cell_type"] == "code" for c in cells)
        params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1 and "profile" in "".join(params[0]["source"])
        # The pairing is jupytext's: the .py is the file, the notebook is its view.
        assert "jupytext" in json.dumps(model["content"]["metadata"])
        # Without the token the server refuses.
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/api/contents/{CHAPTER}?type=notebook", timeout=10)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
