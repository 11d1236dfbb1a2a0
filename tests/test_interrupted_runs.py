"""Fine-tuning never replaces a finished run silently, and Ctrl-C in fine-tuning or pre-training is
one line and exit status 130, leaving no result that its config did not make."""
from __future__ import annotations

import json
import time

import pytest

from bertrepro.finetune import cli as finetune_cli
from bertrepro.pretrain import cli as pretrain_cli
from test_finetune import _tiny_checkpoint


def finished_run(out, **config):
    """A folder holding an earlier run's pair: its config and the result that config made."""
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config))
    (out / "result.json").write_text(json.dumps({**config, "test_accuracy": 0.5}))
    return {p.name: p.read_bytes() for p in out.iterdir()}


def argv(model_dir, out, *extra):
    return ["--profile", "smoke", "--arm", "random", "--pretrained-dir", str(model_dir), "--per-class", "2",
            "--learning-rate", "1e-3", "--output-dir", str(out), "--no-progress", *extra]


def exit_status(main, argv):
    """``main(argv)``; a Ctrl-C escaping it is a failure of this test, not the end of the test session."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the command line instead of exit status 130")


def error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_a_finished_run_is_refused_in_one_line_and_left_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTREPRO_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    before = finished_run(out, learning_rates=[1e-3], seed=0)
    start = time.perf_counter()
    code = finetune_cli.main(argv(_tiny_checkpoint(tmp_path), out))
    assert code == 2 and time.perf_counter() - start < 5.0
    lines = error_lines(capsys)
    assert len(lines) == 1 and "holds a finished run (result.json)" in lines[0] and "--overwrite-output-dir" in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ctrl_c_while_replacing_a_finished_run_leaves_no_result_of_another_config(tmp_path, monkeypatch, capsys):
    """``--overwrite-output-dir``, then Ctrl-C (or a kill) between writing config.json and result.json:
    the old result must not stay beside the new config."""
    monkeypatch.setenv("BERTREPRO_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    finished_run(out, learning_rates=[0.5], seed=7)

    def stopped(*args, **kwargs):
        assert json.loads((out / "config.json").read_text())["learning_rates"] == [1e-3]  # the new config is written
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_cli, "tune_on_dev", stopped)
    code = exit_status(finetune_cli.main, argv(_tiny_checkpoint(tmp_path), out, "--overwrite-output-dir"))
    assert code == 130
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("python -m bertrepro.finetune: interrupted: fine-tuning stopped")
    config = json.loads((out / "config.json").read_text())
    assert config["learning_rates"] == [1e-3] and not (out / "result.json").exists()


def test_ctrl_c_in_pretraining_is_one_line_naming_what_to_resume(tmp_path, monkeypatch, capsys):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_cli, "pretrain", stopped)
    code = exit_status(pretrain_cli.main, ["--profile", "smoke", "--output-dir", str(tmp_path / "run")])
    assert code == 130
    lines = error_lines(capsys)
    assert lines == [f"python -m bertrepro.pretrain: interrupted: pre-training stopped before its first checkpoint; "
                     f"nothing of this run in {tmp_path / 'run'} to resume"]
    with pytest.raises(KeyboardInterrupt):  # --debug keeps the traceback
        pretrain_cli.main(["--profile", "smoke", "--output-dir", str(tmp_path / "run"), "--debug"])
