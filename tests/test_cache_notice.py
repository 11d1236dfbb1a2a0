"""The cache's "cache: computing ... code changed: ..." line reaches the terminal beside the chapter's
progress line, not only the executed notebook."""
from __future__ import annotations

import io
import json
import time

import nbformat

from bertrepro import book, progress
from bertrepro.progress import ChapterProgress

STALE_ENTRY = ("from pathlib import Path\n"
               "from bertrepro.cache import cached_file\n"
               "old = {'code': {'bertrepro/masking.py': 'a1'}, 'config': {'steps': 1}}\n"
               "new = {'code': {'bertrepro/masking.py': 'b2'}, 'config': {'steps': 1}}\n"
               "cached_file(Path('artifact.txt'), old, lambda p: p.write_text('old'))\n"
               "cached_file(Path('artifact.txt'), new, lambda p: p.write_text('new'))  # stale: recomputed\n")


def _notebook(path, *code):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell("profile = None\nseed = 0\ndevice = None",
                                              metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in code]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_a_recomputed_cache_entry_is_named_in_the_terminal(tmp_path):
    _notebook(tmp_path / "nbs" / "01_stale.ipynb", STALE_ENTRY)
    stream = _Log()
    book.build(profile="smoke", notebooks_dir=tmp_path / "nbs", output=tmp_path / "out", html=False,
               progress_interval=30.0, stream=stream, log=lambda s: None)
    lines = stream.getvalue().splitlines()
    shown = [ln for ln in lines if "cache: computing" in ln]
    assert len(shown) == 2 and shown[1].startswith("[01/01] 01_stale | cache: computing artifact.txt"), lines
    assert shown[1].endswith("code changed: bertrepro/masking.py"), shown
    assert lines[-1].startswith("[01/01] 01_stale ... ") and lines[-1].endswith(" s")
    executed = nbformat.read(str(tmp_path / "out" / "executed" / "01_stale.ipynb"), as_version=4)
    assert "code changed: bertrepro/masking.py" in json.dumps(executed.cells[-1].outputs)  # still in the notebook


def test_notices_come_as_lines_of_their_own_and_nothing_outside_the_runner(tmp_path, monkeypatch, capsys):
    progress.notice("cache: computing x (fingerprint 0): nothing cached")  # no runner: the caller prints
    assert not list(tmp_path.iterdir()) and capsys.readouterr() == ("", "")
    status = tmp_path / "p.json"
    stream = io.StringIO()
    mon = ChapterProgress("[09/12]", "09_pretraining", status, stream=stream, tty=True, refresh=0.05)
    monkeypatch.setenv(progress.PROGRESS_ENV, str(status))
    with mon:
        progress.notice("cache: computing model (fingerprint 1): config changed: steps 1 -> 2")
        deadline = time.monotonic() + 10
        while "config changed" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    mon.finish("3.0 s")
    text = stream.getvalue()
    shown = "cache: computing model (fingerprint 1): config changed: steps 1 -> 2"
    assert f"\r\x1b[K[09/12] 09_pretraining | {shown}\n" in text
    assert text.endswith("\r\x1b[K[09/12] 09_pretraining ... 3.0 s\n")
    assert not progress.notices_path(status).exists()
