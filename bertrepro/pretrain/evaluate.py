"""Held-out evaluation of a pre-trained model (``run_pretraining.py``'s eval), on fixed masks.

Every model is scored on the same examples and the same masked positions: both are drawn from
:data:`~bertrepro.pretrain.config.EVAL_SEED`, not from the training seed. :func:`evaluate` sums
the metrics; :func:`masked_lm_nll` keeps each masked token's loss apart, for paired comparisons.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..model import IS_NEXT, NOT_NEXT, BertForPreTraining
from ..nsp import length_baseline
from ..train.distributed import DistInfo
from ..train.optim import autocast, eval_mode
from .config import EVAL_SEED, OBJECTIVES, PretrainConfig
from .data import Examples, PretrainData, make_batch, special_ids

__all__ = ["evaluate", "masked_lm_nll", "nsp_length_baseline", "fill_mask"]


def _outputs(model: BertForPreTraining, batch: dict[str, torch.Tensor], rows: range, batch_size: int,
             device: torch.device, precision: str, causal: bool) -> Iterator[tuple[dict[str, torch.Tensor], Any]]:
    """The model's outputs on ``rows`` of ``batch``, ``batch_size`` rows at a time, in eval mode."""
    with eval_mode(model):
        for start in range(rows.start, rows.stop, batch_size):
            sl = slice(start, min(start + batch_size, rows.stop))
            mb = {k: v[sl].to(device) for k, v in batch.items()}
            with autocast(device, precision):
                out = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"], labels=mb["labels"],
                            is_causal=causal)
            yield mb, out


def _eval_batch(examples: Examples, data: PretrainData, config: PretrainConfig, objective: str,
                seed: int) -> dict[str, torch.Tensor]:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
    if len(examples) == 0:
        raise ValueError("no examples to evaluate")
    return make_batch(examples, data, dataclasses.replace(config, objective=objective),
                      torch.Generator().manual_seed(seed))


def _metrics(s: list[float], objective: str, data: PretrainData, mft: int, n: int) -> dict[str, Any]:
    """The metrics of :func:`evaluate` from its nine sums."""
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
    batch = _eval_batch(examples, data, config, objective, seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    counts = data.token_counts.double()
    mft = int(counts.argmax())
    log_unigram = torch.log((counts + 1) / (counts.sum() + counts.numel())).to(device)  # (V,)
    n = len(examples)
    rows = range(0, n)
    if dist_info is not None and dist_info.enabled:
        rows = range(n * dist_info.rank // dist_info.world_size, n * (dist_info.rank + 1) // dist_info.world_size)
    # sums: loss, correct, predictions, mft correct, unigram nll, NSP correct/total per class
    sums = torch.zeros(9, dtype=torch.float64, device=device)
    for mb, out in _outputs(model, batch, rows, batch_size or config.eval_batch_size, device, config.precision,
                            objective == "ltr"):
        targets = mb["labels"][out.mlm_positions]  # (N,)
        logits = out.prediction_logits.float()  # (N, V)
        sums[0] += F.cross_entropy(logits, targets, reduction="sum")
        sums[1] += (logits.argmax(-1) == targets).sum()
        sums[2] += targets.numel()
        sums[3] += (targets == mft).sum()
        sums[4] -= log_unigram[targets].sum()
        if objective == "mlm_nsp":
            pred, gold = out.seq_relationship_logits.argmax(-1), mb["next_sentence_label"]
            for k, label in enumerate((IS_NEXT, NOT_NEXT)):
                sel = gold == label
                sums[5 + 2 * k] += (pred[sel] == label).sum()
                sums[6 + 2 * k] += sel.sum()
    if dist_info is not None and dist_info.enabled:
        dist.all_reduce(sums)
    return _metrics(sums.tolist(), objective, data, mft, n)


@torch.no_grad()
def masked_lm_nll(model: BertForPreTraining, examples: Examples, data: PretrainData, config: PretrainConfig,
                  batch_size: int = 128, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) negative log-likelihoods (nats) of every masked held-out token.

    The examples and masks are those of :func:`evaluate` (drawn with :data:`EVAL_SEED`), so
    ``exp(mean)`` is its ``mlm_perplexity``; keeping the tokens apart lets two models be compared on
    the same positions, with a paired standard error.
    """
    batch = _eval_batch(examples, data, config, "mlm_nsp", EVAL_SEED)
    device = torch.device(device)
    model.to(device)
    out = []
    for mb, o in _outputs(model, batch, range(0, len(examples)), batch_size, device, config.precision, False):
        targets = mb["labels"][o.mlm_positions]
        out.append(F.cross_entropy(o.prediction_logits.float(), targets, reduction="none").double().cpu())
    return torch.cat(out)


def nsp_length_baseline(train: Examples, held_out: Examples, bucket: int = 4) -> dict[str, float]:
    """:func:`bertrepro.nsp.length_baseline` on pre-training :class:`Examples`: how well lengths
    alone, not words, predict the NSP label. A model's NSP accuracy means little until it beats this."""
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
    ids = special_ids(tokenizer)
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
    with eval_mode(model):
        logits = model(x, torch.tensor([types], device=device), torch.ones_like(x)).prediction_logits[0]  # (T, V)
    probs = logits[x[0] == ids["mask_token_id"]].float().softmax(-1)  # (masks, V)
    top = probs.topk(top_k, dim=-1)
    return [list(zip(tokenizer.convert_ids_to_tokens(is_), ps))
            for ps, is_ in zip(top.values.tolist(), top.indices.tolist())]
