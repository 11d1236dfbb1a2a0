r"""FLOP counts, model FLOPs utilisation and a measured matmul peak: one count for the book and the benchmarks.

Matmul FLOPs only (a multiply-add counts 2), the count ``torch.utils.flop_counter`` makes; a
training step costs three forward passes (the backward pass about twice the forward).
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from ..config import BertConfig

__all__ = ["forward_flops", "mlm_head_flops", "train_step_flops", "flops_per_token", "estimate_mfu",
           "measure_peak_flops", "step_flops", "run_flops", "steps_for_flops", "count_step_flops", "mean_predictions"]


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


def train_step_flops(config: BertConfig, batch: int, seq: int, mlm_rows: int) -> int:
    """Matmul FLOPs of one pre-training step: 3x the forward (backward costs about twice the forward).

    The forward is the encoder with pooler (:func:`forward_flops`), the masked-LM head on
    ``mlm_rows`` rows (all ``batch * seq`` positions when the head is not gathered) and the NSP
    classifier (``2 * batch * H * 2``).
    """
    fwd = forward_flops(config, batch, seq) + mlm_head_flops(config, mlm_rows) + 2 * batch * config.hidden_size * 2
    return 3 * fwd


def flops_per_token(config: BertConfig, seq_len: int, predicted_fraction: float = 0.15) -> float:
    """Pre-training FLOPs per input token: 3 x (the encoder's forward + the gathered MLM head).

    The encoder is :func:`forward_flops` without the pooler; the MLM head (:func:`mlm_head_flops`)
    runs only on the predicted fraction of positions. Embedding look-ups and element-wise work are
    ignored, as in the usual 6N + 12LHT estimate.
    """
    encoder = forward_flops(config, 1, seq_len, pooler=False) / seq_len
    return 3.0 * (encoder + predicted_fraction * mlm_head_flops(config, 1))


def estimate_mfu(config: BertConfig, seq_len: int, tokens_per_s: float, peak_flops: float,
                 predicted_fraction: float = 0.15) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the accelerator's peak (FLOP/s)."""
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops!r}")
    return flops_per_token(config, seq_len, predicted_fraction) * tokens_per_s / peak_flops


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


# ---------------------------------------------------------------------------------------------
# The one counter of chapter 11: FLOPs of a pre-training step from its counted predicted positions
# ---------------------------------------------------------------------------------------------

def step_flops(config: BertConfig, batch_size: int, seq_len: int, predicted: float) -> float:
    r"""Matmul FLOPs of one pre-training step (forward + backward) with ``predicted`` output rows.

    :func:`train_step_flops` with a real-valued number of predicted positions (the batch's
    non-ignored labels, summed over its ``batch_size`` sequences): the encoder and pooler on
    :math:`B \cdot T` tokens, the vocabulary head :math:`2(H^2 + HV)` per predicted row, the NSP
    classifier, all times 3. Every objective is counted with this one formula; what differs is
    ``predicted`` (about 15 % of the real tokens for the masked LM, every real next token for LTR).
    """
    if not predicted >= 0:
        raise ValueError(f"predicted must be >= 0 (output rows per step), got {predicted!r}")
    fwd = forward_flops(config, batch_size, seq_len) + 2 * batch_size * config.hidden_size * 2
    return 3.0 * (fwd + predicted * mlm_head_flops(config, 1))


def run_flops(config: BertConfig, batch_size: int, seq_len: int, predicted_per_step: Sequence[float]) -> float:
    """Cumulative FLOPs of a run whose step ``i`` predicted ``predicted_per_step[i]`` positions."""
    return sum(step_flops(config, batch_size, seq_len, p) for p in predicted_per_step)


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
    from torch.utils.flop_counter import FlopCounterMode

    labels = batch["labels"]
    with FlopCounterMode(display=False) as counter:
        out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], is_causal=is_causal,
                         output_attentions=True)
        h = out.last_hidden_state[labels != -100]  # (n_pred, H)
        loss = model.cls.predictions(h).sum() + model.cls.seq_relationship(out.pooler_output).sum()
        loss.backward()
    return int(counter.get_total_flops())


def mean_predictions(data: Any, config: Any, epochs: int = 1) -> float:
    """Predicted positions per optimizer step, counted on the run's own batches.

    The first ``epochs`` epochs of ``config``'s data (:func:`bertrepro.pretrain.epoch_examples`,
    masked or labelled by :func:`bertrepro.pretrain.make_batch` exactly as the run does) are labelled
    and their non-ignored labels counted; the mean per sequence times the batch size is returned.
    """
    from ..pretrain import epoch_examples, make_batch

    total, sequences = 0, 0
    g = torch.Generator().manual_seed(config.seed)
    for epoch in range(epochs):
        batch = make_batch(epoch_examples(data, config, epoch), data, config, g)
        total += int((batch["labels"] != -100).sum())
        sequences += batch["labels"].shape[0]
    if sequences == 0:
        raise ValueError("the run's data has no training examples")
    return total / sequences * config.batch_size
