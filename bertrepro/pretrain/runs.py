"""Cached pre-training runs: the one lookup that finds a finished run, resumes an interrupted one,
or removes a stale one and trains it again.

The book trains chapter 09's model once (:func:`pretrained_model`) and chapter 12's ablation runs
once each (:func:`bertrepro.ablation.train_or_load`); both go through :func:`load_or_train`. A
saved run is *the same run* when its fingerprint (:mod:`bertrepro.cache`: the code, every
setting, the corpus, torch, the device type) equals the one computed now.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..cache import announce, artifact_inputs, check, commit, fingerprint, lock, log_artifact, manifest_path
from ..checkpoints import CheckpointError, load_pretrained, save_pretrained
from ..io import atomic_write_text, cache_dir as default_cache_dir, sha256_file
from ..profiles import resolve_profile
from .config import PretrainConfig
from .data import prepare_data
from .loop import PretrainResult, pretrain, read_metrics, resolve_run_device
from .state import latest_checkpoint, load_checkpoint

__all__ = ["pretrained_dir", "pretrained_model", "run_inputs", "load_or_train"]



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


def run_inputs(config: PretrainConfig) -> dict[str, Any]:
    """The fingerprint inputs of the run of ``config`` (:func:`bertrepro.cache.artifact_inputs`): the code
    of the training loop and all it imports, every setting (checkpoint cadence included; the device as
    its type), the corpus files, torch, the device type."""
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}
    return artifact_inputs(("bertrepro.pretrain.loop",), {"pretrain": settings}, config.corpus,
                           resolve_run_device(config))


def _resume_key(inputs: Mapping[str, Any]) -> str:
    """The fingerprint without ``max_steps``: a run stopped early continues under a later stop."""
    return fingerprint({**inputs, "config": {k: v for k, v in inputs["config"].items() if k != "pretrain.max_steps"}})


def _resumable(out: Path, inputs: Mapping[str, Any]) -> bool:
    """True when ``out`` holds a checkpoint of this very run: interrupted (its pending marker matches)
    or finished at an earlier ``max_steps``."""
    if latest_checkpoint(out) is None:
        return False
    pending = out.with_name(out.name + ".building.json")
    if pending.is_file() and pending.read_text().strip() == _resume_key(inputs):
        return True
    try:
        saved = json.loads(manifest_path(out).read_text())["inputs"]
    except (OSError, ValueError, KeyError):
        return False
    old_stop, new_stop = saved["config"].get("pretrain.max_steps"), inputs["config"].get("pretrain.max_steps")
    return _resume_key(saved) == _resume_key(inputs) and old_stop is not None and (new_stop is None or new_stop > old_stop)


def _kept_at_stop(out: Path, inputs: Mapping[str, Any], config: PretrainConfig) -> Path | None:
    """The kept checkpoint at ``config``'s stop step when ``out`` holds this very run, intact, finished
    past that step (``max_steps`` was lowered since): the model the lowered run would have made, loaded
    instead of training again. None when there is no such run, or it kept no checkpoint at that step
    (then the run is trained to the stop step)."""
    try:
        saved = json.loads(manifest_path(out).read_text())["inputs"]
    except (OSError, ValueError, KeyError):
        return None
    if _resume_key(saved) != _resume_key(inputs) or check(out, saved) is not None:
        return None
    metrics = read_metrics(out / "metrics.jsonl")
    last = int(metrics[-1]["step"]) if metrics else -1
    ckpt = out / "checkpoints" / f"step-{config.stop_step:08d}"
    if last <= config.stop_step or not (ckpt / "trainer_state.json").is_file():
        return None
    return ckpt


def _load_at(config: PretrainConfig, out: Path, ckpt: Path, cache_dir: Any, with_data: bool) -> PretrainResult:
    """A finished run read at its kept checkpoint ``ckpt``: its model then, and its logs up to that step."""
    state = load_checkpoint(ckpt)
    data = prepare_data(config, cache_dir=cache_dir) if with_data else None
    step = state.step
    metrics = [m for m in read_metrics(out / "metrics.jsonl") if m["step"] <= step]
    evaluations = [e for e in read_metrics(out / "eval.jsonl") if e["step"] <= step]
    model_dir = out / f"model-step-{step:08d}"  # the Hugging Face layout of that step, as model/ holds the last
    if not (model_dir / "vocab.txt").is_file():
        save_pretrained(state.model, model_dir)
        atomic_write_text(model_dir / "vocab.txt", (out / "vocab.txt").read_text())
    model = state.model.to(resolve_run_device(config)).eval()
    return PretrainResult(
        model=model, config=config, output_dir=out, vocab_path=out / "vocab.txt",
        tokenizer=data.tokenizer if data is not None else None, metrics=metrics, evaluations=evaluations,
        evaluation=evaluations[-1] if evaluations and evaluations[-1]["step"] == step else {}, step=step,
        train_time_s=0.0, steps_run=0, world_size=state.world_size, checkpoint=ckpt, model_dir=model_dir,
        data=data)


def _load(config: PretrainConfig, out: Path, cache_dir: Any, with_data: bool) -> PretrainResult:
    model_dir = out / "model"
    metrics = read_metrics(out / "metrics.jsonl")
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


def load_or_train(config: PretrainConfig, out: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                  build: bool = True, progress: bool = True, with_data: bool = True) -> PretrainResult:
    """The run of ``config`` in ``out``: loaded when finished with the same fingerprint, resumed when
    interrupted, trained again when absent, stale or damaged (:mod:`bertrepro.cache`).

    The fingerprint covers the code, every setting, the corpus, torch and the device type
    (:func:`run_inputs`); a mismatch prints one line naming what changed and trains again. A loaded
    run trains nothing (``steps_run`` and ``train_time_s`` are 0; its own timings are in
    ``metrics``); its model is put on :func:`resolve_run_device`'s device in eval mode. With
    ``with_data`` the tokenized corpus is loaded too (``data``; else None) and the cached vocabulary
    is checked against the model's. ``cache_dir`` is the vocabulary cache (:func:`prepare_data`).
    """
    out = Path(out)
    inputs = run_inputs(config)
    with lock(out):
        reason = check(out, inputs)
        if reason is None:
            log_artifact(out, inputs, "reused")
            return _load(config, out, cache_dir, with_data)
        kept = _kept_at_stop(out, inputs, config)
        if kept is not None:  # a longer run of these settings: read at its checkpoint at the stop step
            log_artifact(out, inputs, "reused")
            return _load_at(config, out, kept, cache_dir, with_data)
        if not build:
            raise FileNotFoundError(f"no finished pre-training run in {out} for these inputs ({reason}); run "
                                    f"chapter 09, or call pretrained_model({config.profile!r}, {config.seed}) with "
                                    f"build=True")
        resume = _resumable(out, inputs)
        announce(out, inputs, reason + ("; resuming its last checkpoint" if resume else ""))
        pending = out.with_name(out.name + ".building.json")
        manifest_path(out).unlink(missing_ok=True)
        atomic_write_text(pending, _resume_key(inputs) + "\n")
        result = pretrain(config, out, resume=resume, overwrite=not resume, cache_dir=cache_dir, progress=progress)
        commit(out, inputs)
        pending.unlink()
        log_artifact(out, inputs, "computed")
        return result


def pretrained_model(profile: str | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None, *,
                     device: str | None = None, build: bool = True, progress: bool = True,
                     with_data: bool = True) -> PretrainResult:
    """The model pre-trained with ``PretrainConfig.for_profile(profile, seed=seed)``: cached, or trained now.

    Chapter 09 calls it first and trains; chapters 10, 11 and 12 call it again and read the same run from
    :func:`pretrained_dir`, so a book trains once and a chapter run alone rebuilds what it needs.

    * A finished run with the preset's settings is loaded: the final model, ``metrics.jsonl``,
      ``eval.jsonl`` (``evaluation`` is its last line) and the tokenized corpus. Nothing is trained,
      so ``steps_run`` and ``train_time_s`` are 0; the run's own timings are in ``metrics``.
    * An interrupted run (a checkpoint, no final model) is resumed.
    * A run made by other code or with other settings (the preset changed since) is removed, with a
      line saying what changed, and trained again.

    Args:
        profile: ``smoke`` | ``cpu`` | ``gpu`` (None: gpu with CUDA, else cpu).
        seed: the training seed.
        cache_dir: the cache root (default :func:`bertrepro.io.cache_dir`); the WordPiece
            vocabulary is cached in ``<cache_dir>/pretrain`` as :func:`prepare_data` does by default.
        device: where to train and put the model (None: :func:`bertrepro.profiles.resolve_device`'s
            rule, CUDA for the gpu profile when available, else the CPU).
        build: False raises ``FileNotFoundError`` instead of training.
        progress: show the training progress bar.
        with_data: False skips tokenizing the corpus when the finished run is loaded (``data`` and
            ``tokenizer`` are then None): what a chapter needs that only reads the model and its vocabulary.
    """
    config = PretrainConfig.for_profile(resolve_profile(profile), seed=seed, device=device)
    out = pretrained_dir(config.profile, seed, cache_dir)
    return load_or_train(config, out, cache_dir=out.parent.parent, build=build, progress=progress,
                         with_data=with_data)
