"""The cloze test of chapter 12: one whole word removed from a window of held-out text, with
context on both sides, filled by each model as its objective allows (Table 5's bidirectionality).

Shape legend: N items (cloze windows), T sequence length, H hidden size, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..model import BertForPreTraining
from ..stats import paired_difference
from ..train.optim import autocast, eval_mode

__all__ = ["CLOZE_MODES", "ARM_CLOZE_MODE", "ClozeItems", "word_token_mask", "make_cloze_items", "cloze_inputs",
           "ClozeScores", "cloze_scores", "MIN_OVER_BASELINE", "MIN_Z", "MIN_NSP_BALANCED", "learning_check", "gate_note"]

# The learning check of an arm: no verdict comes from a model that did not learn its own task.
MIN_OVER_BASELINE = 1.5  # cloze accuracy at least this many times the most-frequent-word baseline's
MIN_Z = 3.0  # ... and above it by at least this many standard errors (paired, same blanks)
MIN_NSP_BALANCED = 0.65  # NSP arms: held-out balanced NSP accuracy (chance: 0.5)

# How each model fills a cloze blank:
#   bidirectional -- the word is replaced by [MASK]; the model reads both sides and predicts at its position;
#   left_only     -- a bidirectional model given only the left context: [CLS] left [MASK] [SEP] (a control);
#   left_to_right -- a causal model predicts the word from the position before it (the left context only).
CLOZE_MODES = ("bidirectional", "left_only", "left_to_right")


ARM_CLOZE_MODE = {"mlm_nsp": "bidirectional", "mlm": "bidirectional", "ltr": "left_to_right"}


@dataclass
class ClozeItems:
    """Held-out windows ``[CLS] w_1 ... w_n [SEP] [PAD]...`` with one blank each.

    input_ids, attention_mask: (N, T) long, the ORIGINAL text (no [MASK]); position: (N,) the blank's
    index; target: (N,) the blank's id, ``input_ids[i, position[i]]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index) -> "ClozeItems":
        return ClozeItems(self.input_ids[index], self.attention_mask[index], self.position[index], self.target[index])


def word_token_mask(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(V,) bools: pieces that are alphabetic word starts, and ``##`` continuation pieces."""
    pieces = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    word = torch.tensor([p.isalpha() for p in pieces])  # no "##", no punctuation, digits or [SPECIAL]
    continuation = ~tokenizer.word_start_mask(torch.arange(tokenizer.vocab_size))
    return word, continuation


def make_cloze_items(documents: Sequence[Sequence[Sequence[int]]], tokenizer: Any, max_seq_length: int,
                     num_items: int, min_context: int, seed: int) -> ClozeItems:
    """Cut held-out documents into windows and choose blanks, reproducibly from ``seed``.

    Each document's sentences are concatenated and cut into windows of ``max_seq_length - 2`` pieces,
    wrapped as ``[CLS] ... [SEP]``. A blank is a whole word that is a single alphabetic piece (the
    next piece does not start with ``##``) with at least ``min_context`` pieces on each side inside
    the window. Several blanks may come from one window (each item has exactly one); items are
    drawn without replacement and shuffled, up to ``num_items``.
    """
    if max_seq_length < 2 * min_context + 3:
        raise ValueError(f"max_seq_length={max_seq_length} cannot hold a blank with {min_context} pieces on each side")
    width = max_seq_length - 2
    rows: list[list[int]] = []
    for doc in documents:
        flat = [t for sentence in doc for t in sentence]
        windows = (flat[s: s + width] for s in range(0, len(flat), width))
        rows += [w for w in windows if len(w) >= 2 * min_context + 1]
    if not rows:
        raise ValueError(f"no held-out window has {2 * min_context + 1} pieces; use more documents or a smaller "
                         f"min_context")
    lengths = torch.tensor([len(r) + 2 for r in rows])  # with [CLS] and [SEP]
    N, T = len(rows), max_seq_length
    input_ids = torch.full((N, T), tokenizer.pad_token_id, dtype=torch.long)
    n_text = lengths - 2  # (N,) pieces of text per window
    row = torch.repeat_interleave(torch.arange(N), n_text)
    col = torch.arange(int(n_text.sum())) - torch.repeat_interleave(n_text.cumsum(0) - n_text, n_text) + 1  # after [CLS]
    input_ids[row, col] = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    input_ids[:, 0] = tokenizer.cls_token_id
    input_ids[torch.arange(N), lengths - 1] = tokenizer.sep_token_id
    pos = torch.arange(T)[None, :]  # (1, T)
    attention_mask = (pos < lengths[:, None]).long()
    word, continuation = word_token_mask(tokenizer)
    next_ids = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1)  # (N, T)
    eligible = (word[input_ids] & ~continuation[next_ids]
                & (pos >= 1 + min_context) & (pos <= lengths[:, None] - 2 - min_context))  # (N, T)
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(N, T, generator=g).masked_fill(~eligible, -1.0)
    per_row = max(1, math.ceil(num_items / max(int(eligible.any(1).sum()), 1)))
    top = keys.topk(min(per_row, T), dim=1)
    r, k = torch.nonzero(top.values >= 0, as_tuple=True)
    if r.numel() == 0:
        raise ValueError("no eligible blank in the held-out windows (whole single-piece words with context on "
                         "both sides); use more documents or a smaller min_context")
    position = top.indices[r, k]
    order = torch.randperm(r.numel(), generator=g)[:num_items]
    r, position = r[order], position[order]
    return ClozeItems(input_ids[r], attention_mask[r], position, input_ids[r, position])


