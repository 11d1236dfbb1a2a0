r"""Answer spans (BERT §4.2, §4.3): best-span decoding, the "no answer" score, and passage windows.

- **Best span.** The score of the span from token :math:`i` to token :math:`j` is
  :math:`S \cdot T_i + E \cdot T_j`; the prediction is the highest-scoring span with
  :math:`i \le j < i + L` (``max_answer_length`` :math:`L`), both ends inside the passage.
  :func:`best_spans` scores every pair at once; :func:`best_span_loop` is the double loop it must equal.
  Ties go to the smallest start, then the smallest end (the first maximum in row-major order).
- **No answer** (§4.3, SQuAD v2.0). The null score is :math:`s_{null} = S \cdot C + E \cdot C`
  (``[CLS]`` at position 0); the span is predicted when its score exceeds :math:`s_{null} + \tau`,
  with :math:`\tau` chosen on dev to maximize F1 (:func:`choose_threshold`).
- **Windows.** A passage longer than the window is split as the released ``run_squad.py`` does:
  windows of ``max_seq_length - len(question) - 3`` passage tokens that start every ``doc_stride``
  tokens. A token is scored only in the window where it has the most context, the window with the
  largest :math:`\min(\text{left}, \text{right}) + 0.01 \cdot \text{length}`.

Shape legend: B batch (windows), T sequence length, F windows of all items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

__all__ = ["best_spans", "best_span_loop", "null_scores", "choose_threshold", "Window", "SpanFeatures",
           "featurize_spans", "max_context_scores", "span_and_null_scores", "decode_spans"]


def _band(x: torch.Tensor, width: int, fill) -> torch.Tensor:
    """(B, T) -> (B, T, width) with [b, i, k] = x[b, i + k] (``fill`` past the end)."""
    return torch.nn.functional.pad(x, (0, width - 1), value=fill).unfold(1, width, 1)


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, valid: torch.Tensor, max_answer_length: int,
               end_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best span of every row: argmax of start[i] + end[j] over i <= j <= i + max_answer_length - 1.

    Args:
        start_logits, end_logits: (B, T).
        valid: (B, T) bool, the tokens a span may start at (and end at, unless ``end_valid`` is given).
        max_answer_length: the longest span, in tokens (>= 1).
        end_valid: (B, T) bool, the tokens a span may end at (default ``valid``).

    Returns:
        start (B,), end (B,), score (B,). Ties go to the smallest start, then the smallest end.

    Raises:
        ValueError: bad shapes, ``max_answer_length < 1``, or a row where no span is allowed.
    """
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
    end_valid = valid if end_valid is None else end_valid
    if not (start_logits.shape == end_logits.shape == valid.shape == end_valid.shape) or start_logits.dim() != 2:
        raise ValueError(f"start_logits, end_logits and the masks must all be (B, T); got {tuple(start_logits.shape)}, "
                         f"{tuple(end_logits.shape)}, {tuple(valid.shape)}, {tuple(end_valid.shape)}")
    T = start_logits.shape[1]
    L = min(max_answer_length, T)
    # Only the band j = i + k, 0 <= k < L, is scored: (B, T, L) instead of (B, T, T).
    allowed = valid.bool()[:, :, None] & _band(end_valid.bool(), L, False)
    empty = ~allowed.flatten(1).any(1)
    if empty.any():
        raise ValueError(f"rows {empty.nonzero().flatten().tolist()} allow no span: the passage mask is empty there")
    scores = (start_logits[:, :, None] + _band(end_logits, L, 0.0)).masked_fill(~allowed, float("-inf"))
    flat = scores.flatten(1).argmax(1)  # argmax returns the first maximum: smallest i, then smallest j
    start = flat // L
    return start, start + flat % L, scores.flatten(1).gather(1, flat[:, None]).squeeze(1)


