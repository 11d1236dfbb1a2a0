r"""The pre-training loop (``run_pretraining.py``), in nanoGPT ``train.py``'s order: set-up, loop, finish.

:func:`pretrain` is the whole job on one process or under ``torchrun``; it joins the process group
and hands the job to :func:`_pretrain`, which calls the parts below in the order they appear in
this file. Each part is a short function called by name, so a new concern (a stop on a non-finite
loss, a lock on the output directory, another log line) has one obvious place:

* set-up -- :func:`_claim` (the output directory's lock), :func:`_start_or_resume` (a fresh run,
  or the checkpoint's), :func:`_configure_backend`, :func:`_prepare` (data and vocabulary checks),
  :func:`_write_config`, :func:`_build` (model, optimizer, schedule, RNG streams, data position: a
  :class:`_Run`), :func:`_prepare_logs`, :func:`_prepare_evaluation`, :func:`_peak_flops`;
* loop -- :func:`_loop`, which calls :func:`_train_step` (one optimizer update over the
  micro-batches), :func:`_log_window` (a ``metrics.jsonl`` line), :func:`_evaluate_run` (an
  ``eval.jsonl`` line) and :func:`_checkpoint`;
* finish -- :func:`_finish` (the final evaluation, ``model/``, the :class:`PretrainResult`).

The recipe (paper §A.2 and ``optimization.py``, see :mod:`bertrepro.train.optim`): Adam with
β = (0.9, 0.999), ε = 1e-6, weight decay 0.01 on weight matrices only, linear warm-up then linear
decay to zero, gradients clipped to global norm 1.0, loss = mean MLM loss + mean NSP loss. Under
data parallelism the MLM loss is divided by the global number of predicted tokens and the NSP loss
by the global batch size (see :func:`bertrepro.train.distributed.split_batch`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoints import CheckpointError, save_pretrained
from ..io import append_jsonl, atomic_write_text, read_jsonl, sha256_file, truncate_jsonl
from ..model import IGNORE_INDEX, BertForPreTraining
from ..profiles import resolve_device, set_offline
from ..progress import bar as tqdm
from ..train.distributed import (BatchSplit, DistInfo, derive_seed, env_int, init_distributed, seed_rank_streams,
                                 split_batch)
from ..train.flops import estimate_mfu, measure_peak_flops, train_step_flops
from ..train.optim import WarmupLinearDecay, autocast, build_adamw, optimizer_step
from .config import PretrainConfig, differences
from .data import BatchStream, CorpusLike, PretrainData, epoch_examples, make_batch, prepare_data, validation_examples
from .evaluate import evaluate, nsp_length_baseline
from .guard import DivergedError, RunLock, check_output_dir, claim_fresh_dir
from .state import (TrainState, latest_checkpoint, load_checkpoint, remove_stale_temporaries, rng_state,
                    save_checkpoint, set_rng_state)

__all__ = ["PretrainResult", "pretrain", "build_optimizer", "build_scheduler", "read_metrics", "resolve_run_device"]

# The slots of a log window's running sums (one float64 device tensor, summed across ranks in one call).
MLM_LOSS, NSP_LOSS, MLM_CORRECT, NSP_CORRECT = range(4)


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns (on every rank; ``evaluation`` is complete on each)."""

    model: BertForPreTraining  # the trained model, unwrapped, in eval mode, on the run's device
    config: PretrainConfig  # the resolved configuration (a resumed run: the checkpoint's)
    output_dir: Path
    vocab_path: Path  # output_dir/vocab.txt
    tokenizer: Any
    metrics: list[dict[str, Any]]  # every line of metrics.jsonl (earlier resumed segments included)
    evaluations: list[dict[str, Any]]  # every line of eval.jsonl
    evaluation: dict[str, Any]  # the held-out evaluation at the final step ({} without validation data)
    step: int  # optimizer steps done
    train_time_s: float  # wall time of this call's training steps (data preparation excluded)
    steps_run: int  # steps this call ran (after a resume: fewer than ``step``)
    world_size: int
    checkpoint: Path | None  # the last checkpoint
    model_dir: Path  # output_dir/model: config.json + model.safetensors + vocab.txt (Hugging Face layout)
    data: PretrainData = field(repr=False)

    @property
    def steps_per_s(self) -> float:
        return self.steps_run / self.train_time_s if self.train_time_s > 0 else float("nan")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (or ``eval.jsonl``; a directory means its metrics.jsonl); [] when absent."""
    path = Path(path)
    return read_jsonl(path / "metrics.jsonl" if path.is_dir() else path)


def build_optimizer(model: nn.Module, config: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the run's hyper-parameters (:func:`bertrepro.train.optim.build_adamw`)."""
    return build_adamw(model, config.learning_rate, config.weight_decay, device,
                       betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon)


