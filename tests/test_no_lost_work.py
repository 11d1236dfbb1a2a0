"""A pre-training run never loses or silently corrupts earlier work: divergence stops before any save,
a used folder is refused, one run per folder, durable logs that survive a torn line, no leaked
temporary folders, and a resume with nothing to do says so."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from bertrepro import io
from bertrepro import pretrain as pt
from bertrepro.pretrain import loop, state

LOCK_FILE = ".pretrain.lock"  # bertrepro.pretrain.LOCK_FILE


def corpus(seed: int = 0, n_train: int = 48, n_valid: int = 8) -> dict:
    rng = random.Random(seed)
    animals = ["cat", "dog", "fox", "owl", "bee", "cow"]
    doc = lambda: [f"the {rng.choice(animals)} number {i} likes {rng.choice(animals)} and sun ." for i in range(6)]  # noqa: E731
    return {"train": [doc() for _ in range(n_train)], "validation": [doc() for _ in range(n_valid)]}


CORPUS = corpus()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("vocab-cache")


def tiny(**overrides) -> pt.PretrainConfig:
    kw = dict(vocab_size=100, max_seq_length=24, batch_size=4, total_steps=40, warmup_steps=2, log_every=2,
              checkpoint_every=2, eval_batch_size=16, num_threads=1, max_steps=6)
    kw.update(overrides)
    return pt.PretrainConfig.for_profile("smoke", **kw)


def train(out, cache, resume=False, overwrite=False, **overrides) -> pt.PretrainResult:
    extra = {"overwrite": True} if overwrite else {}
    return pt.pretrain(tiny(**overrides), out, corpus=CORPUS, cache_dir=cache, resume=resume, progress=False, **extra)


def strict_lines(path) -> list[dict]:
    """Every line as strict JSON (a bare NaN or Infinity fails)."""
    def no_constant(c):
        raise AssertionError(f"{path} holds a bare {c}")
    return [json.loads(line, parse_constant=no_constant) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- 1. divergence

@pytest.mark.parametrize("lr", [1000.0, math.inf])
def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, cache, lr):
    with pytest.raises(RuntimeError, match=r"diverged at step \d+: loss .*last good checkpoint") as err:
        train(tmp_path, cache, learning_rate=lr, max_steps=30)
    bad_step = int(str(err.value).split("diverged at step ")[1].split(":")[0])
    assert bad_step < 30
    assert not (tmp_path / "model").exists()  # no all-NaN model
    for ckpt in (tmp_path / "checkpoints").glob("step-*"):
        saved = state.load_checkpoint(ckpt)
        assert saved.step < bad_step
        assert all(torch.isfinite(p).all() for p in saved.model.state_dict().values()), ckpt
    last = pt.latest_checkpoint(tmp_path)
    assert (last is None and bad_step <= 2) or last.name == f"step-{(bad_step - 1) // 2 * 2:08d}"  # the last good one
    lines = strict_lines(tmp_path / "metrics.jsonl")
    assert lines[-1]["step"] == bad_step and lines[-1]["nonfinite"] is True and lines[-1]["loss"] is None


def test_divergence_is_caught_before_a_save_when_only_save_points_are_checked(tmp_path, cache, monkeypatch):
    """On an accelerator the loop reads the watch only where it syncs: the check before each save must hold alone."""
    real = loop._diverged
    monkeypatch.setattr(loop, "_diverged", lambda run: sys._getframe(1).f_code.co_name == "_stop_if_diverged"
                        and real(run))  # the per-step check sees nothing
    with pytest.raises(RuntimeError, match="diverged at step"):
        train(tmp_path, cache, learning_rate=1000.0, max_steps=30, checkpoint_every=4, log_every=100)
    assert not (tmp_path / "model").exists()
    for ckpt in (tmp_path / "checkpoints").glob("step-*"):
        assert all(torch.isfinite(p).all() for p in state.load_checkpoint(ckpt).model.state_dict().values())


def test_two_checkpoints_are_kept_by_default(tmp_path, cache):
    assert pt.PretrainConfig().keep_checkpoints == 2
    # the smoke preset keeps more (its checkpoints are chapter 12's snapshots): ask for the default
    train(tmp_path, cache, max_steps=6, checkpoint_every=2, keep_checkpoints=pt.PretrainConfig().keep_checkpoints)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-00000004", "step-00000006"]


def test_logs_write_null_and_a_flag_for_non_finite_numbers(tmp_path):
    path = tmp_path / "m.jsonl"
    io.append_jsonl(path, {"step": 1, "loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1})
    io.append_jsonl(path, {"step": 2, "loss": 1.5})
    assert strict_lines(path) == [{"step": 1, "loss": None, "grad_norm": None, "lr": 0.1, "nonfinite": True},
                                  {"step": 2, "loss": 1.5}]


# ----------------------------------------------------------------------------- 2. a used folder

@pytest.mark.parametrize("leftover", ["metrics.jsonl", "config.json", "model", "checkpoints"])
def test_a_fresh_run_refuses_a_folder_holding_an_earlier_run(tmp_path, cache, leftover):
    train(tmp_path, cache, max_steps=2)
    keep = {"metrics.jsonl", "config.json", "model", "checkpoints"} - {leftover}
    for name in keep | {"eval.jsonl"}:
        p = tmp_path / name
        __import__("shutil").rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=f"already holds a previous run.*{leftover}.*--overwrite"):
        train(tmp_path, cache, max_steps=2)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != LOCK_FILE} == \
        {p: b for p, b in before.items() if p.name != LOCK_FILE}  # nothing touched
    result = train(tmp_path, cache, max_steps=2, overwrite=True)  # explicit: replaces it
    assert result.step == 2 and [m["step"] for m in pt.read_metrics(tmp_path)] == [2]


def test_an_empty_output_dir_is_refused(tmp_path, cache, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for empty in ("", " "):
        with pytest.raises(ValueError, match="output directory is empty"):
            train(empty, cache, max_steps=1)
    assert list(tmp_path.iterdir()) == []


def test_the_cache_restarts_a_run_killed_before_its_first_checkpoint(tmp_path, cache):
    config = pt.PretrainConfig.for_profile("smoke", max_steps=2, num_threads=1)  # the embedded corpus
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config.to_dict()))  # a run that died before step 2
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    result = pt.load_or_train(config, out, cache_dir=cache, progress=False)
    assert result.step == 2 and [m["step"] for m in result.metrics] == [2]


# ----------------------------------------------------------------------------- 3. one run per folder

def test_a_second_run_in_a_locked_folder_fails_at_once_naming_the_holder(tmp_path, cache):
    tmp_path.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\n'.encode()); print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t = time.perf_counter()
        with pytest.raises(RuntimeError, match=f"in use by another run \\(PID {holder.pid}\\)"):
            train(tmp_path, cache, max_steps=2)
        assert time.perf_counter() - t < 5
        assert not (tmp_path / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert train(tmp_path, cache, max_steps=2).step == 2  # the dead holder's lock does not block


# ----------------------------------------------------------------------------- 4. a torn metrics line

def test_a_torn_last_line_is_dropped_with_a_warning_and_resume_works(tmp_path, cache):
    train(tmp_path, cache, max_steps=4)
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 6, "epoch": 0, "lr": 0.00')  # a crash in the middle of an append
    with pytest.warns(UserWarning, match="metrics.jsonl: dropping the incomplete last line 3"):
        assert [m["step"] for m in pt.read_metrics(tmp_path)] == [2, 4]
    with pytest.warns(UserWarning, match="incomplete last line"):
        result = train(tmp_path, cache, resume=True, max_steps=6)
    assert [m["step"] for m in strict_lines(metrics)] == [2, 4, 6] == [m["step"] for m in result.metrics]


def test_a_corrupt_line_inside_the_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not valid JSON"):
        pt.read_metrics(path)


def test_appends_are_flushed_to_disk(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(io.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    io.append_jsonl(tmp_path / "m.jsonl", {"step": 1})
    assert synced == [str(tmp_path / "m.jsonl")]


# ----------------------------------------------------------------------------- 5. interrupted saves

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_folders_of_dead_runs_are_removed_live_ones_kept(tmp_path, cache):
    train(tmp_path, cache, max_steps=2)
    root = tmp_path / "checkpoints"
    dead = root / f".tmp-step-00000004-{_dead_pid()}"
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = root / f".tmp-step-00000004-{live_proc.pid}"
    try:
        for d in (dead, live):
            d.mkdir()
            (d / "model.safetensors").write_bytes(b"half")
        train(tmp_path, cache, resume=True, max_steps=4)
        assert not dead.exists() and live.exists()
    finally:
        live_proc.kill()
        live_proc.wait()


def test_a_checkpoint_is_fsynced_before_the_rename_that_publishes_it(tmp_path, cache, monkeypatch):
    events = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "rename", lambda a, b: events.append(("rename", str(a))) or real_rename(a, b))
    train(tmp_path, cache, max_steps=2)
    rename = next(i for i, e in enumerate(events) if e[0] == "rename" and ".tmp-step-00000002" in e[1])
    tmp = events[rename][1]
    synced = {e[1] for e in events[:rename] if e[0] == "fsync"}
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer_state.json",
                 "config.json"):
        assert f"{tmp}/{name}" in synced, name
    assert tmp in synced  # the directory itself
    assert any(e == ("fsync", str(tmp_path / "checkpoints")) for e in events[rename:])  # and the rename


# ----------------------------------------------------------------------------- 7. a resume with nothing to do

def test_a_resume_at_the_stop_step_says_so_and_writes_no_duplicate(tmp_path, cache, capsys):
    train(tmp_path, cache, max_steps=4)
    evals = strict_lines(tmp_path / "eval.jsonl")
    capsys.readouterr()
    result = train(tmp_path, cache, resume=True, max_steps=4)
    err = capsys.readouterr().err
    assert "nothing to train" in err and "at step 4" in err and "stops at step 4" in err
    assert strict_lines(tmp_path / "eval.jsonl") == evals  # no duplicate evaluation line
    assert result.steps_run == 0 and result.evaluation == evals[-1]
    assert [m["step"] for m in strict_lines(tmp_path / "metrics.jsonl")] == [2, 4]


def test_the_run_prints_one_summary_line_not_its_configuration(tmp_path, cache, capsys):
    train(tmp_path, cache, max_steps=2)
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and out.startswith("pretrain smoke: mlm_nsp") and "{" not in out


def test_resume_without_the_latest_pointer_uses_the_newest_complete_checkpoint(tmp_path, cache):
    train(tmp_path, cache, max_steps=4)
    (tmp_path / "checkpoints" / "latest").unlink()
    (tmp_path / "checkpoints" / ".tmp-step-00000006-999999").mkdir()  # an unfinished save is not a checkpoint
    assert pt.latest_checkpoint(tmp_path).name == "step-00000004"
    with pytest.raises(ValueError, match="already holds a previous run"):
        train(tmp_path, cache, max_steps=6)
    resumed = train(tmp_path, cache, resume=True, max_steps=6)
    straight = train(tmp_path / "straight", cache, max_steps=6)
    assert resumed.step == 6
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), straight.model.state_dict().items()):
        assert torch.equal(a, b), name
