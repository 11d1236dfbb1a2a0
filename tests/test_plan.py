"""The compute plan (bertrepro.plan): FLOPs from the one formula, seconds from the stated rates, the
command line, and the gpu book's budget of 10 minutes on one H100, asserted from the profile table."""
from __future__ import annotations

import json

import pytest

from bertrepro import book, plan
from bertrepro.config import BertConfig
from bertrepro.profiles import ABLATION, PRETRAIN
from bertrepro.train.flops import train_step_flops


def test_gpu_plan_fits_ten_minutes_on_one_h100():
    p = plan.plan("gpu")
    assert p["total_seconds"] <= 600, plan.format_plan(p)
    assert p["total_seconds"] == pytest.approx(sum(p["chapters"].values()) + p["html_seconds"], abs=0.5)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_run_has_flops_seconds_and_claims(profile):
    p = plan.plan(profile)
    assert {r["chapter"] for r in p["runs"]} >= {"09", "10", "11", "12"}
    for r in p["runs"]:
        assert set(r) == {"chapter", "name", "shape", "work", "flops", "seconds", "claims"}
        assert r["flops"] > 0 and r["seconds"] > 0 and r["claims"], r


def test_pretraining_flops_and_seconds_follow_the_formula_and_the_rates():
    pre = PRETRAIN["cpu"]
    cfg = BertConfig(vocab_size=pre["vocab_size"], hidden_size=pre["hidden_size"],
                     num_hidden_layers=pre["num_hidden_layers"], num_attention_heads=pre["num_attention_heads"],
                     intermediate_size=4 * pre["hidden_size"])
    rows = pre["batch_size"] * min(pre["max_predictions_per_seq"], round(0.15 * pre["max_seq_length"]))
    step = train_step_flops(cfg, pre["batch_size"], pre["max_seq_length"], rows)
    T2 = pre["long_seq_length"]
    step2 = train_step_flops(cfg, pre["batch_size"], T2,
                             pre["batch_size"] * min(pre["long_max_predictions_per_seq"], round(0.15 * T2)))
    r09, r09_long = [r for r in plan.plan("cpu")["runs"] if r["chapter"] == "09"]
    long = round(pre["long_phase_fraction"] * pre["total_steps"])
    assert r09["flops"] == pytest.approx((pre["total_steps"] - long) * step)
    assert r09_long["flops"] == pytest.approx(long * step2) and r09_long["work"].startswith(f"{long:,} x")
    # at cpu chapter 09's first phase takes its measured steps/s by construction; the second, its FLOPs at that rate
    assert r09["seconds"] == pytest.approx((pre["total_steps"] - long) / plan.CPU_CH09_STEPS_PER_S)
    assert r09_long["seconds"] == pytest.approx(long * step2 / step / plan.CPU_CH09_STEPS_PER_S)
    gpu = {r["name"]: r for r in plan.plan("gpu")["runs"]}
    g09 = gpu["pretrain mlm_nsp"]
    assert g09["seconds"] == pytest.approx(g09["flops"] / (plan.GPU_PEAK_FLOPS * plan.GPU_MFU))
    # chapter 12's MLM arm stops at matched_step, and LTR at the same FLOPs within one of its steps
    assert gpu["MLM arm"]["work"].startswith(f"{ABLATION['gpu']['matched_step']:,} x")
    assert abs(gpu["LTR arm"]["flops"] - gpu["MLM arm"]["flops"]) < 0.01 * gpu["MLM arm"]["flops"]


def test_cpu_plan_leaves_tables_6_and_8_to_the_gpu():
    names = [r["name"] for r in plan.plan("cpu")["runs"] if r["chapter"] == "12"]
    assert not any(n.startswith(("Table 6", "Table 8")) for n in names)
    assert any(n.startswith("Table 6") for n in (r["name"] for r in plan.plan("gpu")["runs"]))


def test_measured_rates_replace_the_stated_ones():
    p = plan.plan("cpu", rates={"narrow": 1e9, "wide": 2e9})
    for r in p["runs"]:
        assert r["seconds"] == pytest.approx(r["flops"] / (2e9 if r["shape"].split("/")[1] in ("384", "768") else 1e9))


def test_plan_command_line(capsys):
    assert book.main(["--plan", "--profile", "gpu", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["profile"] == "gpu" and p["total_seconds"] <= 600 and p["runs"]
    assert book.main(["--plan", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "pretrain mlm_nsp" in out and "total" in out
    assert book.main(["--json"]) == 2
    assert "add --plan" in capsys.readouterr().err


def test_predicted_against_actual_table():
    timings = {"chapters": {"09_pretraining": {"seconds": 600.0}, "12_ablations": {"seconds": 240.0}}}
    md = plan.predicted_vs_actual("cpu", timings)
    pred = plan.plan("cpu")["chapters"]
    assert f"| 09_pretraining | {pred['09']:.0f} | 600 | {600 / pred['09']:.2f} |" in md
    assert "12_ablations" in md


def test_workflow_gpu_timeout_covers_the_plan():
    import yaml

    from pathlib import Path

    wf = yaml.safe_load((Path(__file__).resolve().parents[1] / ".github" / "workflows" / "book.yml").read_text())
    gpu = wf["jobs"]["gpu"]
    minutes = plan.plan("gpu")["total_seconds"] / 60
    assert minutes + 5 <= gpu["timeout-minutes"] <= 3 * minutes  # room for install, not a blank cheque
    assert any("--plan --profile gpu" in step.get("run", "") for step in gpu["steps"])