def build_scheduler(optimizer: torch.optim.Optimizer, config: PretrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The original's warm-up and decay; its length is ``total_steps`` from the profile, never ``max_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinearDecay(config.warmup_steps, config.total_steps))


def resolve_run_device(config: PretrainConfig) -> torch.device:
    """The run's device: :func:`bertrepro.profiles.resolve_device` on the config's device and profile."""
    return resolve_device(config.device, config.profile)


def pretrain(config: PretrainConfig, output_dir: str | os.PathLike, *, corpus: CorpusLike | None = None,
             resume: bool = False, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, overwrite: bool = False) -> PretrainResult:
    """Pre-train a :class:`BertForPreTraining` and return it with its metrics and evaluation.

    Args:
        config: the run's settings, e.g. ``PretrainConfig.for_profile("cpu", seed=1)``.
        output_dir: where ``config.json``, ``vocab.txt``, ``metrics.jsonl``, ``eval.jsonl``,
            ``checkpoints/`` and the final ``model/`` go (only rank 0 writes).
        corpus: overrides ``config.corpus``: a ``DatasetDict`` or ``{"train": docs, "validation": docs}``
            with documents as lists of sentences.
        resume: continue from ``output_dir``'s latest checkpoint: weights, optimizer, schedule, RNG
            states and data position. The checkpoint's architecture and schedule are forced; only
            :attr:`PretrainConfig.RESUMABLE` fields (``max_steps`` ...) may differ.
        cache_dir: where the trained vocabulary is cached (default ``bertrepro.io.cache_dir``).
        progress: show a progress bar (rank 0).
        overwrite: a fresh run may delete an earlier run in ``output_dir`` (its logs, config,
            checkpoints and model); without it such a folder is refused.

    Raises:
        ValueError: bad settings; an empty ``output_dir``; a fresh run into a directory holding an
            earlier run (:class:`~bertrepro.pretrain.guard.RunExistsError`); a resume that changes
            the architecture or the schedule.
        CheckpointError: ``resume`` with a missing or corrupt checkpoint.
        RunLockedError: another live run holds ``output_dir``.
        DivergedError: the loss or gradient norm became non-finite; nothing from that state was
            saved, the last good checkpoint stays.
        RuntimeError: the process group cannot be joined in time.
    """
    output_dir = check_output_dir(output_dir)
    set_offline()
    device = resolve_run_device(config)
    # Check the batch split before any rendezvous: every rank fails at once, with the same message.
    split_batch(config.batch_size, env_int("WORLD_SIZE") or 1, config.micro_batch_size)
    dist_info = init_distributed(device.type, config.dist_timeout_s)
    try:
        if dist_info.enabled and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
        return _pretrain(config, output_dir, corpus, resume, overwrite, cache_dir, progress, device, dist_info)
    finally:
        if dist_info.enabled:
            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, output_dir: Path, corpus: CorpusLike | None, resume: bool, overwrite: bool,
              cache_dir: str | os.PathLike | None, progress: bool, device: torch.device,
              dist_info: DistInfo) -> PretrainResult:
    """The job inside the process group: set-up, the loop, finish (each part below, in this order)."""
    lock = _claim(output_dir, resume, overwrite, dist_info)
    try:
        config, state = _start_or_resume(config, output_dir, resume)
        _configure_backend(config, device)
        data, vocab_sha = _prepare(config, output_dir, corpus, cache_dir, state, dist_info.is_main)
        if dist_info.is_main:  # after the data: a run that cannot load its corpus leaves no config.json behind
            _write_config(config, output_dir, device, dist_info, 0 if state is None else state.step)
        run = _build(config, output_dir, device, dist_info, data, vocab_sha, state)
        _prepare_logs(run, resumed=state is not None)
        _prepare_evaluation(run)
        run.peak_flops = _peak_flops(config, device)
        start_step = run.step
        run.last_checkpoint = latest_checkpoint(output_dir) if state is not None else None
        if state is not None and run.step >= config.stop_step and run.main:
            print(f"nothing to train: the checkpoint in {output_dir} is at step {run.step} and this run stops at "
                  f"step {config.stop_step}; pass a larger --max-steps (up to total_steps={config.total_steps}) "
                  f"to train further", file=sys.stderr, flush=True)
        t_train = _loop(run, progress)
        return _finish(run, start_step, t_train)
    finally:
        if lock is not None:
            lock.release()


