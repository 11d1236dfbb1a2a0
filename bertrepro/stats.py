r"""Statistics of the book's comparisons: means, standard errors, difference tests and ordering claims.

Two kinds of comparison:

* summary rows (mean and spread over seeds, a test set of n items): :func:`difference_test`;
* paired per-item scores of two models on the same items and training draws:
  :func:`paired_difference`, whose standard error adds the seed-to-seed spread and the item draw.

:func:`ordering_claim` turns measured differences into a verdict ("reproduced", "reversed",
"within noise"); :func:`claim_sentence` states it in words. Nothing here is written by hand.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

__all__ = ["mean_std", "mean_se", "difference_test", "paired_difference", "in_points", "ordering_claim", "unmeasured_claim",
           "claim_sentence"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    v = torch.tensor(list(values), dtype=torch.float64)
    if v.numel() == 0:
        raise ValueError("mean_std needs at least one value")
    return float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0


def difference_test(a: Mapping[str, Any], b: Mapping[str, Any], sigmas: float = 2.0) -> dict[str, float | bool]:
    """Is summary row ``a`` ahead of summary row ``b`` by more than ``sigmas`` standard errors?

    The standard error of the difference of the two mean accuracies adds both sources of noise: the
    seed-to-seed spread of each mean (:math:`s^2/k` over its :math:`k` seeds) and the binomial noise of
    a test set of :math:`n` articles (:math:`p(1-p)/n` for each accuracy :math:`p`). With two
    standard errors, "ahead" is roughly a 95 % one-sided test.
    """
    n = max(1, min(a["n_test"], b["n_test"]))
    se = math.sqrt(a["std"] ** 2 / a["seeds"] + b["std"] ** 2 / b["seeds"]
                   + a["mean"] * (1 - a["mean"]) / n + b["mean"] * (1 - b["mean"]) / n)
    diff = a["mean"] - b["mean"]
    return {"difference": diff, "standard_error": se, "ahead": diff > sigmas * se, "n_test": n}


def mean_se(matrix: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean accuracy over (seeds x items) and its standard error (seed spread + binomial item term)."""
    A = torch.as_tensor(matrix, dtype=torch.float64)
    S, n = A.shape
    se_s = float(A.mean(1).std() / math.sqrt(S)) if S > 1 else 0.0
    se_i = float(math.sqrt(A.var(1, unbiased=True).mean() / n)) if n > 1 else 0.0
    return float(A.mean()), math.hypot(se_s, se_i)


def paired_difference(a: Sequence[Sequence[float]] | torch.Tensor,
                      b: Sequence[Sequence[float]] | torch.Tensor) -> dict[str, float]:
    r"""Mean of ``a - b`` over items and its standard error, for paired (seeds x items) scores.

    ``a[s][i]`` and ``b[s][i]`` score the same item ``i`` under the same training draw ``s`` (a
    single row for one seed). Two sources of error add up:

    * the draw of training sets (seeds): :math:`\mathrm{SE}_s^2 = \mathrm{Var}_s(D_s)/S` of the per-seed
      mean differences :math:`D_s` (0 with one seed);
    * the draw of test items, shared by every seed so it does not average out:
      :math:`\mathrm{SE}_i^2 = \overline{\mathrm{Var}_i(d_{s,i})}/n` (a paired, McNemar-style term).

    Returns ``difference``, ``se`` = :math:`\sqrt{\mathrm{SE}_s^2 + \mathrm{SE}_i^2}`, ``se_seeds``,
    ``se_items``, ``seeds`` and ``items``.
    """
    A = torch.as_tensor(a, dtype=torch.float64)
    B = torch.as_tensor(b, dtype=torch.float64)
    if A.dim() == 1:
        A, B = A[None], B[None]
    if A.shape != B.shape or A.dim() != 2 or A.numel() == 0:
        raise ValueError(f"paired scores need equal (seeds, items) shapes, got {tuple(A.shape)} and {tuple(B.shape)}")
    d = A - B  # (S, n)
    S, n = d.shape
    per_seed = d.mean(1)  # (S,)
    se_seeds = float(per_seed.std() / math.sqrt(S)) if S > 1 else 0.0
    se_items = float(math.sqrt(d.var(1, unbiased=True).mean() / n)) if n > 1 else 0.0
    return {"difference": float(per_seed.mean()), "se": math.hypot(se_seeds, se_items), "se_seeds": se_seeds,
            "se_items": se_items, "seeds": S, "items": n}


