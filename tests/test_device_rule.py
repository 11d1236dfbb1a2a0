"""One device rule: a cpu or smoke run stays on the CPU on a CUDA machine, and fine-tuning's
pre-trained arm is pre-trained with the run's own seed and device."""
from __future__ import annotations

import pytest
import torch

from bertrepro import chapters
from bertrepro.finetune import cli
from bertrepro.pretrain import PretrainConfig
from bertrepro.pretrain.loop import resolve_run_device


@pytest.fixture
def cuda_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


class _Stop(Exception):
    pass


def test_finetune_pretrains_with_the_runs_seed_and_device(cuda_machine, monkeypatch, tmp_path):
    calls = []

    def fake_pretrained_model(profile=None, seed=0, cache_dir=None, *, device=None, build=True, progress=True):
        calls.append({"profile": profile, "seed": seed, "device": device})
        raise _Stop

    monkeypatch.setattr(cli, "pretrained_model", fake_pretrained_model)
    with pytest.raises(_Stop):
        cli.main(["--profile", "cpu", "--seed", "3", "--arm", "pretrained", "--output-dir", str(tmp_path),
                  "--no-progress"])
    assert calls == [{"profile": "cpu", "seed": 3, "device": "cpu"}]
    # and the pre-training run it asks for resolves to the same device
    config = PretrainConfig.for_profile("cpu", seed=3, device=calls[0]["device"])
    assert resolve_run_device(config) == torch.device("cpu")


@pytest.mark.parametrize("profile, expected", [("smoke", "cpu"), ("cpu", "cpu"), ("gpu", "cuda"), (None, "cuda")])
def test_pretraining_follows_the_profiles_device_rule(cuda_machine, profile, expected):
    config = PretrainConfig(profile=profile) if profile is None else PretrainConfig.for_profile(profile)
    assert resolve_run_device(config).type == expected
    if profile is not None:
        assert chapters.setup(profile=profile).device.type == expected


def test_an_explicit_device_wins(cuda_machine):
    assert resolve_run_device(PretrainConfig.for_profile("gpu", device="cpu")) == torch.device("cpu")
