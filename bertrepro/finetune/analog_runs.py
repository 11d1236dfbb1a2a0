r"""Fine-tuning every head of the paper's Figure 4 (§4.1-§4.4) on the book's offline analogs.

One task, one arm: :func:`run_task` encodes the task's items for its head (:data:`TASK_KINDS`),
fine-tunes a fresh head on the arm's encoder with :func:`~bertrepro.finetune.classifier.fine_tune`
(the loop of chapter 10's classifier), chooses the learning rate on dev
(:func:`~bertrepro.finetune.classifier.choose_learning_rate`) and scores dev and test with the
official metrics (:mod:`bertrepro.finetune.metrics`), every number with its standard error.

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
from ..stats import paired_difference
from ..train.optim import autocast, eval_mode
from .baselines import (CHANCE, choice_overlap, ner_lexicon, pair_majority, pair_overlap, qa_first_title_span,
                        qa_random_sentence)
from .classifier import FinetuneConfig, FinetuneResult, choose_learning_rate, take_rows
from .analogs import (NAME_TAGS, TASKS, AnalogTask, fast_tokenizer, align_first_subtoken, build_task, encode_choices,
                      encode_pairs, word_tags)
from .metrics import accuracy_se, entity_scores, f1_score, squad_scores
from .tasks import Arm

__all__ = ["TASK_KINDS", "MAIN_METRIC", "AnalogBudget", "ANALOG_BUDGETS", "analog_budget", "load_analog",
           "EncodedSplit", "encode_task", "forward_all", "evaluate", "AnalogResult", "run_task", "baselines",
           "pretraining_helps"]

TASK_KINDS = {"qnli": "pair", "squad11": "span", "squad20": "span", "ner": "tag", "swag": "choice"}
MAIN_METRIC = {"qnli": "accuracy", "squad11": "f1", "squad20": "f1", "ner": "f1", "swag": "accuracy"}


@dataclass(frozen=True)
class AnalogBudget:
    """What one Figure 4 task runs at one profile (:data:`bertrepro.profiles.ANALOGS`)."""

    max_train: int | None  # training items (None: all)
    max_train_minilm: int | None  # MiniLM (22M parameters) trains on the first this many of them (None: all)
    max_eval: int | None  # items of dev and of test each (None: all)
    max_seq_length: int  # tokens per sequence or window
    doc_stride: int  # span tasks: passage tokens between window starts
    max_query_length: int  # span tasks: longest question in word pieces
    max_answer_length: int  # span tasks: longest answer in tokens
    epochs: float
    batch_size: int
    min_steps: int
    learning_rates: Mapping[str, tuple[float, ...]]  # per arm, chosen on dev

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
    """Task ``name`` built from the corpus (:func:`~bertrepro.finetune.analogs.build_task`), cut to the
    budget's sizes (the first items of each split, which come in a seeded order)."""
    caps = [c for c in (budget.max_train, budget.max_eval) if c is not None]
    task = build_task(name, corpus=corpus, seed=seed, max_items=max(caps) if len(caps) == 2 else None)
    cut = {"train": budget.max_train, "dev": budget.max_eval, "test": budget.max_eval}
    for split, cap in cut.items():
        if len(task.split(split)) == 0:
            raise ValueError(f"task {name!r} has no {split} items; the corpus is too small for it")
        setattr(task, split, task.split(split)[:cap])
    return task


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


def _span_scores(enc: EncodedSplit, predictions: Mapping[str, str]) -> dict[str, Any]:
    golds = {it.id: [a["text"] for a in it.answers] for it in enc.items}
    s = squad_scores(predictions, golds)
    per_item = [100 * f1_score(predictions[k], golds[k]) for k in golds]
    return {"em": s["em"], "f1": s["f1"], "em_se": s["em_se"], "f1_se": s["f1_se"], "n": s["n"],
            "per_item": per_item, "predictions": dict(predictions)}


def _midpoint(tau: float, margins: torch.Tensor) -> float:
    """Move ``tau`` halfway to the next larger margin (span - null score), or 1 above the largest.

    :func:`~bertrepro.spans.choose_threshold` returns a margin of the dev set itself; any value up to
    the next margin splits dev the same way (the same F1), and the midpoint keeps an item's decision
    from hanging on rounding when another implementation recomputes its logits (``hf_agreement``).
    """
    above = margins[margins > tau]
    return float((tau + above.min()) / 2) if above.numel() else tau + 1.0


