"""The book's shared pre-trained model: ``pretrained_model`` trains once, then reads the cache.

Chapter 09 trains through it and chapters 10, 11 and 12 read the same run; these tests check that a
second call trains nothing and returns the same model and numbers, that an interrupted run is
resumed (ending where an uninterrupted one ends), that a run made with other settings is replaced
naming what changed, and that ``build=False`` never trains. The smoke preset is shrunk to a few steps on
a few articles, so each training takes seconds.
"""
from __future__ import annotations

import json
import re

import pytest
import torch

from bertrepro import pretrain as pt

SMALL = dict(max_documents=40, eval_documents=8, total_steps=6, warmup_steps=1, log_every=2, checkpoint_every=3,
             num_threads=1)


@pytest.fixture
def small_presets(monkeypatch):
    """Every ``PretrainConfig.for_profile`` call gets the SMALL overrides (explicit keywords still win)."""
    original = pt.PretrainConfig.for_profile.__func__
    overrides = dict(SMALL)

    def for_profile(cls, profile, **kw):
        return original(cls, profile, **{**overrides, **kw})

    monkeypatch.setattr(pt.PretrainConfig, "for_profile", classmethod(for_profile))
    return overrides


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_directory_includes_profile_and_seed(tmp_path):
    assert pt.pretrained_dir("smoke", 3, tmp_path) == tmp_path / "pretrain" / "smoke" / "seed3"
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        pt.pretrained_dir("huge", 0, tmp_path)
    with pytest.raises(ValueError, match="seed must be a non-negative int, got -1"):
        pt.pretrained_dir("smoke", -1, tmp_path)


def test_trains_once_then_reads_the_cache(tmp_path, small_presets):
    first = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    assert first.steps_run == SMALL["total_steps"] and first.output_dir == pt.pretrained_dir("smoke", 0, tmp_path)
    assert (first.model_dir / "model.safetensors").is_file()
    second = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False, progress=False)
    assert second.steps_run == 0 and second.train_time_s == 0.0 and second.step == SMALL["total_steps"]
    assert same_weights(first.model, second.model)
    assert second.evaluation == first.evaluation and second.metrics == first.metrics
    assert second.checkpoint == first.checkpoint
    assert second.data.vocab_size == first.data.vocab_size
    assert torch.equal(second.data.token_counts, first.data.token_counts)
    # the reloaded model scores what the trained one scored, on the same held-out masks
    valid = pt.validation_examples(second.data, second.config)
    again = pt.evaluate(second.model, valid, second.data, second.config, device="cpu")
    assert again["mlm_accuracy"] == first.evaluation["mlm_accuracy"]
    assert again["nsp_accuracy"] == first.evaluation["nsp_accuracy"]
    # another seed is another run
    with pytest.raises(FileNotFoundError, match="no finished pre-training run"):
        pt.pretrained_model("smoke", 1, tmp_path, device="cpu", build=False)
    # a reader of the model alone skips the corpus: no data, no tokenizer, the same weights and folder
    bare = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False, with_data=False)
    assert bare.data is None and bare.tokenizer is None and bare.model_dir == first.model_dir
    assert same_weights(bare.model, first.model)


def test_interrupted_run_is_resumed(tmp_path, small_presets):
    straight = pt.pretrained_model("smoke", 0, tmp_path / "a", device="cpu", progress=False)
    out = pt.pretrained_dir("smoke", 0, tmp_path / "b")
    half = pt.PretrainConfig.for_profile("smoke", seed=0, device="cpu", max_steps=3)
    pt.load_or_train(half, out, cache_dir=tmp_path / "b" / "pretrain", progress=False)  # stopped at step 3
    with pytest.raises(FileNotFoundError, match="no finished pre-training run"):
        pt.pretrained_model("smoke", 0, tmp_path / "b", device="cpu", build=False)
    resumed = pt.pretrained_model("smoke", 0, tmp_path / "b", device="cpu", progress=False)
    assert resumed.steps_run == 3 and resumed.step == 6
    assert same_weights(straight.model, resumed.model)


def test_a_run_with_other_settings_is_replaced_naming_the_change(tmp_path, small_presets, capsys):
    old = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    small_presets["learning_rate"] = 3e-3  # the preset changes after the cache was written
    with pytest.raises(FileNotFoundError, match=r"config changed: pretrain.learning_rate 0.001 -> 0.003"):
        pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False)
    capsys.readouterr()
    new = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    assert re.search(r"cache: computing .*seed0 \(fingerprint [0-9a-f]{12}\): config changed: "
                     r"pretrain.learning_rate 0.001 -> 0.003\n", capsys.readouterr().out)
    assert new.steps_run == SMALL["total_steps"] and new.config.learning_rate == 3e-3
    assert json.loads((new.output_dir / "config.json").read_text())["learning_rate"] == 3e-3
    assert not same_weights(old.model, new.model)


def test_the_device_field_counts_only_as_its_type(tmp_path, small_presets):
    pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    again = pt.pretrained_model("smoke", 0, tmp_path, build=False)  # device None resolves to the CPU here
    assert again.steps_run == 0


def test_checkpoint_cadence_invalidates_the_snapshots(tmp_path, small_presets):
    pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    small_presets["keep_checkpoints"] = 1  # the kept snapshots would differ
    with pytest.raises(FileNotFoundError, match=r"config changed: pretrain.keep_checkpoints"):
        pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False)


def test_a_damaged_model_file_is_named_and_trained_again(tmp_path, small_presets):
    first = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    weights = first.model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.warns(UserWarning, match=r"model/model.safetensors is damaged"):
        with pytest.raises(FileNotFoundError, match=r"model.safetensors is damaged"):
            pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False)
    with pytest.warns(UserWarning, match=r"model.safetensors is damaged"):
        again = pt.pretrained_model("smoke", 0, tmp_path, device="cpu", progress=False)
    assert again.steps_run == SMALL["total_steps"] and same_weights(first.model, again.model)
    assert pt.pretrained_model("smoke", 0, tmp_path, device="cpu", build=False).steps_run == 0
