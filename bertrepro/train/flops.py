r"""FLOP counts, model FLOPs utilisation and a measured matmul peak: one count for the book and the benchmarks.

Matmul FLOPs only (a multiply-add counts 2), the count ``torch.utils.flop_counter`` makes; a
training step costs three forward passes (the backward pass about twice the forward). One formula
prices a pre-training step, :func:`train_step_flops`: the benchmarks, the loop's MFU and chapter 12's
equal-compute schedules all use it, with the step's counted predicted positions.
"""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import BertConfig

__all__ = ["forward_flops", "mlm_head_flops", "train_step_flops", "estimate_mfu", "measure_peak_flops",
           "steps_for_flops", "count_step_flops"]


def forward_flops(config: BertConfig, batch: int, seq: int, pooler: bool = True) -> int:
    r"""Matmul FLOPs of one ``BertModel`` forward pass (a multiply-add counts 2).

    Per layer, on :math:`N = B\,T` tokens: the Q, K, V and output projections :math:`4 \cdot 2NH^2`,
    the feed-forward network :math:`2 \cdot 2NHF`, and attention itself, :math:`QK^\top` and
    :math:`AV`, each :math:`2BT^2H`, so :math:`4BT^2H`. The pooler adds :math:`2BH^2`. Embedding
    look-ups, biases, softmax, LayerNorm and GELU are not matmuls and are not counted (they are
    well under 1 % at BERT sizes); this is the count ``torch.utils.flop_counter`` makes.
    """
    for name, v in (("batch", batch), ("seq", seq)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if seq > config.max_position_embeddings:
        raise ValueError(f"seq={seq} exceeds max_position_embeddings={config.max_position_embeddings}")
    B, T, H, F, L = batch, seq, config.hidden_size, config.intermediate_size, config.num_hidden_layers
    N = B * T
    per_layer = 2 * N * (4 * H * H + 2 * H * F) + 4 * B * T * T * H
    return L * per_layer + (2 * B * H * H if pooler else 0)


def mlm_head_flops(config: BertConfig, rows: int) -> int:
    """Matmul FLOPs of the masked-LM head on ``rows`` hidden vectors: the H x H transform and the H x V decoder."""
    H, V = config.hidden_size, config.vocab_size
    return rows * (2 * H * H + 2 * H * V)


def train_step_flops(config: BertConfig, batch: int, seq: int, predicted: float) -> float:
    r"""Matmul FLOPs of one pre-training step (forward + backward) with ``predicted`` output rows.

    The forward is the encoder and pooler on :math:`B \cdot T` tokens (:func:`forward_flops`), the
    vocabulary head :math:`2(H^2 + HV)` per predicted row (:func:`mlm_head_flops`) and the NSP
    classifier :math:`2 \cdot 2BH`; the step costs 3 forwards. ``predicted`` is the number of rows the
    head projects: the batch's counted non-ignored labels (about 15 % of the real tokens for the
    masked LM, every real next token for LTR), or ``batch * seq`` for an ungathered head. A
    real-valued mean over steps is allowed; an int gives an int. Every objective is priced by this
    one formula (the pooler and NSP classifier are counted without NSP too: they are a rounding error).
    """
    if not predicted >= 0:
        raise ValueError(f"predicted must be >= 0 (output rows per step), got {predicted!r}")
    fwd = forward_flops(config, batch, seq) + 2 * batch * config.hidden_size * 2
    return 3 * (fwd + predicted * mlm_head_flops(config, 1))


def estimate_mfu(step_flops: float, steps_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s (:func:`train_step_flops` x steps/s) over the peak (FLOP/s)."""
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops!r}")
    return step_flops * steps_per_s / peak_flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_flops(device: torch.device | str = "cuda", dtype: torch.dtype = torch.bfloat16, n: int = 8192,
                       iters: int = 20) -> float:
    """The practical matmul peak of ``device`` in FLOP/s: the best of ``iters`` timed n x n x n products.

    bf16 (the dtype the pre-training loop computes in on CUDA) by default; the benchmarks pass fp32.
    """
    if n < 1 or iters < 1:
        raise ValueError(f"need n >= 1 and iters >= 1, got n={n}, iters={iters}")
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.mm(a, b)  # warm-up
        for _ in range(iters):
            _sync(device)
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def steps_for_flops(target_flops: float, flops_per_step: float) -> int:
    """The number of steps whose FLOPs come closest to ``target_flops`` (at least 1)."""
    if not (target_flops > 0 and flops_per_step > 0):
        raise ValueError(f"need target_flops > 0 and flops_per_step > 0, got {target_flops!r}, {flops_per_step!r}")
    return max(1, round(target_flops / flops_per_step))


def count_step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor], is_causal: bool) -> int:
    r"""FLOPs of one forward + backward pass measured by ``torch.utils.flop_counter.FlopCounterMode``.

    The model runs with ``output_attentions=True``, i.e. through the explicit attention path
    (``softmax(QK^T) V`` as matmuls): FlopCounterMode counts **nothing** for CPU
    ``F.scaled_dot_product_attention`` (the fast path), which would under-count by the attention
    term :math:`12\,L\,B\,T^2 H`. The loss is a sum of the logits at the labelled rows, so the
    head is gathered as in pre-training (only those rows are projected onto the vocabulary).
    """
    labels = batch["labels"]
    with FlopCounterMode(display=False) as counter:
        out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], is_causal=is_causal,
                         output_attentions=True)
        h = out.last_hidden_state[labels != -100]  # (n_pred, H)
        loss = model.cls.predictions(h).sum() + model.cls.seq_relationship(out.pooler_output).sum()
        loss.backward()
    return int(counter.get_total_flops())
