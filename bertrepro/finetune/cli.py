"""The command line of :mod:`bertrepro.finetune`: fine-tune one arm on one task, choosing the
learning rate on dev::

    python -m bertrepro.finetune --arm minilm --per-class 10 --profile cpu
    python -m bertrepro.finetune --arm random --learning-rate 1e-4 3e-4 --epochs 3
    python -m bertrepro.finetune --task sst2 --arm minilm --online      # GLUE needs the network
    python -m bertrepro.finetune --task squad11 --arm pretrained --profile cpu --output-dir runs/squad11
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence
from unittest import mock

from ..arguments import add_dataclass_arguments, dataclass_overrides, exit_code, plain_text
from ..io import atomic_write_text
from ..pretrain.runs import pretrained_model
from ..chapters import Run, setup
from ..profiles import OFFLINE_ENV, PAPER_LEARNING_RATES, PROFILES
from .classifier import FinetuneConfig, predict, tune_on_dev
from .curves import BUDGETS, Budget, training_indices
from .probe import accuracy
from .analogs import TASKS as ANALOGS_TASKS
from .analog_cli import run_analog
from .tasks import ARMS, GLUE_TASKS, Arm, encode_texts, load_arm, load_glue, topic_task

__all__ = ["build_parser", "run", "main"]

_PROG = "python -m bertrepro.finetune"

ALL_TASKS = ("topics", *ANALOGS_TASKS, *GLUE_TASKS)

_CONFIG_OPTIONS = ("epochs", "batch_size", "min_steps", "max_seq_length", "warmup_proportion", "weight_decay",
                   "dropout", "eval_batch_size")


def _size(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--per-class takes a positive integer or 'all', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"--per-class must be >= 1, got {v}")
    return v


def _learning_rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--learning-rate takes positive numbers, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--learning-rate must be a finite number > 0, e.g. 3e-5, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=_PROG, description=plain_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="topics", metavar="{" + ",".join(ALL_TASKS) + "}",
                   help="topics (or topic): chapter 10's offline Wikipedia task (default); qnli, squad11, squad20, "
                        "ner, swag: the offline Figure 4 tasks (writes D/model, D/dev.json or dev.conll, "
                        "D/predictions.json, D/metrics.json); sst2/mrpc/mnli need --online")
    p.add_argument("--arm", default="minilm", choices=ARMS, help="which encoder to fine-tune (default minilm)")
    p.add_argument("--profile", default=None, choices=PROFILES,
                   help="smoke | cpu | gpu (default: gpu with CUDA, else cpu); gpu without CUDA is an error "
                        "unless --device cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the training subset, the head and the data order "
                                                       "(default 0)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the profile's: "
                                                  "CUDA for gpu, else the CPU)")
    p.add_argument("--per-class", type=_size, default=None,
                   help="topics: labeled articles per topic, or 'all' (default: the profile's first fine-tuning size)")
    p.add_argument("--learning-rate", type=_learning_rate, nargs="+", default=None,
                   help="the grid to choose from on dev (default: the profile's grid; GLUE: the paper's)")
    add_dataclass_arguments(p, FinetuneConfig, include=_CONFIG_OPTIONS, help_default="the profile's or the paper's")
    p.add_argument("--pretrained-dir", default=None,
                   help="chapter-09 model directory for arms random/pretrained (default: the cache, pre-trained if absent)")
    p.add_argument("--dev-file", default=None,
                   help="Figure 4 span tasks: a SQuAD JSON dev set; ner: CoNLL columns (default: the task's dev split)")
    p.add_argument("--max-examples", type=int, default=None, help="GLUE: keep the first N examples of each split")
    p.add_argument("--online", action="store_true", help="turn the Hugging Face offline switches off (GLUE)")
    p.add_argument("--output-dir", default=None, help="where config.json and result.json go (default runs/finetune-TASK-ARM)")
    p.add_argument("--overwrite-output-dir", action="store_true",
                   help="replace a finished run in the output dir (otherwise refused); an unfinished one, "
                        "config.json without result.json, is always started again")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def _config(args: argparse.Namespace, budget: Budget, is_glue: bool) -> FinetuneConfig:
    """The profile's budget (GLUE: without its min_steps), then the options given."""
    base = dict(batch_size=budget.batch_size, epochs=budget.epochs, max_seq_length=budget.max_seq_length)
    if not is_glue:
        base["min_steps"] = budget.min_steps
    return FinetuneConfig(**{**base, **dataclass_overrides(args, _CONFIG_OPTIONS)})