def cloze_inputs(items: ClozeItems, mode: str, mask_token_id: int, sep_token_id: int,
                 pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the model reads for each item, and the position whose output predicts the blank.

    Returns ``input_ids`` (N, T), ``attention_mask`` (N, T) and ``read`` (N,):

    * ``bidirectional``: the blank replaced by ``[MASK]``; read at the blank.
    * ``left_only``: ``[CLS] w_1 .. w_{t-1} [MASK] [SEP]``, the right context removed; read at the blank.
    * ``left_to_right``: the same input as ``bidirectional``; a causal model reads it left to right and
      predicts the blank at position t from position t - 1, whose output depends on ``[CLS] w_1 .. w_{t-1}``
      only (the [MASK] at t and everything after it are invisible to it).
    """
    if mode not in CLOZE_MODES:
        raise ValueError(f"unknown cloze mode {mode!r}; valid modes are {', '.join(CLOZE_MODES)}")
    N, T = items.input_ids.shape
    pos = torch.arange(T)[None, :]  # (1, T)
    t = items.position[:, None]  # (N, 1)
    ids = items.input_ids.masked_fill(pos == t, mask_token_id)
    mask = items.attention_mask
    read = items.position
    if mode == "left_only":
        ids = torch.where(pos == t + 1, torch.full_like(ids, sep_token_id), ids).masked_fill(pos > t + 1, pad_token_id)
        mask = (pos <= t + 1).long()
    elif mode == "left_to_right":
        read = items.position - 1
    return ids, mask, read


@dataclass
class ClozeScores:
    log_prob: torch.Tensor  # (N,) float64: log p(target) from the model
    prediction: torch.Tensor  # (N,) long: the arg-max piece

    def correct(self, target: torch.Tensor) -> torch.Tensor:
        return self.prediction == target

    def accuracy(self, target: torch.Tensor) -> float:
        return float(self.correct(target).double().mean())


@torch.no_grad()
def cloze_scores(model: BertForPreTraining, items: ClozeItems, mode: str, tokenizer: Any, batch_size: int = 256,
                 device: torch.device | str = "cpu", candidates: torch.Tensor | None = None) -> ClozeScores:
    """Fill every blank of ``items`` with ``model`` read in ``mode`` (see :func:`cloze_inputs`).

    The logits at the read position go through the model's own MLM head (transform + tied decoder),
    the same head either objective trained. Token types are all 0 (one segment).

    Args:
        candidates: (V,) bools; when given, the prediction is the most probable candidate piece (the
            book passes the whole-word pieces of :func:`word_token_mask`: a blank is known to hold a
            word, so a model is not marked wrong for its punctuation prior). ``log_prob`` always comes
            from the full softmax over the vocabulary.
    """
    if candidates is not None and candidates.shape != (tokenizer.vocab_size,):
        raise ValueError(f"candidates must be a ({tokenizer.vocab_size},) bool mask, got shape {tuple(candidates.shape)}")
    ids, mask, read = cloze_inputs(items, mode, tokenizer.mask_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    causal = mode == "left_to_right"
    model.to(device)
    log_probs, preds = [], []
    with eval_mode(model):
        for s in range(0, len(items), batch_size):
            sl = slice(s, s + batch_size)
            x, m = ids[sl].to(device), mask[sl].to(device)
            with autocast(device):
                h = model.bert(x, torch.zeros_like(x), m, is_causal=causal).last_hidden_state  # (b, T, H)
                rows = h[torch.arange(x.shape[0], device=device), read[sl].to(device)]  # (b, H)
                logits = model.cls.predictions(rows).float()  # (b, V)
            lp = logits.log_softmax(-1)
            log_probs.append(lp.gather(1, items.target[sl].to(device)[:, None])[:, 0].double().cpu())
            if candidates is not None:
                logits = logits.masked_fill(~candidates.to(device), float("-inf"))
            preds.append(logits.argmax(-1).cpu())
    return ClozeScores(torch.cat(log_probs), torch.cat(preds))


def learning_check(correct: Sequence[bool] | torch.Tensor, baseline_correct: Sequence[bool] | torch.Tensor,
                   nsp_accuracy: float | None = None) -> dict[str, Any]:
    r"""Did an arm learn? Its cloze against the most-frequent-word baseline on the same blanks.

    ``cloze_over_baseline`` = accuracy / baseline accuracy; ``z`` = the paired difference over its
    standard error, :math:`\bar d / \mathrm{SE}(\bar d)` with :math:`d_i` = model correct - baseline
    correct on blank :math:`i` (:func:`bertrepro.stats.paired_difference`). ``learned`` needs
    ``cloze_over_baseline >= MIN_OVER_BASELINE`` and ``z >= MIN_Z`` and, when ``nsp_accuracy`` (balanced,
    held-out) is given, ``nsp_accuracy >= MIN_NSP_BALANCED``.
    """
    a = torch.as_tensor(correct, dtype=torch.float64)
    b = torch.as_tensor(baseline_correct, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 1 or a.numel() < 2:
        raise ValueError(f"correct and baseline_correct must be equal-length 1-d lists of >= 2 items, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    d = paired_difference([a.tolist()], [b.tolist()])
    base = float(b.mean())
    ratio = float(a.mean()) / base if base > 0 else (math.inf if float(a.mean()) > 0 else 0.0)
    z = d["difference"] / d["se"] if d["se"] > 0 else (math.inf if d["difference"] > 0 else 0.0)
    nsp_ok = nsp_accuracy is None or nsp_accuracy >= MIN_NSP_BALANCED
    return {"cloze": float(a.mean()), "baseline": base, "cloze_over_baseline": ratio, "z": z,
            "nsp_balanced_accuracy": nsp_accuracy,
            "learned": bool(ratio >= MIN_OVER_BASELINE and z >= MIN_Z and nsp_ok)}


def gate_note(check: dict[str, Any]) -> str:
    """Why an arm passed or failed its learning check, in one phrase."""
    s = f"cloze {check['cloze_over_baseline']:.2f}x the baseline, z {check['z']:.1f}"
    if check.get("nsp_balanced_accuracy") is not None:
        s += f", NSP {100 * check['nsp_balanced_accuracy']:.1f} % balanced"
    need = f"needs {MIN_OVER_BASELINE:g}x and z {MIN_Z:g}" + (
        f" and NSP {100 * MIN_NSP_BALANCED:.0f} %" if check.get("nsp_balanced_accuracy") is not None else "")
    return s + ("; " + need if not check["learned"] else "")