# ---------------------------------------------------------------------------------------------
# Set-up, in the order _pretrain calls it
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class _Run:
    """The state of a run in progress, shared by the loop's parts (built by :func:`_build`)."""

    config: PretrainConfig
    output_dir: Path
    device: torch.device
    dist_info: DistInfo
    split: BatchSplit
    data: PretrainData
    vocab_sha: str
    raw_model: BertForPreTraining  # the model itself (checkpoints, evaluation)
    model: nn.Module  # what the loop calls: raw_model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    masking_gen: torch.Generator
    stream: BatchStream
    step: int  # optimizer steps done
    valid: Any = None  # held-out Examples (None without validation documents)
    length_baseline: dict[str, float] = field(default_factory=dict)
    peak_flops: float | None = None
    last_checkpoint: Path | None = None  # the latest checkpoint written (or resumed from)
    elapsed_before: float = 0.0  # training wall time of earlier segments (a resumed run): elapsed_s continues
    # First non-finite step on the device: [step (-1: none), loss, grad norm]; read only where the loop syncs.
    watch: torch.Tensor | None = None

    @property
    def main(self) -> bool:
        return self.dist_info.is_main

    @property
    def nsp(self) -> bool:
        return self.config.objective == "mlm_nsp"

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / "metrics.jsonl"

    @property
    def eval_path(self) -> Path:
        return self.output_dir / "eval.jsonl"


def _claim(output_dir: Path, resume: bool, overwrite: bool, dist_info: DistInfo) -> RunLock | None:
    """Rank 0 locks the folder, removes the leftovers of killed saves and (a fresh run) refuses or clears an
    earlier run; every rank raises rank 0's error, so none waits for a collective that never comes."""
    lock, error = None, None
    if dist_info.is_main:
        try:
            lock = RunLock(output_dir).acquire()
            remove_stale_temporaries(output_dir)
            if not resume:
                claim_fresh_dir(output_dir, overwrite)
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
    if dist_info.enabled:
        box = [None if error is None else (type(error), str(error))]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and error is None:
            error = box[0][0](box[0][1])
    if error is not None:
        if lock is not None:
            lock.release()
        raise error
    return lock


def _start_or_resume(config: PretrainConfig, output_dir: Path,
                     resume: bool) -> tuple[PretrainConfig, TrainState | None]:
    """The run's configuration and, when resuming, the checkpoint's state."""
    if resume:
        state = load_checkpoint(output_dir)
        return _check_resume_config(config, state.config), state
    return config, None


def _check_resume_config(requested: PretrainConfig, saved: PretrainConfig) -> PretrainConfig:
    """The saved configuration with the requested run-only fields; any other difference is an error."""
    diffs = [(k, a, b) for k, (a, b) in differences(saved.to_dict(), requested.to_dict(),
                                                    ignore=PretrainConfig.RESUMABLE).items()]
    arch = [d for d in diffs if d[0] in PretrainConfig.ARCHITECTURE]
    if arch:
        raise ValueError(
            "resume forces the checkpoint's architecture, but the request differs: "
            + ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, a, b in arch)
            + ". Resume with the same profile and architecture flags, or start a new --output-dir.")
    if diffs:
        raise ValueError(
            "resume continues the saved run, but the request changes its settings: "
            + ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, a, b in diffs)
            + f". Only {', '.join(PretrainConfig.RESUMABLE)} may change on resume.")
    return dataclasses.replace(saved, **{k: getattr(requested, k) for k in PretrainConfig.RESUMABLE})