def evaluate(model: nn.Module, enc: EncodedSplit, budget: AnalogBudget, device: torch.device | str = "cpu",
             null_threshold: float | None = None, choose_tau: bool = False) -> dict[str, Any]:
    """Scores (percent) of a fine-tuned head on one encoded split, with standard errors and predictions.

    Span tasks: ``em``, ``f1`` (``null_threshold``: SQuAD v2.0's tau; ``choose_tau``: choose it here,
    on this split, to maximise F1, and return it as ``tau``). Tags: ``f1`` (entity level, bootstrap SE).
    Pairs and choices: ``accuracy``. ``per_item`` holds the per-item scores for paired differences.
    """
    if enc.kind == "span":
        o = forward_all(model, enc.model_inputs(), ("start_logits", "end_logits"), True, device=device)
        tau = null_threshold
        if choose_tau:
            scored = span_and_null_scores(enc.features, o["start_logits"], o["end_logits"], budget.max_answer_length)
            golds = {it.id: [a["text"] for a in it.answers] for it in enc.items}
            keys = list(golds)
            col = lambda i: torch.tensor([scored[k][i] for k in keys], dtype=torch.float64)  # noqa: E731
            span_f1 = torch.tensor([f1_score(scored[k][0], golds[k]) for k in keys], dtype=torch.float64)
            null_f1 = torch.tensor([f1_score("", golds[k]) for k in keys], dtype=torch.float64)
            tau, _ = choose_threshold(col(1), col(2), span_f1, null_f1)
            tau = _midpoint(tau, col(1) - col(2))
        preds = decode_spans(enc.features, o["start_logits"], o["end_logits"], budget.max_answer_length, tau)
        return {**_span_scores(enc, preds), **({"tau": tau} if tau is not None else {})}
    if enc.kind == "tag":
        logits = forward_all(model, enc.model_inputs(), ("logits",), True, device=device)["logits"]
        preds = word_tags(logits.argmax(-1), enc.word_index, [len(it.words) for it in enc.items], NAME_TAGS)
        s = entity_scores([it.tags for it in enc.items], preds)
        return {"f1": 100 * s["f1"], "f1_se": 100 * s["f1_se"], "precision": 100 * s["precision"],
                "recall": 100 * s["recall"], "n": s["n"], "predictions": preds}
    logits = forward_all(model, enc.model_inputs(), ("logits",), False, device=device)["logits"]
    pred = logits.argmax(-1)
    correct = pred == enc.inputs["labels"]
    acc, se = accuracy_se(correct)
    return {"accuracy": 100 * acc, "accuracy_se": 100 * se, "n": len(correct),
            "per_item": (100 * correct.double()).tolist(), "predictions": pred.tolist()}


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


def run_task(task_name: str, arm: Arm, task: AnalogTask, budget: AnalogBudget, seed: int = 0,
             device: torch.device | str = "cpu", progress: bool = False,
             learning_rates: Sequence[float] | None = None) -> AnalogResult:
    """Fine-tune ``arm``'s encoder on ``task`` with its head, the learning rate chosen on dev (§4.1).

    Every candidate learning rate starts from the arm's weights with a head seeded by ``seed``; the
    dev score is the task's main metric (:data:`MAIN_METRIC`; SQuAD v2.0 with tau chosen on dev).
    Test is scored once, with the chosen model (and v2.0's dev tau). A MiniLM arm trains on the first
    ``budget.max_train_minilm`` training items (the cpu budget: its steps cost ~50x the small models').
    """
    if task_name not in TASK_KINDS:
        raise ValueError(f"unknown task {task_name!r}; valid tasks are {', '.join(TASKS)}")
    kind, t0 = TASK_KINDS[task_name], time.perf_counter()
    train = task.train[:budget.max_train_minilm] if arm.name.startswith("minilm") else task.train
    enc = {s: encode_task(kind, items, arm.tokenizer, budget)
           for s, items in (("train", train), ("dev", task.dev), ("test", task.test))}
    config = budget.finetune_config()
    grid = tuple(learning_rates or budget.learning_rates[arm.name])
    v2 = task_name == "squad20"
    dev_results: dict[float, dict[str, Any]] = {}

    def build() -> nn.Module:
        return head_from_encoder(kind, arm.encoder, num_labels=len(NAME_TAGS) if kind == "tag" else 2, seed=seed,
                                 dropout=config.dropout)

    def score(model: nn.Module) -> float:
        r = evaluate(model, enc["dev"], budget, device, choose_tau=v2)
        dev_results[len(dev_results)] = r
        return r[MAIN_METRIC[task_name]]

    lr, scores, best = choose_learning_rate(build, enc["train"].inputs, score, grid, config, seed=seed, device=device,
                                            progress=progress, desc=f"{task_name} {arm.name}")
    dev = dev_results[grid.index(lr)]
    tau = dev.get("tau")
    test = evaluate(best.model, enc["test"], budget, device, null_threshold=tau)
    return AnalogResult(task_name, arm.name, kind, lr, scores, dev, test, best, len(train),
                         time.perf_counter() - t0, tau)


