r"""The optimizer (BERT's ``optimization.py``), its learning-rate schedule, mixed precision and eval mode.

Both loops use AdamW with decoupled weight decay on the weight matrices only, gradients clipped
to a global norm, and a linear warm-up followed by a linear decay. Deviation from the original:
torch's :class:`~torch.optim.AdamW` bias-corrects its moment estimates; BERT's
``AdamWeightDecayOptimizer`` did not. With β2 = 0.999 the two differ only in the first few
thousand steps, where the warm-up keeps the learning rate small anyway.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["decay_parameter_names", "param_groups", "build_adamw", "learning_rate_at", "WarmupLinearDecay",
           "autocast", "eval_mode", "optimizer_step"]

PRECISIONS = ("auto", "fp32", "bf16")


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
    """Two AdamW groups (decay, no decay), asserting they partition every trainable parameter."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_parameter_names(model)
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(decay) & set(no_decay) or set(decay) | set(no_decay) != trainable:
        raise AssertionError("weight-decay groups do not partition the trainable parameters")
    return [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, learning_rate: float, weight_decay: float, device: torch.device | str, *,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` with BERT's defaults (ε = 1e-6); the fused kernel on CUDA."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=learning_rate, betas=betas, eps=eps,
                             fused=True if torch.device(device).type == "cuda" else None)


def learning_rate_at(step: int, learning_rate: float, warmup_steps: int, total_steps: int) -> float:
    r"""The pre-training learning rate of update number ``step`` (0-based), as ``optimization.py`` computes it.

    .. math:: \eta(s) = \eta_0 \cdot \begin{cases} s / w & s < w \\ \max(0,\ 1 - s / S) & s \ge w \end{cases}

    Warm-up rises from 0; the decay is the original's ``polynomial_decay`` (power 1) measured from
    step 0, so at the end of warm-up the rate steps down from :math:`\eta_0` to
    :math:`\eta_0 (1 - w/S)` (transformers' schedule instead decays from the end of warm-up).
    """
    if step < warmup_steps:
        return learning_rate * step / warmup_steps
    return learning_rate * max(0.0, 1.0 - step / total_steps)


class WarmupLinearDecay:
    """The multiplier of :func:`learning_rate_at` for :class:`torch.optim.lr_scheduler.LambdaLR` (picklable).

    The one schedule of both loops: pre-training passes its ``warmup_steps``; fine-tuning
    (:meth:`from_proportion`) ``int(p N)`` of its ``N`` steps, as ``run_classifier.py`` does.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        if not (isinstance(total_steps, int) and total_steps >= 1 and isinstance(warmup_steps, int)
                and 0 <= warmup_steps <= total_steps):
            raise ValueError(f"need integers 0 <= warmup_steps <= total_steps and total_steps >= 1, got "
                             f"warmup_steps={warmup_steps!r}, total_steps={total_steps!r}")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    @classmethod
    def from_proportion(cls, total_steps: int, warmup_proportion: float) -> "WarmupLinearDecay":
        """Warm-up over the first ``int(total_steps * warmup_proportion)`` steps (``run_classifier.py``)."""
        if not 0 <= warmup_proportion <= 1:
            raise ValueError(f"warmup_proportion must be in [0, 1], got {warmup_proportion!r}")
        return cls(int(total_steps * warmup_proportion), total_steps)

    def __call__(self, step: int) -> float:
        return learning_rate_at(step, 1.0, self.warmup_steps, self.total_steps)


def autocast(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Mixed precision for a forward pass: bf16 autocast for ``"bf16"``, and for ``"auto"`` on CUDA; else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if precision == "bf16" or (precision == "auto" and dev.type == "cuda"):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode, restoring its train/eval mode after (also on error)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                   max_grad_norm: float) -> torch.Tensor:
    """Clip the global gradient norm, step the optimizer and the schedule, clear the gradients.

    Returns the gradient norm before clipping (a device tensor; reading it synchronises).
    """
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
