r"""The feature-based arm on every analog task (BERT §5.3, Table 7): a frozen encoder, a trained head.

:func:`run_features` encodes each split once (:func:`~bertrepro.finetune.features.encode_features`,
kept in a :class:`~bertrepro.finetune.features.FeatureCache`), trains one head per layer choice of
Table 7 on **every** training item (early-stopped on dev), and scores dev and test with the very
code that scores the fine-tuned heads (:func:`~bertrepro.finetune.analog_runs.score_outputs`). The
layer choice to report for a task is the best on dev; Table 7 itself (NER) reports all six.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from .analog_runs import MAIN_METRIC, TASK_KINDS, AnalogBudget, EncodedSplit, score_outputs
from .analogs import ITEM_SPLITS, NAME_TAGS
from .features import (LAYER_CHOICES, FeatureCache, FeatureHead, FeatureSet, collapsed_choices, encode_features,
                       feature_logits, train_feature_head)
from .tasks import Arm

__all__ = ["FeatureResult", "feature_inputs", "encode_feature_splits", "run_features", "best_choice"]


@dataclass
class FeatureResult:
    """One layer choice of one arm on one task: dev and test scores (percent, SE, per item)."""

    task: str
    arm: str
    choice: str
    dev: dict[str, Any]
    test: dict[str, Any]
    training: dict[str, Any]  # train_feature_head's epochs, dev curve, seconds
    weights: list[float] = field(default_factory=list)  # the learned layer weights (sums), else []
    same_as: str | None = None  # the choice it coincides with at this depth (then not trained again)

    def score(self, split: str = "test") -> tuple[float, float]:
        m = MAIN_METRIC[self.task]
        s = getattr(self, split)
        return s[m], s[f"{m}_se"]


def feature_inputs(enc: EncodedSplit) -> dict[str, torch.Tensor]:
    """What :func:`encode_features` reads from an encoded split: the model inputs, the targets and, for
    tags, the word index."""
    out = dict(enc.inputs)
    if enc.kind == "tag":
        out["word_index"] = enc.word_index
    return out


def encode_feature_splits(task_name: str, arm: Arm, enc: Mapping[str, EncodedSplit], cache: FeatureCache,
                          device: torch.device | str = "cpu") -> dict[str, FeatureSet]:
    """Every split's frozen features, from ``cache`` when this arm's split was encoded before.

    Pairs and choices read ``[CLS]`` (§4.1), except on MiniLM, a sentence-embedding model trained to
    be read by mean pooling: its ``[CLS]`` vector was never trained to hold the sentence.
    """
    kind = TASK_KINDS[task_name]
    dtype = torch.float16 if kind == "span" else torch.float32  # token-level features are large
    pooling = "mean" if arm.name.startswith("minilm") else "cls"
    return {s: cache.get((arm.name, task_name, s),
                         lambda s=s: encode_features(arm.encoder, kind, feature_inputs(enc[s]), device=device,
                                                     store_dtype=dtype, pooling=pooling))
            for s in ITEM_SPLITS}


def run_features(task_name: str, arm: Arm, enc: Mapping[str, EncodedSplit], budget: AnalogBudget,
                 cache: FeatureCache, choices: Sequence[str] = LAYER_CHOICES, seed: int = 0,
                 device: torch.device | str = "cpu", tagger: str | None = None) -> dict[str, FeatureResult]:
    """Train a head on each layer choice of ``arm``'s frozen features; choices that coincide at this
    depth (:func:`collapsed_choices`) reuse the result of the one they equal.

    ``tagger`` (:class:`~bertrepro.finetune.features.FeatureHead`): None picks a linear layer for spans
    (the start and end vectors of §4.2, on every token of every window: an MLP there costs minutes on a
    CPU) and the MLP otherwise (a linear layer on frozen word vectors barely finds a name).
    """
    kind, metric, v2 = TASK_KINDS[task_name], MAIN_METRIC[task_name], task_name == "squad20"
    tagger = tagger or ("linear" if kind == "span" else "mlp")
    fs = encode_feature_splits(task_name, arm, enc, cache, device)
    L, H = arm.encoder.config.num_hidden_layers, arm.encoder.config.hidden_size
    same = collapsed_choices(L)
    out: dict[str, FeatureResult] = {}
    for choice in choices:
        if choice in same and same[choice] in out:
            r = out[same[choice]]
            out[choice] = FeatureResult(task_name, arm.name, choice, r.dev, r.test, r.training, r.weights, same[choice])
            continue
        head = FeatureHead(kind, choice, L, H, num_labels=len(NAME_TAGS) if kind == "tag" else 2, tagger=tagger)

        def dev_metric(h: FeatureHead) -> float:
            return score_outputs(enc["dev"], feature_logits(h, fs["dev"]), budget, choose_tau=v2, se=False)[metric]

        info = train_feature_head(head, fs["train"], dev_metric, max_epochs=budget.feature_epochs,
                                  patience=budget.feature_patience, learning_rate=budget.feature_learning_rate,
                                  seed=seed, min_epochs=budget.feature_min_epochs)
        dev = score_outputs(enc["dev"], feature_logits(head, fs["dev"]), budget, choose_tau=v2)
        test = score_outputs(enc["test"], feature_logits(head, fs["test"]), budget, null_threshold=dev.get("tau"))
        weights = head.mix.weights().detach().tolist() if head.mix.scalars is not None else []
        out[choice] = FeatureResult(task_name, arm.name, choice, dev, test, info, weights)
    return out


def best_choice(results: Mapping[str, FeatureResult]) -> str:
    """The layer choice with the best dev score (the first on ties, in Table 7's order)."""
    m = MAIN_METRIC[next(iter(results.values())).task]
    return max(results, key=lambda c: (results[c].dev[m], -list(results).index(c)))
