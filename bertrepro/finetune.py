r"""Fine-tuning BERT on a sentence-level task (BERT §4.1, Appendix A.3; google-research/bert ``run_classifier.py``).

The paper's recipe: put one linear layer on the final hidden vector :math:`C` of ``[CLS]`` (after the
pooler), train *all* weights with Adam (lr from {5e-5, 4e-5, 3e-5, 2e-5} chosen on dev, linear warm-up
over the first 10 % of steps then linear decay, weight decay 0.01), batch 32, 3 epochs. The loss is
:math:`-\log \mathrm{softmax}(C W^\top)_{y}`.

This module also has the cheaper counterpart, a *linear probe*: logistic regression on frozen features
computed once per model (the feature-based approach of §5.3, with a linear classifier instead of a
BiLSTM), the book's offline task (11-way topic classification of Wikipedia articles that pre-training
never trained on), GLUE loaders for readers with a network, and the data-efficiency curve of chapter 10.

Example invocations::

    python -m bertrepro.finetune --arm minilm --per-class 10 --profile cpu
    python -m bertrepro.finetune --arm random --learning-rate 1e-4 3e-4 --epochs 3
    python -m bertrepro.finetune --task sst2 --arm minilm --online      # GLUE needs the network

Deviations from the reference code, each also noted where it happens:

* torch's ``AdamW`` applies bias correction; BERT's ``AdamWeightDecayOptimizer`` did not.
* The warm-up counts steps from 1, so the first step already has a non-zero learning rate.
* ``min_steps``: with a handful of labels, 3 epochs are a handful of steps; the small-data end of the
  book's curve trains for at least ``min_steps`` (Mosbach et al., 2021, recommend training longer on
  small data sets). The default, 0, is the paper's recipe.
* The ``smoke`` and ``cpu`` budgets (:data:`BUDGETS`) choose the learning rate from larger values than
  the paper's grid: small models, random weights and few steps need them (chosen on dev, like the
  paper's). The ``gpu`` budget uses the paper's grid.
* Dropout while fine-tuning is 0.1 (``FinetuneConfig.dropout``) whatever the pre-trained model used.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import BertConfig
from .model import BertForSequenceClassification, BertModel, init_weights

__all__ = [
    "PAPER_LEARNING_RATES", "PAPER_BATCH_SIZE", "PAPER_EPOCHS", "PAPER_WARMUP_PROPORTION",
    "FinetuneConfig", "Encoded", "encode_texts", "stratified_subsample", "POOLINGS",
    "extract_features", "LinearProbe", "train_probe", "accuracy", "select_by_dev",
    "classifier_from_encoder", "parameter_groups", "linear_warmup_decay", "fine_tune", "FinetuneResult", "predict",
    "GlueTask", "GLUE_TASKS", "GLUE_DATASET", "GLUE_OFFLINE_DEFAULT", "load_glue",
    "TASK_SEED", "TopicTask", "topic_task",
    "ARMS", "ARM_LABELS", "Arm", "load_arm",
    "Budget", "BUDGETS", "training_indices", "probe_curve", "finetune_curve", "mean_std", "summarize", "difference_test", "find_point", "compare",
    "plot_curves", "build_parser", "main",
]

PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)  # §4.1 / Appendix A.3 grid, chosen on dev
PAPER_BATCH_SIZE = 32
PAPER_EPOCHS = 3
PAPER_WARMUP_PROPORTION = 0.1


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters; the defaults are the paper's (Appendix A.3)."""

    learning_rate: float = 5e-5  # peak learning rate (the paper picks one of PAPER_LEARNING_RATES on dev)
    batch_size: int = PAPER_BATCH_SIZE  # sequences per step
    epochs: float = PAPER_EPOCHS  # passes over the training set
    min_steps: int = 0  # train at least this many steps (0 = the paper's recipe; see the module docstring)
    warmup_proportion: float = PAPER_WARMUP_PROPORTION  # fraction of steps with a linearly rising lr
    weight_decay: float = 0.01  # decoupled, on matrices only (not on biases and LayerNorm)
    adam_epsilon: float = 1e-6  # the original optimizer's epsilon
    max_grad_norm: float = 1.0  # global gradient-norm clipping, as run_classifier.py
    dropout: float | None = 0.1  # hidden and attention dropout while fine-tuning (App. A.3); None keeps the encoder's
    classifier_dropout: float | None = None  # dropout before the task layer; None = the hidden dropout
    max_seq_length: int = 128  # tokens per article, [CLS] and [SEP] included
    eval_batch_size: int = 128  # sequences per inference batch

    def __post_init__(self) -> None:
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        for name in ("batch_size", "eval_batch_size", "max_seq_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.max_seq_length < 2:
            raise ValueError(f"max_seq_length must be >= 2 to hold [CLS] and [SEP], got {self.max_seq_length}")
        if not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        if not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise ValueError(f"min_steps must be a non-negative int, got {self.min_steps!r}")
        if not 0.0 <= self.warmup_proportion < 1.0:
            raise ValueError(f"warmup_proportion must be in [0, 1), got {self.warmup_proportion!r}")
        if self.weight_decay < 0 or self.adam_epsilon <= 0 or self.max_grad_norm <= 0:
            raise ValueError(
                f"need weight_decay >= 0, adam_epsilon > 0, max_grad_norm > 0; got {self.weight_decay!r}, "
                f"{self.adam_epsilon!r}, {self.max_grad_norm!r}"
            )
        for name in ("dropout", "classifier_dropout"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be None or in [0, 1), got {v!r}")

    def num_steps(self, num_examples: int) -> int:
        """Optimizer steps for ``num_examples`` training examples: ``max(ceil(epochs * batches), min_steps)``."""
        if num_examples < 1:
            raise ValueError(f"need at least one training example, got {num_examples}")
        per_epoch = math.ceil(num_examples / self.batch_size)
        return max(math.ceil(self.epochs * per_epoch), self.min_steps)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# Encoded inputs
# ----------------------------------------------------------------------------------------------


@dataclass
class Encoded:
    """Token ids of a set of (single or paired) texts, padded to a common length T.

    input_ids, token_type_ids, attention_mask: (N, T) int64; attention_mask 1 = token, 0 = [PAD].
    """

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {t.shape for t in (self.input_ids, self.token_type_ids, self.attention_mask)}
        if len(shapes) != 1 or self.input_ids.dim() != 2:
            raise ValueError(
                "input_ids, token_type_ids and attention_mask must share one (N, T) shape, got "
                f"{tuple(self.input_ids.shape)}, {tuple(self.token_type_ids.shape)}, {tuple(self.attention_mask.shape)}"
            )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, index: torch.Tensor | slice) -> "Encoded":
        """Rows ``index``, trimmed to the longest of them (padding beyond it changes nothing)."""
        mask = self.attention_mask[index]
        T = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
        return Encoded(self.input_ids[index][:, :T], self.token_type_ids[index][:, :T], mask[:, :T])

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(self.input_ids.to(device), self.token_type_ids.to(device), self.attention_mask.to(device))

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)  # (N,)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_seq_length: int,
                 texts_b: Sequence[str] | None = None) -> Encoded:
    """Tokenize ``texts`` (and second segments ``texts_b``) as ``[CLS] A [SEP] (B [SEP])``, padded to ``max_seq_length``.

    ``tokenizer`` is a :class:`bertrepro.tokenization.WordPieceTokenizer` (every arm of the book uses
    one) or a ``transformers`` tokenizer. Longer inputs are truncated: a single text keeps its first
    ``max_seq_length - 2`` pieces; a pair is trimmed longest-first, as ``truncate_seq_pair``.
    """
    if isinstance(texts, str) or (texts_b is not None and isinstance(texts_b, str)):
        raise TypeError("texts and texts_b must be sequences of strings, not one string")
    texts = list(texts)
    if texts_b is not None and len(texts_b) != len(texts):
        raise ValueError(f"texts ({len(texts)}) and texts_b ({len(texts_b)}) must have the same length")
    if not texts:
        raise ValueError("no texts to encode")
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "cls_token_id"):  # bertrepro's WordPieceTokenizer
        enc = tokenizer.encode_batch(texts, list(texts_b) if texts_b is not None else None,
                                     max_length=max_seq_length, padding="max_length", truncation=True)
    elif callable(tokenizer) and hasattr(tokenizer, "model_max_length"):  # a transformers tokenizer
        enc = tokenizer(texts, list(texts_b) if texts_b is not None else None, padding="max_length",
                        truncation="longest_first", max_length=max_seq_length, return_tensors="pt",
                        return_token_type_ids=True, return_attention_mask=True)
    else:
        raise TypeError(f"unsupported tokenizer {type(tokenizer).__name__}; pass a bertrepro WordPieceTokenizer "
                        "or a transformers tokenizer")
    return Encoded(enc["input_ids"].long(), enc["token_type_ids"].long(), enc["attention_mask"].long())