def _configure_backend(config: PretrainConfig, device: torch.device) -> None:
    """Threads and determinism on the CPU; TF32 matmuls on CUDA."""
    if device.type == "cpu":
        if config.num_threads:
            local_world = env_int("LOCAL_WORLD_SIZE") or 1
            torch.set_num_threads(max(1, config.num_threads // local_world))
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _prepare(config: PretrainConfig, output_dir: Path, corpus: CorpusLike | None, cache_dir: Any,
             state: TrainState | None, main: bool) -> tuple[PretrainData, str]:
    """The run's data and its vocabulary's SHA-256, checked against a resumed checkpoint."""
    data = prepare_data(config, corpus, cache_dir)
    vocab_sha = sha256_file(data.vocab_path)
    if state is not None:
        if state.vocab_sha256 != vocab_sha:
            raise ValueError(f"the vocabulary {data.vocab_path} differs from the one the checkpoint was trained with "
                             f"(SHA-256 {vocab_sha[:12]} vs {state.vocab_sha256[:12]}); resume with the same corpus "
                             f"and cache")
        if state.data.get("corpus") != data.corpus_name:
            raise ValueError(f"the checkpoint was trained on corpus {state.data.get('corpus')!r}, this run loads "
                             f"{data.corpus_name!r}; resume with the same corpus")
    if main:
        atomic_write_text(output_dir / "vocab.txt", Path(data.vocab_path).read_text())
    return data, vocab_sha


def _write_config(config: PretrainConfig, output_dir: Path, device: torch.device, dist_info: DistInfo,
                  start: int) -> None:
    """``config.json``, and one line saying what runs (the whole configuration is in the file)."""
    split = split_batch(config.batch_size, dist_info.world_size, config.micro_batch_size)
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"pretrain {config.profile or 'paper'}: {config.objective}, L={config.num_hidden_layers} "
          f"H={config.hidden_size} A={config.num_attention_heads}, batch {config.batch_size} "
          f"({split.micro_batch_size} x {split.accumulation_steps} x {dist_info.world_size}), lr "
          f"{config.learning_rate:g}, steps {start} -> {config.stop_step}, {device}; settings in "
          f"{output_dir / 'config.json'}", flush=True)
    atomic_write_text(output_dir / "config.json", json.dumps(config.to_dict(), indent=2))


def _build(config: PretrainConfig, output_dir: Path, device: torch.device, dist_info: DistInfo,
           data: PretrainData, vocab_sha: str, state: TrainState | None) -> _Run:
    """Model, optimizer, schedule, masking generator and batch stream: fresh, or continued from ``state``."""
    raw_model = _model(config, data, state, device)
    optimizer = build_optimizer(raw_model, config, device)
    position = dict(epoch=state.data["epoch"], index=state.data["index"], phase=state.data.get("phase", 0)) \
        if state is not None else {}
    run = _Run(config=config, output_dir=output_dir, device=device, dist_info=dist_info,
               split=split_batch(config.batch_size, dist_info.world_size, config.micro_batch_size), data=data,
               vocab_sha=vocab_sha, raw_model=raw_model, model=raw_model, optimizer=optimizer,
               scheduler=build_scheduler(optimizer, config),
               masking_gen=torch.Generator().manual_seed(derive_seed(config.seed, "masking")),
               stream=BatchStream(data, config, **position), step=0 if state is None else state.step)
    if state is not None:
        _restore(run, state)
    else:
        seed_rank_streams(config.seed, 0, dist_info.rank)
    if config.compile:
        # Compile the encoder, where the FLOPs are, in place (state_dict keys unchanged). The heads
        # stay eager: the gathered MLM rows and their count change every step, which would make a
        # whole-model graph recompile again and again.
        raw_model.bert.compile()
    if dist_info.enabled:
        run.model = DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    return run


def _model(config: PretrainConfig, data: PretrainData, state: TrainState | None,
           device: torch.device) -> BertForPreTraining:
    """The checkpoint's model, or a fresh one with the same initial weights on every rank."""
    if state is not None:
        model = state.model
        if model.config.vocab_size != data.vocab_size:
            raise ValueError(f"checkpoint vocab_size {model.config.vocab_size} != vocabulary {data.vocab_size}")
    else:
        torch.manual_seed(derive_seed(config.seed, "init"))  # identical initial weights on every rank
        model = BertForPreTraining(config.bert_config(data.vocab_size, data.pad_token_id))
    if config.objective != "mlm_nsp":
        _freeze_unused_heads(model)
    return model.to(device).train()


def _freeze_unused_heads(model: BertForPreTraining) -> None:
    """Without NSP the pooler and the NSP classifier get no gradient: freeze them (out of the
    optimizer, so weight decay does not shrink them, and out of DDP's gradient reduction)."""
    for module in (model.bert.pooler, model.cls.seq_relationship):
        module.requires_grad_(False)


def _restore(run: _Run, state: TrainState) -> None:
    """Optimizer, schedule, RNG streams and data position from a checkpoint."""
    try:
        run.optimizer.load_state_dict(state.optimizer)
        run.scheduler.load_state_dict(state.scheduler)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"the checkpoint's optimizer/scheduler state does not fit the model ({e})") from e
    run.masking_gen.set_state(state.masking_rng)
    rank, world = run.dist_info.rank, run.dist_info.world_size
    if state.world_size == world:
        set_rng_state(state.rank_rng[rank], run.device)
    else:
        warnings.warn(f"checkpoint written by {state.world_size} process(es), resumed on {world}: data order and "
                      f"masks continue exactly, dropout streams are re-seeded from (seed, step, rank)")
        seed_rank_streams(run.config.seed, state.step, rank)


