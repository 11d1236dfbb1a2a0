r"""Full fine-tuning (BERT §4.1, Appendix A.3; google-research/bert ``run_classifier.py``).

The paper's recipe: one linear layer on the final hidden vector :math:`C` of ``[CLS]`` (after the
pooler), *all* weights trained with Adam (lr from {5e-5, 4e-5, 3e-5, 2e-5} chosen on dev, linear
warm-up over the first 10 % of steps then linear decay, weight decay 0.01), batch 32, 3 epochs.
The loss is :math:`-\log \mathrm{softmax}(C W^\top)_{y}`. The optimizer, schedule and mixed
precision are :mod:`bertrepro.train.optim`'s, shared with pre-training.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..heads import head_from_encoder
from ..model import BertForSequenceClassification, BertModel
from ..profiles import PAPER_BATCH_SIZE, PAPER_EPOCHS, PAPER_LEARNING_RATES, PAPER_WARMUP_PROPORTION
from ..progress import bar as tqdm
from ..train.optim import autocast, build_adamw, eval_mode, linear_warmup_decay, optimizer_step
from .probe import accuracy, batches_by_length, check_xy, select_by_dev
from .tasks import Encoded

__all__ = ["PAPER_LEARNING_RATES", "PAPER_BATCH_SIZE", "PAPER_EPOCHS", "PAPER_WARMUP_PROPORTION", "FinetuneConfig",
           "classifier_from_encoder", "FinetuneResult", "fine_tune", "predict", "tune_on_dev"]


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
    model: BertForSequenceClassification
    losses: list[float]  # training loss at every step
    learning_rates: list[float]  # learning rate used at every step
    steps: int
    seconds: float


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
    check_xy(torch.empty(len(data), 0), labels, model.num_labels)
    n, B = len(data), config.batch_size
    steps = config.num_steps(n)
    model.to(device).train()
    opt = build_adamw(model, config.learning_rate, config.weight_decay, device, eps=config.adam_epsilon)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(steps, config.warmup_proportion))
    g = torch.Generator().manual_seed(seed)
    labels = labels.long()
    losses, lrs = [], []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)  # dropout
        batches: list[torch.Tensor] = []
        for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
            if not batches:  # a new epoch: a fresh permutation cut into batches
                batches = list(torch.split(torch.randperm(n, generator=g), B))[::-1]
            idx = batches.pop()
            batch = data[idx].to(device)
            with autocast(device):
                loss = model(batch.input_ids, batch.token_type_ids, batch.attention_mask, labels[idx].to(device)).loss
            loss.backward()
            lrs.append(sched.get_last_lr()[0])
            optimizer_step(model, opt, sched, config.max_grad_norm)
            losses.append(loss.detach())
    model.eval()
    return FinetuneResult(model, torch.stack(losses).float().cpu().tolist(), lrs, steps, time.perf_counter() - t0)


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


def tune_on_dev(encoder: BertModel, num_labels: int, train: tuple[Encoded, torch.Tensor],
                dev: tuple[Encoded, torch.Tensor], learning_rates: Sequence[float], config: FinetuneConfig, *,
                seed: int = 0, device: torch.device | str = "cpu", progress: bool = False, desc: str = "fine-tune",
                on_fit: Callable[[], Any] | None = None) -> tuple[float, dict[float, float], FinetuneResult]:
    """Fine-tune a fresh classifier on ``train`` for each learning rate and keep the best on ``dev`` (§4.1).

    Every candidate starts from ``encoder``'s weights and the same ``seed``. Returns the chosen
    learning rate, every dev accuracy, and the chosen run (its ``model`` is the classifier to test).
    ``on_fit`` is called after each candidate (a progress bar's ``update``).
    """
    results: dict[float, FinetuneResult] = {}

    def dev_accuracy(lr: float) -> float:
        model = classifier_from_encoder(encoder, num_labels, seed=seed, dropout=config.dropout,
                                        classifier_dropout=config.classifier_dropout)
        results[lr] = fine_tune(model, *train, config.replace(learning_rate=lr), seed=seed, device=device,
                                progress=progress, desc=f"{desc} lr={lr:g}")
        if on_fit is not None:
            on_fit()
        return accuracy(predict(model, dev[0], config.eval_batch_size, device), dev[1])

    lr, scores = select_by_dev(learning_rates, dev_accuracy)
    return lr, scores, results[lr]