def _arm(args: argparse.Namespace, run: Run, progress: bool) -> tuple[Arm, Path | None]:
    """The arm's encoder; the chapter-09 model comes from the cache, pre-trained now (with this run's
    seed, on this run's device) when absent."""
    pretrained_dir = args.pretrained_dir
    if args.arm in ("random", "pretrained") and pretrained_dir is None:
        pretrained_dir = pretrained_model(run.profile, run.seed, device=str(run.device), progress=progress).model_dir
    return load_arm(args.arm, pretrained_dir, seed=run.seed), pretrained_dir


def _data(args: argparse.Namespace, arm: Arm, config: FinetuneConfig, budget: Budget, run: Run,
          glue: dict[str, Any] | None) -> dict[str, Any]:
    """Training, dev and evaluation sets (GLUE: evaluated on dev; topics: on test)."""
    if glue is not None:
        data = glue
        enc = {s: encode_texts(arm.tokenizer, d["texts_a"], config.max_seq_length, d["texts_b"]) for s, d in data.items()}
        return {"num_labels": GLUE_TASKS[args.task].num_labels, "size": None, "eval_name": "dev",
                "train": (enc["train"], data["train"]["labels"]), "dev": (enc["dev"], data["dev"]["labels"]),
                "eval": (enc["dev"], data["dev"]["labels"])}
    task = topic_task(dev_per_class=budget.dev_per_class, max_per_class=budget.max_per_class)
    size = args.per_class or budget.finetune_sizes.get(args.arm, budget.probe_sizes)[0]
    idx = training_indices(task.pool["labels"], size, run.seed)
    enc = {s: encode_texts(arm.tokenizer, task.split(s)["texts"], config.max_seq_length) for s in ("pool", "dev", "test")}
    return {"num_labels": task.num_labels, "size": size, "eval_name": "test",
            "train": (enc["pool"][idx], task.pool["labels"][idx]), "dev": (enc["dev"], task.dev["labels"]),
            "eval": (enc["test"], task.test["labels"])}


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fine-tune one arm on one task, choosing the learning rate on dev; returns (and writes) the result."""
    return _online(build_parser().parse_args(argv))


def _online(args: argparse.Namespace) -> dict[str, Any]:
    online = {k: "0" for k in OFFLINE_ENV} if args.online else {}
    with mock.patch.dict(os.environ, online):
        return _main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status: 0 done, 2 bad input (one line on stderr; the
    traceback with ``--debug``), 1 a crash."""
    args = build_parser().parse_args(argv)
    return exit_code(lambda: _online(args), _PROG, debug=args.debug, interrupted=lambda: _interrupted(args))


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves: no result of this run, and a finished earlier one only if it was not replaced."""
    out = args.output_dir or f"runs/finetune-{args.task}-{args.arm}"
    return (f"fine-tuning stopped before its result was written; {out} holds no result of this run "
            f"(running the same command again starts it over)")


def _output_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or f"runs/finetune-{args.task}-{args.arm}")


def _finished_file(args: argparse.Namespace) -> str:
    """The file a run writes last: its presence marks the folder's run finished."""
    return "metrics.json" if args.task in ANALOGS_TASKS else "result.json"


