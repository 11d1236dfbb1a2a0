"""Chapter 12's experiment in one call: :func:`run_ablation` trains (or loads) every planned run
(:mod:`~bertrepro.ablation.runs`), measures them once (:mod:`~bertrepro.ablation.measure`) and caches
the results as JSON under ``ablation_dir(profile, seed)``. They are rebuilt when absent or when their
fingerprint changes (:mod:`bertrepro.cache`: the code, the settings, the fine-tuning budget, the corpus,
torch and the device type). The tables and the appendix only read these results.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..cache import artifact_inputs, cached_file, fingerprint
from ..io import atomic_write_text
from ..pretrain.config import PretrainConfig
from .measure import measure
from ..pretrain.data import prepare_data
from .runs import (AblationSettings, TrainedRun, ablation_dir, at_step, equal_flop_ltr_steps, planned_runs, run_dir,
                   run_name, train_or_load)

__all__ = ["results_inputs", "learning_curve", "run_ablation"]


def learning_curve(run: TrainedRun) -> dict[str, Any]:
    """A run's logged training LM loss by step (without NSP) and its held-out unigram perplexity (the
    plateau a model sits on before it uses context): the evidence of how many steps a shape needs."""
    return {"run": run.name, "steps": [int(m["step"]) for m in run.metrics if "mlm_loss" in m],
            "lm_loss": [float(m["mlm_loss"]) for m in run.metrics if "mlm_loss" in m],
            "unigram_perplexity": run.evaluation.get("unigram_perplexity")}


def results_inputs(settings: AblationSettings, seed: int, device: str) -> dict[str, Any]:
    """The fingerprint inputs of ``results.json`` (:mod:`bertrepro.cache`): the code of the runs and the
    measurements (the profiles' numbers included), the settings, the fine-tuning budget, the seed."""
    config = {"ablation": settings.to_dict(), "finetune": dataclasses.asdict(settings.budget), "seed": seed}
    return artifact_inputs(("bertrepro.ablation.experiment",), config,
                           PretrainConfig.for_profile(settings.profile, seed=seed).corpus, device)


def run_ablation(settings: AblationSettings, seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
                 rebuild: bool = False) -> dict[str, Any]:
    """Train (or load) every run, read chapter 09's at ``matched_step``, then measure cloze, gates, curves, perplexity, probe and fine-tuning.

    The results go to ``ablation_dir(profile, seed)/results.json`` (atomically) and are returned from
    there on the next call whose fingerprint (:func:`results_inputs`) is the same. What the build
    prints on stdout (the cache's "computing" lines) is returned in ``cache_log`` instead of printed;
    progress bars (stderr) still show.
    """
    device = str(device)
    path = ablation_dir(settings.profile, seed) / "results.json"
    inputs = results_inputs(settings, seed, device)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        runs = {name: train_or_load(name, cfg, run_dir(settings, name, cfg, seed), progress)
                for name, cfg in planned_runs(settings, seed, device).items()}
        ch09 = runs[run_name("mlm_nsp", settings.arm_shape)]
        curve = learning_curve(ch09)
        runs[ch09.name] = at_step(ch09, settings.matched_step, prepare_data(ch09.config), device)
        t_train = time.perf_counter() - t0
        results = measure(runs, settings, seed, device, progress)
        results["ch09_curve"] = curve
        results["flops"] = equal_flop_ltr_steps(settings, seed)
        results.update(fingerprint=fingerprint(inputs), settings=settings.to_dict(), seed=seed,
                       device=torch.device(device).type,
                       seconds={"pretraining": t_train, "evaluation": time.perf_counter() - t0 - t_train})
        atomic_write_text(tmp, json.dumps(results))

    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # one "cache: computing" line per artifact: kept for the caller
        reused = cached_file(path, inputs, build, rebuild=rebuild)
    results = json.loads(path.read_text())
    results["cached"] = reused
    results["cache_log"] = log.getvalue().splitlines()
    return results