# ----------------------------------------------------------------------------------------------
# Stratified subsampling (the x-axis of the data-efficiency curve)
# ----------------------------------------------------------------------------------------------


def stratified_subsample(labels: torch.Tensor, per_class: int, generator: torch.Generator,
                         cap: bool = False) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class present in ``labels`` (sorted).

    With the same generator state, the draws are nested: the 10-per-class sample contains the
    3-per-class one. ``cap=True`` takes every example of a class that has fewer than ``per_class``;
    otherwise such a class is an error.

    Args:
        labels: (N,) int64 class ids.
        per_class: examples to draw from each class (>= 1).
        generator: a CPU ``torch.Generator``; the draw depends only on its state.
    Returns:
        (n,) int64 sorted indices into ``labels``.
    """
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    labels = labels.cpu().long()
    classes, counts = torch.unique(labels, return_counts=True)
    if not cap and (counts < per_class).any():
        short = {int(c): int(n) for c, n in zip(classes, counts) if n < per_class}
        raise ValueError(
            f"per_class={per_class} but some classes have fewer examples {short} (class: count); "
            "lower per_class or pass cap=True to take all of them"
        )
    perm = torch.randperm(len(labels), generator=generator)  # a random order of all examples
    order = perm[torch.sort(labels[perm], stable=True).indices]  # grouped by class, random within a class
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)  # first position of each class
    rank = torch.arange(len(labels)) - starts  # rank of each example within its class
    return torch.sort(order[rank < per_class]).values


# ----------------------------------------------------------------------------------------------
# Frozen features and the linear probe
# ----------------------------------------------------------------------------------------------

POOLINGS = ("cls", "mean", "pooler")


def _batches_by_length(data: Encoded, batch_size: int) -> Iterable[torch.Tensor]:
    """Index batches of similar length (less padding); the caller restores the original order."""
    order = torch.argsort(data.lengths, descending=True, stable=True)
    return torch.split(order, batch_size)


@torch.no_grad()
def extract_features(encoder: BertModel, data: Encoded, poolings: Sequence[str] = ("cls", "mean"),
                     batch_size: int = 128, device: torch.device | str = "cpu",
                     progress: bool = True, desc: str = "features") -> dict[str, torch.Tensor]:
    """Frozen sentence features of ``encoder`` for every row of ``data``.

    * ``"cls"``: the final hidden vector of ``[CLS]`` (before the pooler),
    * ``"mean"``: the mean of the final hidden vectors over the real tokens (``[CLS]``/``[SEP]`` included),
    * ``"pooler"``: :math:`C = \\tanh(W h_{[CLS]} + b)`, the vector the task layer of §4.1 sees.

    Returns ``{pooling: (N, H) float32 on CPU}``.
    """
    if not isinstance(encoder, BertModel):
        raise TypeError(f"encoder must be a bertrepro BertModel, got {type(encoder).__name__}")
    bad = [p for p in poolings if p not in POOLINGS]
    if bad or not poolings:
        raise ValueError(f"unknown pooling(s) {bad}; choose from {POOLINGS}")
    if "pooler" in poolings and encoder.pooler is None:
        raise ValueError("pooling 'pooler' needs an encoder with a pooling layer (add_pooling_layer=True)")
    from .progress import bar as tqdm

    was_training = encoder.training
    encoder.eval().to(device)
    out = {p: torch.empty(len(data), encoder.config.hidden_size) for p in poolings}
    autocast = _autocast(device)
    for idx in tqdm(list(_batches_by_length(data, batch_size)), desc=desc, disable=not progress, leave=False):
        batch = data[idx].to(device)
        with autocast:
            o = encoder(batch.input_ids, batch.token_type_ids, batch.attention_mask)
        h = o.last_hidden_state.float()  # (b, T, H)
        if "cls" in poolings:
            out["cls"][idx] = h[:, 0].cpu()
        if "mean" in poolings:
            m = batch.attention_mask.unsqueeze(-1).to(h.dtype)  # (b, T, 1)
            out["mean"][idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1)).cpu()
        if "pooler" in poolings:
            out["pooler"][idx] = o.pooler_output.float().cpu()
    encoder.train(was_training)
    return out


class LinearProbe(nn.Module):
    """Multinomial logistic regression on standardized features: ``W (x - mu) / sigma + b``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_labels: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.linear = nn.Linear(mean.numel(), num_labels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)  # (N, num_labels)