def _check_output_dir(args: argparse.Namespace) -> Path:
    """Refuse a folder holding a finished run unless ``--overwrite-output-dir``; returns the folder."""
    out = _output_dir(args)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} is a file, not a folder; give a folder for the run")
    done = out / _finished_file(args)
    if done.exists() and not args.overwrite_output_dir:
        raise ValueError(f"{out} holds a finished run ({done.name}); pass --overwrite-output-dir to replace it, "
                         f"or give another --output-dir")
    return out


def _retire_result(out: Path, finished_file: str) -> None:
    """Remove a finished run's result before the new config is written, so that a kill at any moment
    leaves the old pair, a config alone (unfinished) or the new pair, never a result of another config."""
    (out / finished_file).unlink(missing_ok=True)


def _check_task(args: argparse.Namespace) -> None:
    """Normalise ``--task`` (topic -> topics); an unknown task is one ``ValueError`` naming the valid ones."""
    if args.task == "topic":
        args.task = "topics"
    if args.task not in ALL_TASKS:
        raise ValueError(f"unknown task {args.task!r}; valid tasks are {', '.join(ALL_TASKS)} "
                         "(topic is an alias of topics)")
    if args.dev_file is not None and args.task not in ANALOGS_TASKS:
        raise ValueError(f"--dev-file is for the Figure 4 span and ner tasks, not {args.task!r}")


def _main(args: argparse.Namespace) -> dict[str, Any]:
    _check_task(args)
    args.output_dir = str(_check_output_dir(args))
    run = setup(profile=args.profile, seed=args.seed, device=args.device)
    if args.task in ANALOGS_TASKS:
        arm, _ = _arm(args, run, not args.no_progress)
        _retire_result(Path(args.output_dir), _finished_file(args))
        return run_analog(args, run, arm, not args.no_progress)
    budget, progress, is_glue = BUDGETS[run.profile], not args.no_progress, args.task in GLUE_TASKS
    config = _config(args, budget, is_glue)
    grid = tuple(args.learning_rate or (PAPER_LEARNING_RATES if is_glue else budget.learning_rates[args.arm]))
    out_dir = Path(args.output_dir or f"runs/finetune-{args.task}-{args.arm}")
    glue = load_glue(args.task, args.max_examples) if is_glue else None  # fails at once when offline
    arm, pretrained_dir = _arm(args, run, progress)
    d = _data(args, arm, config, budget, run, glue)
    resolved = {"task": args.task, "arm": args.arm, "profile": run.profile, "seed": run.seed, "device": str(run.device),
                "per_class": d["size"], "train_examples": len(d["train"][1]), "learning_rates": list(grid),
                "pretrained_dir": str(pretrained_dir) if pretrained_dir else None, **dataclasses.asdict(config)}
    print(f"finetune {args.task} / {args.arm}: profile {run.profile}, {len(d['train'][1])} training examples, "
          f"learning rates {', '.join(f'{x:g}' for x in grid)}, {run.device}; settings in {out_dir / 'config.json'}",
          flush=True)
    _retire_result(out_dir, _finished_file(args))
    atomic_write_text(out_dir / "config.json", json.dumps(resolved, indent=2))
    lr, scores, best = tune_on_dev(arm.encoder, d["num_labels"], d["train"], d["dev"], grid, config, seed=run.seed,
                                   device=run.device, progress=progress)
    eval_name = d["eval_name"]
    acc = scores[lr] if eval_name == "dev" else \
        accuracy(predict(best.model, d["eval"][0], config.eval_batch_size, run.device), d["eval"][1])
    result = {**resolved, "chosen_learning_rate": lr, "dev_accuracy": scores, f"{eval_name}_accuracy": acc,
              "steps": best.steps, "train_seconds": best.seconds, "final_loss": best.losses[-1]}
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2, default=str))
    print(f"{args.task} / {args.arm}: learning rate {lr:g} (dev {scores[lr]:.4f}), {eval_name} accuracy {acc:.4f}")
    return result
