"""One book per output folder, its arguments checked before the first chapter, and Ctrl-C: real
``python -m bertrepro.book`` processes at the smoke profile (seconds each): Ctrl-C during chapter 01,
the lock on a chapter that only waits."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from bertrepro import book, report
from bertrepro.bookguard import LOCK_FILE
from bertrepro.scorediff import load_scorecard

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "01_self_attention"


def waiting_chapter(folder: Path, seconds: float) -> Path:
    """A folder of one chapter that only waits: the lock tests need a run that lasts, nothing more."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("profile = None\nseed = 0\ndevice = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})")]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / "01_wait.ipynb"))
    return folder


def start_book(output: Path, *extra: str) -> subprocess.Popen:
    """``python -m bertrepro.book`` on chapter 01 at the smoke profile, in its own process group (a
    terminal's Ctrl-C reaches the whole foreground group)."""
    cmd = [sys.executable, "-m", "bertrepro.book", "--profile", "smoke", "--chapters", "01", "--no-html",
           "--output", str(output), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.fixture
def books():
    started: list[subprocess.Popen] = []
    yield lambda output, *extra: started.append(start_book(output, *extra)) or started[-1]
    for p in started:  # the run and whatever it left behind in its process group (a kernel)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def holds_lock(output: Path, p: subprocess.Popen) -> bool:
    try:
        return (output / LOCK_FILE).read_text().startswith(f"{p.pid}\n")
    except OSError:
        return False


def chapter_running(output: Path, p: subprocess.Popen) -> bool:
    """The chapter's kernel runs cells: papermill has written the executed notebook."""
    assert p.poll() is None, p.communicate()
    return (output / "executed" / f"{CHAPTER}.ipynb").exists()


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def import_seconds() -> float:
    """How long this machine takes to start Python and import the runner (under the current load)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bertrepro.book"], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def test_a_second_book_on_the_same_output_is_refused_at_once_and_the_first_finishes(tmp_path, books):
    out, chapters = tmp_path / "book", str(waiting_chapter(tmp_path / "nbs", 3.0))
    first = books(out, "--notebooks", chapters)
    wait_for(lambda: holds_lock(out, first), "the first run to lock its output")
    baseline = import_seconds()
    start = time.perf_counter()
    second = books(out, "--notebooks", chapters)
    _, err = second.communicate(timeout=60)
    seconds = time.perf_counter() - start
    assert second.returncode == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and f"PID {first.pid}" in lines[0] and "bertrepro.book" in lines[0], err
    assert seconds < baseline + 2.0, f"refused after {seconds:.1f} s (Python and imports take {baseline:.1f} s)"
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads((out / "timings.json").read_text())["chapters"]["01_wait"]["status"] == "ok"


def test_a_run_killed_with_sigkill_does_not_block_the_next(tmp_path, books):
    out, chapters = tmp_path / "book", str(waiting_chapter(tmp_path / "nbs", 0.5))
    killed = books(out, "--notebooks", chapters)
    wait_for(lambda: holds_lock(out, killed), "the run to lock its output")
    killed.send_signal(signal.SIGKILL)  # the book process only, as `kill -9 PID` does
    killed.wait(timeout=30)
    assert (out / LOCK_FILE).read_text().startswith(f"{killed.pid}\n")  # its lock file stays behind
    again = books(out, "--notebooks", chapters)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert (out / "scorecard.json").exists()


@pytest.mark.parametrize("target", ["process group", "book process"])
def test_ctrl_c_stops_the_chapter_keeps_its_notebook_and_says_so_in_one_line(tmp_path, books, target):
    out = tmp_path / "book"
    out.mkdir()
    rec = report.make_record("earlier.claim", 1.0, paper=1.0, tolerance=0.0, kind="claim")
    report.write_scorecard([rec], out / "scorecard.json", profile="smoke")  # the last finished run's
    before = (out / "scorecard.json").read_bytes()
    run = books(out)
    wait_for(lambda: chapter_running(out, run), "the chapter to start")
    time.sleep(1.0)
    kernels = [c.pid for c in psutil.Process(run.pid).children(recursive=True)
               if any("ipykernel" in part for part in c.cmdline())]
    assert kernels, "the chapter's kernel was not found"
    if target == "process group":
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in a terminal
    else:
        run.send_signal(signal.SIGINT)
    out_text, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"interrupted: chapter {CHAPTER} stopped") and "kernel was shut down" in lines[0]
    assert "INTERRUPTED" in out_text
    partial = out / "executed" / f"{CHAPTER}.ipynb"
    assert str(partial) in lines[0] and json.loads(partial.read_text())["cells"]  # kept, and a notebook
    for pid in kernels:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert (out / "scorecard.json").read_bytes() == before
    assert list(load_scorecard(out / "scorecard.json")) == ["earlier.claim"]


def run_main(capsys, *argv: str) -> tuple[int, list[str]]:
    start = time.perf_counter()
    code = book.main(["--profile", "smoke", "--chapters", "01", "--no-html", *argv])
    assert time.perf_counter() - start < 5.0  # refused before any chapter starts
    return code, error_lines(capsys.readouterr().err)


def test_a_negative_seed_is_refused_before_any_chapter(tmp_path, capsys):
    code, lines = run_main(capsys, "--seed", "-1", "--output", str(tmp_path / "book"))
    assert code == 2 and len(lines) == 1 and "--seed must be between 0 and" in lines[0]
    assert not (tmp_path / "book").exists()


def test_an_output_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "book").write_text("not a folder")
    code, lines = run_main(capsys, "--output", str(tmp_path / "book"))
    assert code == 2 and len(lines) == 1 and "is a file, not a folder" in lines[0]
    code, lines = run_main(capsys, "--output", str(tmp_path / "book" / "inside"))
    assert code == 2 and len(lines) == 1 and "a part of its path is a file" in lines[0]


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permission bits; a pseudo file system refuses even root
        if not Path("/sys").is_dir():
            pytest.skip("no read-only folder for root on this machine")
        output = Path("/sys/bertrepro-book-test")
    else:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o500)
        output = locked / "book"
    code, lines = run_main(capsys, "--output", str(output))
    assert code == 2 and len(lines) == 1 and "is not writable" in lines[0], lines
    assert not output.exists()


@pytest.mark.parametrize("device", ["bogus", "cuda:x"])
def test_a_device_torch_does_not_know_is_refused(tmp_path, capsys, device):
    code, lines = run_main(capsys, "--device", device, "--output", str(tmp_path / "book"))
    assert code == 2 and len(lines) == 1 and f"--device {device!r} is not a torch device" in lines[0]