def in_points(d: Mapping[str, float]) -> dict[str, float]:
    """A :func:`paired_difference` of fractions (accuracies) in percentage points."""
    return {**d, **{k: 100 * d[k] for k in ("difference", "se", "se_seeds", "se_items")}}


def ordering_claim(key: str, claim: str, measured: Sequence[Mapping[str, float]], paper: float | None,
                   unit: str, overall: Mapping[str, float] | None = None, sigmas: float = 2.0) -> dict[str, Any]:
    """Decide one ordering claim from measured paired differences, each oriented so that the
    paper's direction is positive.

    ``measured`` holds one :func:`paired_difference` per step of the claim (one for "A beats B", one
    per adjacent pair for "larger is better at every step"); ``overall`` (default: the single step)
    is the end-to-end difference reported as the claim's value. Verdicts:

    * every step positive by more than ``sigmas`` standard errors: ``"reproduced"`` -> status
      "qualitatively reproduced";
    * some step negative by more than ``sigmas`` standard errors: ``"reversed"``;
    * otherwise ``"within noise"`` (the data cannot tell); both give "not reproduced at this scale".
    """
    if not measured:
        raise ValueError(f"claim {key!r} has no measured differences")
    if overall is None:
        if len(measured) != 1:
            raise ValueError(f"claim {key!r} has {len(measured)} steps; pass overall= (the end-to-end difference)")
        overall = measured[0]
    if all(m["difference"] > sigmas * m["se"] and m["difference"] > 0 for m in measured):
        verdict = "reproduced"
    elif any(m["difference"] < -sigmas * m["se"] and m["difference"] < 0 for m in measured):
        verdict = "reversed"
    else:
        verdict = "within noise"
    return {"key": key, "claim": claim, "steps": [dict(m) for m in measured], "value": overall["difference"],
            "se": overall["se"], "paper": paper, "unit": unit, "sigmas": sigmas, "verdict": verdict,
            "status": "qualitatively reproduced" if verdict == "reproduced" else "not reproduced at this scale"}


def unmeasured_claim(key: str, claim: str, reason: str, unit: str) -> dict[str, Any]:
    """A claim the results cannot decide because there is nothing to compare (``reason`` says why):
    verdict "not measured", status "inconclusive", no value."""
    return {"key": key, "claim": claim, "steps": [], "value": None, "se": None, "paper": None, "unit": unit,
            "sigmas": None, "verdict": "not measured", "reason": reason, "status": "inconclusive"}


def claim_sentence(c: Mapping[str, Any]) -> str:
    """One sentence stating a claim, what was measured and the verdict (generated from the numbers)."""
    if c["verdict"] == "not measured":
        return f"**{c['claim']}**: not measured ({c['reason']}) → *{c['status']}*."
    v, se = c["value"], c["se"]
    paper = "" if c["paper"] is None else f" (paper: {c['paper']:+.2f} {c['unit']})"
    steps = ""
    if len(c["steps"]) > 1:
        steps = " Steps: " + ", ".join(f"{m['difference']:+.2f} ± {m['se']:.2f}" for m in c["steps"]) + "."
    if c["verdict"] == "reproduced":
        verdict = f"the paper's ordering holds by more than {c['sigmas']:g} standard errors"
    elif c["verdict"] == "reversed":
        verdict = (f"the opposite of the paper's ordering, by more than {c['sigmas']:g} standard errors"
                   + ("" if len(c["steps"]) == 1 else " at some step"))
    else:
        if v == 0 and len(c["steps"]) == 1:
            verdict = "no difference at all: the data cannot tell"
        else:
            direction = "the paper's direction" if v > 0 else ("no difference" if v == 0 else "the opposite direction")
            verdict = (f"{direction}, but {'some step is' if len(c['steps']) > 1 else 'it is'} within "
                       f"{c['sigmas']:g} standard errors: the data cannot tell")
    return (f"**{c['claim']}**: measured {v:+.2f} ± {se:.2f} {c['unit']}{paper}; {verdict} → "
            f"*{c['status']}*.{steps}")