def best_span_loop(start_logits_1d: torch.Tensor, end_logits_1d: torch.Tensor, valid_1d: torch.Tensor,
                   max_answer_length: int, end_valid_1d: torch.Tensor | None = None) -> tuple[int, int, float]:
    """The reference double loop over (i, j) for one sequence; a later pair wins only with a strictly higher score."""
    end_valid_1d = valid_1d if end_valid_1d is None else end_valid_1d
    best = (-1, -1, float("-inf"))
    T = len(start_logits_1d)
    for i in range(T):
        if not valid_1d[i]:
            continue
        for j in range(i, min(T, i + max_answer_length)):
            score = (start_logits_1d[i] + end_logits_1d[j]).item()
            if end_valid_1d[j] and score > best[2]:
                best = (i, j, score)
    if best[0] < 0:
        raise ValueError("no span is allowed: the passage mask is empty")
    return best


def null_scores(start_logits: torch.Tensor, end_logits: torch.Tensor) -> torch.Tensor:
    """The "no answer" score s_null = S·C + E·C of every row (B,): the logits at [CLS], position 0 (§4.3)."""
    return start_logits[:, 0] + end_logits[:, 0]


def choose_threshold(span_scores: torch.Tensor, null_scores: torch.Tensor, span_f1: torch.Tensor,
                     null_f1: torch.Tensor) -> tuple[float, float]:
    """The threshold tau that maximizes mean F1 on dev (§4.3), and that F1.

    Item n is answered with its span when ``span_scores[n] > null_scores[n] + tau`` (F1 ``span_f1[n]``),
    otherwise with "" (F1 ``null_f1[n]``: 1 when the gold answer is empty, else 0). Every distinct split
    of the items is tried; tau is the largest margin d = span - null left unanswered (or 1 below the smallest
    margin when answering everything is best). Ties go to the smallest tau, which answers most.
    """
    d = (span_scores - null_scores).double().flatten()
    if not (d.shape == span_f1.flatten().shape == null_f1.flatten().shape) or d.numel() == 0:
        raise ValueError("span_scores, null_scores, span_f1 and null_f1 must be non-empty and of one length")
    d, order = d.sort()
    sf, nf = span_f1.double().flatten()[order], null_f1.double().flatten()[order]
    zero = torch.zeros(1, dtype=torch.float64)
    null_prefix = torch.cat([zero, nf.cumsum(0)])  # F1 when the first m items (smallest margins) get ""
    span_suffix = sf.sum() - torch.cat([zero, sf.cumsum(0)])
    m = torch.cat([torch.zeros(1, dtype=torch.long), torch.searchsorted(d, d.unique(), right=True)])
    total = null_prefix[m] + span_suffix[m]
    k = int(total.argmax())  # first maximum: the smallest tau
    tau = float(d[0] - 1) if m[k] == 0 else float(d[m[k] - 1])
    return tau, float(total[k] / d.numel())


@dataclass
class Window:
    """One window of a passage: its passage tokens are ``start .. start + length - 1``."""

    example_index: int
    start: int
    length: int


@dataclass
class SpanFeatures:
    """Windows of question + passage as model inputs, ``[CLS] question [SEP] passage window [SEP]``.

    Tensors are (F, T) unless noted; ``offsets`` (F, T, 2) holds each passage token's character span in
    its item's context (-1 elsewhere), so a span's text is ``context[offsets[s, 0]:offsets[e, 1]]``.
    ``start_positions``/``end_positions`` are 0 ([CLS]) when the window lacks the answer or there is none.
    """

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    start_positions: torch.Tensor  # (F,)
    end_positions: torch.Tensor  # (F,)
    example_index: torch.Tensor  # (F,) which item
    token_is_max_context: torch.Tensor  # (F, T) bool, False outside the passage
    passage_mask: torch.Tensor  # (F, T) bool, the window's passage tokens
    offsets: torch.Tensor  # (F, T, 2)
    windows: list[Window]
    item_ids: list[str]
    contexts: list[str]

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _answer_tokens(item: Any, offsets: torch.Tensor) -> tuple[int, int] | None:
    """Passage-token indices of the item's first gold answer, or None when it has no answer."""
    answers, context = _field(item, "answers"), _field(item, "context")
    if not answers:
        return None
    for a in answers:
        text, start = a["text"], int(a["answer_start"])
        if not text or context[start:start + len(text)] != text:
            raise ValueError(f"item {_field(item, 'id')!r}: gold answer {text!r} is not in its context at "
                             f"answer_start={start} (found {context[start:start + len(text)]!r}); fix answer_start "
                             f"or the answer text")
    text, start = answers[0]["text"], int(answers[0]["answer_start"])
    end = start + len(text)
    inside = (offsets[:, 1] > start) & (offsets[:, 0] < end)
    if not inside.any():
        raise ValueError(f"item {_field(item, 'id')!r}: gold answer {text!r} covers no passage token")
    idx = inside.nonzero().flatten()
    return int(idx[0]), int(idx[-1])