def baselines(task_name: str, task: AnalogTask, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every baseline of ``task`` on its test split: name -> scores (percent, with SE) as :func:`evaluate`'s."""
    test = task.test
    if task_name in ("squad11", "squad20"):
        golds = {it.id: [a["text"] for a in it.answers] for it in test}
        out = {}
        for name, preds in (("first title-shaped span", qa_first_title_span(test)),
                            ("random sentence's subject", qa_random_sentence(test, seed))):
            s = squad_scores(preds, golds)
            out[name] = {**{k: s[k] for k in ("em", "f1", "em_se", "f1_se", "n")},
                         "per_item": [100 * f1_score(preds[k], golds[k]) for k in golds]}
        return out
    if task_name == "ner":
        s = entity_scores([it.tags for it in test], ner_lexicon(task.train)(test))
        return {"word lexicon + sentence start": {"f1": 100 * s["f1"], "f1_se": 100 * s["f1_se"], "n": s["n"]}}
    labels = torch.tensor([it.label for it in test])
    if task_name == "qnli":
        rules = {"majority class": pair_majority(task.train, test), "word overlap": pair_overlap(task.train, test)}
    elif task_name == "swag":
        rules = {"word overlap": choice_overlap(test)}
    else:
        raise ValueError(f"unknown task {task_name!r}; valid tasks are {', '.join(TASKS)}")
    out = {}
    if task_name == "swag":
        out["chance"] = {"accuracy": 100 * CHANCE, "accuracy_se": 0.0, "n": len(test)}
    for name, pred in rules.items():
        correct = pred == labels
        acc, se = accuracy_se(correct)
        out[name] = {"accuracy": 100 * acc, "accuracy_se": 100 * se, "n": len(test),
                     "per_item": (100 * correct.double()).tolist()}
    return out


def pretraining_helps(task_name: str, pretrained: AnalogResult, random: AnalogResult,
                      baseline: Mapping[str, Any], sigmas: float = 2.0) -> dict[str, Any]:
    """Pretrained minus random on test (the main metric), its SE, and the verdict.

    The SE is paired over test items (:func:`bertrepro.stats.paired_difference`) where per-item
    scores exist, else the two SEs added in quadrature (entity F1). The learning check: the pretrained
    arm must beat the task's best baseline by ``sigmas`` SE, or the claim is "inconclusive".
    """
    m = MAIN_METRIC[task_name]
    a, b = pretrained.test, random.test
    if "per_item" in a and "per_item" in b:
        d = paired_difference([a["per_item"]], [b["per_item"]])
        diff, se = d["difference"], d["se"]
    else:
        diff, se = a[m] - b[m], float(torch.hypot(torch.tensor(a[f"{m}_se"]), torch.tensor(b[f"{m}_se"])))
    base, base_se = baseline[m], baseline.get(f"{m}_se", 0.0)
    learned = a[m] - base > sigmas * float(torch.hypot(torch.tensor(a[f"{m}_se"]), torch.tensor(base_se)))
    if not learned:
        status = "inconclusive"
    elif diff > sigmas * se:
        status = "qualitatively reproduced"
    else:
        status = "not reproduced at this scale"
    return {"difference": diff, "se": se, "learned": bool(learned), "status": status, "metric": m}