def train_probe(features: torch.Tensor, labels: torch.Tensor, num_labels: int, l2: float = 1e-2,
                max_iter: int = 100, mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> LinearProbe:
    r"""Fit a linear probe by full-batch L-BFGS on :math:`\frac1N\sum_i -\log p(y_i|x_i) + \frac{\lambda}{2}\|W\|^2`.

    The problem is convex and starts from zero weights, so the result is deterministic.

    Args:
        features: (N, H) frozen features; labels: (N,) int64 in ``[0, num_labels)``.
        l2: the weight penalty :math:`\lambda` (the bias is not penalized).
        mean, std: (H,) standardization statistics (default: those of ``features``); the book passes
            statistics of the whole unlabeled pool, which stay stable when N is tiny.
    """
    features, labels = _check_xy(features, labels, num_labels)
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"need l2 >= 0 and max_iter >= 1, got l2={l2!r}, max_iter={max_iter!r}")
    mean = features.mean(0) if mean is None else mean
    std = (features.std(0, unbiased=False) if std is None else std).clamp(min=1e-6)
    probe = LinearProbe(mean.float(), std.float(), num_labels)
    x = (features.float() - probe.mean) / probe.std  # standardized once, outside the closure
    opt = torch.optim.LBFGS(probe.linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-5, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    w = probe.linear.weight

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(probe.linear(x), labels) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return probe.eval()


def _check_xy(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    if features.dim() != 2 or labels.dim() != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"need features (N, H) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    if features.shape[0] == 0:
        raise ValueError("need at least one training example, got 0")
    labels = labels.long()
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ValueError(
            f"labels must lie in [0, num_labels={num_labels}); found min {int(labels.min())}, max {int(labels.max())}"
        )
    return features, labels


def accuracy(logits_or_predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions (arg-max over the last axis when given logits)."""
    pred = logits_or_predictions.argmax(-1) if logits_or_predictions.dim() == 2 else logits_or_predictions
    if pred.shape != labels.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(labels.shape)} differ in shape")
    return float((pred.cpu() == labels.cpu()).float().mean())


def select_by_dev(grid: Sequence[Any], score: Callable[[Any], float]) -> tuple[Any, dict[Any, float]]:
    """The grid value with the best dev ``score`` (the first one on ties) and every score.

    The paper picks the fine-tuning learning rate this way (§4.1); the probe picks its L2 penalty.
    """
    grid = list(grid)
    if not grid:
        raise ValueError("the grid is empty; pass at least one value to choose from")
    scores = {g: float(score(g)) for g in grid}
    best = max(grid, key=lambda g: (scores[g], -grid.index(g)))
    return best, scores


# ----------------------------------------------------------------------------------------------
# Full fine-tuning
# ----------------------------------------------------------------------------------------------


def classifier_from_encoder(encoder: BertModel, num_labels: int, seed: int = 0, dropout: float | None = None,
                            classifier_dropout: float | None = None) -> BertForSequenceClassification:
    """A fresh :class:`BertForSequenceClassification` holding a copy of ``encoder``'s weights.

    The task layer (``classifier``, H x num_labels) is initialized from ``seed`` with the model's
    truncated normal; the encoder is copied, so ``encoder`` itself is never modified. ``dropout``
    replaces the encoder's hidden and attention dropout (None keeps them).
    """
    if not isinstance(encoder, BertModel):
        raise TypeError(f"encoder must be a bertrepro BertModel, got {type(encoder).__name__}")
    if encoder.pooler is None:
        raise ValueError("the encoder has no pooler; fine-tuning puts the task layer on the pooled [CLS] vector C")
    config = encoder.config
    if dropout is not None:
        config = dataclasses.replace(config, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    device = next(encoder.parameters()).device
    # Built on the meta device: initializing an encoder that is overwritten at once costs seconds at MiniLM's size.
    with torch.device("meta"):
        model = BertForSequenceClassification(config, num_labels, classifier_dropout=classifier_dropout)
    model = model.to_empty(device=device)
    model.bert.load_state_dict(encoder.state_dict(), strict=True)  # copies: the encoder is left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init_weights(model.classifier, config.initializer_range)
    return model


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay the matrices (dim >= 2), not the biases and LayerNorm gains (as BERT's optimizer)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    assert len(decay) + len(no_decay) == len(params)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(num_steps: int, warmup_proportion: float) -> Callable[[int], float]:
    """The learning-rate multiplier for step ``s`` (0-based): a linear rise over ``w = int(p N)`` steps, then linear decay.

    ``(s + 1) / w`` while ``s < w``, then ``(N - s) / (N - w)``: it reaches 1 at the end of warm-up and
    1/(N - w) at the last step (the original starts at 0 and reaches 0 one step after the end).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    warmup = int(num_steps * warmup_proportion)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (num_steps - step) / max(1, num_steps - warmup))

    return factor


@dataclass
class FinetuneResult:
    model: BertForSequenceClassification
    losses: list[float]  # training loss at every step
    learning_rates: list[float]  # learning rate used at every step
    steps: int
    seconds: float


def _autocast(device: torch.device | str):
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def fine_tune(model: BertForSequenceClassification, data: Encoded, labels: torch.Tensor, config: FinetuneConfig,
              seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
              desc: str = "fine-tune") -> FinetuneResult:
    """Train every weight of ``model`` on ``(data, labels)`` with the paper's recipe (§4.1, App. A.3).

    Shuffling and dropout draw from ``seed`` only (the global RNG is left as it was), so a seeded
    run on the CPU is deterministic. Returns the trained model (the same object) and its loss curve.
    """
    if not isinstance(model, BertForSequenceClassification):
        raise TypeError(f"model must be a BertForSequenceClassification, got {type(model).__name__}")
    if len(data) != labels.shape[0]:
        raise ValueError(f"data has {len(data)} rows but labels has {labels.shape[0]}")
    _check_xy(torch.empty(len(data), 0), labels, model.num_labels)
    from .progress import bar as tqdm

    n, B = len(data), config.batch_size
    steps = config.num_steps(n)
    model.to(device).train()
    opt_kwargs = {"fused": True} if torch.device(device).type == "cuda" else {}
    opt = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate,
                            betas=(0.9, 0.999), eps=config.adam_epsilon, **opt_kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(steps, config.warmup_proportion))
    g = torch.Generator().manual_seed(seed)
    labels = labels.long()
    losses, lrs = [], []
    autocast = _autocast(device)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)  # dropout
        batches: list[torch.Tensor] = []
        for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
            if not batches:  # a new epoch: a fresh permutation cut into batches
                batches = list(torch.split(torch.randperm(n, generator=g), B))[::-1]
            idx = batches.pop()
            batch = data[idx].to(device)
            with autocast:
                loss, _ = model(batch.input_ids, batch.token_type_ids, batch.attention_mask, labels[idx].to(device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
    model.eval()
    return FinetuneResult(model, torch.stack(losses).float().cpu().tolist(), lrs, steps, time.perf_counter() - t0)


@torch.no_grad()
def predict(model: BertForSequenceClassification, data: Encoded, batch_size: int = 128,
            device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Logits (N, num_labels) of ``model`` in eval mode, on the CPU."""
    from .progress import bar as tqdm

    was_training = model.training
    model.eval().to(device)
    out = torch.empty(len(data), model.num_labels)
    with _autocast(device):
        for idx in tqdm(list(_batches_by_length(data, batch_size)), desc="predict", disable=not progress, leave=False):
            b = data[idx].to(device)
            out[idx] = model(b.input_ids, b.token_type_ids, b.attention_mask)[1].float().cpu()
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------------------------
# GLUE (online only)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_a: str  # column of the first segment
    text_b: str | None  # column of the second segment (None: single sentences)
    num_labels: int
    dev_split: str  # the split the paper's dev numbers come from


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("sst2", "sentence", None, 2, "validation"),
    "mrpc": GlueTask("mrpc", "sentence1", "sentence2", 2, "validation"),
    "mnli": GlueTask("mnli", "premise", "hypothesis", 3, "validation_matched"),
}
GLUE_DATASET = "nyu-mll/glue"


GLUE_OFFLINE_DEFAULT = "the topic task (python -m bertrepro.finetune --task topics)"


def load_glue(name: str, max_examples: int | None = None) -> dict[str, dict[str, Any]]:
    """GLUE task ``name`` (sst2, mrpc, mnli) from the Hugging Face Hub: ``{"train": ..., "dev": ...}``.

    Each split is ``{"texts_a": [...], "texts_b": [...] or None, "labels": (N,) int64}``; ``max_examples``
    keeps the first N of each split. GLUE's test labels are hidden (the paper's Table 1 comes from the
    GLUE server), so compare with the dev numbers of the paper's Tables 5 and 6.

    Raises:
        ValueError: an unknown task.
        bertrepro.data.NetworkRequiredError: within seconds, naming the offline default, when the
            offline switches are on (the book's default) and no cached copy exists, or the Hub is
            unreachable. Go online with ``python -m bertrepro.book --online`` (``make book ONLINE=1``)
            or ``python -m bertrepro.finetune --task sst2 --online``.
    """
    if name not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; available: {', '.join(GLUE_TASKS)}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1, got {max_examples}")
    from .data import load_hub_dataset

    task = GLUE_TASKS[name]
    ds = load_hub_dataset(GLUE_DATASET, name, default=GLUE_OFFLINE_DEFAULT)
    out = {}
    for split, key in (("train", "train"), ("dev", task.dev_split)):
        rows = ds[key] if max_examples is None else ds[key].select(range(min(max_examples, len(ds[key]))))
        out[split] = {"texts_a": list(rows[task.text_a]),
                      "texts_b": list(rows[task.text_b]) if task.text_b else None,
                      "labels": torch.tensor(rows["label"], dtype=torch.long)}
    return out


# ----------------------------------------------------------------------------------------------
# The book's offline task: topics of held-out Wikipedia articles
# ----------------------------------------------------------------------------------------------

TASK_SEED = 12345  # the dev/test division and the training draws do not depend on a chapter's seed alone


@dataclass
class TopicTask:
    """11-way topic classification of Wikipedia articles that pre-training never trained on.

    ``pool``: the labeled articles the training sets are drawn from (the corpus's validation split);
    ``dev``: a few articles per topic from the corpus's test split, for choosing hyper-parameters;
    ``test``: the rest of the test split, used only to report accuracy.
    Each split is ``{"texts": [...], "labels": (N,) int64}`` with labels indexing ``label_names``.
    """

    label_names: tuple[str, ...]
    pool: dict[str, Any]
    dev: dict[str, Any]
    test: dict[str, Any]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> dict[str, Any]:
        if name not in ("pool", "dev", "test"):
            raise ValueError(f"unknown split {name!r}; the task has pool, dev and test")
        return getattr(self, name)

    def counts(self) -> dict[str, list[int]]:
        """Articles per topic in each split (in ``label_names`` order)."""
        return {s: torch.bincount(self.split(s)["labels"], minlength=self.num_labels).tolist()
                for s in ("pool", "dev", "test")}


def _select(split: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    """Rows ``idx`` of a task split."""
    return {"texts": [split["texts"][i] for i in idx.tolist()], "labels": split["labels"][idx]}


def topic_task(corpus: Any = "wiki-vital", dev_per_class: int = 8, max_per_class: int | None = None) -> TopicTask:
    """The topic task on the held-out splits of :func:`bertrepro.data.load_corpus`.

    Pre-training trains only on the corpus's ``train`` split, so no article of the task was trained
    on. Topics come from :func:`bertrepro.data.topic_task` ("Uncategorized" left out, ids in
    :data:`bertrepro.data.TOPICS` order).

    Args:
        corpus: a corpus name for ``load_corpus`` or a mapping with ``validation`` and ``test`` splits.
        dev_per_class: articles per topic moved from the test split to the dev set.
        max_per_class: keep at most this many articles per topic in the pool and in the test set
            (the ``smoke`` profile; None keeps all).
    """
    from .data import TOPICS, load_corpus
    from .data import topic_task as texts_and_topics

    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    missing = [s for s in ("validation", "test") if s not in corpus]
    if missing:
        raise ValueError(f"the corpus lacks split(s) {missing}; the task is built from its held-out validation and test splits")

    def pack(split):
        texts, labels = texts_and_topics(split)
        return {"texts": list(texts), "labels": torch.tensor(labels, dtype=torch.long)}

    pool, rest = pack(corpus["validation"]), pack(corpus["test"])
    dev_idx = stratified_subsample(rest["labels"], dev_per_class, torch.Generator().manual_seed(TASK_SEED))
    is_dev = torch.zeros(len(rest["labels"]), dtype=torch.bool)
    is_dev[dev_idx] = True
    dev, test = _select(rest, dev_idx), _select(rest, (~is_dev).nonzero().flatten())
    if max_per_class is not None:
        pool, test = (_select(s, stratified_subsample(s["labels"], max_per_class,
                                                      torch.Generator().manual_seed(TASK_SEED), cap=True))
                      for s in (pool, test))
    return TopicTask(tuple(TOPICS), pool, dev, test)


# ----------------------------------------------------------------------------------------------
# The three arms (plus a random MiniLM-shaped control)
# ----------------------------------------------------------------------------------------------

ARMS = ("random", "pretrained", "minilm", "minilm-random")
ARM_LABELS = {
    "random": "random init (chapter-09 shape)",
    "pretrained": "pre-trained in chapter 09",
    "minilm": "all-MiniLM-L6-v2 (real pre-training)",
    "minilm-random": "random init (MiniLM shape)",
}


@dataclass
class Arm:
    """An encoder to fine-tune or probe, with the tokenizer of its vocabulary."""

    name: str
    encoder: BertModel
    tokenizer: Any
    description: str

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())


def _check_arm(name: str) -> str:
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; valid arms are {', '.join(ARMS)}")
    return name


def _wordpiece_tokenizer(vocab_path: Path):
    from .tokenization import WordPieceTokenizer

    return WordPieceTokenizer.from_vocab(str(vocab_path))


def load_arm(name: str, pretrained_dir: str | os.PathLike | None = None, seed: int = 0) -> Arm:
    """Build arm ``name``.

    * ``"pretrained"``: the encoder of the model pre-trained in chapter 09, read from
      ``pretrained_dir`` (``config.json``, ``model.safetensors``, ``vocab.txt``: the ``model_dir`` of
      :func:`bertrepro.pretrain.pretrained_model`);
    * ``"random"``: the same architecture and vocabulary, randomly initialized from ``seed``;
    * ``"minilm"``: all-MiniLM-L6-v2 with its bert-base-uncased tokenizer;
    * ``"minilm-random"``: MiniLM's architecture and tokenizer, randomly initialized from ``seed``.
    """
    from .checkpoints import load_pretrained, minilm_dir

    _check_arm(name)
    if name in ("minilm", "minilm-random"):
        path = minilm_dir()  # its vocab.txt is bert-base-uncased's; our tokenizer matches BertTokenizerFast on it
        tokenizer = _wordpiece_tokenizer(path / "vocab.txt")
    else:
        if pretrained_dir is None:
            raise ValueError(f"arm {name!r} needs pretrained_dir, the chapter-09 model directory "
                             "(bertrepro.pretrain.pretrained_model(profile).model_dir)")
        path = Path(pretrained_dir)
        if not (path / "vocab.txt").is_file():
            raise ValueError(f"{str(path)!r} has no vocab.txt; pass the model/ directory that pretrain() writes")
        tokenizer = _wordpiece_tokenizer(path / "vocab.txt")
    if name in ("random", "minilm-random"):  # the architecture only
        config = BertConfig.from_hf(json.loads((path / "config.json").read_text()))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = BertModel(config, add_pooling_layer=True)
    else:
        encoder = load_pretrained(path, target="BertModel")
    return Arm(name, encoder.eval(), tokenizer, ARM_LABELS[name])


# ----------------------------------------------------------------------------------------------
# Budgets per profile and the data-efficiency curve
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """What chapter 10 runs at one profile."""

    max_seq_length: int  # tokens per article
    dev_per_class: int  # dev articles per topic
    max_per_class: int | None  # cap on pool and test articles per topic (smoke only)
    probe_sizes: tuple[int | str, ...]  # labeled articles per topic; "all" = the whole pool
    probe_seeds: int  # training-set draws per size
    l2_grid: tuple[float, ...]  # probe penalties, chosen on dev
    finetune_sizes: Mapping[str, tuple[int | str, ...]]  # per arm
    finetune_seeds: Mapping[str, int]  # per arm
    learning_rates: Mapping[str, tuple[float, ...]]  # per arm, chosen on dev with the first seed
    batch_size: int
    epochs: float
    min_steps: int


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(max_seq_length=32, dev_per_class=2, max_per_class=4, probe_sizes=(1, 2, "all"), probe_seeds=2,
                    l2_grid=(1e-2, 1e-1), finetune_sizes={"random": (2,), "pretrained": (2,), "minilm": (2,)},
                    finetune_seeds={"random": 2, "pretrained": 2, "minilm": 2},
                    learning_rates={a: (1e-3,) for a in ARMS}, batch_size=8, epochs=1, min_steps=2),
    # 2 cores, about 4 minutes: MiniLM (22M parameters) is fine-tuned at one size, with 2 seeds
    # (its seed-to-seed spread is small); the small models need larger learning rates.
    "cpu": Budget(max_seq_length=64, dev_per_class=8, max_per_class=None, probe_sizes=(1, 3, 10, 30, "all"),
                  probe_seeds=5, l2_grid=(1e-3, 1e-2, 1e-1, 1.0),
                  finetune_sizes={"random": (10, "all"), "pretrained": (10, "all"), "minilm": (10,)},
                  finetune_seeds={"random": 3, "pretrained": 3, "minilm": 2},
                  learning_rates={"random": (1e-3, 3e-3), "pretrained": (1e-3, 3e-3), "minilm": (1e-4, 3e-4),
                                  "minilm-random": (1e-3, 3e-3)},
                  batch_size=PAPER_BATCH_SIZE, epochs=PAPER_EPOCHS, min_steps=30),
    "gpu": Budget(max_seq_length=128, dev_per_class=8, max_per_class=None, probe_sizes=(1, 3, 10, 30, "all"),
                  probe_seeds=10, l2_grid=(1e-3, 1e-2, 1e-1, 1.0),
                  finetune_sizes={a: (3, 10, 30, "all") for a in ("random", "pretrained", "minilm")},
                  finetune_seeds={a: 5 for a in ("random", "pretrained", "minilm")},
                  learning_rates={a: PAPER_LEARNING_RATES for a in ARMS},
                  batch_size=PAPER_BATCH_SIZE, epochs=PAPER_EPOCHS, min_steps=30),
}


def training_indices(labels: torch.Tensor, size: int | str, seed: int) -> torch.Tensor:
    """The training articles of one curve point: ``size`` per topic (all of a smaller topic), or ``"all"``.

    Draws with the same ``seed`` are nested across sizes, and every arm gets the same articles.
    """
    if size == "all":
        return torch.arange(len(labels))
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(f"size must be a number of articles per class or 'all', got {size!r}")
    return stratified_subsample(labels, size, torch.Generator().manual_seed(TASK_SEED + seed), cap=True)


def probe_curve(features: Mapping[str, Mapping[str, torch.Tensor]], task: TopicTask, sizes: Sequence[int | str],
                seeds: int, l2_grid: Sequence[float], progress: bool = True) -> list[dict[str, Any]]:
    """Linear-probe accuracy for every arm, size and seed.

    ``features[arm]`` holds ``"pool"``, ``"dev"`` and ``"test"`` (N, H) features. As for fine-tuning,
    the L2 penalty is chosen on dev with the first seed and reused for the others; ``"all"`` is one
    point (every seed would draw the same articles, and the probe is deterministic). Returns one row
    per (arm, size, seed) with ``accuracy`` on the test set.
    """
    from .progress import bar as tqdm

    y = {s: task.split(s)["labels"] for s in ("pool", "dev", "test")}
    rows = []
    jobs = [(a, size, seed) for a in features for size in sizes for seed in range(1 if size == "all" else seeds)]
    chosen: dict[tuple, float] = {}
    for arm, size, seed in tqdm(jobs, desc="linear probes", disable=not progress, leave=False):
        f = features[arm]
        idx = training_indices(y["pool"], size, seed)
        mean, std = f["pool"].mean(0), f["pool"].std(0, unbiased=False)  # unlabeled pool statistics
        fit = {}

        def dev_acc(l2):
            fit[l2] = train_probe(f["pool"][idx], y["pool"][idx], task.num_labels, l2=l2, mean=mean, std=std)
            return accuracy(fit[l2](f["dev"]), y["dev"])

        l2, scores = select_by_dev([chosen[arm, size]] if (arm, size) in chosen else l2_grid, dev_acc)
        chosen[arm, size] = l2
        rows.append({"arm": arm, "regime": "probe", "size": size, "n_train": len(idx), "seed": seed, "choice": l2,
                     "dev_accuracy": scores[l2], "n_test": len(y["test"]),
                     "accuracy": accuracy(fit[l2](f["test"]), y["test"])})
    return rows


def finetune_curve(arms: Mapping[str, Arm], encoded: Mapping[str, Mapping[str, Encoded]], task: TopicTask,
                   sizes: Mapping[str, Sequence[int | str]], seeds: int | Mapping[str, int],
                   learning_rates: Mapping[str, Sequence[float]],
                   config: FinetuneConfig, device: torch.device | str = "cpu", progress: bool = True) -> list[dict[str, Any]]:
    """Fine-tuning accuracy for every arm, size and seed.

    The learning rate is chosen on dev from ``learning_rates[arm]`` with the first seed and reused for
    the others (the paper chooses it once per task, §4.1). ``encoded[arm]`` holds the arm's
    ``"pool"``, ``"dev"`` and ``"test"`` encodings; ``seeds`` is one count or one per arm.
    """
    from .progress import bar as tqdm

    y = {s: task.split(s)["labels"] for s in ("pool", "dev", "test")}
    n_seeds = {a: seeds if isinstance(seeds, int) else seeds[a] for a in arms}
    bad = {a: n for a, n in n_seeds.items() if not isinstance(n, int) or n < 1}
    if bad:
        raise ValueError(f"every arm needs at least one seed, got {bad}")
    rows = []
    jobs = [(a, size) for a in arms for size in sizes.get(a, ())]
    bar = tqdm(total=sum(len(learning_rates[a]) + n_seeds[a] - 1 for a, _ in jobs), desc="fine-tuning",
               disable=not progress, leave=False)
    for arm, size in jobs:
        enc, encoder = encoded[arm], arms[arm].encoder
        chosen = None
        for seed in range(n_seeds[arm]):
            idx = training_indices(y["pool"], size, seed)
            grid = learning_rates[arm] if chosen is None else (chosen,)
            results = {}

            def dev_acc(lr):
                model = classifier_from_encoder(encoder, task.num_labels, seed=seed, dropout=config.dropout,
                                                classifier_dropout=config.classifier_dropout)
                cfg = config.replace(learning_rate=lr)
                results[lr] = fine_tune(model, enc["pool"][idx], y["pool"][idx], cfg, seed=seed, device=device,
                                        progress=False)
                bar.update(1)
                return accuracy(predict(model, enc["dev"], config.eval_batch_size, device), y["dev"])

            lr, scores = select_by_dev(grid, dev_acc)
            chosen = lr
            best = results[lr]
            rows.append({"arm": arm, "regime": "finetune", "size": size, "n_train": len(idx), "seed": seed,
                         "choice": lr, "dev_accuracy": scores[lr], "dev_scores": scores, "steps": best.steps,
                         "seconds": best.seconds, "final_loss": best.losses[-1], "n_test": len(y["test"]),
                         "accuracy": accuracy(predict(best.model, enc["test"], config.eval_batch_size, device), y["test"])})
            del results
    bar.close()
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    v = torch.tensor(list(values), dtype=torch.float64)
    if v.numel() == 0:
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, regime, size): mean and std of the accuracy over seeds."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["regime"], r["size"]), []).append(r)
    out = []
    for (arm, regime, size), rs in groups.items():
        m, s = mean_std([r["accuracy"] for r in rs])
        out.append({"arm": arm, "regime": regime, "size": size, "n_train": round(sum(r["n_train"] for r in rs) / len(rs)),
                    "mean": m, "std": s, "seeds": len(rs), "n_test": min(r.get("n_test", 1) for r in rs)})
    return out


def difference_test(a: Mapping[str, Any], b: Mapping[str, Any], sigmas: float = 2.0) -> dict[str, float | bool]:
    """Is summary row ``a`` ahead of summary row ``b`` by more than ``sigmas`` standard errors?

    The standard error of the difference of the two mean accuracies adds both sources of noise: the
    seed-to-seed spread of each mean (:math:`s^2/k` over its :math:`k` seeds) and the binomial noise of
    a test set of :math:`n` articles (:math:`p(1-p)/n` for each accuracy :math:`p`). With two
    standard errors, "ahead" is roughly a 95 % one-sided test.
    """
    n = max(1, min(a["n_test"], b["n_test"]))
    se = math.sqrt(a["std"] ** 2 / a["seeds"] + b["std"] ** 2 / b["seeds"]
                   + a["mean"] * (1 - a["mean"]) / n + b["mean"] * (1 - b["mean"]) / n)
    diff = a["mean"] - b["mean"]
    return {"difference": diff, "standard_error": se, "ahead": diff > sigmas * se, "n_test": n}


def find_point(summary: Sequence[Mapping[str, Any]], arm: str, regime: str, size: int | str) -> Mapping[str, Any]:
    """The summary row of one (arm, regime, size)."""
    for r in summary:
        if r["arm"] == arm and r["regime"] == regime and r["size"] == size:
            return r
    raise ValueError(f"no {regime} result for arm {arm!r} at size {size!r}; measured: "
                     f"{sorted({(r['arm'], r['regime'], str(r['size'])) for r in summary})}")


def compare(summary: Sequence[Mapping[str, Any]], arm: str, baseline: str, regime: str, size: int | str,
            sigmas: float = 2.0) -> dict[str, Any]:
    """Does ``arm`` beat ``baseline`` at one point of the curve? (:func:`difference_test`)"""
    a, b = find_point(summary, arm, regime, size), find_point(summary, baseline, regime, size)
    t = difference_test(a, b, sigmas)
    return {"arm": arm, "baseline": baseline, "regime": regime, "size": size, "difference": t["difference"],
            "standard_error": t["standard_error"], "helps": t["ahead"], "arm_mean": a["mean"], "arm_std": a["std"],
            "baseline_mean": b["mean"], "baseline_std": b["std"], "seeds": min(a["seeds"], b["seeds"]),
            "n_test": t["n_test"]}


def plot_curves(summary: Sequence[Mapping[str, Any]], ax=None, title: str | None = None):
    """Accuracy against labeled articles, mean ± std over seeds, one line per arm and regime."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"random": "tab:gray", "pretrained": "tab:blue", "minilm": "tab:green", "minilm-random": "tab:olive"}
    for (arm, regime) in sorted({(r["arm"], r["regime"]) for r in summary}, key=lambda k: (k[1], ARMS.index(k[0]))):
        pts = sorted((r for r in summary if r["arm"] == arm and r["regime"] == regime), key=lambda r: r["n_train"])
        ax.errorbar([p["n_train"] for p in pts], [p["mean"] for p in pts], yerr=[p["std"] for p in pts],
                    color=colors[arm], linestyle="-" if regime == "finetune" else "--",
                    marker="o" if regime == "finetune" else "s", capsize=3, markersize=4,
                    label=f"{ARM_LABELS[arm]}, {'fine-tuned' if regime == 'finetune' else 'linear probe'}")
    ax.set_xscale("log")
    ax.set_xlabel("labeled training articles")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _size(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--per-class takes a positive integer or 'all', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"--per-class must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bertrepro.finetune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="topics", choices=("topics", *GLUE_TASKS),
                   help="topics: the offline Wikipedia task (default); sst2/mrpc/mnli need --online")
    p.add_argument("--arm", default="minilm", choices=ARMS, help="which encoder to fine-tune (default minilm)")
    p.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: gpu with CUDA, else cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--per-class", type=_size, default=None,
                   help="topics: labeled articles per topic, or 'all' (default: the profile's first fine-tuning size)")
    p.add_argument("--learning-rate", type=float, nargs="+", default=None,
                   help="the grid to choose from on dev (default: the profile's grid; GLUE: the paper's)")
    defaults = FinetuneConfig()
    for name in ("epochs", "batch_size", "min_steps", "max_seq_length", "warmup_proportion", "weight_decay",
                 "dropout", "eval_batch_size"):
        typ = type(getattr(defaults, name)) if getattr(defaults, name) is not None else float
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=f"FinetuneConfig.{name} (default: the profile's value or {getattr(defaults, name)!r})")
    p.add_argument("--pretrained-dir", default=None,
                   help="chapter-09 model directory for arms random/pretrained (default: the cache, pre-trained if absent)")
    p.add_argument("--max-examples", type=int, default=None, help="GLUE: keep the first N examples of each split")
    p.add_argument("--online", action="store_true", help="turn the Hugging Face offline switches off (GLUE)")
    p.add_argument("--output-dir", default=None, help="where config.json and result.json go (default runs/finetune-TASK-ARM)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fine-tune one arm on one task, choosing the learning rate on dev; returns (and writes) the result."""
    from .checkpoints import atomic_write_text
    from .profiles import OFFLINE_ENV, setup

    args = build_parser().parse_args(argv)
    if args.online:
        for k in OFFLINE_ENV:
            os.environ[k] = "0"
    run = setup(profile=args.profile, seed=args.seed, device=args.device)
    budget = BUDGETS[run.profile]
    progress = not args.no_progress
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "min_steps", "max_seq_length",
                                                "warmup_proportion", "weight_decay", "dropout", "eval_batch_size")
                 if getattr(args, k) is not None}
    is_glue = args.task in GLUE_TASKS
    base = dict(batch_size=budget.batch_size, epochs=budget.epochs, max_seq_length=budget.max_seq_length)
    if not is_glue:
        base["min_steps"] = budget.min_steps
    config = FinetuneConfig(**{**base, **overrides})
    grid = tuple(args.learning_rate or (PAPER_LEARNING_RATES if is_glue else budget.learning_rates[args.arm]))
    out_dir = Path(args.output_dir or f"runs/finetune-{args.task}-{args.arm}")

    if is_glue:
        data = load_glue(args.task, args.max_examples)  # fails at once when offline
        num_labels = GLUE_TASKS[args.task].num_labels
    pretrained_dir = args.pretrained_dir
    if args.arm in ("random", "pretrained") and pretrained_dir is None:
        from .pretrain import pretrained_model

        pretrained_dir = pretrained_model(run.profile, progress=progress).model_dir  # trained now if not cached
    arm = load_arm(args.arm, pretrained_dir, seed=run.seed)
    if is_glue:
        enc = {s: encode_texts(arm.tokenizer, d["texts_a"], config.max_seq_length, d["texts_b"]) for s, d in data.items()}
        labels = {s: d["labels"] for s, d in data.items()}
        train_x, train_y, eval_name = enc["train"], labels["train"], "dev"
        dev_x, dev_y = enc["dev"], labels["dev"]
        eval_x, eval_y = dev_x, dev_y
        size = None
    else:
        task = topic_task(dev_per_class=budget.dev_per_class, max_per_class=budget.max_per_class)
        num_labels = task.num_labels
        size = args.per_class or budget.finetune_sizes.get(args.arm, budget.probe_sizes)[0]
        idx = training_indices(task.pool["labels"], size, run.seed)
        enc = {s: encode_texts(arm.tokenizer, task.split(s)["texts"], config.max_seq_length) for s in ("pool", "dev", "test")}
        train_x, train_y = enc["pool"][idx], task.pool["labels"][idx]
        dev_x, dev_y = enc["dev"], task.dev["labels"]
        eval_x, eval_y, eval_name = enc["test"], task.test["labels"], "test"

    resolved = {"task": args.task, "arm": args.arm, "profile": run.profile, "seed": run.seed, "device": str(run.device),
                "per_class": size, "train_examples": len(train_y), "learning_rates": list(grid),
                "pretrained_dir": str(pretrained_dir) if pretrained_dir else None, **dataclasses.asdict(config)}
    print("finetune config:\n" + json.dumps(resolved, indent=2), flush=True)
    atomic_write_text(out_dir / "config.json", json.dumps(resolved, indent=2))

    results = {}

    def dev_acc(lr):
        model = classifier_from_encoder(arm.encoder, num_labels, seed=run.seed, dropout=config.dropout,
                                        classifier_dropout=config.classifier_dropout)
        results[lr] = fine_tune(model, train_x, train_y, config.replace(learning_rate=lr), seed=run.seed,
                                device=run.device, progress=progress, desc=f"fine-tune lr={lr:g}")
        return accuracy(predict(model, dev_x, config.eval_batch_size, run.device), dev_y)

    lr, scores = select_by_dev(grid, dev_acc)
    best = results[lr]
    acc = scores[lr] if eval_name == "dev" else accuracy(predict(best.model, eval_x, config.eval_batch_size, run.device), eval_y)
    result = {**resolved, "chosen_learning_rate": lr, "dev_accuracy": scores, f"{eval_name}_accuracy": acc,
              "steps": best.steps, "train_seconds": best.seconds, "final_loss": best.losses[-1]}
    atomic_write_text(out_dir / "result.json", json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in result.items()},
                                                          indent=2, default=str))
    print(f"{args.task} / {args.arm}: learning rate {lr:g} (dev {scores[lr]:.4f}), {eval_name} accuracy {acc:.4f}")
    return result


if __name__ == "__main__":
    main()
