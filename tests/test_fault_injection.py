"""Kill a pre-training run 20 times with SIGKILL (during steps, checkpoint saves and log appends), resume it
each time, and check that the end is exactly an uninterrupted run's: the same model tensor for tensor,
the same logged losses, no duplicate or torn line, no temporary file or folder left.

Kills inside a save or an append use the ``BERTREPRO_FAULT`` hook (:func:`bertrepro.io.fault_point`):
``save:N`` kills the process in the middle of its N-th checkpoint save (model and optimizer written,
the rest not), ``append:N`` half-way through its N-th JSON-lines append. The other kills are timed:
a seeded random delay after the process has logged its first new step.
"""
from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20
STEPS = 120
ARGS = ["--profile", "smoke", "--total-steps", str(STEPS), "--warmup-steps", "10", "--checkpoint-every", "3",
        "--log-every", "1", "--eval-every", "6", "--num-threads", "1", "--keep-checkpoints", "2", "--no-progress"]
COMPARED = ("step", "epoch", "lr", "loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "grad_norm")


def _command(out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bertrepro.pretrain", *ARGS, "--output-dir", str(out), "--cache-dir", str(cache),
            *extra]


def _env(fault: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BERTREPRO_FAULT", None)
    if fault:
        env["BERTREPRO_FAULT"] = fault
    return env


def _logged_steps(path: Path) -> int:
    """The last step fully logged in metrics.jsonl (tolerates a torn last line)."""
    try:
        lines = path.read_text().split("\n")[:-1]
    except FileNotFoundError:
        return 0
    return max([json.loads(ln)["step"] for ln in lines if ln.strip()], default=0)


def _strict_jsonl(path: Path) -> list[dict]:
    def no_constant(c):
        raise AssertionError(f"{path} holds a bare {c}")
    text = path.read_text()
    assert text.endswith("\n"), f"{path} ends with a torn line"
    return [json.loads(ln, parse_constant=no_constant) for ln in text.splitlines()]


def _kill_plan(rng: random.Random) -> list[str]:
    plan = ["timed"] * 7 + ["save"] * 7 + ["append"] * 6
    rng.shuffle(plan)
    return plan


def _run_until_killed(kind: str, out: Path, cache: Path, rng: random.Random) -> tuple[int, str]:
    """One process (resumed when there is a checkpoint) killed as ``kind`` says; returns (exit status, where)."""
    resume = (out / "checkpoints" / "latest").is_file()
    extra = ["--resume"] if resume else (["--overwrite"] if out.exists() else [])
    fault = {"save": f"save:{rng.randint(1, 2)}", "append": f"append:{rng.randint(1, 4)}"}.get(kind)
    start_step = _logged_steps(out / "metrics.jsonl")
    proc = subprocess.Popen(_command(out, cache, *extra), env=_env(fault), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    where = fault.split(":")[0] if fault else "start-up"
    if kind == "timed":
        # Kill once the run has logged 1-3 new steps: counted in steps, not seconds, so a fast machine
        # does not finish the run before the twentieth kill.
        target = start_step + rng.randint(1, 3)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if _logged_steps(out / "metrics.jsonl") >= target:
                where = "steps"
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (-signal.SIGKILL, 0), err
    return proc.returncode, where


@pytest.mark.slow
def test_twenty_kills_then_resume_give_the_uninterrupted_run(tmp_path):
    t0 = time.perf_counter()
    cache = tmp_path / "cache"
    reference = tmp_path / "reference"
    subprocess.run(_command(reference, cache), env=_env(), check=True, stdout=subprocess.DEVNULL, timeout=300)
    t_reference = time.perf_counter() - t0

    out, rng = tmp_path / "killed", random.Random(20181011)
    landed, seen, kills, processes = collections.Counter(), collections.Counter(), 0, 0
    for kind in _kill_plan(rng):
        rc, where = _run_until_killed(kind, out, cache, rng)
        processes += 1
        if rc == 0:
            break  # finished before the kill: no more to hit
        kills += 1
        landed[where] += 1
        # what the kill left for the next run to repair
        seen["torn line"] += any(p.is_file() and not p.read_text().endswith("\n") for p in out.glob("*.jsonl"))
        seen["temporary folder"] += any((out / "checkpoints").glob(".tmp-step-*"))
    final = subprocess.run(_command(out, cache, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    elapsed = time.perf_counter() - t0
    print(f"\nfault injection: {kills} kills in {processes} processes, landed {dict(landed)}, left {dict(seen)}; "
          f"reference run {t_reference:.1f} s, whole test {elapsed:.1f} s")
    assert kills == KILLS and landed["save"] and landed["append"] and landed["steps"]
    assert seen["torn line"] >= landed["append"] and seen["temporary folder"] >= landed["save"]

    # the final model is the uninterrupted run's, tensor for tensor
    got, want = load_file(str(out / "model" / "model.safetensors")), load_file(str(reference / "model" / "model.safetensors"))
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    # logs: strict JSON, no torn line, no duplicate step, the same numbers as the uninterrupted run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics, ref_metrics = _strict_jsonl(out / "metrics.jsonl"), _strict_jsonl(reference / "metrics.jsonl")
        evals, ref_evals = _strict_jsonl(out / "eval.jsonl"), _strict_jsonl(reference / "eval.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    assert [{k: m[k] for k in COMPARED} for m in metrics] == [{k: m[k] for k in COMPARED} for m in ref_metrics]
    assert [e["step"] for e in evals] == sorted({*range(6, STEPS, 6), STEPS}) and evals == ref_evals
    # nothing temporary left behind
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]
    assert leftovers == []
    steps = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert len(steps) == 2 and (out / "checkpoints" / "latest").read_text().startswith(f"step-{STEPS:08d}")
