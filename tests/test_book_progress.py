"""Progress bars in the book: nothing in the executed notebook, live progress in the runner's terminal.

* ``bertrepro.progress.bar`` under the runner writes its state to a file and draws nothing;
* in a kernel run by hand (papermill, no ipywidgets) a bar leaves one line, not one per update;
* :class:`bertrepro.progress.ChapterProgress` prints chapter, elapsed time and the bar's state, at most
  one line per interval when the output is not a terminal;
* the papermill-injected parameters cell is tagged ``remove-cell``; the chapter's own stays.
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from pathlib import Path

import nbformat
import pytest

from bertrepro import book, progress
from bertrepro.progress import ChapterProgress

PARAMS = "profile = None\nseed = 0\ndevice = None"


def _notebook(path: Path, *code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell("# A chapter with a progress bar"))
    nb.cells.append(nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in code]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


class _TimedStream(io.StringIO):
    """A non-terminal stream that remembers when each line ended."""

    def __init__(self):
        super().__init__()
        self.line_times: list[float] = []

    def write(self, s: str) -> int:
        self.line_times += [time.monotonic()] * s.count("\n")
        return super().write(s)

    def isatty(self) -> bool:
        return False


# ------------------------------------------------------------------------------------------------
# progress.bar in-process
# ------------------------------------------------------------------------------------------------


def test_mode_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert progress.mode() == "terminal"
    monkeypatch.setenv(progress.PROGRESS_ENV, "/tmp/x.json")
    assert progress.mode() == "book"


def test_book_mode_writes_state_and_draws_nothing(tmp_path, monkeypatch, capsys):
    status = tmp_path / "status.json"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(status))
    b = progress.bar(total=200, desc="pretraining", unit="step", dynamic_ncols=True)
    for i in range(200):
        b.update(1)
        b.set_postfix(loss=f"{3 - i / 100:.3f}")
    b.close()
    out = capsys.readouterr()
    assert out.out == "" and out.err == "", "a bar under the book draws nothing"
    state = progress.read_status(status)
    assert (state["desc"], state["n"], state["total"], state["unit"], state["closed"]) == ("pretraining", 200, 200, "step", True)
    assert state["postfix"] == "loss=1.010"
    assert progress.format_status(state) == "pretraining 200/200 step, loss=1.010"
    # An iterable bar too, and a disabled bar leaves the file alone.
    assert list(progress.bar(range(5), desc="eval")) == list(range(5))
    assert progress.read_status(status)["desc"] == "eval"
    for _ in progress.bar(range(3), desc="quiet", disable=True):
        pass
    assert progress.read_status(status)["desc"] == "eval"


def test_book_mode_rate_limits_writes(tmp_path, monkeypatch):
    status = tmp_path / "status.json"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(status))
    writes = []
    real = progress._write_atomic
    monkeypatch.setattr(progress, "_write_atomic", lambda p, t: (writes.append(t), real(p, t)))
    b = progress.bar(total=10_000, desc="fast")
    for _ in range(10_000):
        b.update(1)
        b.set_postfix(loss="1.0")  # refreshes on every call
    b.close()
    assert 1 <= len(writes) <= 4, f"{len(writes)} writes for a sub-second loop"
    assert json.loads(writes[-1])["n"] == 10_000 and json.loads(writes[-1])["closed"]


def test_format_status_without_state():
    assert progress.format_status(None) == ""
    assert progress.format_status({"desc": "", "n": 3, "total": None, "unit": "it"}) == "progress 3 it"
    assert progress.read_status("/nonexistent/status.json") is None


# ------------------------------------------------------------------------------------------------
# ChapterProgress: the runner's terminal line
# ------------------------------------------------------------------------------------------------


def _feed(status: Path, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        tmp = status.with_name(status.name + ".tmp")  # atomic, as bertrepro.progress writes it
        tmp.write_text(json.dumps({"desc": "pretraining", "n": n, "total": 1000, "unit": "step",
                                   "postfix": f"loss={5 - n / 100:.2f}"}))
        os.replace(tmp, status)
        time.sleep(0.02)


def test_chapter_progress_log_lines_are_rate_limited(tmp_path):
    status = tmp_path / "p.json"
    stream = _TimedStream()
    stop = threading.Event()
    mon = ChapterProgress("[09/12]", "09_pretraining", status, stream=stream, interval=0.3)
    with mon:
        feeder = threading.Thread(target=_feed, args=(status, stop))
        feeder.start()
        time.sleep(1.45)
        stop.set()
        feeder.join()
    mon.finish("1.5 s, 7 record(s)")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[09/12] 09_pretraining ... "
    assert lines[-1] == "[09/12] 09_pretraining ... 1.5 s, 7 record(s)"
    body = lines[1:-1]
    assert 1 <= len(body) <= 5, body  # at most one line per interval; a loaded machine may print fewer
    pat = re.compile(r"^\[09/12\] 09_pretraining \d+s \| pretraining \d+/1000 step, loss=\d\.\d\d$")
    assert all(pat.match(ln) for ln in body), body
    gaps = [b - a for a, b in zip(stream.line_times[1:], stream.line_times[2:-1])]
    assert all(g >= 0.25 for g in gaps), f"progress lines closer than the interval: {gaps}"
    assert not status.exists(), "the progress file is removed when the chapter ends"


def test_chapter_progress_quiet_chapter_keeps_one_line(tmp_path):
    stream = _TimedStream()
    mon = ChapterProgress("[01/12]", "01_self_attention", tmp_path / "p.json", stream=stream, interval=30)
    with mon:
        time.sleep(0.05)
    mon.finish("8.9 s, 3 record(s)")
    assert stream.getvalue() == "[01/12] 01_self_attention ... 8.9 s, 3 record(s)\n"


def test_chapter_progress_rewrites_in_place_on_a_terminal(tmp_path):
    status = tmp_path / "p.json"
    status.write_text("stale state of an earlier run")
    stream = io.StringIO()
    mon = ChapterProgress("[10/12]", "10_fine_tuning", status, stream=stream, tty=True, refresh=0.1)
    with mon:
        assert not status.exists(), "a stale progress file is removed when the chapter starts"
        status.write_text(json.dumps({"desc": "fine-tuning", "n": 4, "total": 9, "unit": "it", "postfix": ""}))
        time.sleep(0.35)
    mon.finish("2.0 s")
    text = stream.getvalue()
    assert text.count("\n") == 1, "a terminal gets one line, rewritten in place"
    assert "\r\x1b[K[10/12] 10_fine_tuning 0s | fine-tuning 4/9 it" in text
    assert text.endswith("\r\x1b[K[10/12] 10_fine_tuning ... 2.0 s\n")


# ------------------------------------------------------------------------------------------------
# Real kernels: the runner, and papermill by hand
# ------------------------------------------------------------------------------------------------

BAR_CELL = ("import time\n"
            "from bertrepro.progress import bar\n"
            "b = bar(total=12, desc='fake training', unit='step')\n"
            "for i in range(12):\n"
            "    time.sleep(0.25)\n"
            "    b.update(1)\n"
            "    b.set_postfix(loss=f'{3 - i / 10:.2f}')\n"
            "b.close()\n"
            "for _ in bar(range(300), desc='inner', leave=False):\n"
            "    time.sleep(0.001)\n"
            "print('done')")


def _outputs(nb_path: Path) -> list[dict]:
    nb = nbformat.read(str(nb_path), as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _output_text(o: dict) -> str:
    return o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", "")


@pytest.mark.slow
def test_runner_shows_chapter_progress_and_keeps_no_bars(tmp_path):
    d = tmp_path / "nbs"
    # Libraries import tqdm.auto, which warns (TqdmWarning) in a kernel without ipywidgets.
    _notebook(d / "01_fake.ipynb", "import tqdm.auto", BAR_CELL)
    stream = _TimedStream()
    book.build(profile="smoke", notebooks_dir=d, output=tmp_path / "out", html=True,
               progress_interval=1.0, stream=stream, log=lambda s: None)
    lines = [ln for ln in stream.getvalue().splitlines() if not ln.startswith("[html]")]
    assert lines[0] == "[01/01] 01_fake ... " and re.match(r"^\[01/01\] 01_fake \.\.\. \d+\.\d s$", lines[-1]), lines
    progress_lines = lines[1:-1]
    assert progress_lines, "a chapter running for seconds shows progress lines"
    assert any(re.match(r"^\[01/01\] 01_fake \d+s \| fake training \d+/12 step, loss=\d\.\d\d$", ln)
               for ln in progress_lines), progress_lines
    gaps = [b - a for a, b in zip(stream.line_times[1:], stream.line_times[2:-1])]
    assert all(g >= 0.9 for g in gaps), f"progress lines closer than the interval: {gaps}"

    executed = tmp_path / "out" / "executed" / "01_fake.ipynb"
    texts = [_output_text(o) for o in _outputs(executed)]
    assert texts == ["done\n"], f"the executed chapter keeps no bar, no warning: {texts}"
    nb = nbformat.read(str(executed), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    own = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(own) == 1 and "remove-cell" not in own[0].metadata["tags"], "the chapter's own parameters cell stays"
    assert not list((tmp_path / "out" / "work").glob(".*.progress.json"))

    # The HTML: no injected cell, the chapter's own parameters cell, the book's stylesheet.
    page = (tmp_path / "out" / "html" / "01_fake.html").read_text(encoding="utf-8")
    assert "tag_injected-parameters" not in page and "tag_parameters" in page
    assert "_static/bertrepro.css" in page


@pytest.mark.slow
def test_papermill_by_hand_keeps_one_line_per_bar(tmp_path, monkeypatch):
    import papermill

    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    nb = _notebook(tmp_path / "01_fake.ipynb", BAR_CELL)
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(nb), str(out), parameters={"profile": "smoke"}, kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path))
    outs = _outputs(out)
    assert not [o for o in outs if o.get("name") == "stderr"], "no warning, no bar on stderr"
    text = "".join(_output_text(o) for o in outs)
    assert len(text.splitlines()) <= 3, text
    assert re.search(r"fake training: 100%.*12/12", text), text
    assert "inner" not in text, "a bar with leave=False leaves nothing"
    assert text.rstrip().endswith("done")
