r"""Pre-training BERT with the masked LM and next-sentence prediction (BERT §3.1, Appendix A.2).

The reference code is google-research/bert: ``create_pretraining_data.py`` (pairs and masking),
``run_pretraining.py`` (loss, gathered MLM head, evaluation) and ``optimization.py`` (Adam with
decoupled weight decay, linear warm-up and decay). One call does the whole job::

    from bertrepro.pretrain import PretrainConfig, pretrain
    result = pretrain(PretrainConfig.for_profile("cpu"), "runs/cpu")
    result.model, result.vocab_path, result.metrics, result.evaluation

and so does the command line, unchanged on one process or under ``torchrun``::

    python -m bertrepro.pretrain --profile smoke --output-dir runs/smoke
    python -m bertrepro.pretrain --profile cpu --output-dir runs/cpu --max-steps 1000
    python -m bertrepro.pretrain --profile cpu --output-dir runs/cpu --resume
    python -m bertrepro.pretrain --profile cpu --output-dir runs/no_nsp --objective mlm
    torchrun --nproc_per_node 2 -m bertrepro.pretrain --profile cpu --output-dir runs/ddp
    torchrun --nproc_per_node gpu -m bertrepro.pretrain --profile gpu --output-dir runs/gpu --compile

The recipe (paper §A.2 and ``optimization.py``): Adam with β = (0.9, 0.999), ε = 1e-6, weight decay
0.01 on every weight matrix and embedding but not on biases or LayerNorm (the ``dim >= 2`` rule),
learning rate warmed up linearly and then decayed linearly to zero, gradients clipped to global
norm 1.0, dropout 0.1, loss = mean MLM loss + mean NSP loss. Departures, each said where it is made:

* torch's :class:`~torch.optim.AdamW` bias-corrects its moment estimates; BERT's
  ``AdamWeightDecayOptimizer`` did not. With β2 = 0.999 the two differ only in the first few
  thousand steps, where the warm-up keeps the learning rate small anyway.
* Masking is *dynamic*: a fresh 15 % of positions is drawn every time a sequence is used, from a
  ``torch.Generator`` whose state is checkpointed. The original masked each sequence statically,
  10 times over (``dupe_factor=10``); in expectation the two see the same distribution of masks,
  and dynamic masking never repeats one. NSP pairs are re-drawn every epoch for the same reason.
* The sequence length stays at one value; the paper trains 90 % of the steps at 128 tokens and
  the last 10 % at 512.
* The ``cpu`` and ``gpu`` profiles shorten the schedule (see :meth:`PretrainConfig.for_profile`).

Data parallelism: under ``torchrun`` every rank builds the same examples, draws the masks of the
*global* batch with the same generator and keeps its own contiguous slice of it, so ranks never
see the same sequence in a step and a run on W processes computes the gradient a single process
computes for the same global batch (up to float summation order). The MLM loss is divided by the
global number of predicted tokens and the NSP loss by the global batch size; see
:func:`split_batch` for how the global batch is cut into micro-batches.

Shape legend: B batch (sequences), T sequence length, V vocabulary size, N predicted positions.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CheckpointError, atomic_write_text, load_pretrained, save_pretrained
from .config import BertConfig
from .model import IGNORE_INDEX, IS_NEXT, NOT_NEXT, BertForPreTraining
from .profiles import PROFILES, set_offline

__all__ = [
    "OBJECTIVES", "EVAL_SEED", "PretrainConfig", "PretrainResult", "pretrain", "main", "build_parser",
    "decay_parameter_names", "param_groups", "build_optimizer", "learning_rate_at", "WarmupLinearDecay",
    "BatchSplit", "split_batch", "DistInfo", "init_distributed",
    "PretrainData", "Examples", "prepare_data", "epoch_examples", "validation_examples", "make_batch",
    "ltr_labels", "TrainState", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "CheckpointError",
    "evaluate", "nsp_length_baseline", "fill_mask", "flops_per_token", "estimate_mfu", "measure_peak_flops", "read_metrics",
    "pretrained_dir", "pretrained_model",
]

OBJECTIVES = ("mlm_nsp", "mlm", "ltr")
# Held-out examples and their masks come from this fixed seed (the original's random_seed), not from
# the training seed, so every model is scored on the same pairs and the same masked positions.
EVAL_SEED = 12345
CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass
class PretrainConfig:
    """Training and profile settings, kept apart from the model's :class:`BertConfig`.

    Build one with :meth:`for_profile` and override fields by keyword. The architecture fields
    (``num_hidden_layers`` ... ``vocab``) are saved in every checkpoint and forced on resume.
    """

    profile: str = "cpu"  # the preset the values came from: smoke | cpu | gpu
    # -- data --
    corpus: str = "wiki-vital"  # a name for bertrepro.data.load_corpus; only its train split is trained on
    max_documents: int | None = None  # keep the first N train documents (None: all)
    eval_documents: int | None = None  # keep the first N validation documents (None: all)
    vocab: str = "train"  # "train": WordPiece trained on the train split; "bert-base-uncased": the released vocab
    vocab_size: int = 8000  # target size of a trained WordPiece vocabulary
    max_seq_length: int = 128  # tokens of one example, [CLS] A [SEP] B [SEP] included
    short_seq_prob: float = 0.1  # probability of a shorter target length (create_pretraining_data.py)
    mlm_probability: float = 0.15  # fraction of positions chosen for the masked LM (§3.1)
    max_predictions_per_seq: int = 20  # cap on chosen positions per sequence (the original's default)
    objective: str = "mlm_nsp"  # mlm_nsp (BERT) | mlm (No NSP) | ltr (left-to-right LM, no NSP); §5.1
    # -- model --
    num_hidden_layers: int = 12  # L
    hidden_size: int = 768  # H
    num_attention_heads: int = 12  # A
    intermediate_size: int | None = None  # feed-forward size; None means 4H
    dropout: float = 0.1  # hidden and attention dropout
    # -- optimisation --
    batch_size: int = 256  # GLOBAL batch: sequences per optimizer step, summed over all ranks
    micro_batch_size: int | None = None  # largest per-rank forward batch; accumulation makes up the rest
    learning_rate: float = 1e-4  # peak learning rate
    warmup_steps: int = 10_000  # linear warm-up from 0
    total_steps: int = 1_000_000  # length of the schedule: the learning rate reaches 0 here
    max_steps: int | None = None  # where this run stops (None: total_steps); never changes the schedule
    weight_decay: float = 0.01  # decoupled, on tensors with dim >= 2 only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6  # BERT's value (torch's default is 1e-8)
    max_grad_norm: float = 1.0  # clip the global gradient norm
    # -- run --
    seed: int = 0
    device: str | None = None  # None: cuda:LOCAL_RANK when available, else cpu
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the encoder
    num_threads: int | None = None  # torch.set_num_threads on CPU (None: leave torch's default)
    log_every: int = 50  # steps between metrics lines (the only steps that synchronise)
    eval_every: int = 0  # steps between held-out evaluations (0: only at the end)
    eval_batch_size: int = 64
    checkpoint_every: int = 1000  # steps between checkpoints; one is also written where the run stops
    keep_checkpoints: int = 1  # how many step directories to keep
    peak_tflops: float | None = None  # accelerator peak for MFU; None on CUDA: measured with a bf16 matmul
    dist_timeout_s: float = 60.0  # process-group rendezvous/collective timeout (env BERTREPRO_DIST_TIMEOUT)

    # Fields that may differ between a checkpoint and the run resuming it.
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "max_steps", "device", "precision", "compile", "num_threads", "log_every", "eval_every",
        "eval_batch_size", "checkpoint_every", "keep_checkpoints", "peak_tflops", "dist_timeout_s",
        "micro_batch_size")
    # Fields that define the model; resume forces them.
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab", "vocab_size",
        "max_seq_length")

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; valid profiles are {', '.join(PROFILES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
        if self.vocab not in ("train", "bert-base-uncased"):
            raise ValueError(f"vocab must be 'train' or 'bert-base-uncased', got {self.vocab!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        positive = ("vocab_size", "max_seq_length", "max_predictions_per_seq", "num_hidden_layers", "hidden_size",
                    "num_attention_heads", "batch_size", "total_steps", "log_every", "eval_batch_size",
                    "checkpoint_every", "keep_checkpoints")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"PretrainConfig.{name} must be a positive int, got {v!r}")
        for name in ("max_documents", "eval_documents", "intermediate_size", "micro_batch_size", "max_steps",
                     "num_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"PretrainConfig.{name} must be None or a positive int, got {v!r}")
        if self.max_steps is not None and self.max_steps > self.total_steps:
            raise ValueError(
                f"max_steps ({self.max_steps}) is past the end of the schedule (total_steps={self.total_steps}); "
                f"raise total_steps to train longer (max_steps only says where a run stops)")
        if not isinstance(self.warmup_steps, int) or not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(f"warmup_steps must be an int in [0, total_steps={self.total_steps}), got {self.warmup_steps!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an int >= 0, got {self.eval_every!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for name in ("dropout", "short_seq_prob"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.max_seq_length > 512:
            raise ValueError(f"max_seq_length {self.max_seq_length} exceeds BERT's 512 positions")
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length {self.max_seq_length} is too short for [CLS] A [SEP] B [SEP]")
        for name in ("learning_rate", "adam_epsilon", "max_grad_norm", "dist_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.weight_decay < 1:
            raise ValueError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ValueError(f"peak_tflops must be > 0, got {self.peak_tflops!r}")

    # -- presets --
    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> "PretrainConfig":
        """The preset for ``profile`` (``smoke``, ``cpu`` or ``gpu``), with ``overrides`` applied.

        * ``smoke``: a 2-layer, 32-wide model on 200 articles for 20 steps: seconds, for tests.
        * ``cpu``: the shape of BERT-Tiny (L=2, H=128, A=2) at 64 tokens, batch 32, 8k WordPiece
          pieces (trained on the train split), 6,000 steps: about 4-5 minutes on 2 cores (measured
          about 22 steps/s on two otherwise idle cores; a step count, not a time limit, so seeded
          runs are deterministic). It departs from the paper where a few minutes must: sequences of
          64 tokens (the articles' paragraphs are short, attention is cheaper), a learning rate of
          1e-3 (10x the paper's; measured at 3,000 steps, 5e-4 learned more slowly, and 2e-3 and
          4e-3 left NSP at chance longer: 1e-3 gave 66 % balanced NSP accuracy, 2e-3 61 %), 10 %
          warm-up instead of 1 %, and no dropout (measured: dropout 0.1 costs 30 % of the steps/s
          and ends lower on both tasks in equal time, as does a wider model: H=256 for 1,500 steps
          took longer than H=128 for 3,000 and ended lower on both tasks). NSP stays at chance for
          the first ~1,500 steps and then climbs; 4,500 steps reached 74 %, 6,000 go further.
        * ``gpu``: BERT-base with the paper's optimiser settings (lr 1e-4, batch 256, 128 tokens,
          dropout 0.1) and the released 30,522-piece uncased vocabulary (bert-base-uncased's, so
          the model's vocabulary matches the released checkpoints; a 30k vocabulary trained on
          this 0.9M-word corpus would be mostly rare pieces). The schedule is shortened to 4k
          steps with 400 warm-up (the paper: 1M steps, 10k warm-up): the bundled corpus has about
          1.2M tokens and one epoch is about 40 steps, so 4k steps are already about 100 passes;
          the held-out evaluation every 1k steps shows whether more would only memorize. Measured
          on one H100: 10.6 steps/s eager (about 24 % MFU against a measured bf16 matmul peak),
          13-14 with ``--compile``, so a run takes 5-7 minutes. Held-out scores at steps 1k/2k/3k/4k
          of this preset (one H100, seed 0): MLM accuracy 18/29/34/35 % (most frequent token: 6 %),
          balanced NSP 80/85/87/88.5 % (lengths alone: 49 %). On a 5k-step schedule, stopped at
          4k, a linear probe of chapter 10's topic task on 10 articles per topic reached 75 % from
          the [CLS] vector against 36 % for random weights. The paper's
          256 x 512-token batches took 4 Cloud TPUs 4 days.
        """
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(PROFILES)}")
        presets: dict[str, dict[str, Any]] = {
            "smoke": dict(max_documents=200, eval_documents=40, vocab_size=600, max_seq_length=32,
                          max_predictions_per_seq=5, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                          batch_size=8, learning_rate=1e-3, warmup_steps=2, total_steps=20, log_every=5,
                          checkpoint_every=10, eval_batch_size=32, dropout=0.1),
            "cpu": dict(vocab_size=8000, max_seq_length=64, max_predictions_per_seq=10, num_hidden_layers=2,
                        hidden_size=128, num_attention_heads=2, batch_size=32, learning_rate=1e-3,
                        warmup_steps=600, total_steps=6000, log_every=50, checkpoint_every=1000,
                        eval_batch_size=128, dropout=0.0, num_threads=2),
            "gpu": dict(vocab="bert-base-uncased", vocab_size=30522, max_seq_length=128,
                        max_predictions_per_seq=20, num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                        batch_size=256, learning_rate=1e-4, warmup_steps=400, total_steps=4_000,
                        log_every=100, eval_every=1_000, checkpoint_every=1_000, eval_batch_size=256, dropout=0.1),
        }
        kwargs = {**presets[profile], **overrides, "profile": profile}
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**kwargs)

    # -- derived --
    @property
    def stop_step(self) -> int:
        return self.total_steps if self.max_steps is None else self.max_steps

    def bert_config(self, vocab_size: int, pad_token_id: int = 0) -> BertConfig:
        """The model's architecture; ``vocab_size`` is the real size of the vocabulary file."""
        return BertConfig(
            vocab_size=vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size or 4 * self.hidden_size,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            pad_token_id=pad_token_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Optimiser and learning-rate schedule (optimization.py)
# ---------------------------------------------------------------------------------------------

def decay_parameter_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the trainable parameters with and without weight decay.

    The ``dim >= 2`` rule: weight matrices and embeddings decay; biases and LayerNorm gains/shifts do
    not. It selects the same tensors as the original's name filter (``LayerNorm``, ``bias``). Tied
    parameters appear once (the MLM decoder is the word-embedding matrix).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor once
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups, asserting they partition every trainable parameter."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_parameter_names(model)
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(decay) & set(no_decay) or set(decay) | set(no_decay) != trainable:
        raise AssertionError("weight-decay groups do not partition the trainable parameters")
    return [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with BERT's hyper-parameters; the fused CUDA kernel when on CUDA.

    Deviation: torch's AdamW bias-corrects the moment estimates; BERT's AdamWeightDecayOptimizer did not.
    """
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon,
        fused=True if device.type == "cuda" else None,
    )


def learning_rate_at(step: int, learning_rate: float, warmup_steps: int, total_steps: int) -> float:
    r"""The learning rate of update number ``step`` (0-based), as ``optimization.py`` computes it.

    .. math:: \eta(s) = \eta_0 \cdot \begin{cases} s / w & s < w \\ \max(0,\ 1 - s / S) & s \ge w \end{cases}

    Warm-up rises from 0; the decay is the original's ``polynomial_decay`` (power 1) measured from
    step 0, so at the end of warm-up the rate steps down from :math:`\eta_0` to
    :math:`\eta_0 (1 - w/S)` (transformers' schedule instead decays from the end of warm-up).
    """
    if step < warmup_steps:
        return learning_rate * step / warmup_steps
    return learning_rate * max(0.0, 1.0 - step / total_steps)


class WarmupLinearDecay:
    """The multiplier of :func:`learning_rate_at` for :class:`torch.optim.lr_scheduler.LambdaLR`."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        return learning_rate_at(step, 1.0, self.warmup_steps, self.total_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, config: PretrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule's length is ``total_steps`` from the profile; ``max_steps`` never enters it."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinearDecay(config.warmup_steps, config.total_steps))


# ---------------------------------------------------------------------------------------------
# Splitting the global batch over ranks and micro-batches
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchSplit:
    """``micro_batch_size × world_size × accumulation_steps == global_batch_size``."""

    global_batch_size: int
    world_size: int
    micro_batch_size: int
    accumulation_steps: int

    @property
    def per_rank(self) -> int:
        return self.micro_batch_size * self.accumulation_steps

    def rows(self, rank: int, micro_step: int) -> slice:
        """Rows of the global batch that ``rank`` uses in ``micro_step``: rank r owns the r-th
        contiguous block of ``per_rank`` rows, cut into ``accumulation_steps`` micro-batches."""
        start = rank * self.per_rank + micro_step * self.micro_batch_size
        return slice(start, start + self.micro_batch_size)


def split_batch(global_batch_size: int, world_size: int, max_micro_batch_size: int | None = None) -> BatchSplit:
    """Cut a global batch into per-rank micro-batches: ``micro × world × accumulation = global``.

    Every rank gets ``global / world`` sequences per step; when that exceeds ``max_micro_batch_size``
    (memory), it is processed in the fewest equal micro-batches that fit, and their gradients are
    accumulated. The world size must divide the global batch; no accumulation can fix that.

    Raises:
        ValueError: a non-positive size, or a world size that does not divide the global batch
            (the message names both and the ways out).
    """
    for name, v in (("global_batch_size", global_batch_size), ("world_size", world_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if max_micro_batch_size is not None and (not isinstance(max_micro_batch_size, int) or max_micro_batch_size <= 0):
        raise ValueError(f"max_micro_batch_size must be None or a positive int, got {max_micro_batch_size!r}")
    if global_batch_size % world_size:
        divisors = [d for d in range(1, global_batch_size + 1) if global_batch_size % d == 0 and d <= 64]
        lower = global_batch_size - global_batch_size % world_size
        raise ValueError(
            f"global batch size {global_batch_size} cannot be split over world size {world_size}: "
            f"per-rank micro-batch x world size x accumulation steps must equal the global batch, so the "
            f"world size must divide it. Run on a world size that divides {global_batch_size} "
            f"(e.g. {divisors}) or choose --batch-size as a multiple of {world_size} "
            f"(e.g. {lower or world_size} or {lower + world_size})."
        )
    per_rank = global_batch_size // world_size
    cap = per_rank if max_micro_batch_size is None else max_micro_batch_size
    accum = next(a for a in range(1, per_rank + 1) if per_rank % a == 0 and per_rank // a <= cap)
    return BatchSplit(global_batch_size, world_size, per_rank // accum, accum)


# ---------------------------------------------------------------------------------------------
# Distributed set-up (torchrun)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (torchrun sets it)") from None


def init_distributed(device_type: str, timeout_s: float = 60.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK.

    No such variables (or WORLD_SIZE=1): a single process, nothing to join. NCCL on CUDA, gloo on
    CPU. ``timeout_s`` (env ``BERTREPRO_DIST_TIMEOUT`` wins) bounds the rendezvous and every
    collective, so a missing peer is an error, not a hang.
    """
    import torch.distributed as dist

    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if world is None and rank is None:
        return DistInfo()
    if world is None or rank is None:
        raise ValueError(f"RANK and WORLD_SIZE must be set together (got RANK={rank}, WORLD_SIZE={world}); "
                         f"launch with torchrun, which sets both")
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    if world == 1:
        return DistInfo()
    env_timeout = os.environ.get("BERTREPRO_DIST_TIMEOUT")
    if env_timeout:
        timeout_s = float(env_timeout)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set for a {world}-process run; launch with torchrun "
                         f"(or set MASTER_ADDR and MASTER_PORT to the rank-0 host and a free port)")
    backend = "nccl" if device_type == "cuda" else "gloo"
    local = rank if local is None else local
    if backend == "nccl":
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as e:  # DistStoreError, RuntimeError, TimeoutError ... depending on the failure
        raise RuntimeError(
            f"rank {rank} of {world} could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}) within {timeout_s:g} s: {e}. "
            f"Start all ranks together with torchrun --nproc_per_node N (and --nnodes/--rdzv-endpoint for "
            f"several machines), check the address and port of rank 0, or raise the wait with "
            f"--dist-timeout-s / BERTREPRO_DIST_TIMEOUT."
        ) from e
    return DistInfo(rank, world, local, backend)


def _derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from ``seed`` and labels: independent streams that do not depend on call order."""
    h = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


# ---------------------------------------------------------------------------------------------
# Data: corpus -> WordPiece vocabulary -> token ids -> NSP pairs -> masked batches
# ---------------------------------------------------------------------------------------------

@dataclass
class Examples:
    """Packed pre-training pairs ``[CLS] A [SEP] B [SEP] [PAD]...``; every tensor has N rows."""

    input_ids: torch.Tensor  # (N, T) long
    token_type_ids: torch.Tensor  # (N, T) long: 0 for [CLS] A [SEP], 1 for B [SEP]
    attention_mask: torch.Tensor  # (N, T) long: 1 token, 0 padding
    special_tokens_mask: torch.Tensor  # (N, T) bool: [CLS], [SEP], [PAD]; never masked
    next_sentence_label: torch.Tensor  # (N,) long: IS_NEXT = 0, NOT_NEXT = 1

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: torch.Tensor | slice) -> "Examples":
        return Examples(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass
class PretrainData:
    """Everything the training loop needs from the corpus, built once by :func:`prepare_data`."""

    vocab_path: Path  # the WordPiece vocabulary (one piece per line)
    tokenizer: Any  # bertrepro.tokenization.WordPieceTokenizer
    vocab_size: int
    pad_token_id: int
    cls_token_id: int
    sep_token_id: int
    mask_token_id: int
    train_documents: list[list[list[int]]]  # documents -> sentences -> token ids
    validation_documents: list[list[list[int]]]
    token_counts: torch.Tensor  # (V,) long: occurrences of each id in the train documents
    corpus_name: str


def _file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CorpusLike = Any  # a corpus name, a DatasetDict, or {"train": docs, "validation": docs}


def _documents(split: Any) -> list[list[str]]:
    """One split -> documents as lists of sentence strings.

    Accepts a ``datasets.Dataset`` (or list of dicts) with a ``sentences`` column, or a list whose
    items are lists of sentences (or strings, each then a one-sentence document).
    """
    if split is None:
        return []
    if hasattr(split, "column_names"):
        if "sentences" not in split.column_names:
            raise ValueError(f"corpus split has columns {split.column_names}; a 'sentences' column is required")
        return [list(s) for s in split["sentences"]]
    docs = []
    for i, d in enumerate(split):
        if isinstance(d, Mapping):
            if "sentences" not in d:
                raise ValueError(f"document {i} has keys {sorted(d)}; a 'sentences' list is required")
            d = d["sentences"]
        if isinstance(d, str):
            d = [d]
        docs.append([str(s) for s in d])
    return docs


def _load_splits(corpus: CorpusLike) -> tuple[str, list[list[str]], list[list[str]]]:
    if isinstance(corpus, str):
        from .data import load_corpus

        name, splits = corpus, load_corpus(corpus)
    elif isinstance(corpus, Mapping) or hasattr(corpus, "keys"):
        splits = corpus
        name = "documents-" + hashlib.sha256(
            json.dumps({k: _documents(splits[k]) for k in sorted(splits.keys())}).encode()).hexdigest()[:12]
    else:
        raise TypeError(f"corpus must be a name, a DatasetDict or a mapping of splits, got {type(corpus).__name__}")
    keys = set(splits.keys())
    if "train" not in keys:
        raise ValueError(f"corpus {name!r} has splits {sorted(keys)}; a 'train' split is required")
    valid = splits["validation"] if "validation" in keys else None
    return name, _documents(splits["train"]), _documents(valid)


# -- the tokenizer (bertrepro.tokenization) --

def _train_vocab(documents: list[list[str]], vocab_size: int, path: Path) -> None:
    from .tokenization import train_wordpiece

    train_wordpiece((s for doc in documents for s in doc), vocab_size, path)  # written atomically


def _load_tokenizer(path: str | os.PathLike):
    from .tokenization import WordPieceTokenizer

    return WordPieceTokenizer.from_vocab(path)


def _special_ids(tokenizer: Any) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id, "mask_token_id": tokenizer.mask_token_id}


def _encode_documents(tokenizer: Any, documents: list[list[str]], progress: bool) -> list[list[list[int]]]:
    return tokenizer.encode_corpus(documents, progress=progress)


def prepare_data(config: PretrainConfig, corpus: CorpusLike | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False) -> PretrainData:
    """Load the corpus, train (or load) the WordPiece vocabulary and tokenize every sentence.

    The vocabulary is trained on the train split only and cached under ``cache_dir`` (default
    :func:`bertrepro.profiles.cache_dir`), keyed by the corpus and the vocabulary size; the
    validation split never influences it.

    Args:
        corpus: a name for :func:`bertrepro.data.load_corpus` (default ``config.corpus``), a
            ``DatasetDict``, or a mapping ``{"train": docs, "validation": docs}`` whose documents are
            lists of sentences (tests use a small synthetic corpus this way).
    """
    name, train_docs, valid_docs = _load_splits(config.corpus if corpus is None else corpus)
    if config.max_documents is not None:
        train_docs = train_docs[: config.max_documents]
    if config.eval_documents is not None:
        valid_docs = valid_docs[: config.eval_documents]
    if len(train_docs) < 2:
        raise ValueError(f"corpus {name!r} has {len(train_docs)} train document(s); NSP needs at least 2")
    if config.vocab == "bert-base-uncased":
        from .tokenization import bert_uncased_vocab_path

        vocab_path = bert_uncased_vocab_path()
    else:
        if cache_dir is None:
            from .profiles import cache_dir as default_cache

            cache_dir = default_cache("pretrain")
        key = hashlib.sha256(json.dumps([name, config.max_documents, config.vocab_size]).encode()).hexdigest()[:16]
        vocab_path = Path(cache_dir) / f"wordpiece-{key}" / "vocab.txt"
        if not vocab_path.is_file():
            _train_vocab(train_docs, config.vocab_size, vocab_path)
    tokenizer = _load_tokenizer(vocab_path)
    ids = _special_ids(tokenizer)
    train = _encode_documents(tokenizer, train_docs, progress)
    valid = _encode_documents(tokenizer, valid_docs, progress)
    vocab_size = tokenizer.vocab_size
    flat = [t for d in train for s in d for t in s]
    counts = torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=vocab_size) if flat else \
        torch.zeros(vocab_size, dtype=torch.long)
    return PretrainData(vocab_path=Path(vocab_path), tokenizer=tokenizer, vocab_size=vocab_size, **ids,
                        train_documents=train, validation_documents=valid, token_counts=counts, corpus_name=name)


# -- pairs and masks (bertrepro.nsp, bertrepro.masking) --

def _make_pairs(data: PretrainData, documents: list[list[list[int]]], config: PretrainConfig, rng: random.Random,
                contiguous: bool) -> Examples:
    """Balanced NSP pairs packed to tensors; ``contiguous`` keeps only the IsNext pairs (text that reads on)."""
    from .nsp import create_pretraining_examples

    packed = create_pretraining_examples(documents, config.max_seq_length, rng, tokenizer=data.tokenizer,
                                         short_seq_prob=config.short_seq_prob, balanced=True)
    examples = Examples(**packed)
    if contiguous:
        examples = examples.select(examples.next_sentence_label == IS_NEXT)
    return examples


def _mask(examples: Examples, data: PretrainData, config: PretrainConfig,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    from .masking import mask_tokens

    return mask_tokens(examples.input_ids, examples.special_tokens_mask, vocab_size=data.vocab_size,
                       mask_token_id=data.mask_token_id, pad_token_id=data.pad_token_id,
                       mlm_probability=config.mlm_probability, max_predictions=config.max_predictions_per_seq,
                       generator=generator, attention_mask=examples.attention_mask)


def epoch_examples(data: PretrainData, config: PretrainConfig, epoch: int) -> Examples:
    """The training pairs of one epoch, re-drawn every epoch from ``(seed, epoch)``.

    The original wrote ``dupe_factor=10`` differently-paired copies of the corpus once; drawing a
    new pairing per epoch does the same without storing them, and a resumed run rebuilds the
    epoch it stopped in exactly. With ``objective`` "mlm" or "ltr" (no NSP) B is always the true
    continuation, so the model reads coherent text and the NSP label is unused.
    """
    rng = random.Random(_derive_seed(config.seed, "pairs", epoch))
    return _make_pairs(data, data.train_documents, config, rng, contiguous=config.objective != "mlm_nsp")


def validation_examples(data: PretrainData, config: PretrainConfig) -> Examples:
    """Held-out balanced NSP pairs from the validation articles, drawn with :data:`EVAL_SEED`.

    The same pairs for every objective and every training seed, so models compare on equal terms.
    """
    if not data.validation_documents:
        raise ValueError("the corpus has no validation documents to evaluate on")
    return _make_pairs(data, data.validation_documents, config, random.Random(EVAL_SEED), contiguous=False)


def ltr_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token targets for a left-to-right LM: position t predicts token t+1 where t+1 is real.

    (B, T) -> (B, T) with ``IGNORE_INDEX`` at the last position and wherever the next token is padding.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    nxt = input_ids[:, 1:]  # (B, T-1)
    labels[:, :-1] = torch.where(attention_mask[:, 1:].bool(), nxt, torch.full_like(nxt, IGNORE_INDEX))
    return labels


def make_batch(examples: Examples, data: PretrainData, config: PretrainConfig,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Model inputs for ``examples``: masked for "mlm_nsp"/"mlm", next-token labels for "ltr"."""
    if config.objective == "ltr":
        input_ids, labels = examples.input_ids, ltr_labels(examples.input_ids, examples.attention_mask)
    else:
        input_ids, labels = _mask(examples, data, config, generator)
    return {"input_ids": input_ids, "token_type_ids": examples.token_type_ids,
            "attention_mask": examples.attention_mask, "labels": labels,
            "next_sentence_label": examples.next_sentence_label}


class BatchStream:
    """The global batches of a run in order: a seeded permutation per epoch, position checkpointed."""

    def __init__(self, data: PretrainData, config: PretrainConfig, epoch: int = 0, index: int = 0) -> None:
        self.data, self.config = data, config
        self.epoch, self.index = epoch, index
        self._load_epoch()

    def _load_epoch(self) -> None:
        self.examples = epoch_examples(self.data, self.config, self.epoch)
        n, b = len(self.examples), self.config.batch_size
        if n < b:
            raise ValueError(f"only {n} pre-training examples, fewer than one global batch of {b}; use more "
                             f"documents (max_documents) or a smaller --batch-size")
        self.permutation_seed = _derive_seed(self.config.seed, "permutation", self.epoch)
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed(self.permutation_seed))

    def next(self) -> Examples:
        b = self.config.batch_size
        if self.index + b > len(self.examples):  # drop the ragged tail; the next epoch re-pairs anyway
            self.epoch, self.index = self.epoch + 1, 0
            self._load_epoch()
        rows = self.order[self.index: self.index + b]
        self.index += b
        return self.examples.select(rows)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "permutation_seed": self.permutation_seed,
                "examples_in_epoch": len(self.examples)}


# ---------------------------------------------------------------------------------------------
# Checkpoints: a directory per step, written to a temporary name and renamed; "latest" points to it
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """Everything a resumed run needs to continue bit-identically."""

    step: int  # optimizer updates done
    config: PretrainConfig
    model: BertForPreTraining
    optimizer: dict[str, Any]  # torch optimizer state_dict
    scheduler: dict[str, Any]  # LambdaLR state_dict
    data: dict[str, int]  # BatchStream.state_dict(): epoch, index, permutation seed
    masking_rng: torch.Tensor  # state of the masking generator (the same on every rank)
    rank_rng: list[dict[str, Any]]  # per rank: torch / cuda (ByteTensors), python, numpy states
    vocab_sha256: str
    world_size: int = 1


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _py_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _np_state_to_json(state: tuple) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file (the one writer the checkpoint uses for optimizer and RNG tensors)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} cannot be read ({e}); the checkpoint is corrupt") from e


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The directory ``output_dir/checkpoints/latest`` points to, or None when there is none."""
    root = Path(output_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"{pointer} holds {name!r}, not a checkpoint directory name; the checkpoint is corrupt")
    return root / name


def save_checkpoint(output_dir: str | os.PathLike, state: TrainState, keep: int = 1) -> Path:
    """Write ``state`` to ``output_dir/checkpoints/step-NNNNNNNN`` atomically.

    Files go into a temporary directory, which is renamed into place once complete; then the
    ``latest`` pointer is replaced atomically and older step directories beyond ``keep`` are
    removed. A crash at any point leaves ``latest`` naming a complete checkpoint.

    Layout: ``config.json`` + ``model.safetensors`` (the Hugging Face layout; the architecture),
    ``optimizer.safetensors`` (moment tensors), ``rng.safetensors`` (torch/CUDA/masking generator
    states) and ``trainer_state.json`` (step, data position, schedule, optimizer groups, python and
    numpy RNG states, the PretrainConfig, and a SHA-256 of every file).
    """
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"  # lexicographic order of step-* names is step order
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        save_pretrained(state.model, tmp)
        opt = state.optimizer
        opt_tensors, opt_scalars = {}, {}
        for pid, entries in opt["state"].items():
            for k, v in entries.items():
                if torch.is_tensor(v):
                    opt_tensors[f"{pid}.{k}"] = v
                else:
                    opt_scalars[f"{pid}.{k}"] = v
        _write_tensors(tmp / "optimizer.safetensors", opt_tensors)
        rng_tensors = {"masking": state.masking_rng}
        rng_json = []
        for r, s in enumerate(state.rank_rng):
            rng_tensors[f"rank{r}.torch"] = s["torch"]
            if s.get("cuda") is not None:
                rng_tensors[f"rank{r}.cuda"] = s["cuda"]
            rng_json.append({"python": _py_state_to_json(s["python"]), "numpy": _np_state_to_json(s["numpy"])})
        _write_tensors(tmp / "rng.safetensors", rng_tensors)
        files = {p.name: _file_sha256(p) for p in sorted(tmp.iterdir())}
        meta = {
            "format": CHECKPOINT_FORMAT, "step": state.step, "world_size": state.world_size,
            "pretrain_config": state.config.to_dict(), "data": state.data, "scheduler": state.scheduler,
            "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
            "rng": rng_json, "vocab_sha256": state.vocab_sha256, "files": files,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
        k = 0
        while final.exists():  # a re-save of the same step never touches the complete one
            k += 1
            final = root / f"step-{state.step:08d}-{k}"
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", final.name)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint`: an output directory (its latest
    checkpoint) or a ``step-*`` directory itself.

    Raises:
        CheckpointError: nothing to resume from, a missing file, a checksum that does not match
            (a corrupt or altered file), or unreadable contents. The message names the file.
    """
    path = Path(path)
    if (path / "trainer_state.json").is_file() or path.name.startswith("step-"):
        ckpt = path
    else:
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint to resume from in {str(path)!r} (no checkpoints/latest); "
                                  f"run without --resume to start a new run there")
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint directory {str(ckpt)!r} does not exist")
    meta_file = ckpt / "trainer_state.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{str(ckpt)!r} is not a complete checkpoint: trainer_state.json is missing")
    try:
        meta = json.loads(meta_file.read_text())
        files = meta["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_file} is not a valid trainer state ({e}); the checkpoint is corrupt") from e
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{meta_file} has format {meta.get('format')!r}; this version reads {CHECKPOINT_FORMAT}")
    for name, digest in files.items():
        f = ckpt / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing; the checkpoint is incomplete")
        if _file_sha256(f) != digest:
            raise CheckpointError(f"{f} does not match its SHA-256 in trainer_state.json; the checkpoint is corrupt")
    model = load_pretrained(ckpt, target="BertForPreTraining")
    opt_tensors = _read_tensors(ckpt / "optimizer.safetensors")
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(opt_tensors.items()) + list(meta["optimizer"]["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    rng_tensors = _read_tensors(ckpt / "rng.safetensors")
    rank_rng = []
    for r, s in enumerate(meta["rng"]):
        version, internal, gauss = s["python"]
        kind, keys, pos, has_gauss, cached = s["numpy"]
        rank_rng.append({
            "torch": rng_tensors[f"rank{r}.torch"], "cuda": rng_tensors.get(f"rank{r}.cuda"),
            "python": (version, tuple(internal), gauss),
            "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        })
    try:
        config = PretrainConfig.from_dict(meta["pretrain_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_file} holds an invalid PretrainConfig ({e})") from e
    return TrainState(
        step=int(meta["step"]), config=config, model=model,
        optimizer={"state": state, "param_groups": meta["optimizer"]["param_groups"]},
        scheduler=meta["scheduler"], data=meta["data"], masking_rng=rng_tensors["masking"], rank_rng=rank_rng,
        vocab_sha256=meta["vocab_sha256"], world_size=int(meta["world_size"]),
    )


# ---------------------------------------------------------------------------------------------
# Evaluation (run_pretraining.py's eval: masked-LM accuracy and loss, next-sentence accuracy)
# ---------------------------------------------------------------------------------------------

def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: BertForPreTraining, examples: Examples, data: PretrainData, config: PretrainConfig, *,
             objective: str | None = None, batch_size: int | None = None, device: torch.device | str | None = None,
             seed: int = EVAL_SEED, dist_info: DistInfo | None = None) -> dict[str, float]:
    r"""Held-out token-prediction and NSP metrics, with the baselines on the same positions.

    Masks are drawn for all ``examples`` at once from a generator seeded with ``seed``, so every
    model (and every world size or batch size) is scored on the same positions. For the masked
    objectives the keys start with ``mlm_``; for "ltr" with ``lm_`` (every next token is a target).

    * ``{p}_accuracy``, ``{p}_loss`` (mean cross-entropy, nats), ``{p}_perplexity`` = exp(loss),
      ``{p}_predictions`` (how many positions);
    * ``mft_accuracy``: always predicting the most frequent train token (``mft_token``);
    * ``unigram_perplexity``: predicting with the train unigram distribution (add-one smoothed);
    * ``nsp_accuracy``: balanced accuracy, the mean of the IsNext and NotNext recalls
      (``nsp_accuracy_is_next``, ``nsp_accuracy_not_next``), only for "mlm_nsp".

    As in the original's evaluation, NSP is scored on the masked inputs.
    Under data parallelism every rank scores a slice and the sums are all-reduced.
    """
    objective = objective or config.objective
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
    if len(examples) == 0:
        raise ValueError("no examples to evaluate")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_size = batch_size or config.eval_batch_size
    eval_cfg = dataclasses.replace(config, objective=objective)
    batch = make_batch(examples, data, eval_cfg, torch.Generator().manual_seed(seed))
    counts = data.token_counts.double()
    mft = int(counts.argmax())
    log_unigram = torch.log((counts + 1) / (counts.sum() + counts.numel())).to(device)  # (V,)
    n = len(examples)
    lo, hi = 0, n
    if dist_info is not None and dist_info.enabled:
        lo, hi = n * dist_info.rank // dist_info.world_size, n * (dist_info.rank + 1) // dist_info.world_size
    # sums: loss, correct, predictions, mft correct, unigram nll, NSP correct/total per class
    sums = torch.zeros(9, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for start in range(lo, hi, batch_size):
            rows = slice(start, min(start + batch_size, hi))
            mb = {k: v[rows].to(device) for k, v in batch.items()}
            with _autocast(device, config.precision):
                out = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"], labels=mb["labels"],
                            is_causal=objective == "ltr")
            targets = mb["labels"][out.mlm_positions]  # (N,)
            logits = out.prediction_logits.float()  # (N, V)
            sums[0] += F.cross_entropy(logits, targets, reduction="sum")
            sums[1] += (logits.argmax(-1) == targets).sum()
            sums[2] += targets.numel()
            sums[3] += (targets == mft).sum()
            sums[4] -= log_unigram[targets].sum()
            if objective == "mlm_nsp":
                pred = out.seq_relationship_logits.argmax(-1)
                gold = mb["next_sentence_label"]
                for k, label in enumerate((IS_NEXT, NOT_NEXT)):
                    sel = gold == label
                    sums[5 + 2 * k] += (pred[sel] == label).sum()
                    sums[6 + 2 * k] += sel.sum()
    finally:
        model.train(was_training)
    if dist_info is not None and dist_info.enabled:
        import torch.distributed as dist

        dist.all_reduce(sums)
    s = sums.tolist()
    p = "lm" if objective == "ltr" else "mlm"
    if s[2] == 0:
        raise ValueError("no predicted positions in the evaluation examples")
    result = {
        f"{p}_accuracy": s[1] / s[2], f"{p}_loss": s[0] / s[2], f"{p}_perplexity": math.exp(s[0] / s[2]),
        f"{p}_predictions": int(s[2]), "mft_accuracy": s[3] / s[2], "mft_token": data.tokenizer.convert_ids_to_tokens([mft])[0],
        "unigram_perplexity": math.exp(s[4] / s[2]), "examples": n,
    }
    if objective == "mlm_nsp":
        rec_next = s[5] / max(s[6], 1)
        rec_not = s[7] / max(s[8], 1)
        result.update(nsp_accuracy=(rec_next + rec_not) / 2, nsp_accuracy_is_next=rec_next,
                      nsp_accuracy_not_next=rec_not, nsp_examples=int(s[6] + s[8]))
    return result


def nsp_length_baseline(train: Examples, held_out: Examples, bucket: int = 4) -> dict[str, float]:
    """:func:`bertrepro.nsp.length_baseline` on pre-training :class:`Examples`: how well lengths
    alone, not words, predict the NSP label. A model's NSP accuracy means little until it beats this."""
    from .nsp import length_baseline

    return length_baseline(vars(train), vars(held_out), bucket=bucket)


@torch.no_grad()
def fill_mask(model: BertForPreTraining, tokenizer: Any, text: str, top_k: int = 5,
              text_b: str | None = None) -> list[list[tuple[str, float]]]:
    """The ``top_k`` (piece, probability) predictions for every ``[MASK]`` in ``text``.

    ``text`` (and the optional second segment ``text_b``) is tokenized around the literal
    ``[MASK]`` markers and wrapped as ``[CLS] text [SEP] (text_b [SEP])``.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    ids = _special_ids(tokenizer)
    encode = tokenizer.token_ids  # keeps a literal "[MASK]" as the mask token
    a = encode(text)
    input_ids = [ids["cls_token_id"], *a, ids["sep_token_id"]]
    types = [0] * len(input_ids)
    if text_b is not None:
        b = encode(text_b)
        input_ids += [*b, ids["sep_token_id"]]
        types += [1] * (len(b) + 1)
    if ids["mask_token_id"] not in input_ids:
        raise ValueError(f"no [MASK] in {text!r}" + (f" / {text_b!r}" if text_b else ""))
    device = next(model.parameters()).device
    x = torch.tensor([input_ids], device=device)
    was_training = model.training
    model.eval()
    try:
        logits = model(x, torch.tensor([types], device=device), torch.ones_like(x)).prediction_logits[0]  # (T, V)
    finally:
        model.train(was_training)
    probs = logits[x[0] == ids["mask_token_id"]].float().softmax(-1)  # (masks, V)
    top = probs.topk(top_k, dim=-1)
    return [list(zip(tokenizer.convert_ids_to_tokens(is_), ps))
            for ps, is_ in zip(top.values.tolist(), top.indices.tolist())]


def flops_per_token(config: BertConfig, seq_len: int, predicted_fraction: float = 0.15) -> float:
    """Training FLOPs per input token (forward + backward = 3 x forward; 2 FLOPs per multiply-add).

    Per layer: the Q, K, V, O projections (4H²) and the feed-forward (2HI) matrices, plus
    attention's QKᵀ and AV (2TH); the MLM head (transform H² and decoder HV) runs only on the
    predicted fraction of positions (gathered). Embedding look-ups and element-wise work are ignored,
    as in the usual 6N + 12LHT estimate.
    """
    H, L, I, V = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    forward = L * (2 * (4 * H * H + 2 * H * I) + 2 * 2 * seq_len * H) + predicted_fraction * 2 * (H * H + H * V)
    return 3.0 * forward


def estimate_mfu(config: BertConfig, seq_len: int, tokens_per_s: float, peak_flops: float,
                 predicted_fraction: float = 0.15) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the accelerator's peak (FLOP/s)."""
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops!r}")
    return flops_per_token(config, seq_len, predicted_fraction) * tokens_per_s / peak_flops


def measure_peak_flops(device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16, n: int = 8192,
                       iters: int = 20) -> float:
    """Achievable matmul FLOP/s on ``device``: an n x n x n product timed after a warm-up."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * iters / (time.perf_counter() - t)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (or ``eval.jsonl``) as dicts; [] when the file is absent."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------

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


def _check_resume_config(requested: PretrainConfig, saved: PretrainConfig) -> PretrainConfig:
    """The saved configuration with the requested run-only fields; any other difference is an error."""
    diffs = [(k, getattr(saved, k), getattr(requested, k)) for k in saved.to_dict()
             if k not in PretrainConfig.RESUMABLE and getattr(saved, k) != getattr(requested, k)]
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


def _resolve_device(config: PretrainConfig) -> torch.device:
    if config.device:
        dev = torch.device(config.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} requested but CUDA is not available; use --device cpu")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _freeze_unused_heads(model: BertForPreTraining) -> None:
    """Without NSP the pooler and the NSP classifier get no gradient: freeze them (out of the
    optimizer, so weight decay does not shrink them, and out of DDP's gradient reduction)."""
    for module in (model.bert.pooler, model.cls.seq_relationship):
        module.requires_grad_(False)


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop lines past ``step`` (logged after the checkpoint a resumed run restarts from)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def pretrain(config: PretrainConfig, output_dir: str | os.PathLike, *, corpus: CorpusLike | None = None,
             resume: bool = False, cache_dir: str | os.PathLike | None = None,
             progress: bool = True) -> PretrainResult:
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
        cache_dir: where the trained vocabulary is cached (default ``bertrepro.profiles.cache_dir``).
        progress: show a tqdm bar (rank 0).

    Raises:
        ValueError: bad settings; a fresh run into a directory that has a checkpoint; a resume
            that changes the architecture or the schedule.
        CheckpointError: ``resume`` with a missing or corrupt checkpoint.
        RuntimeError: the process group cannot be joined in time.
    """
    set_offline()
    device = _resolve_device(config)
    # Check the batch split before any rendezvous: every rank fails at once, with the same message.
    split_batch(config.batch_size, _env_int("WORLD_SIZE") or 1, config.micro_batch_size)
    dist_info = init_distributed(device.type, config.dist_timeout_s)
    try:
        if dist_info.enabled and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
        return _pretrain(config, Path(output_dir), corpus, resume, cache_dir, progress, device, dist_info)
    finally:
        if dist_info.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()


def _pretrain(config: PretrainConfig, output_dir: Path, corpus: CorpusLike | None, resume: bool,
              cache_dir: str | os.PathLike | None, progress: bool, device: torch.device,
              dist_info: DistInfo) -> PretrainResult:
    from .progress import bar as tqdm

    rank, world, main = dist_info.rank, dist_info.world_size, dist_info.is_main
    if dist_info.enabled:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
    split = split_batch(config.batch_size, world, config.micro_batch_size)

    state: TrainState | None = None
    if resume:
        state = load_checkpoint(output_dir)
        config = _check_resume_config(config, state.config)
    elif latest_checkpoint(output_dir) is not None:
        raise ValueError(f"{str(output_dir)!r} already holds a checkpoint ({latest_checkpoint(output_dir).name}); "
                         f"pass --resume (resume=True) to continue it, or choose another --output-dir")

    if device.type == "cpu":
        if config.num_threads:
            local_world = _env_int("LOCAL_WORLD_SIZE") or 1
            torch.set_num_threads(max(1, config.num_threads // local_world))
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**config.to_dict(), "world_size": world, "micro_batch_size_resolved": split.micro_batch_size,
                    "accumulation_steps": split.accumulation_steps, "device": str(device)}
        print("pretrain config:\n" + json.dumps(resolved, indent=2), flush=True)
        atomic_write_text(output_dir / "config.json", json.dumps(config.to_dict(), indent=2))

    data = prepare_data(config, corpus, cache_dir)
    vocab_sha = _file_sha256(data.vocab_path)
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

    # -- model, optimiser, schedule --
    if state is not None:
        raw_model = state.model
        if raw_model.config.vocab_size != data.vocab_size:
            raise ValueError(f"checkpoint vocab_size {raw_model.config.vocab_size} != vocabulary {data.vocab_size}")
    else:
        torch.manual_seed(_derive_seed(config.seed, "init"))  # identical initial weights on every rank
        raw_model = BertForPreTraining(config.bert_config(data.vocab_size, data.pad_token_id))
    if config.objective != "mlm_nsp":
        _freeze_unused_heads(raw_model)
    raw_model.to(device).train()
    optimizer = build_optimizer(raw_model, config, device)
    scheduler = build_scheduler(optimizer, config)
    masking_gen = torch.Generator().manual_seed(_derive_seed(config.seed, "masking"))
    if state is not None:
        try:
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"the checkpoint's optimizer/scheduler state does not fit the model ({e})") from e
        masking_gen.set_state(state.masking_rng)
        if state.world_size == world:
            _set_rng_state(state.rank_rng[rank], device)
        else:
            warnings.warn(f"checkpoint written by {state.world_size} process(es), resumed on {world}: data order and "
                          f"masks continue exactly, dropout streams are re-seeded from (seed, step, rank)")
            _seed_rank_streams(config.seed, state.step, rank)
        stream = BatchStream(data, config, epoch=state.data["epoch"], index=state.data["index"])
        step = state.step
    else:
        _seed_rank_streams(config.seed, 0, rank)
        stream = BatchStream(data, config)
        step = 0
    model: nn.Module = raw_model
    if config.compile:
        # Compile the encoder, where the FLOPs are, in place (state_dict keys unchanged). The heads
        # stay eager: the gathered MLM rows and their count change every step, which would make a
        # whole-model graph recompile again and again.
        raw_model.bert.compile()
    if dist_info.enabled:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    metrics_path, eval_path = output_dir / "metrics.jsonl", output_dir / "eval.jsonl"
    if main:
        for p in (metrics_path, eval_path):
            if state is not None:
                _truncate_jsonl(p, step)
            elif p.exists():
                p.unlink()

    valid = validation_examples(data, config) if data.validation_documents else None
    if valid is not None and config.objective == "mlm_nsp":
        length_baseline = nsp_length_baseline(epoch_examples(data, config, 0), valid)
    bert_cfg = raw_model.config
    T, B = config.max_seq_length, config.batch_size
    predicted_fraction = config.max_predictions_per_seq / T if config.objective != "ltr" else 1.0
    peak = None
    if device.type == "cuda":
        peak = config.peak_tflops * 1e12 if config.peak_tflops else measure_peak_flops(device)
    nsp = config.objective == "mlm_nsp"
    ltr = config.objective == "ltr"

    def run_eval() -> dict[str, Any]:
        if valid is None:
            return {}
        result = evaluate(raw_model, valid, data, config, device=device, dist_info=dist_info)
        if nsp:
            result.update(length_baseline)
        result["step"] = step
        if main:
            _append_jsonl(eval_path, result)
        return result

    def checkpoint() -> Path | None:
        rngs = [_rng_state(device)]
        if dist_info.enabled:
            rngs = [None] * world
            dist.all_gather_object(rngs, _rng_state(device))
        path = None
        if main:
            ts = TrainState(step=step, config=config, model=raw_model, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), data={**stream.state_dict(), "corpus": data.corpus_name},
                            masking_rng=masking_gen.get_state(), rank_rng=rngs, vocab_sha256=vocab_sha,
                            world_size=world)
            path = save_checkpoint(output_dir, ts, keep=config.keep_checkpoints)
        if dist_info.enabled:
            dist.barrier()
        return path if main else latest_checkpoint(output_dir)

    stop = config.stop_step
    start_step = step
    zeros = lambda: torch.zeros(4, dtype=torch.float64, device=device)  # mlm loss, nsp loss, mlm correct, nsp correct
    window, window_steps, window_predictions = zeros(), 0, 0
    grad_norm = torch.zeros((), device=device)
    last_ckpt = latest_checkpoint(output_dir) if state is not None else None
    bar = tqdm(total=stop, initial=step, disable=not (progress and main), unit="step", dynamic_ncols=True,
               desc=f"pretrain {config.profile}")
    t_train = time.perf_counter()
    t_window = t_train
    while step < stop:
        batch = make_batch(stream.next(), data, config, masking_gen)  # the GLOBAL batch, masked on CPU
        n_pred = int((batch["labels"] != IGNORE_INDEX).sum())  # global count: no device sync
        lr = optimizer.param_groups[0]["lr"]
        for micro in range(split.accumulation_steps):
            rows = split.rows(rank, micro)
            mb = {k: v[rows].to(device, non_blocking=True) for k, v in batch.items()}
            sync = model.no_sync() if dist_info.enabled and micro < split.accumulation_steps - 1 \
                else contextlib.nullcontext()
            with sync:
                with _autocast(device, config.precision):
                    out = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"], labels=mb["labels"],
                                is_causal=ltr, mlm_denominator=n_pred)
                # Summed over this rank's rows, divided by GLOBAL counts: summing over micro-batches
                # and averaging over ranks (DDP divides by W, hence the factor W) gives the global means.
                mlm_loss = out.mlm_loss
                loss = mlm_loss
                if nsp:
                    nsp_loss = F.cross_entropy(out.seq_relationship_logits.float(), mb["next_sentence_label"],
                                               reduction="sum") / B
                    loss = loss + nsp_loss
                with torch.no_grad():  # running sums on the device, read only on log steps
                    window[0] += mlm_loss.detach()
                    window[2] += (out.prediction_logits.argmax(-1) == mb["labels"][out.mlm_positions]).sum()
                    if nsp:
                        window[1] += nsp_loss.detach()
                        window[3] += (out.seq_relationship_logits.argmax(-1) == mb["next_sentence_label"]).sum()
                (loss * world).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        window_predictions += n_pred
        bar.update(1)

        if step % config.log_every == 0 or step == stop:
            sums = window.clone()
            if dist_info.enabled:
                dist.all_reduce(sums)
            s = sums.tolist()  # the one synchronisation of a log step
            now = time.perf_counter()
            tokens_per_s = window_steps * B * T / (now - t_window)
            rec = {"step": step, "epoch": stream.epoch, "lr": lr, "loss": (s[0] + s[1]) / window_steps,
                   "mlm_loss": s[0] / window_steps, "nsp_loss": s[1] / window_steps if nsp else None,
                   "mlm_accuracy": s[2] / max(window_predictions, 1),
                   "nsp_accuracy": s[3] / (window_steps * B) if nsp else None,
                   "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_s,
                   "steps_per_s": window_steps / (now - t_window), "elapsed_s": now - t_train,
                   "world_size": world, "global_batch_size": B, "micro_batch_size": split.micro_batch_size,
                   "accumulation_steps": split.accumulation_steps}
            if peak is not None:
                rec["mfu"] = estimate_mfu(bert_cfg, T, tokens_per_s, peak, predicted_fraction)
            if main:
                _append_jsonl(metrics_path, rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            window, window_steps, window_predictions, t_window = zeros(), 0, 0, time.perf_counter()
        if config.eval_every and step % config.eval_every == 0 and step != stop:
            run_eval()
        if step % config.checkpoint_every == 0 or step == stop:
            last_ckpt = checkpoint()
    bar.close()
    train_time = time.perf_counter() - t_train
    evaluation = run_eval()
    model_dir = output_dir / "model"
    if main:
        save_pretrained(raw_model, model_dir)
        atomic_write_text(model_dir / "vocab.txt", Path(data.vocab_path).read_text())
    if dist_info.enabled:
        dist.barrier()
    raw_model.eval()
    return PretrainResult(
        model=raw_model, config=config, output_dir=output_dir, vocab_path=output_dir / "vocab.txt",
        tokenizer=data.tokenizer, metrics=read_metrics(metrics_path), evaluations=read_metrics(eval_path),
        evaluation=evaluation, step=step, train_time_s=train_time, steps_run=step - start_step, world_size=world,
        checkpoint=last_ckpt, model_dir=model_dir, data=data)


def _seed_rank_streams(seed: int, step: int, rank: int) -> None:
    """Dropout (torch CPU/CUDA), python and numpy streams of one rank, from (seed, step, rank)."""
    s = _derive_seed(seed, "rank-streams", step, rank)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)


# ---------------------------------------------------------------------------------------------
# The book's pre-trained model: trained once (chapter 09), shared with chapters 10 and 11
# ---------------------------------------------------------------------------------------------

def pretrained_dir(profile: str | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the book's pre-training run for ``profile`` and ``seed`` lives; nothing is built.

    ``<cache>/pretrain/<profile>/seed<seed>``, where ``<cache>`` is ``cache_dir`` or
    :func:`bertrepro.profiles.cache_dir` (``$BERTREPRO_CACHE_DIR``, else ``./.bertrepro_cache``).
    The final model (``config.json``, ``model.safetensors``, ``vocab.txt``) is in its ``model/``.
    """
    from .profiles import cache_dir as default_cache_dir, resolve_profile

    profile = resolve_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    root = Path(cache_dir) if cache_dir is not None else Path(default_cache_dir())
    return root / "pretrain" / profile / f"seed{seed}"


def _run_differences(saved: Mapping[str, Any], config: PretrainConfig) -> list[str]:
    """Settings (other than the run-only RESUMABLE ones) where a saved config.json differs from ``config``."""
    want = config.to_dict()
    keys = sorted((set(saved) | set(want)) - set(PretrainConfig.RESUMABLE))
    return [f"{k}: cached {saved.get(k)!r} vs now {want.get(k)!r}" for k in keys if saved.get(k) != want.get(k)]


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
        cache_dir: the cache root (default :func:`bertrepro.profiles.cache_dir`); the WordPiece
            vocabulary is cached in ``<cache_dir>/pretrain`` as :func:`prepare_data` does by default.
        device: where to train and put the model (None: CUDA when available, else CPU).
        build: False raises ``FileNotFoundError`` instead of training.
        progress: show the training progress bar.
    """
    from .profiles import resolve_profile

    config = PretrainConfig.for_profile(resolve_profile(profile), seed=seed, device=device)
    out = pretrained_dir(config.profile, seed, cache_dir)
    vocab_cache = out.parent.parent  # <cache>/pretrain
    saved_file = out / "config.json"
    if saved_file.is_file():
        try:
            diffs = _run_differences(json.loads(saved_file.read_text()), config)
        except json.JSONDecodeError as e:
            diffs = [f"unreadable config.json ({e})"]
        if diffs:
            if not build:
                raise FileNotFoundError(f"the run in {out} was made with other settings ({'; '.join(diffs)}) and "
                                        f"build=False; call pretrained_model(build=True) to train it again")
            warnings.warn(f"the cached pre-training run in {out} was made with other settings "
                          f"({'; '.join(diffs)}); removing it and training again")
            shutil.rmtree(out)
    model_dir = out / "model"
    metrics = read_metrics(out / "metrics.jsonl")
    finished = (all((model_dir / f).is_file() for f in ("config.json", "model.safetensors", "vocab.txt"))
                and bool(metrics) and metrics[-1].get("step") == config.stop_step)
    if not finished:
        if not build:
            raise FileNotFoundError(f"no finished pre-training run in {out}; run chapter 09, or call "
                                    f"pretrained_model({config.profile!r}, {seed}) with build=True")
        return pretrain(config, out, resume=latest_checkpoint(out) is not None, cache_dir=vocab_cache,
                        progress=progress)
    data = prepare_data(config, cache_dir=vocab_cache)
    if _file_sha256(data.vocab_path) != _file_sha256(model_dir / "vocab.txt"):
        raise CheckpointError(f"the cached vocabulary {data.vocab_path} differs from the one the model in {model_dir} "
                              f"was trained with; delete {out} to train again")
    model = load_pretrained(model_dir, target="BertForPreTraining").to(_resolve_device(config)).eval()
    evaluations = read_metrics(out / "eval.jsonl")
    return PretrainResult(
        model=model, config=config, output_dir=out, vocab_path=out / "vocab.txt", tokenizer=data.tokenizer,
        metrics=metrics, evaluations=evaluations, evaluation=evaluations[-1] if evaluations else {},
        step=int(metrics[-1]["step"]), train_time_s=0.0, steps_run=0, world_size=int(metrics[-1]["world_size"]),
        checkpoint=latest_checkpoint(out), model_dir=model_dir, data=data)


# ---------------------------------------------------------------------------------------------
# Command line: argparse over the PretrainConfig fields
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """``--profile`` and ``--output-dir``, one ``--field-name`` option per :class:`PretrainConfig`
    field (overriding the profile's preset), ``--resume`` and ``--cache-dir``."""
    parser = argparse.ArgumentParser(
        prog="python -m bertrepro.pretrain", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="preset: smoke | cpu | gpu (default: gpu with CUDA, else cpu)")
    parser.add_argument("--output-dir", required=True, help="where metrics, checkpoints and the model go")
    parser.add_argument("--resume", action="store_true", help="continue from the output dir's latest checkpoint")
    parser.add_argument("--cache-dir", default=None, help="vocabulary cache (default $BERTREPRO_CACHE_DIR or ./.bertrepro_cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in dataclasses.fields(PretrainConfig):
        if not f.init or f.name == "profile":
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if f.name == "compile":
            parser.add_argument(flag, action="store_true", default=None, help="torch.compile the model")
            continue
        base = typ.split("|")[0].strip()
        conv = {"int": int, "float": float, "str": str}.get(base)
        if conv is None:
            raise TypeError(f"no command-line type for PretrainConfig.{f.name}: {typ}")
        kwargs: dict[str, Any] = {"type": conv, "default": None, "help": f"({typ}; default: the profile's)"}
        if f.name == "objective":
            kwargs["choices"] = OBJECTIVES
        if f.name == "precision":
            kwargs["choices"] = ("auto", "fp32", "bf16")
        if f.name == "vocab":
            kwargs["choices"] = ("train", "bert-base-uncased")
        parser.add_argument(flag, **kwargs)
    return parser


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    from .profiles import resolve_profile

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
                 if f.init and f.name != "profile" and getattr(args, f.name, None) is not None}
    return PretrainConfig.for_profile(resolve_profile(args.profile), **overrides)


def main(argv: Sequence[str] | None = None) -> PretrainResult:
    """The command line; returns the :class:`PretrainResult` (so tests can call it)."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    result = pretrain(config, args.output_dir, resume=args.resume, cache_dir=args.cache_dir,
                      progress=not args.no_progress)
    if result.evaluation and (int(os.environ.get("RANK", "0")) == 0):
        print("held-out evaluation: " + json.dumps(result.evaluation), flush=True)
    return result


if __name__ == "__main__":
    main()