def _prepare_logs(run: _Run, resumed: bool) -> None:
    """Fresh logs, or the logs cut at the checkpoint (whose training time ``elapsed_s`` continues from)."""
    if run.main:
        for p in (run.metrics_path, run.eval_path):
            if resumed:
                truncate_jsonl(p, run.step)
            elif p.exists():
                p.unlink()
        kept = read_metrics(run.metrics_path) if resumed else []
        run.elapsed_before = float(kept[-1].get("elapsed_s", 0.0)) if kept else 0.0


def _prepare_evaluation(run: _Run) -> None:
    """The held-out examples (fixed masks) and, with NSP, the length baseline every evaluation reports."""
    if run.data.validation_documents:
        run.valid = validation_examples(run.data, run.config)
        if run.nsp:
            run.length_baseline = nsp_length_baseline(epoch_examples(run.data, run.config, 0), run.valid)


def _peak_flops(config: PretrainConfig, device: torch.device) -> float | None:
    """The FLOP/s the MFU divides by: ``peak_tflops``, else a measured bf16 matmul on CUDA; None: no MFU."""
    if config.peak_tflops:
        return config.peak_tflops * 1e12
    return measure_peak_flops(device) if device.type == "cuda" else None


# ---------------------------------------------------------------------------------------------
# The loop and its parts
# ---------------------------------------------------------------------------------------------

def _loop(run: _Run, progress: bool) -> float:
    """Train to the stop step: log, evaluate and checkpoint on schedule. Returns the training wall time."""
    config, stop = run.config, run.config.stop_step
    zeros = lambda: torch.zeros(4, dtype=torch.float64, device=run.device)  # MLM_LOSS ... NSP_CORRECT
    window, window_steps, window_predictions = zeros(), 0, 0
    bar = tqdm(total=stop, initial=run.step, disable=not (progress and run.main), unit="step", dynamic_ncols=True,
               desc=f"pretrain {config.profile}")
    t_train = t_window = time.perf_counter()
    while run.step < stop:
        lr = run.optimizer.param_groups[0]["lr"]
        n_pred, grad_norm = _train_step(run, window)
        window_steps += 1
        window_predictions += n_pred
        bar.update(1)
        log_step = run.step % config.log_every == 0 or run.step == stop
        # On the CPU reading the watch costs nothing: check every step. On an accelerator, where the loop syncs.
        diverged = (log_step or run.device.type == "cpu") and _diverged(run)
        if log_step or diverged:
            now = time.perf_counter()
            rec = _log_window(run, window, window_steps, window_predictions, lr, grad_norm, now - t_window,
                              run.elapsed_before + now - t_train)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s']:,.0f}")
            window, window_steps, window_predictions, t_window = zeros(), 0, 0, time.perf_counter()
        if diverged:
            bar.close()
            _stop_if_diverged(run)
        if config.eval_every and run.step % config.eval_every == 0 and run.step != stop:
            _stop_if_diverged(run)
            _evaluate_run(run)
        if run.step % config.checkpoint_every == 0 or run.step == stop:
            _stop_if_diverged(run)
            run.last_checkpoint = _checkpoint(run)
    bar.close()
    return time.perf_counter() - t_train


