"""Command lines: bad input is one line and exit status 2 (a traceback only with --debug), every option
is described, --resume finds the profile; the gpu profile without CUDA stops at once; the workflow's
gpu job checks CUDA, waits for the cpu job and is never cancelled on main."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bertrepro import profiles
from bertrepro.data import CORPORA
from bertrepro.finetune import cli as finetune_cli
from bertrepro.pretrain import cli as pretrain_cli
from bertrepro.pretrain import loop

ROOT = Path(__file__).resolve().parents[1]


class _Stop(Exception):
    """Raised where a test must not go further (a run that would start training)."""


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def no_training(monkeypatch):
    def stop(*args, **kwargs):
        raise _Stop
    monkeypatch.setattr(loop, "_pretrain", stop)
    monkeypatch.setattr(finetune_cli, "_arm", stop)


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- 11. the gpu profile needs CUDA

def test_the_gpu_profile_without_cuda_is_an_error_unless_the_cpu_is_asked_for(no_cuda):
    with pytest.raises(ValueError, match="gpu profile needs CUDA.*--device cpu"):
        profiles.resolve_device(None, "gpu")
    assert profiles.resolve_device("cpu", "gpu") == torch.device("cpu")
    for profile in ("smoke", "cpu", None):
        assert profiles.resolve_device(None, profile) == torch.device("cpu")


def test_both_command_lines_stop_at_once_on_the_gpu_profile_without_cuda(no_cuda, no_training, tmp_path, capsys):
    assert pretrain_cli.main(["--profile", "gpu", "--output-dir", str(tmp_path / "p"), "--no-progress"]) == 2
    one_error_line(capsys, "gpu profile needs CUDA", "--device cpu")
    assert finetune_cli.main(["--profile", "gpu", "--output-dir", str(tmp_path / "f"), "--no-progress"]) == 2
    one_error_line(capsys, "gpu profile needs CUDA")
    with pytest.raises(_Stop):  # an explicit --device cpu goes on
        pretrain_cli.main(["--profile", "gpu", "--device", "cpu", "--output-dir", str(tmp_path / "p")])


def test_the_workflow_gpu_job_checks_cuda_waits_for_cpu_and_is_not_cancelled_on_main():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    gpu = wf["jobs"]["gpu"]
    needs = gpu.get("needs")
    assert needs == "cpu" or "cpu" in (needs or []), needs
    runs = [s.get("run", "") for s in gpu["steps"]]
    check = next(i for i, r in enumerate(runs) if "torch.cuda.is_available()" in r and "sys.exit" in r)
    book = next(i for i, r in enumerate(runs) if "make book PROFILE=gpu" in r)
    assert check < book

    def cancels_main(concurrency) -> bool:
        if not concurrency or isinstance(concurrency, str):
            return False  # a bare group name never cancels
        cancel = concurrency.get("cancel-in-progress", False)
        if isinstance(cancel, bool):
            return cancel
        return "github.ref != 'refs/heads/main'" not in cancel.replace('"', "'")

    assert not cancels_main(wf.get("concurrency")) and not cancels_main(gpu.get("concurrency"))


# ----------------------------------------------------------------------------- 12. command-line errors

@pytest.mark.parametrize("argv, needles", [
    (["--profile", "smoke", "--learning-rate", "-1"], ["learning_rate must be > 0"]),
    (["--profile", "smoke", "--corpus", "nope"], ["unknown corpus 'nope'", "wiki-vital"]),
    (["--profile", "smoke", "--warmup-steps", "50", "--total-steps", "10"], ["warmup_steps"]),
])
def test_pretrain_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, needles):
    assert pretrain_cli.main([*argv, "--output-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    one_error_line(capsys, "python -m bertrepro.pretrain: error:", *needles)
    assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(ValueError):  # --debug: the traceback
        pretrain_cli.main([*argv, "--output-dir", str(tmp_path / "run"), "--no-progress", "--debug"])


def test_pretrain_empty_output_dir_and_used_folder_are_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pretrain_cli.main(["--profile", "smoke", "--output-dir", "", "--no-progress"]) == 2
    one_error_line(capsys, "output directory is empty")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text('{"step": 5}\n')
    assert pretrain_cli.main(["--profile", "smoke", "--output-dir", "old", "--no-progress"]) == 2
    one_error_line(capsys, "already holds a previous run", "--overwrite")
    assert pretrain_cli.main(["--profile", "smoke", "--output-dir", "old", "--resume", "--no-progress"]) == 2
    one_error_line(capsys, "no checkpoint to resume from")


def test_finetune_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert finetune_cli.main(["--task", "mrpc", "--profile", "smoke", "--output-dir", str(tmp_path)]) == 2
    one_error_line(capsys, "python -m bertrepro.finetune: error:", "--task topics")
    with pytest.raises(SystemExit) as e:
        finetune_cli.main(["--learning-rate", "0"])
    assert e.value.code == 2 and "--learning-rate must be a finite number > 0" in capsys.readouterr().err


def test_python_dash_m_exits_with_main_s_status(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bertrepro.pretrain", "--profile", "smoke", "--learning-rate", "-1",
                           "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("parser", [pretrain_cli.build_parser(), finetune_cli.build_parser()], ids=["pretrain", "finetune"])
def test_help_describes_every_option(parser):
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings
    text = parser.format_help()
    if parser.prog.endswith("pretrain"):
        assert all(c in text for c in CORPORA) and "--overwrite" in text and "--debug" in text


def test_resume_without_profile_takes_the_checkpoint_s(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the default would be cpu
    out = tmp_path / "run"
    pretrain_cli.run(["--profile", "smoke", "--output-dir", str(out), "--max-steps", "2", "--checkpoint-every", "2",
                      "--no-progress", "--num-threads", "1"])
    args = pretrain_cli.build_parser().parse_args(["--output-dir", str(out), "--resume", "--max-steps", "3"])
    config = pretrain_cli.config_from_args(args)
    assert config.profile == "smoke" and config.max_steps == 3
    assert pretrain_cli.main(["--output-dir", str(out), "--resume", "--max-steps", "3", "--no-progress"]) == 0
    assert pretrain_cli.config_from_args(pretrain_cli.build_parser().parse_args(
        ["--output-dir", str(tmp_path / "none")])).profile == "cpu"


@pytest.mark.slow
def test_under_torchrun_every_rank_refuses_a_used_folder_at_once(tmp_path):
    """Rank 0 checks the folder and every rank raises its error: no rank waits for a collective."""
    import socket
    import time

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text('{"step": 5}\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), BERTREPRO_DIST_TIMEOUT="60")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "bertrepro.pretrain",
                           "--profile", "smoke", "--output-dir", str(tmp_path / "old"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and time.perf_counter() - t < 45
    assert proc.stderr.count("already holds a previous run") == 2, proc.stderr[-3000:]  # both ranks say why
    assert (tmp_path / "old" / "metrics.jsonl").read_text() == '{"step": 5}\n'
