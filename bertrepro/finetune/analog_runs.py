r"""Fine-tuning every head of the paper's Figure 4 (§4.1-§4.4) on the book's offline analogs.

One task, one arm: :func:`run_task` encodes the task's items for its head (:data:`TASK_KINDS`),
fine-tunes a fresh head on the arm's encoder with :func:`~bertrepro.finetune.classifier.fine_tune`
(the loop of chapter 10's classifier, early-stopped on dev where the budget says so), chooses the
learning rate on dev and scores dev and test with the official metrics
(:mod:`bertrepro.finetune.metrics`), every number with its standard error. :func:`score_outputs`
scores any head's outputs, so the feature-based heads (:mod:`bertrepro.finetune.analog_features`)
are scored by the same code.

* span tasks (SQuAD v1.1, v2.0 analogs): windows of ``max_seq_length`` tokens every ``doc_stride``
  (:func:`bertrepro.spans.featurize_spans`), best span across windows (:func:`~bertrepro.spans.decode_spans`);
  for v2.0 the no-answer threshold :math:`\tau` is chosen on dev to maximise F1 (§4.3) and reused on test;
* tags (NER analog): each word's label on its first sub-token (§5.3); a word's predicted tag is its
  first sub-token's, and a word cut off by ``max_seq_length`` is tagged ``O``; entity-level F1;
* pairs (QNLI analog) and multiple choice (SWAG analog): accuracy.

Scores are in percent. The per-profile sizes are :data:`bertrepro.profiles.ANALOGS`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..heads import head_from_encoder
from ..profiles import ANALOGS, PROFILES, check_profile
from ..progress import bar as tqdm
from ..spans import choose_threshold, decode_spans, featurize_spans, span_and_null_scores
from ..train.optim import autocast, eval_mode
from .classifier import FinetuneConfig, FinetuneResult, fine_tune, take_rows
from .analogs import (ITEM_SPLITS, NAME_TAGS, TASKS, AnalogTask, align_first_subtoken, build_task, encode_choices,
                      encode_pairs, fast_tokenizer, word_tags)
from .metrics import accuracy_se, entity_scores, f1_score, sentence_counts, squad_scores
from .tasks import Arm

__all__ = ["TASK_KINDS", "MAIN_METRIC", "AnalogBudget", "ANALOG_BUDGETS", "analog_budget", "load_analog",
           "keep_fitting", "EncodedSplit", "encode_task", "encode_splits", "arm_limits", "forward_all", "evaluate",
           "score_outputs", "span_scores", "tag_scores", "choice_scores", "AnalogResult", "run_task"]

TASK_KINDS = {"qnli": "pair", "squad11": "span", "squad20": "span", "ner": "tag", "swag": "choice"}
MAIN_METRIC = {"qnli": "accuracy", "squad11": "f1", "squad20": "f1", "ner": "f1", "swag": "accuracy"}


@dataclass(frozen=True)
class AnalogBudget:
    """What one analog task runs at one profile (:data:`bertrepro.profiles.ANALOGS`)."""

    max_train: int | None  # training items (None: all)
    max_eval: int | None  # items of dev and of test each (None: all)
    max_seq_length: int  # tokens per sequence or window
    doc_stride: int  # span tasks: passage tokens between window starts
    max_query_length: int  # span tasks: longest question in word pieces
    max_answer_length: int  # span tasks: longest answer in tokens
    epochs: float  # the most epochs of fine-tuning (early stopping on dev may stop sooner)
    batch_size: int
    min_steps: int
    learning_rates: Mapping[str, tuple[float, ...]]  # per arm, chosen on dev
    patience: int = 0  # epochs without a better dev score before fine-tuning stops (0: never early)
    task_options: Mapping[str, Any] = field(default_factory=dict)  # the task builder's keyword arguments
    minilm_train: int | None = None  # MiniLM's training items: the first this many (None: all)
    minilm_eval: int | None = None  # MiniLM's test items: the first this many (None: all)
    minilm_dev: int | None = None  # MiniLM's dev items: the first this many (None: all)
    minilm_finetune: bool = True  # False: MiniLM is only used feature-based (its steps cost ~50x the small models')
    feature_epochs: int = 12  # the feature-based heads: at most this many epochs, early-stopped on dev
    feature_min_epochs: int = 4  # ... and at least this many (an F1 starts at 0 while a head learns the prior)
    feature_patience: int = 2
    feature_learning_rate: float = 3e-3
    feature_choices: tuple[str, ...] | None = None  # Table 7's layer choices to try (None: all six)
    feature_heads: tuple[str, ...] = ("mlp", "linear", "bilstm")  # the NER heads the chapter compares

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(batch_size=self.batch_size, epochs=self.epochs, min_steps=self.min_steps,
                              max_seq_length=self.max_seq_length)


ANALOG_BUDGETS: dict[str, dict[str, AnalogBudget]] = {
    p: {t: AnalogBudget(**ANALOGS[p][t]) for t in TASKS} for p in PROFILES}


def analog_budget(profile: str, task: str) -> AnalogBudget:
    """The budget of ``task`` at ``profile``; raises ``ValueError`` naming the valid tasks or profiles."""
    check_profile(profile)
    if task not in TASK_KINDS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {', '.join(TASKS)}")
    return ANALOG_BUDGETS[profile][task]


def load_analog(name: str, budget: AnalogBudget, seed: int = 0, corpus: Any = "wiki-vital") -> AnalogTask:
    """Task ``name`` built from the corpus (:func:`~bertrepro.finetune.analogs.build_task`, with the
    budget's ``task_options``), cut to the budget's sizes (the first items of each split, which come in
    a seeded order)."""
    caps = [c for c in (budget.max_train, budget.max_eval) if c is not None]
    task = build_task(name, corpus=corpus, seed=seed, max_items=max(caps) if len(caps) == 2 else None,
                      **dict(budget.task_options))
    cut = {"train": budget.max_train, "dev": budget.max_eval, "test": budget.max_eval}
    for split, cap in cut.items():
        if len(task.split(split)) == 0:
            raise ValueError(f"task {name!r} has no {split} items; the corpus is too small for it")
        setattr(task, split, task.split(split)[:cap])
    return task


def keep_fitting(task: AnalogTask, tokenizers: Sequence[Any], max_seq_length: int) -> dict[str, int]:
    """Keep, in every split of a tag task, the sentences whose every word has a token in a window of
    ``max_seq_length`` under each tokenizer, so that every system is scored on the same words (a cut-off
    word would otherwise count as predicted ``O`` for one vocabulary and not the other). Returns how
    many sentences each split lost."""
    lost = {}
    for split in ITEM_SPLITS:
        items = task.split(split)
        ok = [True] * len(items)
        for tok in tokenizers:
            _, mask, _, _, word_index = align_first_subtoken(tok, [it.words for it in items], None, NAME_TAGS,
                                                            max_seq_length + 1)
            fits = mask.sum(1) <= max_seq_length
            ok = [a and bool(b) for a, b in zip(ok, fits.tolist())]
        setattr(task, split, [it for it, k in zip(items, ok) if k])
        lost[split] = ok.count(False)
    return lost


@dataclass
class EncodedSplit:
    """One split of a task encoded for its head: ``inputs`` (forward() arguments, targets included) and
    what decoding needs (span ``features``; tag ``word_index``)."""

    kind: str
    inputs: dict[str, torch.Tensor]
    items: list
    features: Any = None  # SpanFeatures (span tasks)
    word_index: torch.Tensor | None = None  # (N, T) tag tasks

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.inputs.items() if k in ("input_ids", "token_type_ids", "attention_mask")}


def encode_task(kind: str, items: Sequence[Any], tokenizer: Any, budget: AnalogBudget) -> EncodedSplit:
    """Encode ``items`` for a head of ``kind`` (``pair``, ``span``, ``tag``, ``choice``) with ``budget``'s lengths.

    Raises ``ValueError`` (from the encoders) for a question longer than the window or a gold answer
    that is not in its context.
    """
    items, T = list(items), budget.max_seq_length
    if kind == "span":
        f = featurize_spans(items, fast_tokenizer(tokenizer), T, budget.doc_stride, budget.max_query_length)
        inputs = {"input_ids": f.input_ids, "token_type_ids": f.token_type_ids, "attention_mask": f.attention_mask,
                  "start_positions": f.start_positions, "end_positions": f.end_positions}
        return EncodedSplit(kind, inputs, items, features=f)
    if kind == "tag":
        ids, mask, types, labels, word_index = align_first_subtoken(
            tokenizer, [it.words for it in items], [it.tags for it in items], NAME_TAGS, T)
        inputs = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
        return EncodedSplit(kind, inputs, items, word_index=word_index)
    if kind == "pair":
        enc, labels = encode_pairs(tokenizer, items, T)
        inputs = {"input_ids": enc.input_ids, "token_type_ids": enc.token_type_ids,
                  "attention_mask": enc.attention_mask, "labels": labels}
        return EncodedSplit(kind, inputs, items)
    if kind == "choice":
        inputs, labels = encode_choices(tokenizer, items, T)
        return EncodedSplit(kind, {**inputs, "labels": labels}, items)
    raise ValueError(f"unknown head kind {kind!r}; choose one of {sorted(set(TASK_KINDS.values()))}")


@torch.no_grad()
def forward_all(model: nn.Module, inputs: Mapping[str, torch.Tensor], names: Sequence[str], token_axis: bool,
                batch_size: int = 128, device: torch.device | str = "cpu",
                fill: float = -1e4) -> dict[str, torch.Tensor]:
    """Outputs ``names`` of ``model`` (eval mode) for every row of ``inputs``, float32 on the CPU.

    Rows are batched by length and trimmed to the longest of a batch (:func:`take_rows`); with
    ``token_axis`` the outputs have a token axis at 1 (span and tag logits), padded back to the full
    length with ``fill``.
    """
    mask = inputs["attention_mask"]
    N, T = mask.shape[0], mask.shape[-1]
    lengths = mask.sum(-1) if mask.dim() == 2 else mask.sum(-1).amax(-1)
    order = torch.argsort(lengths, descending=True, stable=True)
    out: dict[str, torch.Tensor] = {}
    model.to(device)
    with eval_mode(model), autocast(device):
        for idx in torch.split(order, batch_size):
            o = model(**{k: v.to(device) for k, v in take_rows(inputs, idx).items()})
            for name in names:
                v = getattr(o, name).float().cpu()
                if name not in out:
                    shape = (N, T, *v.shape[2:]) if token_axis else (N, *v.shape[1:])
                    out[name] = torch.full(shape, fill)
                if token_axis:
                    out[name][idx, :v.shape[1]] = v
                else:
                    out[name][idx] = v
    return out


def span_scores(predictions: Mapping[str, str], items: Sequence[Any]) -> dict[str, Any]:
    """SQuAD EM and F1 (percent, SE, n) of answers to span ``items``, with per-item F1 and the predictions."""
    golds = {it.id: [a["text"] for a in it.answers] for it in items}
    s = squad_scores(predictions, golds)
    per_item = [100 * f1_score(predictions[k], golds[k]) for k in golds]
    return {"em": s["em"], "f1": s["f1"], "em_se": s["em_se"], "f1_se": s["f1_se"], "n": s["n"],
            "per_item": per_item, "predictions": dict(predictions)}


def tag_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], se: bool = True) -> dict[str, Any]:
    """Entity-level F1 (percent, bootstrap SE unless ``se`` is False), with per-sentence counts and the tags."""
    s = entity_scores(gold, pred, bootstrap=1000 if se else 1)
    return {"f1": 100 * s["f1"], "f1_se": 100 * s["f1_se"], "precision": 100 * s["precision"],
            "recall": 100 * s["recall"], "n": s["n"], "predictions": [list(p) for p in pred],
            "per_item": sentence_counts(gold, pred)}


def choice_scores(correct: torch.Tensor) -> dict[str, Any]:
    """Accuracy (percent, binomial SE, n) of per-item outcomes, with the per-item scores."""
    acc, se = accuracy_se(correct)
    return {"accuracy": 100 * acc, "accuracy_se": 100 * se, "n": len(correct),
            "per_item": (100 * correct.double()).tolist()}


def _midpoint(tau: float, margins: torch.Tensor) -> float:
    """Move ``tau`` halfway to the next larger margin (span - null score), or 1 above the largest.

    :func:`~bertrepro.spans.choose_threshold` returns a margin of the dev set itself; any value up to
    the next margin splits dev the same way (the same F1), and the midpoint keeps an item's decision
    from hanging on rounding when another implementation recomputes its logits (``hf_agreement``).
    """
    above = margins[margins > tau]
    return float((tau + above.min()) / 2) if above.numel() else tau + 1.0


_OUTPUTS = {"span": (("start_logits", "end_logits"), True), "tag": (("logits",), True),
            "pair": (("logits",), False), "choice": (("logits",), False)}


def evaluate(model: nn.Module, enc: EncodedSplit, budget: AnalogBudget, device: torch.device | str = "cpu",
             null_threshold: float | None = None, choose_tau: bool = False, se: bool = True) -> dict[str, Any]:
    """Scores (percent) of a fine-tuned head on one encoded split: :func:`score_outputs` of its outputs."""
    names, token_axis = _OUTPUTS[enc.kind]
    o = forward_all(model, enc.model_inputs(), names, token_axis, device=device)
    return score_outputs(enc, o, budget, null_threshold, choose_tau, se)


def score_outputs(enc: EncodedSplit, o: Mapping[str, torch.Tensor], budget: AnalogBudget,
                  null_threshold: float | None = None, choose_tau: bool = False, se: bool = True) -> dict[str, Any]:
    """Scores (percent) of a head's outputs ``o`` on one encoded split, with standard errors and predictions.

    Span tasks: ``em``, ``f1`` from ``start_logits``/``end_logits`` (``null_threshold``: SQuAD v2.0's tau;
    ``choose_tau``: choose it here, on this split, to maximise F1, and return it as ``tau``). Tags:
    ``f1`` (entity level, bootstrap SE) from per-token ``logits``. Pairs and choices: ``accuracy``.
    ``per_item`` holds the per-item scores for paired differences (tags: per-sentence counts ``tp``,
    ``n_pred``, ``n_gold`` for a paired bootstrap). Fine-tuned and feature-based heads are scored here alike.
    ``se=False`` skips the entity F1's bootstrap (its SE is then 0): for the dev scores of early stopping.
    """
    if enc.kind == "span":
        tau = null_threshold
        if choose_tau:
            tau = _choose_tau(enc, o, budget)
        preds = decode_spans(enc.features, o["start_logits"], o["end_logits"], budget.max_answer_length, tau)
        return {**span_scores(preds, enc.items), **({"tau": tau} if tau is not None else {})}
    if enc.kind == "tag":
        preds = word_tags(o["logits"].argmax(-1), enc.word_index, [len(it.words) for it in enc.items], NAME_TAGS)
        return tag_scores([it.tags for it in enc.items], preds, se)
    pred = o["logits"].argmax(-1)
    return {**choice_scores(pred == enc.inputs["labels"]), "predictions": pred.tolist()}


def _choose_tau(enc: EncodedSplit, o: Mapping[str, torch.Tensor], budget: AnalogBudget) -> float:
    scored = span_and_null_scores(enc.features, o["start_logits"], o["end_logits"], budget.max_answer_length)
    golds = {it.id: [a["text"] for a in it.answers] for it in enc.items}
    keys = list(golds)
    col = lambda i: torch.tensor([scored[k][i] for k in keys], dtype=torch.float64)  # noqa: E731
    span_f1 = torch.tensor([f1_score(scored[k][0], golds[k]) for k in keys], dtype=torch.float64)
    null_f1 = torch.tensor([f1_score("", golds[k]) for k in keys], dtype=torch.float64)
    tau, _ = choose_threshold(col(1), col(2), span_f1, null_f1)
    return _midpoint(tau, col(1) - col(2))


@dataclass
class AnalogResult:
    """One arm fine-tuned on one task: the chosen learning rate, dev and test scores (percent, with SE)."""

    task: str
    arm: str
    kind: str
    learning_rate: float
    dev_scores: dict[float, float]  # the main dev metric per learning rate
    dev: dict[str, Any]
    test: dict[str, Any]
    run: FinetuneResult
    train_items: int
    seconds: float
    tau: float | None = None  # SQuAD v2.0's no-answer threshold, chosen on dev
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.run.model

    def score(self, split: str = "test") -> tuple[float, float]:
        """(main metric, its standard error) on ``split``."""
        m = MAIN_METRIC[self.task]
        s = getattr(self, split)
        return s[m], s[f"{m}_se"]


def encode_splits(task_name: str, task: AnalogTask, tokenizer: Any, budget: AnalogBudget,
                  cache: dict | None = None, key: str = "", limits: Mapping[str, int | None] | None = None
                  ) -> dict[str, EncodedSplit]:
    """Each split of ``task`` encoded for its head, the first ``limits[split]`` items of it (None: all).

    With ``cache`` (a dict) and ``key`` (e.g. the vocabulary file), an encoding is made once and shared:
    the random and pretrained arms read the same vocabulary, so they share their inputs.
    """
    kind, limits = TASK_KINDS[task_name], dict(limits or {})
    out = {}
    for split in ITEM_SPLITS:
        items = task.split(split)[:limits.get(split)]
        k = (key, task_name, split, len(items))
        if cache is not None and key and k in cache:
            out[split] = cache[k]
            continue
        out[split] = encode_task(kind, items, tokenizer, budget)
        if cache is not None and key:
            cache[k] = out[split]
    return out


def arm_limits(arm_name: str, budget: AnalogBudget) -> dict[str, int | None]:
    """The items an arm reads per split: MiniLM the budget's ``minilm_*`` subsets, the others all."""
    if arm_name.startswith("minilm"):
        return {"train": budget.minilm_train, "dev": budget.minilm_dev, "test": budget.minilm_eval}
    return {}


def run_task(task_name: str, arm: Arm, task: AnalogTask, budget: AnalogBudget, seed: int = 0,
             device: torch.device | str = "cpu", progress: bool = False,
             learning_rates: Sequence[float] | None = None,
             encoded: Mapping[str, EncodedSplit] | None = None) -> AnalogResult:
    """Fine-tune ``arm``'s encoder on ``task`` with its head, the learning rate chosen on dev (§4.1).

    Every candidate learning rate starts from the arm's weights with a head seeded by ``seed``. With
    ``budget.patience`` the run is scored on dev after each epoch and keeps its best epoch (early
    stopping); the dev score is the task's main metric (:data:`MAIN_METRIC`; SQuAD v2.0 with tau
    chosen on dev). Test is scored once, with the chosen model (and v2.0's dev tau). ``encoded``:
    the splits already encoded (:func:`encode_splits`); else they are encoded here.
    """
    if task_name not in TASK_KINDS:
        raise ValueError(f"unknown task {task_name!r}; valid tasks are {', '.join(TASKS)}")
    kind, t0 = TASK_KINDS[task_name], time.perf_counter()
    enc = dict(encoded or encode_splits(task_name, task, arm.tokenizer, budget, limits=arm_limits(arm.name, budget)))
    config = budget.finetune_config()
    grid = tuple(learning_rates or budget.learning_rates[arm.name])
    v2, metric = task_name == "squad20", MAIN_METRIC[task_name]

    def dev_metric(model: nn.Module) -> float:
        return evaluate(model, enc["dev"], budget, device, choose_tau=v2, se=False)[metric]

    best: tuple[float, FinetuneResult, dict[str, Any]] | None = None
    scores: dict[float, float] = {}
    for lr in grid:
        model = head_from_encoder(kind, arm.encoder, num_labels=len(NAME_TAGS) if kind == "tag" else 2, seed=seed,
                                  dropout=config.dropout)
        run = fine_tune(model, enc["train"].inputs, None, config.replace(learning_rate=lr), seed=seed, device=device,
                        progress=progress, desc=f"{task_name} {arm.name} lr={lr:g}",
                        dev_score=dev_metric if budget.patience else None, patience=budget.patience)
        dev = evaluate(run.model, enc["dev"], budget, device, choose_tau=v2)
        scores[lr] = dev[metric]
        if best is None or dev[metric] > best[2][metric]:
            best = (lr, run, dev)
    lr, run, dev = best
    tau = dev.get("tau")
    test = evaluate(run.model, enc["test"], budget, device, null_threshold=tau)
    return AnalogResult(task_name, arm.name, kind, lr, scores, dev, test, run, len(enc["train"].items),
                        time.perf_counter() - t0, tau)
