"""Profiles: validation with helpful errors, pick(), the default, seeding, the cache folder."""
import random

import numpy as np
import pytest
import torch

from bertrepro import chapters, io, profiles


@pytest.fixture(autouse=True)
def _restore_determinism(monkeypatch):
    """setup() switches on deterministic algorithms process-wide; put the switches back."""
    for k in profiles.OFFLINE_ENV:
        monkeypatch.delenv(k, raising=False)
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*smoke, cpu, gpu"):
        chapters.setup(profile="huge")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        profiles.resolve_profile("CPU")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lr'\].*profile, seed, device"):
        chapters.setup(profile="smoke", lr=1e-4)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        chapters.setup(profile="smoke", seed=seed)


def test_cuda_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        chapters.setup(profile="gpu", device="cuda")


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_default_profile(monkeypatch, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert profiles.default_profile() == expected
    assert profiles.resolve_profile(None) == expected
    assert profiles.resolve_profile("") == expected


def test_gpu_profile_without_cuda_is_an_error_unless_the_cpu_is_asked_for(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="the gpu profile needs CUDA.*--device cpu"):
        chapters.setup(profile="gpu")
    run = chapters.setup(profile="gpu", device="cpu")
    assert run.profile == "gpu" and run.device == torch.device("cpu")
    assert chapters.setup(profile=None).device == torch.device("cpu")  # no profile: the CPU when no CUDA


def test_pick():
    table = {"smoke": 1, "cpu": 2, "gpu": 3}
    assert [profiles.pick(p, table) for p in profiles.PROFILES] == [1, 2, 3]
    run = chapters.setup(profile="cpu")
    assert run.pick(smoke="a", cpu="b", gpu="c") == "b"
    with pytest.raises(ValueError, match=r"missing \['gpu'\]"):
        run.pick(smoke=1, cpu=2)
    with pytest.raises(ValueError, match=r"unknown \['tpu'\]"):
        run.pick(smoke=1, cpu=2, gpu=3, tpu=4)


def _draws(run):
    return (torch.rand(4).tolist(), random.random(), float(np.random.rand()), torch.rand(3, generator=run.generator(7)).tolist())


def test_seeding_is_deterministic():
    a = _draws(chapters.setup(profile="smoke", seed=3))
    b = _draws(chapters.setup(profile="smoke", seed=3))
    c = _draws(chapters.setup(profile="smoke", seed=4))
    assert a == b
    for x, y in zip(a, c):
        assert x != y


def test_generator_offsets_differ():
    run = chapters.setup(profile="smoke", seed=0)
    g0, g1 = torch.rand(5, generator=run.generator()), torch.rand(5, generator=run.generator(1))
    assert not torch.equal(g0, g1)
    torch.testing.assert_close(g0, torch.rand(5, generator=run.generator()), rtol=0, atol=0)


def test_setup_sets_offline_switches_without_overriding():
    env = {"HF_HUB_OFFLINE": "0"}
    profiles.set_offline(env)
    assert env == {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_cache_dir_env_and_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BERTREPRO_CACHE_DIR", raising=False)
    p = io.cache_dir("vocab", "smoke")
    assert p.resolve() == (tmp_path / ".bertrepro_cache" / "vocab" / "smoke").resolve() and p.is_dir()
    monkeypatch.setenv("BERTREPRO_CACHE_DIR", str(tmp_path / "shared"))
    q = io.cache_dir("model")
    assert q == tmp_path / "shared" / "model" and q.is_dir()