def _train_step(run: _Run, window: torch.Tensor) -> tuple[int, torch.Tensor]:
    """One optimizer update on the next global batch; adds to ``window``'s slots (``MLM_LOSS``,
    ``NSP_LOSS``, ``MLM_CORRECT``, ``NSP_CORRECT``) on the device. Returns the batch's predicted positions and the gradient norm."""
    config, split, device, world = run.config, run.split, run.device, run.dist_info.world_size
    phase = config.phase_at(run.step)
    if phase != run.stream.phase:  # the second phase (Appendix A.2): longer sequences from here on
        run.stream = BatchStream(run.data, config, phase=phase)
    # the GLOBAL batch, masked on CPU with this phase's prediction cap
    batch = make_batch(run.stream.next(), run.data, run.stream.config, run.masking_gen)
    n_pred = int((batch["labels"] != IGNORE_INDEX).sum())  # global count: no device sync
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    for micro in range(split.accumulation_steps):
        rows = split.rows(run.dist_info.rank, micro)
        mb = {k: v[rows].to(device, non_blocking=True) for k, v in batch.items()}
        sync = run.model.no_sync() if run.dist_info.enabled and micro < split.accumulation_steps - 1 \
            else contextlib.nullcontext()
        with sync:
            with autocast(device, config.precision):
                out = run.model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"], labels=mb["labels"],
                                is_causal=config.objective == "ltr", mlm_denominator=n_pred)
            # Summed over this rank's rows, divided by GLOBAL counts: summing over micro-batches
            # and averaging over ranks (DDP divides by W, hence the factor W) gives the global means.
            loss = out.mlm_loss
            if run.nsp:
                nsp_loss = F.cross_entropy(out.seq_relationship_logits.float(), mb["next_sentence_label"],
                                           reduction="sum") / config.batch_size
                loss = loss + nsp_loss
            step_loss += loss.detach()
            with torch.no_grad():  # running sums on the device, read only on log steps
                window[MLM_LOSS] += out.mlm_loss.detach()
                window[MLM_CORRECT] += (out.prediction_logits.argmax(-1) == mb["labels"][out.mlm_positions]).sum()
                if run.nsp:
                    window[NSP_LOSS] += nsp_loss.detach()
                    window[NSP_CORRECT] += (out.seq_relationship_logits.argmax(-1) == mb["next_sentence_label"]).sum()
            (loss * world).backward()
    grad_norm = optimizer_step(run.raw_model, run.optimizer, run.scheduler, config.max_grad_norm)
    run.step += 1
    _watch(run, step_loss, grad_norm)
    return n_pred, grad_norm


def _watch(run: _Run, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
    """Remember the first step whose loss or gradient norm is not finite, on the device (no host sync)."""
    if run.watch is None:
        run.watch = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64, device=run.device)
    bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))
    now = torch.stack([torch.full((), float(run.step), dtype=torch.float64, device=run.device), loss.double(),
                       grad_norm.double()])
    run.watch = torch.where(bad & (run.watch[0] < 0), now, run.watch)


def _diverged(run: _Run) -> bool:
    """Whether a non-finite loss or gradient norm has been seen (reading it synchronises with the device)."""
    return run.watch is not None and float(run.watch[0]) >= 0


def _stop_if_diverged(run: _Run) -> None:
    """Raise :class:`DivergedError` naming the step when the run has diverged: called before every save."""
    if not _diverged(run):
        return
    step, loss, grad_norm = run.watch.tolist()
    last = run.last_checkpoint
    raise DivergedError(
        f"training diverged at step {int(step)}: loss {loss}, gradient norm {grad_norm} (learning rate "
        f"{run.config.learning_rate:g}); stopped without saving anything from that state. The last good "
        f"checkpoint is {str(last) if last else 'none (no checkpoint was written before it)'}; lower "
        f"--learning-rate and start again, or --resume from it with the same settings.")