def max_context_scores(windows: Sequence[tuple[int, int]], num_tokens: int) -> torch.Tensor:
    """(W, N) score min(left, right) + 0.01 * length of each passage token in each window (-inf outside)."""
    starts = torch.tensor([s for s, _ in windows], dtype=torch.float64)[:, None]
    lengths = torch.tensor([n for _, n in windows], dtype=torch.float64)[:, None]
    pos = torch.arange(num_tokens, dtype=torch.float64)[None, :]
    left, right = pos - starts, starts + lengths - 1 - pos
    score = torch.minimum(left, right) + 0.01 * lengths
    return score.masked_fill((left < 0) | (right < 0), float("-inf"))


def _windows(num_tokens: int, room: int, doc_stride: int) -> list[tuple[int, int]]:
    """run_squad.py's rule: windows of at most ``room`` tokens, starting every ``min(length, doc_stride)``."""
    out, start = [], 0
    while True:
        length = min(num_tokens - start, room)
        out.append((start, length))
        if start + length >= num_tokens:
            return out
        start += min(length, doc_stride)


def _check_settings(max_seq_length: int, doc_stride: int, max_query_length: int | None) -> None:
    if doc_stride < 1 or max_seq_length < 4:
        raise ValueError(f"need doc_stride >= 1 and max_seq_length >= 4, got {doc_stride} and {max_seq_length}")
    if max_query_length is not None and max_query_length < 1:
        raise ValueError(f"max_query_length must be >= 1 or None, got {max_query_length}")


def _item_features(item, index: int, tokenizer, max_seq_length: int, doc_stride: int,
                   max_query_length: int | None) -> list[dict]:
    question, context = _field(item, "question"), _field(item, "context")
    q = tokenizer(question, add_special_tokens=False)["input_ids"]
    room = max_seq_length - len(q) - 3  # [CLS] q [SEP] ... [SEP]
    if (max_query_length is not None and len(q) > max_query_length) or room < 1:
        raise ValueError(f"item {_field(item, 'id')!r}: the question has {len(q)} word pieces, more than the window "
                         f"allows (max_query_length={max_query_length}, max_seq_length={max_seq_length} leaves "
                         f"{room} passage tokens); shorten the question or raise max_seq_length")
    enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    p, offsets = enc["input_ids"], torch.tensor(enc["offset_mapping"], dtype=torch.long).reshape(-1, 2)
    if not p:
        raise ValueError(f"item {_field(item, 'id')!r}: the context has no tokens")
    answer = _answer_tokens(item, offsets)
    spans = _windows(len(p), room, doc_stride)
    best = max_context_scores(spans, len(p)).argmax(0)  # first maximum, as run_squad.py
    out = []
    for w, (start, length) in enumerate(spans):
        ids = [tokenizer.cls_token_id, *q, tokenizer.sep_token_id, *p[start:start + length], tokenizer.sep_token_id]
        first = len(q) + 2  # position of the window's first passage token
        s = e = 0
        if answer is not None and start <= answer[0] and answer[1] < start + length:
            s, e = answer[0] - start + first, answer[1] - start + first
        out.append(dict(ids=ids, first=first, start=start, length=length, s=s, e=e, index=index,
                        offsets=offsets[start:start + length], is_max=best[start:start + length] == w))
    return out


