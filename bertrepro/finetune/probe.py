r"""Frozen features and the linear probe (the feature-based approach of BERT §5.3, with a linear
classifier instead of a BiLSTM), and the dev-set choice of a hyper-parameter.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model import BertModel
from ..progress import bar as tqdm
from ..train.optim import autocast, eval_mode
from .tasks import Encoded

__all__ = ["POOLINGS", "batches_by_length", "extract_features", "LinearProbe", "train_probe", "check_xy", "accuracy",
           "select_by_dev"]


POOLINGS = ("cls", "mean", "pooler")


def batches_by_length(data: Encoded, batch_size: int) -> Iterable[torch.Tensor]:
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
    encoder.to(device)
    out = {p: torch.empty(len(data), encoder.config.hidden_size) for p in poolings}
    with eval_mode(encoder):
        for idx in tqdm(list(batches_by_length(data, batch_size)), desc=desc, disable=not progress, leave=False):
            batch = data[idx].to(device)
            with autocast(device):
                o = encoder(batch.input_ids, batch.token_type_ids, batch.attention_mask)
            h = o.last_hidden_state.float()  # (b, T, H)
            if "cls" in poolings:
                out["cls"][idx] = h[:, 0].cpu()
            if "mean" in poolings:
                m = batch.attention_mask.unsqueeze(-1).to(h.dtype)  # (b, T, 1)
                out["mean"][idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1)).cpu()
            if "pooler" in poolings:
                out["pooler"][idx] = o.pooler_output.float().cpu()
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
    features, labels = check_xy(features, labels, num_labels)
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


def check_xy(features: torch.Tensor, labels: torch.Tensor, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
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
