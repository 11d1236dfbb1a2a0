"""Data parallelism: ``torchrun --nproc_per_node 2`` on CPU (gloo, loopback) against one process.

With dropout off, two processes sharing a global batch must end where one process ends: the
masks are drawn for the global batch, each rank takes its slice, and the losses are divided by
global counts. Also: a missing rendezvous fails within its timeout, and a world size that does not
divide the global batch fails before any rendezvous.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertrepro.checkpoints import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                          "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    e.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             PYTHONPATH=str(ROOT), **extra)
    return e


def cli(out: Path, cache: Path, *more: str) -> list[str]:
    return ["-m", "bertrepro.pretrain", "--profile", "smoke", "--output-dir", str(out), "--cache-dir", str(cache),
            "--dropout", "0", "--max-steps", str(STEPS), "--log-every", "3", "--checkpoint-every", "3",
            "--no-progress", *more]


def run(cmd: list[str], timeout: float, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env(**extra), capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    cache = tmp_path / "cache"
    one, t1 = run([sys.executable, *cli(tmp_path / "one", cache)], timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    two, t2 = run([*torchrun, *cli(tmp_path / "two", cache)], timeout=120)
    assert two.returncode == 0, two.stderr[-3000:]

    a = load_pretrained(tmp_path / "one" / "model").state_dict()
    b = load_pretrained(tmp_path / "two" / "model").state_dict()
    assert a.keys() == b.keys()
    diffs = {k: (a[k] - b[k]).abs().max().item() for k in a}
    worst = max(diffs, key=diffs.get)
    print(f"1 process {t1:.1f} s, 2 processes {t2:.1f} s; max |difference| {diffs[worst]:.2e} ({worst})")
    assert diffs[worst] <= 1e-5, (worst, diffs[worst])
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in m1] == [m["step"] for m in m2] == [3, 6]
    assert {(m["world_size"], m["global_batch_size"]) for m in m1} == {(1, 8)}
    assert {(m["world_size"], m["global_batch_size"], m["micro_batch_size"]) for m in m2} == {(2, 8, 4)}
    for x, y in zip(m1, m2):  # the same global losses and accuracies, logged by rank 0 only
        for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"):
            assert abs(x[key] - y[key]) <= 1e-5, (key, x[key], y[key])
    assert m1[0]["loss"] != m1[1]["loss"]
    # rank 0 alone wrote; one checkpoint per save point, holding both ranks' RNG states
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-00000006" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2

    # resume distributed: 2 processes continue the 2-process run to step 9, and 1 process the 1-process run
    more = ["--max-steps", "9"]
    two_r, _ = run([*torchrun[:-1], str(free_port()), *cli(tmp_path / "two", cache), *more, "--resume"], timeout=120)
    assert two_r.returncode == 0, two_r.stderr[-3000:]
    one_r, _ = run([sys.executable, *cli(tmp_path / "one", cache), *more, "--resume"], timeout=120)
    assert one_r.returncode == 0, one_r.stderr[-3000:]
    a = load_pretrained(tmp_path / "one" / "model").state_dict()
    b = load_pretrained(tmp_path / "two" / "model").state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_missing_rendezvous_fails_within_the_timeout(tmp_path):
    # rank 1 of 2 with nobody listening at the master's port: an error, not a hang
    t = time.perf_counter()
    proc, _ = run([sys.executable, "-m", "bertrepro.pretrain", "--profile", "smoke", "--output-dir", str(tmp_path),
                   "--no-progress"], timeout=60, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT=str(free_port()), BERTREPRO_DIST_TIMEOUT="3")
    elapsed = time.perf_counter() - t
    assert proc.returncode != 0
    assert "could not join the process group at 127.0.0.1" in proc.stderr
    assert "torchrun" in proc.stderr  # the message says how to fix it
    assert elapsed < 30, elapsed


def test_world_size_not_dividing_the_batch_fails_before_rendezvous(tmp_path):
    # the smoke profile's global batch is 8; 3 processes cannot share it. No master is running:
    # the error must come from the batch check, before any attempt to connect.
    proc, elapsed = run([sys.executable, "-m", "bertrepro.pretrain", "--profile", "smoke", "--output-dir",
                         str(tmp_path), "--no-progress"], timeout=60, RANK="0", WORLD_SIZE="3", LOCAL_RANK="0",
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), BERTREPRO_DIST_TIMEOUT="30")
    assert proc.returncode != 0
    assert "global batch size 8 cannot be split over world size 3" in proc.stderr
    assert elapsed < 25
