r"""Task metrics of Figure 4: SQuAD exact match and F1 (§4.2, §4.3), entity-level F1 (§5.3), accuracy.

- **SQuAD** (the official ``evaluate-v1.1.py`` / ``evaluate-v2.0.py`` definitions): an answer is
  normalized (lower case, punctuation removed, the articles a/an/the removed, whitespace collapsed);
  exact match is equality of normalized strings, F1 the harmonic mean of token precision and recall
  over the multiset of shared tokens; each takes the best over the gold answers. In v2.0 a question
  without an answer has the gold ``""``, and only the empty prediction scores 1 on it.
- **Entities** (CoNLL-2003's ``conlleval``, as ``seqeval``'s default mode): BIO tags are read into
  (type, start, end) chunks, a chunk starting at ``B-X`` or at an ``I-X`` that follows ``O`` or another
  type; precision, recall and F1 count chunks that match exactly in type and both ends.

Every score comes with its standard error over items (sentences for entity F1, by a seeded bootstrap).
"""
from __future__ import annotations

import collections
import re
import string
from typing import Mapping, Sequence

import torch

from ..stats import mean_se

__all__ = ["normalize_answer", "exact_match", "f1_score", "squad_scores", "bio_spans", "entity_scores",
           "sentence_counts", "paired_f1_difference", "accuracy_se"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _golds(golds: Sequence[str] | str) -> list[str]:
    """The gold answers as evaluate-v2.0.py reads them: empty ones dropped, [""] when none is left."""
    if isinstance(golds, str):
        golds = [golds]
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def _f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:  # "no answer": right only when both are empty
        return float(p == g)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str, golds: Sequence[str] | str) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer (golds [] or [""]: no answer)."""
    return float(max(normalize_answer(pred) == normalize_answer(g) for g in _golds(golds)))


def f1_score(pred: str, golds: Sequence[str] | str) -> float:
    """Token-level F1 of the prediction against its best gold answer (golds [] or [""]: no answer)."""
    return max(_f1(pred, g) for g in _golds(golds))


def squad_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 in percent over the questions of ``golds``, with standard errors.

    Returns ``{"em", "f1", "em_se", "f1_se", "n"}``.

    Raises:
        ValueError: a question without a prediction, a prediction for an unknown question, or no questions.
    """
    missing, extra = set(golds) - set(predictions), set(predictions) - set(golds)
    if missing or extra or not golds:
        raise ValueError(f"predictions and golds must cover the same questions: {len(missing)} without a prediction "
                         f"(e.g. {sorted(missing)[:3]}), {len(extra)} unknown (e.g. {sorted(extra)[:3]}), "
                         f"{len(golds)} golds")
    keys = list(golds)
    em = [100 * exact_match(predictions[k], golds[k]) for k in keys]
    f1 = [100 * f1_score(predictions[k], golds[k]) for k in keys]
    (em_mean, em_se), (f1_mean, f1_se) = mean_se([em]), mean_se([f1])
    return {"em": em_mean, "f1": f1_mean, "em_se": em_se, "f1_se": f1_se, "n": len(keys)}


def _split(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not BIO: use 'O', 'B-<type>' or 'I-<type>'")


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entity chunks of one BIO sequence as (type, start, end), ``end`` inclusive.

    A chunk starts at ``B-X``, or at ``I-X`` after ``O`` or after a tag of another type (conlleval's rule),
    and runs over the ``I-X`` tags that follow.
    """
    spans, current = set(), None  # current = (type, start)
    for i, tag in enumerate(tags):
        prefix, kind = _split(tag)
        if current is not None and (prefix != "I" or kind != current[0]):
            spans.add((current[0], current[1], i - 1))
            current = None
        if prefix != "O" and current is None:
            current = (kind, i)
    if current is not None:
        spans.add((current[0], current[1], len(tags) - 1))
    return spans


def _prf(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall, F1 from (..., 3) counts (correct, predicted, gold); 0 where undefined, as seqeval."""
    correct, pred, gold = counts.unbind(-1)
    p = torch.where(pred > 0, correct / pred.clamp(min=1), torch.zeros_like(correct))
    r = torch.where(gold > 0, correct / gold.clamp(min=1), torch.zeros_like(correct))
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(p))
    return p, r, f


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], bootstrap: int = 1000,
                  seed: int = 0) -> dict[str, float]:
    """Entity-level precision, recall and F1 (fractions) over sentences of BIO tags, as conlleval.

    Returns ``{"precision", "recall", "f1", "f1_se", "n", "entities"}``: ``n`` sentences, ``entities``
    gold chunks; ``f1_se`` is the standard deviation of F1 over ``bootstrap`` resamplings of the
    sentences (seeded, so repeatable).

    Raises:
        ValueError: different numbers of sentences, a sentence whose two tag lists differ in length,
            or a tag that is not BIO.
    """
    if len(gold) != len(pred) or not gold:
        raise ValueError(f"gold has {len(gold)} sentences and pred {len(pred)}; they must be equal and non-zero")
    rows = []
    for n, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {n}: {len(g)} gold tags but {len(p)} predicted tags")
        gs, ps = bio_spans(g), bio_spans(p)
        rows.append((len(gs & ps), len(ps), len(gs)))
    counts = torch.tensor(rows, dtype=torch.float64)  # (N, 3)
    p, r, f = _prf(counts.sum(0))
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, len(rows), (bootstrap, len(rows)), generator=gen)
    weights = torch.zeros(bootstrap, len(rows), dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(bootstrap, len(rows), dtype=torch.float64))  # how often each sentence is drawn
    f_boot = _prf(weights @ counts)[2]
    return {"precision": float(p), "recall": float(r), "f1": float(f),
            "f1_se": float(f_boot.std()) if bootstrap > 1 else 0.0, "n": len(rows), "entities": int(counts[:, 2].sum())}


def sentence_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> list[list[int]]:
    """Per sentence: [correct entities, predicted entities, gold entities] (what entity F1 sums)."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences and pred {len(pred)}")
    out = []
    for g, p in zip(gold, pred):
        gs, ps = bio_spans(g), bio_spans(p)
        out.append([len(gs & ps), len(ps), len(gs)])
    return out


def paired_f1_difference(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], bootstrap: int = 1000,
                         seed: int = 0) -> dict[str, float]:
    """Entity F1 of system ``a`` minus system ``b`` (percent points) on the same sentences, and its SE
    from a paired bootstrap: both systems' counts (:func:`sentence_counts`) resampled with the same
    draws of sentences, so what the two share cancels."""
    A, B = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if A.shape != B.shape or A.dim() != 2 or A.shape[1] != 3 or A.shape[0] == 0:
        raise ValueError(f"paired counts need equal (sentences, 3) shapes, got {tuple(A.shape)} and {tuple(B.shape)}")
    n = A.shape[0]
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (bootstrap, n), generator=gen)
    w = torch.zeros(bootstrap, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones(bootstrap, n,
                                                                                        dtype=torch.float64))
    diff = 100 * (_prf(A.sum(0))[2] - _prf(B.sum(0))[2])
    boot = 100 * (_prf(w @ A)[2] - _prf(w @ B)[2])
    return {"difference": float(diff), "se": float(boot.std()), "items": n}


def accuracy_se(correct: torch.Tensor) -> tuple[float, float]:
    """Accuracy (a fraction) of a boolean vector of per-item outcomes and its standard error sqrt(var / n)."""
    if correct.numel() == 0:
        raise ValueError("accuracy_se needs at least one item")
    return mean_se([correct.flatten().double().tolist()])
