"""Chapter 11's experiment in one call: :func:`run_ablation` trains (or loads) every planned run
(:mod:`~bertrepro.ablation.runs`), measures them once (:mod:`~bertrepro.ablation.measure`) and caches
the results as JSON under ``ablation_dir(profile, seed)``; they are rebuilt when absent or when the
settings change. The tables and the appendix only read these results.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import torch

from ..io import atomic_write_text
from .measure import measure
from .runs import AblationSettings, ablation_dir, equal_flop_ltr_steps, planned_runs, run_dir, train_or_load

__all__ = ["run_ablation"]


def _settings_key(settings: AblationSettings, seed: int, device: str) -> str:
    blob = json.dumps({"settings": settings.to_dict(), "seed": seed, "device": torch.device(device).type, "format": 4},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_ablation(settings: AblationSettings, seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
                 rebuild: bool = False) -> dict[str, Any]:
    """Train (or load) every run, then measure cloze, gates, curves, perplexity, probe and fine-tuning.

    The results go to ``ablation_dir(profile, seed)/results.json`` (atomically) and are returned from
    there on the next call with the same settings, seed and device type.
    """
    device = str(device)
    root = ablation_dir(settings.profile, seed)
    path = root / "results.json"
    key = _settings_key(settings, seed, device)
    if path.is_file() and not rebuild:
        cached = json.loads(path.read_text())
        if cached.get("settings_key") == key:
            cached["cached"] = True
            return cached
    t0 = time.perf_counter()
    runs = {name: train_or_load(name, cfg, run_dir(settings, name, cfg, seed), progress)
            for name, cfg in planned_runs(settings, seed, device).items()}
    t_train = time.perf_counter() - t0
    results = measure(runs, settings, seed, device, progress)
    results["flops"] = equal_flop_ltr_steps(settings, seed)
    results.update(settings_key=key, settings=settings.to_dict(), seed=seed, device=torch.device(device).type,
                   seconds={"pretraining": t_train, "evaluation": time.perf_counter() - t0 - t_train})
    atomic_write_text(path, json.dumps(results))
    results["cached"] = False
    return results
