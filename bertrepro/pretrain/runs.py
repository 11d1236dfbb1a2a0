"""Cached pre-training runs: the one lookup that finds a finished run, resumes an interrupted one,
or removes a stale one and trains it again.

The book trains chapter 09's model once (:func:`pretrained_model`) and chapter 11's ablation runs
once each (:func:`bertrepro.ablation.train_or_load`); both go through :func:`load_or_train`. A
saved run is *the same run* when every :class:`PretrainConfig` field other than the run-only
:attr:`PretrainConfig.RESUMABLE` ones (device, threads, logging, checkpoint cadence ...) is equal.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

from ..checkpoints import CheckpointError, load_pretrained
from ..io import cache_dir as default_cache_dir, sha256_file
from ..profiles import resolve_profile
from .config import PretrainConfig, differences
from .data import prepare_data
from .loop import PretrainResult, pretrain, read_metrics, resolve_run_device
from .state import latest_checkpoint

__all__ = ["pretrained_dir", "pretrained_model", "run_differences", "load_or_train"]

_MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt")


def pretrained_dir(profile: str | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the book's pre-training run for ``profile`` and ``seed`` lives; nothing is built.

    ``<cache>/pretrain/<profile>/seed<seed>``, where ``<cache>`` is ``cache_dir`` or
    :func:`bertrepro.io.cache_dir` (``$BERTREPRO_CACHE_DIR``, else ``./.bertrepro_cache``).
    The final model (``config.json``, ``model.safetensors``, ``vocab.txt``) is in its ``model/``.
    """
    profile = resolve_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    root = Path(cache_dir) if cache_dir is not None else Path(default_cache_dir())
    return root / "pretrain" / profile / f"seed{seed}"


def run_differences(saved: Mapping[str, Any], config: PretrainConfig) -> list[str]:
    """Settings (other than the run-only RESUMABLE ones) where a saved config.json differs from ``config``."""
    diffs = differences(saved, config.to_dict(), ignore=PretrainConfig.RESUMABLE)
    return [f"{k}: cached {a!r} vs now {b!r}" for k, (a, b) in sorted(diffs.items())]


def _drop_if_stale(config: PretrainConfig, out: Path, build: bool) -> None:
    """Remove a run made with other settings (with a warning naming them); with ``build=False``, raise instead."""
    saved_file = out / "config.json"
    if not saved_file.is_file():
        return
    try:
        diffs = run_differences(json.loads(saved_file.read_text()), config)
    except json.JSONDecodeError as e:
        diffs = [f"unreadable config.json ({e})"]
    if not diffs:
        return
    if not build:
        raise FileNotFoundError(f"the run in {out} was made with other settings ({'; '.join(diffs)}) and "
                                f"build=False; call pretrained_model(build=True) to train it again")
    warnings.warn(f"the cached pre-training run in {out} was made with other settings "
                  f"({'; '.join(diffs)}); removing it and training again")
    shutil.rmtree(out)


def load_or_train(config: PretrainConfig, out: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                  build: bool = True, progress: bool = True, with_data: bool = True) -> PretrainResult:
    """The run of ``config`` in ``out``: loaded when finished, resumed when interrupted, trained when absent or stale.

    A loaded run trains nothing (``steps_run`` and ``train_time_s`` are 0; its own timings are in
    ``metrics``); its model is put on :func:`resolve_run_device`'s device in eval mode. With
    ``with_data`` the tokenized corpus is loaded too (``data``; else None) and the cached vocabulary
    is checked against the model's. ``cache_dir`` is the vocabulary cache (:func:`prepare_data`).
    """
    out = Path(out)
    _drop_if_stale(config, out, build)
    model_dir = out / "model"
    metrics = read_metrics(out / "metrics.jsonl")
    # A run past its stop step (max_steps lowered after it trained) is finished too: its model stays as trained.
    finished = (all((model_dir / f).is_file() for f in _MODEL_FILES)
                and bool(metrics) and metrics[-1].get("step", -1) >= config.stop_step)
    if not finished:
        if not build:
            raise FileNotFoundError(f"no finished pre-training run in {out}; run chapter 09, or call "
                                    f"pretrained_model({config.profile!r}, {config.seed}) with build=True")
        # The cache owns this folder: a run with no checkpoint to resume (killed before its first one)
        # is started again over whatever it left.
        resume = latest_checkpoint(out) is not None
        return pretrain(config, out, resume=resume, overwrite=not resume, cache_dir=cache_dir, progress=progress)
    if metrics[-1]["step"] > config.stop_step:
        warnings.warn(f"the run in {out} trained to step {metrics[-1]['step']}, past this configuration's stop step "
                      f"{config.stop_step}; its model is used as it is (delete {out} to train it to "
                      f"{config.stop_step} steps)")
    data = prepare_data(config, cache_dir=cache_dir) if with_data else None
    if data is not None and sha256_file(data.vocab_path) != sha256_file(model_dir / "vocab.txt"):
        raise CheckpointError(f"the cached vocabulary {data.vocab_path} differs from the one the model in {model_dir} "
                              f"was trained with; delete {out} to train again")
    model = load_pretrained(model_dir, target="BertForPreTraining").to(resolve_run_device(config)).eval()
    evaluations = read_metrics(out / "eval.jsonl")
    return PretrainResult(
        model=model, config=config, output_dir=out, vocab_path=out / "vocab.txt",
        tokenizer=data.tokenizer if data is not None else None, metrics=metrics, evaluations=evaluations,
        evaluation=evaluations[-1] if evaluations else {}, step=int(metrics[-1]["step"]), train_time_s=0.0,
        steps_run=0, world_size=int(metrics[-1]["world_size"]), checkpoint=latest_checkpoint(out),
        model_dir=model_dir, data=data)


def pretrained_model(profile: str | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None, *,
                     device: str | None = None, build: bool = True, progress: bool = True) -> PretrainResult:
    """The model pre-trained with ``PretrainConfig.for_profile(profile, seed=seed)``: cached, or trained now.

    Chapter 09 calls it first and trains; chapters 10 and 11 call it again and read the same run from
    :func:`pretrained_dir`, so a book trains once and a chapter run alone rebuilds what it needs.

    * A finished run with the preset's settings is loaded: the final model, ``metrics.jsonl``,
      ``eval.jsonl`` (``evaluation`` is its last line) and the tokenized corpus. Nothing is trained,
      so ``steps_run`` and ``train_time_s`` are 0; the run's own timings are in ``metrics``.
    * An interrupted run (a checkpoint, no final model) is resumed.
    * A run made with other settings (the preset changed since) is removed, with a warning saying
      what changed, and trained again.

    Args:
        profile: ``smoke`` | ``cpu`` | ``gpu`` (None: gpu with CUDA, else cpu).
        seed: the training seed.
        cache_dir: the cache root (default :func:`bertrepro.io.cache_dir`); the WordPiece
            vocabulary is cached in ``<cache_dir>/pretrain`` as :func:`prepare_data` does by default.
        device: where to train and put the model (None: :func:`bertrepro.profiles.resolve_device`'s
            rule, CUDA for the gpu profile when available, else the CPU).
        build: False raises ``FileNotFoundError`` instead of training.
        progress: show the training progress bar.
    """
    config = PretrainConfig.for_profile(resolve_profile(profile), seed=seed, device=device)
    out = pretrained_dir(config.profile, seed, cache_dir)
    return load_or_train(config, out, cache_dir=out.parent.parent, build=build, progress=progress)
