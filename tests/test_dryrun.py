"""The dry run (bertrepro.dryrun): the gpu profile's shapes, vocabulary, lengths and flags kept, its
counts cut; its own output folder; and the bugs it found, each pinned here."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertrepro import ablation as ab
from bertrepro import book, dryrun, profiles
from bertrepro.pretrain.config import OBJECTIVES

ROOT = Path(__file__).resolve().parents[1]


def _cut():
    tables = [copy.deepcopy(t["gpu"]) for t in (profiles.PRETRAIN, profiles.FINETUNE, profiles.ABLATION,
                                                 profiles.ANALOGS)]
    dryrun.cut_counts(*tables)
    return tables


def test_cut_keeps_shapes_vocabulary_lengths_and_cuts_counts():
    pre, fin, abl, f4 = _cut()
    gpu = profiles.PRETRAIN["gpu"]
    for k in ("vocab", "vocab_size", "max_seq_length", "max_predictions_per_seq", "num_hidden_layers",
              "hidden_size", "num_attention_heads", "dropout"):
        assert pre[k] == gpu[k], k
    assert pre.get("precision") == gpu.get("precision") and pre.get("compile") == gpu.get("compile")
    assert pre["batch_size"] == 2 and pre["total_steps"] <= 4
    assert fin["max_seq_length"] == profiles.FINETUNE["gpu"]["max_seq_length"] and fin["batch_size"] == 2
    assert abl["sizes"] == profiles.ABLATION["gpu"]["sizes"] and abl["table8_steps"] == 2
    for task, b in f4.items():
        assert b["max_seq_length"] == profiles.ANALOGS["gpu"][task]["max_seq_length"]
        assert b["doc_stride"] == profiles.ANALOGS["gpu"][task]["doc_stride"] and b["max_train"] == 4


def test_cut_settings_are_valid_and_the_arms_stop_inside_their_schedules():
    """Found while cutting the dry run's counts: with a schedule shorter than the snapshots, the LTR
    arm's stop was raised past its total_steps (max_steps > total_steps raised). It never passes it now."""
    pre, fin, abl, f4 = _cut()
    saved = profiles.PRETRAIN["gpu"]
    profiles.PRETRAIN["gpu"] = pre
    try:
        s = ab.AblationSettings(profile="gpu", **abl)
        flops = {"ltr_total_steps": 1, "ltr_stop_step": 1}
        cfgs = {o: ab.pretrain_config(s, o, flops=flops) for o in OBJECTIVES}
        assert cfgs["ltr"].stop_step == 1 <= cfgs["ltr"].total_steps
        assert cfgs["mlm"].stop_step == s.matched_step == 2
    finally:
        profiles.PRETRAIN["gpu"] = saved


def test_profiles_cut_only_under_the_dry_run_variable():
    code = "from bertrepro import profiles; print(profiles.PRETRAIN['gpu']['batch_size'])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(dryrun.DRY_RUN_ENV, None)
    real = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dry = subprocess.run([sys.executable, "-c", code], env={**env, dryrun.DRY_RUN_ENV: "1"}, capture_output=True,
                         text=True, check=True)
    assert real.stdout.strip() == str(profiles.PRETRAIN["gpu"]["batch_size"]) != dry.stdout.strip() == "2"


def test_dry_run_is_the_gpu_profile_only(capsys):
    assert book.main(["--dry-run", "--profile", "cpu"]) == 2
    assert "--dry-run runs the gpu profile" in capsys.readouterr().err


def test_dry_run_writes_to_its_own_folder(monkeypatch, tmp_path):
    seen = {}

    def fake_build(**kw):
        seen.update(kw, env=os.environ.get(dryrun.DRY_RUN_ENV))

    monkeypatch.setattr(book, "build", fake_build)
    monkeypatch.delenv(dryrun.DRY_RUN_ENV, raising=False)
    assert book.main(["--dry-run", "--chapters", "01"]) == 0
    assert seen["profile"] == "gpu" and seen["device"] == "cpu" and seen["env"] == "1"
    assert Path(seen["output"]).resolve() == (ROOT / dryrun.DRY_RUN_OUTPUT).resolve() != book.BUILD_DIR.resolve()
    assert dryrun.DRY_RUN_ENV not in os.environ  # set for the kernels only while the book runs
