r"""Full fine-tuning (BERT §4.1, Appendix A.3; google-research/bert ``run_classifier.py``).

The paper's recipe: one linear layer on the final hidden vector :math:`C` of ``[CLS]`` (after the
pooler), *all* weights trained with Adam (lr from {5e-5, 4e-5, 3e-5, 2e-5} chosen on dev, linear
warm-up over the first 10 % of steps then linear decay, weight decay 0.01), batch 32, 3 epochs.
The loss is :math:`-\log \mathrm{softmax}(C W^\top)_{y}`. The optimizer, schedule and mixed
precision are :mod:`bertrepro.train.optim`'s, shared with pre-training.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from ..heads import head_from_encoder
from ..model import BertForSequenceClassification, BertModel
from ..profiles import PAPER_BATCH_SIZE, PAPER_EPOCHS, PAPER_WARMUP_PROPORTION
from ..progress import bar as tqdm
from ..train.optim import WarmupLinearDecay, autocast, build_adamw, eval_mode, optimizer_step
from .probe import accuracy, batches_by_length, check_xy, select_by_dev
from .tasks import Encoded

__all__ = ["FinetuneConfig", "classifier_from_encoder", "FinetuneResult", "TrainData", "check_train_data", "take_rows",
           "as_train_data", "fine_tune", "predict", "choose_learning_rate", "tune_on_dev"]


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


def classifier_from_encoder(encoder: BertModel, num_labels: int, seed: int = 0, dropout: float | None = None,
                            classifier_dropout: float | None = None) -> BertForSequenceClassification:
    """A fresh :class:`BertForSequenceClassification` holding a copy of ``encoder``'s weights.

    The task layer (``classifier``, H x num_labels) is initialized from ``seed`` with the model's
    truncated normal; the encoder is copied, so ``encoder`` itself is never modified. ``dropout``
    replaces the encoder's hidden and attention dropout (None keeps them). A
    :class:`~bertrepro.model.LeftToRightBertModel` encoder stays causal inside the classifier (its
    sentence vector is the last token's).
    """
    return head_from_encoder("pair", encoder, num_labels, seed=seed, dropout=dropout,
                             classifier_dropout=classifier_dropout)


@dataclass
class FinetuneResult:
    model: nn.Module  # the trained model (the object passed in), in eval mode
    losses: list[float]  # training loss at every step
    learning_rates: list[float]  # learning rate used at every step
    steps: int
    seconds: float
    dev_curve: list[float] = field(default_factory=list)  # dev score after each epoch (early stopping only)
    best_epoch: int | None = None  # the epoch whose weights were kept (early stopping only)


TrainData = Mapping[str, torch.Tensor]  # model inputs and targets by forward() argument name, (N, ...) each


def check_train_data(data: TrainData) -> int:
    """The number of rows of ``data`` (a mapping of forward() argument names to (N, ...) tensors).

    Raises ``ValueError`` naming the problem: no tensors, rows that disagree, or no ``attention_mask``.
    """
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError("data must be a non-empty mapping of forward() argument names to tensors "
                         "(input_ids, token_type_ids, attention_mask and the targets)")
    rows = {k: v.shape[0] if v.dim() else None for k, v in data.items()}
    if len(set(rows.values())) != 1 or None in rows.values():
        raise ValueError(f"every tensor of data needs the same number of rows, got {rows}")
    if "attention_mask" not in data:
        raise ValueError(f"data needs an attention_mask (1 = token, 0 = [PAD]); it has {sorted(data)}")
    return next(iter(rows.values()))


def take_rows(data: TrainData, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``index`` of every tensor, trimmed on the token axis to the longest of them.

    The token axis is the attention mask's last axis, (N, T) or (N, K, T) for multiple choice;
    every tensor whose leading axes equal the mask's is trimmed with it (padding beyond the longest
    row changes nothing), as :meth:`Encoded.__getitem__` does for one text per row.
    """
    mask = data["attention_mask"][index]
    T = max(int(mask.sum(-1).max()), 1) if mask.numel() else 1
    full = data["attention_mask"].shape
    return {k: v[index].narrow(len(full) - 1, 0, T) if v.shape[:len(full)] == full else v[index]
            for k, v in data.items()}


def as_train_data(data: Encoded | TrainData, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``data`` as a mapping of forward() arguments: an :class:`Encoded` with its ``labels``, or a mapping
    that already holds the targets (then ``labels`` must be None)."""
    if isinstance(data, Encoded):
        if labels is None:
            raise ValueError("an Encoded input needs its labels (one class id per row)")
        if len(data) != labels.shape[0]:
            raise ValueError(f"data has {len(data)} rows but labels has {labels.shape[0]}")
        return {"input_ids": data.input_ids, "token_type_ids": data.token_type_ids,
                "attention_mask": data.attention_mask, "labels": labels.long()}
    if labels is not None:
        raise ValueError("labels go inside the data mapping (e.g. data['labels']) when data is a mapping")
    check_train_data(data)
    return dict(data)


def check_forward_takes(model: nn.Module, data: TrainData) -> None:
    """Raise ``TypeError`` when ``model.forward`` takes no argument named as a tensor of ``data``."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    missing = sorted(set(data) - set(params))
    if missing:
        raise TypeError(f"{type(model).__name__}.forward() takes no argument(s) {missing}; fine_tune trains a model "
                        "whose forward(**batch) returns a loss: a BertForSequenceClassification "
                        "(classifier_from_encoder) or a head of bertrepro.heads")


def fine_tune(model: nn.Module, data: Encoded | TrainData, labels: torch.Tensor | None, config: FinetuneConfig,
              seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
              desc: str = "fine-tune", dev_score: Callable[[nn.Module], float] | None = None,
              patience: int = 0) -> FinetuneResult:
    """Train every weight of ``model`` with the paper's recipe (§4.1, App. A.3): the one loop of every head.

    ``model(**batch)`` must return an output with a scalar ``loss``: chapter 10's classifier, or a
    pair, span, tagging or multiple-choice head of :mod:`bertrepro.heads`. ``data`` is an
    :class:`Encoded` with its class ``labels`` (the classifier), or a mapping of ``forward()``
    argument names to (N, ...) tensors holding the targets too (``labels=None``): the loop draws
    rows of it, trimmed to their longest sequence (:func:`take_rows`).

    With ``dev_score`` (model -> dev metric, higher is better) the model is scored after every epoch
    and the best epoch's weights are kept (early stopping on dev); with ``patience`` > 0 training
    stops after that many epochs without a better score. The schedule is planned for
    ``config.epochs`` either way, so an early stop never changes the steps before it.

    Shuffling and dropout draw from ``seed`` only (the global RNG is left as it was), so a seeded
    run on the CPU is deterministic. Returns the trained model (the same object) and its loss curve.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module whose forward(**batch) returns a loss, got {type(model).__name__}")
    if not isinstance(patience, int) or patience < 0:
        raise ValueError(f"patience must be a non-negative int, got {patience!r}")
    data = as_train_data(data, labels)
    n, B = check_train_data(data), config.batch_size
    check_forward_takes(model, data)
    if isinstance(model, BertForSequenceClassification):
        check_xy(torch.empty(n, 0), data["labels"], model.num_labels)
    steps = config.num_steps(n)
    model.to(device).train()
    opt = build_adamw(model, config.learning_rate, config.weight_decay, device, eps=config.adam_epsilon)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupLinearDecay.from_proportion(steps, config.warmup_proportion))
    g = torch.Generator().manual_seed(seed)
    losses, lrs, curve = [], [], []
    best, best_state, best_epoch = -math.inf, None, None
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)  # dropout
        batches: list[torch.Tensor] = []
        for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
            if not batches:  # a new epoch: a fresh permutation cut into batches
                batches = list(torch.split(torch.randperm(n, generator=g), B))[::-1]
            batch = {k: v.to(device) for k, v in take_rows(data, batches.pop()).items()}
            with autocast(device):
                loss = model(**batch).loss
            loss.backward()
            lrs.append(sched.get_last_lr()[0])
            optimizer_step(model, opt, sched, config.max_grad_norm)
            losses.append(loss.detach())
            if dev_score is not None and (not batches or step == steps - 1):  # an epoch's end
                with torch.random.fork_rng(devices=[]):
                    score = float(dev_score(model))
                model.train()
                curve.append(score)
                if score > best:
                    best, best_epoch = score, len(curve)
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif patience and len(curve) - best_epoch >= patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FinetuneResult(model, torch.stack(losses).float().cpu().tolist(), lrs, len(losses),
                          time.perf_counter() - t0, curve, best_epoch)


@torch.no_grad()
def predict(model: BertForSequenceClassification, data: Encoded, batch_size: int = 128,
            device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Logits (N, num_labels) of ``model`` in eval mode, on the CPU."""
    model.to(device)
    out = torch.empty(len(data), model.num_labels)
    with eval_mode(model), autocast(device):
        for idx in tqdm(list(batches_by_length(data, batch_size)), desc="predict", disable=not progress, leave=False):
            b = data[idx].to(device)
            out[idx] = model(b.input_ids, b.token_type_ids, b.attention_mask).logits.float().cpu()
    return out


def choose_learning_rate(build: Callable[[], nn.Module], train: Encoded | TrainData | tuple[Encoded, torch.Tensor],
                         score: Callable[[nn.Module], float], learning_rates: Sequence[float], config: FinetuneConfig, *,
                         seed: int = 0, device: torch.device | str = "cpu", progress: bool = False,
                         desc: str = "fine-tune", on_fit: Callable[[], Any] | None = None
                         ) -> tuple[float, dict[float, float], FinetuneResult]:
    """Fine-tune a fresh model from ``build()`` for each learning rate and keep the best on dev (§4.1).

    ``train`` is what :func:`fine_tune` takes (a mapping of forward() arguments, or ``(Encoded,
    labels)``); ``score(model)`` is the dev metric of a trained model (higher is better; the first
    learning rate wins ties). Every candidate starts from the same weights (``build`` must return a
    new model each call) and the same ``seed``. Returns the chosen learning rate, every dev score,
    and the chosen run (its ``model`` is the one to test). ``on_fit`` is called after each candidate.
    """
    data, labels = train if isinstance(train, tuple) else (train, None)
    results: dict[float, FinetuneResult] = {}

    def dev_score(lr: float) -> float:
        results[lr] = fine_tune(build(), data, labels, config.replace(learning_rate=lr), seed=seed, device=device,
                                progress=progress, desc=f"{desc} lr={lr:g}")
        if on_fit is not None:
            on_fit()
        return score(results[lr].model)

    lr, scores = select_by_dev(learning_rates, dev_score)
    return lr, scores, results[lr]


def tune_on_dev(encoder: BertModel, num_labels: int, train: tuple[Encoded, torch.Tensor],
                dev: tuple[Encoded, torch.Tensor], learning_rates: Sequence[float], config: FinetuneConfig, *,
                seed: int = 0, device: torch.device | str = "cpu", progress: bool = False, desc: str = "fine-tune",
                on_fit: Callable[[], Any] | None = None) -> tuple[float, dict[float, float], FinetuneResult]:
    """Fine-tune a fresh classifier on ``train`` for each learning rate and keep the best dev accuracy (§4.1).

    :func:`choose_learning_rate` with chapter 10's classifier (:func:`classifier_from_encoder`, seeded
    head) and dev accuracy. Returns the chosen learning rate, every dev accuracy, and the chosen run.
    """
    def build() -> BertForSequenceClassification:
        return classifier_from_encoder(encoder, num_labels, seed=seed, dropout=config.dropout,
                                       classifier_dropout=config.classifier_dropout)

    def dev_accuracy(model: nn.Module) -> float:
        return accuracy(predict(model, dev[0], config.eval_batch_size, device), dev[1])

    return choose_learning_rate(build, train, dev_accuracy, learning_rates, config, seed=seed, device=device,
                                progress=progress, desc=desc, on_fit=on_fit)
