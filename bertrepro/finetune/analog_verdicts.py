r"""What the analog tasks decide: every rule's score on the same items, and the verdicts built on them.

* :func:`rule_scores` -- each task's rules on a set of test items, scored like a model (percent, SE,
  ``n`` and per-item scores): the **trivial** baseline of :data:`TRIVIAL` (the majority class, chance,
  a random sentence's subject, always "no answer", "no names") and the word rules of
  :mod:`bertrepro.finetune.baselines`.
* :func:`paired` -- the difference of two systems' main scores on the same items and its SE: paired
  over items (accuracy, SQuAD F1), or a paired bootstrap over sentences (entity F1).
* :func:`learned` -- a system has learned a task when it beats the trivial baseline by 3 SE, paired.
* :func:`pretraining_helps` -- pretrained minus random, decided only when both learned:
  "qualitatively reproduced" above 2 SE, else "not reproduced at this scale"; "inconclusive" when an
  arm did not learn (the one meaning of that status).
* :func:`beats_rules` -- a system against the best word rule, 2 SE.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..stats import paired_difference
from .analog_runs import MAIN_METRIC, choice_scores, span_scores, tag_scores
from .analogs import AnalogTask
from .baselines import (CHANCE, choice_overlap, fit_abstain_threshold, ner_lexicon, pair_majority, pair_overlap,
                        qa_first_title_span, qa_question_overlap, qa_random_sentence)
from .metrics import paired_f1_difference

__all__ = ["TRIVIAL", "rule_scores", "paired", "learned", "pretraining_helps", "beats_rules"]

# The rule that knows nothing, per task: the bar a system must clear to count as having learned it.
TRIVIAL = {"qnli": "majority class", "squad11": "random sentence's subject", "squad20": "always no answer",
           "ner": "no names", "swag": "chance"}


def rule_scores(task_name: str, task: AnalogTask, items: Sequence[Any] | None = None,
                seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every rule of ``task`` on ``items`` (default: its test split): name -> scores, the trivial one first.

    Rules that are fitted (the QNLI threshold, the NER lexicon, SQuAD v2.0's abstaining threshold)
    are fitted on the training split only.
    """
    items = list(task.test if items is None else items)
    if not items:
        raise ValueError(f"no {task_name} items to score the rules on")
    if task_name in ("squad11", "squad20"):
        out = {}
        if task_name == "squad20":
            out["always no answer"] = span_scores({it.id: "" for it in items}, items)
        out["random sentence's subject"] = span_scores(qa_random_sentence(items, seed), items)
        out["first title-shaped span"] = span_scores(qa_first_title_span(items), items)
        out["question-overlap sentence"] = span_scores(qa_question_overlap(items), items)
        if task_name == "squad20":
            t = fit_abstain_threshold(task.train)
            out[f"question overlap > {t:g}, else no answer"] = span_scores(qa_question_overlap(items, t), items)
        return out
    if task_name == "ner":
        gold = [it.tags for it in items]
        return {"no names": tag_scores(gold, [["O"] * len(g) for g in gold]),
                "word lexicon + joiners": tag_scores(gold, ner_lexicon(task.train)(items))}
    labels = torch.tensor([it.label for it in items])
    if task_name == "qnli":
        return {"majority class": choice_scores(pair_majority(task.train, items) == labels),
                "word overlap": choice_scores(pair_overlap(task.train, items) == labels)}
    if task_name == "swag":
        chance = {"accuracy": 100 * CHANCE, "accuracy_se": 0.0, "n": len(items), "per_item": [100 * CHANCE] * len(items)}
        return {"chance": chance, "word overlap": choice_scores(choice_overlap(items) == labels)}
    raise ValueError(f"unknown task {task_name!r}; valid tasks are {', '.join(MAIN_METRIC)}")


def paired(task_name: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float]:
    """(a's main score minus b's, its SE) on the same items: per-item pairs, or for entity F1 a paired
    bootstrap over sentences (:func:`~bertrepro.finetune.metrics.paired_f1_difference`)."""
    if len(a["per_item"]) != len(b["per_item"]):
        raise ValueError(f"{task_name}: the two systems were scored on {len(a['per_item'])} and "
                         f"{len(b['per_item'])} items; compare them on the same items")
    if task_name == "ner":
        d = paired_f1_difference(a["per_item"], b["per_item"])
    else:
        d = paired_difference([a["per_item"]], [b["per_item"]])
    return float(d["difference"]), float(d["se"])


def learned(task_name: str, scores: Mapping[str, Any], trivial: Mapping[str, Any],
            sigmas: float = 3.0) -> dict[str, Any]:
    """Whether a system beat the trivial baseline by ``sigmas`` SE, paired over the same items."""
    diff, se = paired(task_name, scores, trivial)
    return {"difference": diff, "se": se, "learned": bool(diff > sigmas * se and diff > 0)}


def pretraining_helps(task_name: str, pretrained: Mapping[str, Any], random: Mapping[str, Any],
                      trivial: Mapping[str, Any], sigmas: float = 2.0) -> dict[str, Any]:
    """Pretrained minus random (test scores of the same items), and the verdict when both arms learned."""
    lp, lr = learned(task_name, pretrained, trivial), learned(task_name, random, trivial)
    diff, se = paired(task_name, pretrained, random)
    if not (lp["learned"] and lr["learned"]):
        status = "inconclusive"
    elif diff > sigmas * se:
        status = "qualitatively reproduced"
    else:
        status = "not reproduced at this scale"
    return {"difference": diff, "se": se, "status": status, "metric": MAIN_METRIC[task_name],
            "n": len(pretrained["per_item"]), "pretrained_learned": lp["learned"], "random_learned": lr["learned"]}


def beats_rules(task_name: str, scores: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]],
                trivial: Mapping[str, Any], sigmas: float = 2.0) -> dict[str, Any]:
    """A system against the best rule on the same items: "qualitatively reproduced" when it leads by
    ``sigmas`` SE, "not reproduced at this scale" otherwise, "inconclusive" when it did not learn."""
    m = MAIN_METRIC[task_name]
    name = max(rules, key=lambda k: rules[k][m])
    diff, se = paired(task_name, scores, rules[name])
    ok = learned(task_name, scores, trivial)["learned"]
    status = ("inconclusive" if not ok else
              "qualitatively reproduced" if diff > sigmas * se else "not reproduced at this scale")
    return {"rule": name, "difference": diff, "se": se, "status": status, "n": len(scores["per_item"])}