def _log_window(run: _Run, window: torch.Tensor, steps: int, predictions: int, lr: float, grad_norm: torch.Tensor,
                seconds: float, elapsed: float) -> dict[str, Any]:
    """One ``metrics.jsonl`` line for the last ``steps`` steps (the one synchronisation of a log step)."""
    sums = window.clone()
    if run.dist_info.enabled:
        dist.all_reduce(sums)
    s = sums.tolist()
    B, T, nsp = run.config.batch_size, run.stream.config.max_seq_length, run.nsp
    tokens_per_s = steps * B * T / seconds
    rec = {"step": run.step, "epoch": run.stream.epoch, "phase": run.stream.phase, "seq_length": T, "lr": lr,
           "loss": (s[MLM_LOSS] + s[NSP_LOSS]) / steps,
           "mlm_loss": s[MLM_LOSS] / steps, "nsp_loss": s[NSP_LOSS] / steps if nsp else None,
           "mlm_accuracy": s[MLM_CORRECT] / max(predictions, 1), "predictions": predictions,
           "nsp_accuracy": s[NSP_CORRECT] / (steps * B) if nsp else None,
           "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_s, "steps_per_s": steps / seconds,
           "elapsed_s": elapsed, "world_size": run.dist_info.world_size, "global_batch_size": B,
           "micro_batch_size": run.split.micro_batch_size, "accumulation_steps": run.split.accumulation_steps}
    if run.peak_flops is not None:  # the window's counted predictions, priced as chapter 12 and the benchmarks do
        step_flops = train_step_flops(run.raw_model.config, B, T, predictions / steps)
        rec["mfu"] = estimate_mfu(step_flops, steps / seconds, run.peak_flops)
    if run.main:
        append_jsonl(run.metrics_path, rec)
    return rec


def _evaluate_run(run: _Run) -> dict[str, Any]:
    """The held-out evaluation at the current step, appended to ``eval.jsonl`` ({} without validation data)."""
    if run.valid is None:
        return {}
    result = evaluate(run.raw_model, run.valid, run.data, run.config, device=run.device, dist_info=run.dist_info)
    if run.nsp:
        result.update(run.length_baseline)
    result["step"] = run.step
    if run.main:
        append_jsonl(run.eval_path, result)
    return result


def _checkpoint(run: _Run) -> Path | None:
    """Save a checkpoint (rank 0) with every rank's RNG states; every rank returns its path."""
    rngs = [rng_state(run.device)]
    if run.dist_info.enabled:
        rngs = [None] * run.dist_info.world_size
        dist.all_gather_object(rngs, rng_state(run.device))
    path = None
    if run.main:
        ts = TrainState(step=run.step, config=run.config, model=run.raw_model, optimizer=run.optimizer.state_dict(),
                        scheduler=run.scheduler.state_dict(),
                        data={**run.stream.state_dict(), "corpus": run.data.corpus_name},
                        masking_rng=run.masking_gen.get_state(), rank_rng=rngs, vocab_sha256=run.vocab_sha,
                        world_size=run.dist_info.world_size)
        path = save_checkpoint(run.output_dir, ts, keep=run.config.keep_checkpoints)
    if run.dist_info.enabled:
        dist.barrier()
    return path if run.main else latest_checkpoint(run.output_dir)


# ---------------------------------------------------------------------------------------------
# Finish
# ---------------------------------------------------------------------------------------------

def _finish(run: _Run, start_step: int, train_time: float) -> PretrainResult:
    """The final evaluation and the Hugging Face-layout ``model/``; the model is left in eval mode.

    A run that trained nothing (resumed at its stop step) reuses the evaluation already logged for that step.
    """
    _stop_if_diverged(run)
    logged = [r for r in read_metrics(run.eval_path) if r.get("step") == run.step] if run.step == start_step else []
    evaluation = logged[-1] if logged and run.valid is not None else _evaluate_run(run)
    model_dir = run.output_dir / "model"
    if run.main:
        save_pretrained(run.raw_model, model_dir)
        atomic_write_text(model_dir / "vocab.txt", Path(run.data.vocab_path).read_text())
    if run.dist_info.enabled:
        dist.barrier()
    run.raw_model.eval()
    return PretrainResult(
        model=run.raw_model, config=run.config, output_dir=run.output_dir, vocab_path=run.output_dir / "vocab.txt",
        tokenizer=run.data.tokenizer, metrics=read_metrics(run.metrics_path), evaluations=read_metrics(run.eval_path),
        evaluation=evaluation, step=run.step, train_time_s=train_time, steps_run=run.step - start_step,
        world_size=run.dist_info.world_size, checkpoint=run.last_checkpoint, model_dir=model_dir, data=run.data)