def featurize_spans(items: Sequence[Any], tokenizer, max_seq_length: int, doc_stride: int,
                    max_query_length: int | None = None) -> SpanFeatures:
    """Model inputs for span items (``id``, ``question``, ``context``, ``answers`` of ``text``/``answer_start``).

    Every passage is cut into windows as ``run_squad.py`` does (see the module docstring); the
    question is never truncated.

    Raises:
        ValueError: a question longer than the window allows (or than ``max_query_length``), a gold
            answer that is not in its context at its ``answer_start``, or bad settings.
    """
    _check_settings(max_seq_length, doc_stride, max_query_length)
    rows = [f for n, item in enumerate(items) for f in
            _item_features(item, n, tokenizer, max_seq_length, doc_stride, max_query_length)]
    F, T = len(rows), max_seq_length
    ids = torch.full((F, T), tokenizer.pad_token_id, dtype=torch.long)
    types, mask = torch.zeros(F, T, dtype=torch.long), torch.zeros(F, T, dtype=torch.long)
    passage, is_max = torch.zeros(F, T, dtype=torch.bool), torch.zeros(F, T, dtype=torch.bool)
    offsets = torch.full((F, T, 2), -1, dtype=torch.long)
    for f, r in enumerate(rows):
        n, a, b = len(r["ids"]), r["first"], r["first"] + r["length"]
        ids[f, :n] = torch.tensor(r["ids"])
        mask[f, :n] = 1
        types[f, a:n] = 1
        passage[f, a:b] = True
        is_max[f, a:b] = r["is_max"]
        offsets[f, a:b] = r["offsets"]
    return SpanFeatures(
        ids, types, mask, torch.tensor([r["s"] for r in rows], dtype=torch.long),
        torch.tensor([r["e"] for r in rows], dtype=torch.long), torch.tensor([r["index"] for r in rows]),
        is_max, passage, offsets, [Window(r["index"], r["start"], r["length"]) for r in rows],
        [str(_field(item, "id")) for item in items], [_field(item, "context") for item in items])


def span_and_null_scores(features: SpanFeatures, start_logits: torch.Tensor, end_logits: torch.Tensor,
                         max_answer_length: int) -> dict[str, tuple[str, float, float]]:
    """item id -> (best span text, its score, null score) across the item's windows.

    A span must start at a token whose window is its max-context window and end inside the same
    window. The best span is the highest score over windows (the first window on ties); the null
    score is the smallest over windows, as ``run_squad.py`` and transformers' pipeline take it.
    """
    if start_logits.shape != features.input_ids.shape or end_logits.shape != features.input_ids.shape:
        raise ValueError(f"logits of shape {tuple(start_logits.shape)} / {tuple(end_logits.shape)} do not match the "
                         f"features {tuple(features.input_ids.shape)}")
    start_logits, end_logits = start_logits.detach().float().cpu(), end_logits.detach().float().cpu()
    s, e, score = best_spans(start_logits, end_logits, features.token_is_max_context, max_answer_length,
                             end_valid=features.passage_mask)
    null = null_scores(start_logits, end_logits)
    out: dict[str, tuple[str, float, float]] = {}
    for f in range(len(features)):
        item = int(features.example_index[f])
        key, ctx = features.item_ids[item], features.contexts[item]
        text = ctx[int(features.offsets[f, s[f], 0]):int(features.offsets[f, e[f], 1])]
        if key not in out:
            out[key] = (text, float(score[f]), float(null[f]))
        else:
            old = out[key]
            best = (text, float(score[f])) if float(score[f]) > old[1] else old[:2]
            out[key] = (*best, min(old[2], float(null[f])))
    return out


def decode_spans(features: SpanFeatures, start_logits: torch.Tensor, end_logits: torch.Tensor,
                 max_answer_length: int, null_threshold: float | None = None) -> dict[str, str]:
    """item id -> answer text, the best span across windows (see :func:`span_and_null_scores`).

    With ``null_threshold`` tau (SQuAD v2.0), the answer is "" unless the span's score exceeds the
    null score + tau; without it, the best span is always returned (SQuAD v1.1).
    """
    scored = span_and_null_scores(features, start_logits, end_logits, max_answer_length)
    if null_threshold is None:
        return {k: text for k, (text, _, _) in scored.items()}
    return {k: (text if span > null + null_threshold else "") for k, (text, span, null) in scored.items()}
