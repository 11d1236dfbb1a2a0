"""``python -m bertrepro.finetune --task {qnli,squad11,squad20,ner,swag}``: fine-tune one arm on one
Figure 4 task and write what ``run_squad.py`` and the official tools read::

    D/model/            config.json, model.safetensors, vocab.txt (+ tokenizer_config.json): loadable by
                        transformers' BertForQuestionAnswering / BertForTokenClassification /
                        BertForSequenceClassification / BertForMultipleChoice and BertTokenizerFast
    D/dev.json          the dev set: official SQuAD JSON (span tasks), items as JSON (qnli, swag);
    D/dev.conll         NER: CoNLL columns (word, tag), a blank line between sentences
    D/predictions.json  dev predictions: id -> answer text ("" for no answer) for the span tasks,
                        id -> tags (ner), id -> label (qnli, swag)
    D/metrics.json      the chosen learning rate, dev and test scores with standard errors, the settings

Every file is written atomically, after the run; bad input stops the run before training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from ..chapters import Run
from ..io import atomic_write_text
from .analogs import NAME_TAGS
from .analog_runs import TASK_KINDS, analog_budget, load_analog, run_task
from .formats import read_conll, read_squad_json, write_conll, write_squad_json
from .interop import save_hf_head
from .tasks import Arm

__all__ = ["ANALOGS_ARMS", "check_vocabulary", "run_analog"]

ANALOGS_ARMS = ("random", "pretrained", "minilm")
_BUDGET_OPTIONS = ("epochs", "batch_size", "min_steps", "max_seq_length")


def check_vocabulary(arm: Arm) -> Path:
    """The arm's ``vocab.txt``; raises ``ValueError`` when its size is not the model's ``vocab_size``."""
    vocab = Path(arm.tokenizer.vocab_path)
    n, v = len(arm.tokenizer), arm.encoder.config.vocab_size
    if n != v:
        raise ValueError(f"vocabulary mismatch: {vocab} has {n} pieces but the checkpoint's vocab_size is {v}; "
                         "pass the model directory with the vocab.txt it was trained with")
    return vocab


def _dev_items(task_name: str, path: str | None) -> list | None:
    """The items of ``--dev-file`` (SQuAD JSON for span tasks, CoNLL for ner), or None."""
    if path is None:
        return None
    kind = TASK_KINDS[task_name]
    if kind == "span":
        return read_squad_json(path)
    if kind == "tag":
        return read_conll(path)
    raise ValueError(f"--dev-file is for the span tasks (SQuAD JSON) and ner (CoNLL), not {task_name!r}")


def _write_dev(task_name: str, items: list, out: Path) -> Path:
    kind = TASK_KINDS[task_name]
    if kind == "span":
        return write_squad_json(items, out / "dev.json")
    if kind == "tag":
        return write_conll(items, out / "dev.conll")
    return atomic_write_text(out / "dev.json", json.dumps([dataclasses.asdict(it) for it in items], indent=1))


def _predictions(task_name: str, items: list, dev: dict[str, Any]) -> dict[str, Any]:
    preds = dev["predictions"]
    if TASK_KINDS[task_name] == "span":
        return {it.id: preds[it.id] for it in items}
    return {it.id: p for it, p in zip(items, preds)}


def run_analog(args: argparse.Namespace, run: Run, arm: Arm, progress: bool) -> dict[str, Any]:
    """Fine-tune ``arm`` on Figure 4 task ``args.task`` (the profile's budget, overridden by the options
    given), choose the learning rate on dev, and write ``D/model``, the dev file, predictions and metrics."""
    if arm.name not in ANALOGS_ARMS:
        raise ValueError(f"arm {arm.name!r} has no Figure 4 budget; use one of {', '.join(ANALOGS_ARMS)}")
    vocab = check_vocabulary(arm)
    overrides = {k: getattr(args, k) for k in _BUDGET_OPTIONS if getattr(args, k, None) is not None}
    budget = dataclasses.replace(analog_budget(run.profile, args.task), **overrides)
    dev_items = _dev_items(args.task, args.dev_file)  # read first: a bad file stops the run at once
    task = load_analog(args.task, budget, seed=run.seed)
    if dev_items is not None:
        task.dev = dev_items
    out = Path(args.output_dir or f"runs/finetune-{args.task}-{arm.name}")
    print(f"finetune {args.task} / {arm.name}: profile {run.profile}, {len(task.train)} training items, "
          f"{len(task.dev)} dev, {len(task.test)} test, {run.device}; output in {out}", flush=True)
    r = run_task(args.task, arm, task, budget, seed=run.seed, device=run.device, progress=progress,
                 learning_rates=args.learning_rate)
    id2label = dict(enumerate(NAME_TAGS)) if r.kind == "tag" else None
    save_hf_head(r.model, out / "model", vocab, id2label=id2label, do_lower_case=arm.tokenizer.lowercase)
    _write_dev(args.task, task.dev, out)
    atomic_write_text(out / "predictions.json", json.dumps(_predictions(args.task, task.dev, r.dev), indent=1,
                                                           ensure_ascii=False))
    strip = lambda s: {k: v for k, v in s.items() if k not in ("predictions", "per_item")}  # noqa: E731
    metrics = {"task": args.task, "arm": arm.name, "profile": run.profile, "seed": run.seed,
               "learning_rate": r.learning_rate, "dev_scores": {str(k): v for k, v in r.dev_scores.items()},
               "tau": r.tau, "dev": strip(r.dev), "test": strip(r.test), "train_items": r.train_items,
               "steps": r.run.steps, "train_seconds": r.run.seconds, "budget": dataclasses.asdict(budget)}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str))
    main = {k: round(v, 2) for k, v in strip(r.test).items() if isinstance(v, float)}
    print(f"{args.task} / {arm.name}: learning rate {r.learning_rate:g}, test {main}")
    return metrics
