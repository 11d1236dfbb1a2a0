"""Every measurement of chapter 12, made once per settings and cached by
:func:`~bertrepro.ablation.experiment.run_ablation`: the per-run summary (steps, FLOPs, wall time,
final loss), the cloze test of every final model and its learning check, the crossover curve from
the Table 5 arms' snapshots, Table 6's held-out perplexity, and the topic task (probe for every run,
fine-tuning for Table 5 and Table 8, each with the correctness of every test article).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..checkpoints import load_pretrained
from ..finetune.classifier import FinetuneConfig
from ..finetune.curves import finetune_points, probe_curve, training_indices
from ..finetune.probe import extract_features, train_probe
from ..finetune.tasks import TopicTask, encode_texts, topic_task
from ..model import BertForPreTraining, BertModel, left_to_right
from ..params import count_parameters
from ..pretrain.config import EVAL_SEED, OBJECTIVES
from ..pretrain.data import PretrainData, mean_predictions, prepare_data, validation_examples
from ..pretrain.evaluate import masked_lm_nll
from ..train.flops import train_step_flops
from .cloze import ARM_CLOZE_MODE, cloze_scores, learning_check, make_cloze_items, word_token_mask
from .runs import AblationSettings, TrainedRun, run_name, run_role, snapshot_dirs

__all__ = ["topic_encoder", "probe_rows", "finetune_rows", "run_summary", "measure"]


def topic_encoder(model: BertForPreTraining, objective: str) -> BertModel:
    """The encoder a run contributes to the topic task: causal for the LTR objective."""
    return left_to_right(model.bert) if objective == "ltr" else model.bert


def probe_rows(features: Mapping[str, Mapping[str, torch.Tensor]], task, sizes: Sequence[int | str], seeds: int,
               l2_grid: Sequence[float], progress: bool = True) -> list[dict[str, Any]]:
    """:func:`bertrepro.finetune.probe_curve`'s rows, each with the correctness of every test article
    (``correct``, a list of bools) for paired comparisons between runs.

    The chosen probe of each row is fitted again (L-BFGS from zero weights is deterministic, so it
    is the same probe) to read its test predictions; its accuracy must equal the row's.
    """
    y = {s: task.split(s)["labels"] for s in ("pool", "test")}
    rows = probe_curve(features, task, sizes, seeds, l2_grid, progress=progress)
    for row in rows:
        f = features[row["arm"]]
        idx = training_indices(y["pool"], row["size"], row["seed"])
        mean, std = f["pool"].mean(0), f["pool"].std(0, unbiased=False)
        probe = train_probe(f["pool"][idx], y["pool"][idx], task.num_labels, l2=row["choice"], mean=mean, std=std)
        with torch.no_grad():
            correct = probe(f["test"]).argmax(-1) == y["test"]
        if abs(float(correct.double().mean()) - row["accuracy"]) > 1e-6:
            raise RuntimeError(f"the refitted probe of {row['arm']} (size {row['size']}, seed {row['seed']}) scores "
                               f"{float(correct.double().mean())}, probe_curve reported {row['accuracy']}")
        row["correct"] = correct.tolist()
    return rows


def finetune_rows(encoders: Mapping[str, BertModel], encoded: Mapping[str, Any], task: TopicTask,
                  sizes: Sequence[int | str], seeds: int, learning_rates: Sequence[float], config: FinetuneConfig,
                  device: torch.device | str = "cpu", progress: bool = True) -> list[dict[str, Any]]:
    """Fine-tune every encoder at every size and seed (:func:`bertrepro.finetune.finetune_points`,
    as chapter 10's curve: learning rate chosen on dev with the first seed, then reused), keeping
    the correctness of every test article.

    A :class:`~bertrepro.model.LeftToRightBertModel` encoder stays causal inside the classifier (its
    sentence vector is the last token's); ``encoded`` holds the shared ``pool``/``dev``/``test`` encodings.
    """
    y_test = task.split("test")["labels"]
    rows = []
    for p in finetune_points(encoders, lambda _: encoded, task, lambda _: sizes, lambda _: seeds,
                             lambda _: learning_rates, config, device, progress):
        correct = p["test_logits"].argmax(-1) == y_test
        rows.append({"arm": p["name"], "regime": "finetune", "size": p["size"], "n_train": p["n_train"],
                     "seed": p["seed"], "choice": p["choice"], "dev_accuracy": p["scores"][p["choice"]],
                     "steps": p["result"].steps, "accuracy": float(correct.double().mean()),
                     "correct": correct.tolist()})
    return rows



def run_summary(run: TrainedRun, data: PretrainData) -> dict[str, Any]:
    """Steps, counted FLOPs, wall time and final losses of one run (the compact per-arm table).

    ``steps`` is the step the run's model is at (a run that trained past a since-lowered
    ``max_steps`` is not cut back; a run read at a kept checkpoint is at that step);
    ``wall_seconds`` its training wall time over every restart (``elapsed_s`` of its last log line); ``final_lm_loss`` the masked-LM (LTR: next-token) loss
    of its last log window, without NSP, the same loss as ``heldout_loss``.
    """
    c = run.config
    bert = c.bert_config(data.vocab_size)
    predicted = mean_predictions(data, c)
    sf = train_step_flops(bert, c.batch_size, c.max_seq_length, predicted)
    last = run.metrics[-1] if run.metrics else {}
    steps = run.step if run.step is not None else int(last.get("step", c.stop_step))
    ev = run.evaluation
    return {"objective": c.objective, "role": run_role(run.name),
            "shape": [c.num_hidden_layers, c.hidden_size, c.num_attention_heads],
            "mix": [c.mask_fraction, c.same_fraction, c.random_fraction],
            "parameters": count_parameters(run.model.config), "steps": steps, "total_steps": c.total_steps,
            "predicted_per_step": predicted, "step_flops": sf, "flops": steps * sf,
            "wall_seconds": last.get("elapsed_s"), "train_seconds": run.train_seconds,
            "final_lm_loss": last.get("mlm_loss"),
            "heldout_loss": ev.get("lm_loss", ev.get("mlm_loss")),
            "heldout_accuracy": ev.get("lm_accuracy", ev.get("mlm_accuracy")),
            "nsp_balanced_accuracy": ev.get("nsp_accuracy") if c.objective == "mlm_nsp" else None,
            "evaluation": ev}


def _cloze_of(model, objective: str, items, tok, word, device) -> dict[str, Any]:
    out = {}
    for mode in [ARM_CLOZE_MODE[objective]] + (["left_only"] if objective != "ltr" else []):
        s = cloze_scores(model, items, mode, tok, device=device, candidates=word)
        out[mode] = {"correct": s.correct(items.target).tolist(), "log_prob": s.log_prob.tolist()}
    return out


def _cloze_and_gates(runs, summaries, settings, data: PretrainData, device: str) -> dict[str, Any]:
    """Every final model on the same held-out blanks, the baseline, and each run's learning check."""
    tok, T = data.tokenizer, next(iter(runs.values())).config.max_seq_length
    items = make_cloze_items(data.validation_documents, tok, T, settings.cloze_items, settings.cloze_context, EVAL_SEED)
    word, _ = word_token_mask(tok)
    frequent = int(data.token_counts.masked_fill(~word, 0).argmax())
    base = (items.target == frequent).tolist()
    cloze = {"items": len(items), "windows_length": T, "min_context": settings.cloze_context,
             "baseline": {"token": tok.convert_ids_to_tokens([frequent])[0], "correct": base}, "scores": {}}
    gates = {}
    for name, r in runs.items():
        o = r.config.objective
        sc = _cloze_of(r.model, o, items, tok, word, device)
        cloze["scores"].update({f"{name}:{m}": v for m, v in sc.items()})
        gates[name] = learning_check(sc[ARM_CLOZE_MODE[o]]["correct"], base, summaries[name]["nsp_balanced_accuracy"])
    return {"cloze": cloze, "gates": gates, "items": items, "word": word}


def _curves(runs, summaries, settings, data, items, word, encoded, task, device) -> dict[str, Any]:
    """Cloze (own mode, left-only control) and probe (all labels) at every kept snapshot of each Table 5 arm."""
    b = settings.budget
    curves, features = {}, {}
    for o in OBJECTIVES:
        name = run_name(o, settings.arm_shape)
        points = []
        for step, path in _snapshots(runs[name]).items():
            model = load_pretrained(path, target="BertForPreTraining").to(device).eval()
            sc = _cloze_of(model, o, items, data.tokenizer, word, device)
            enc = topic_encoder(model, o)
            features[f"{name}@{step}"] = {s: extract_features(enc, encoded[s], ("mean",), device=device,
                                                              progress=False)["mean"] for s in ("pool", "dev", "test")}
            points.append({"step": step, "flops": step * summaries[name]["step_flops"],
                           "cloze": sc[ARM_CLOZE_MODE[o]]["correct"],
                           "left_only": sc["left_only"]["correct"] if "left_only" in sc else None})
        curves[o] = points
    rows = probe_rows(features, task, ("all",), 1, b.l2_grid, progress=False) if features else []
    by_key = {r["arm"]: r["correct"] for r in rows}
    for o, points in curves.items():
        for p in points:
            p["probe"] = by_key[f"{run_name(o, settings.arm_shape)}@{p['step']}"]
    return curves


def _snapshots(run) -> dict[int, Path]:
    """The run's kept checkpoints; a warning when it kept fewer than its settings plan (a run cached
    before its snapshots were kept: delete its directory to train it again with them)."""
    found = snapshot_dirs(run.output_dir)
    c = run.config
    planned = min(c.keep_checkpoints, math.ceil(c.stop_step / c.checkpoint_every))
    if len(found) < planned:
        warnings.warn(f"{run.name}: {len(found)} snapshot(s) in {run.output_dir / 'checkpoints'}, {planned} "
                      f"planned; the run was cached with fewer kept checkpoints: delete {run.output_dir} to "
                      f"train it again with its snapshots")
    return found


def _perplexities(runs, data: PretrainData, device: str) -> dict[str, Any]:
    """Held-out masked-LM perplexity of the Table 6 runs, per token (for paired comparisons)."""
    out = {}
    for name, r in runs.items():
        if run_role(name) != "table6":
            continue
        nll = masked_lm_nll(r.model, validation_examples(data, r.config), data, r.config, device=device)
        out[name] = {"nll": nll.tolist(), "perplexity": math.exp(float(nll.mean())),
                     "pretrain_perplexity": r.evaluation.get("mlm_perplexity")}
    return out


def _topic(runs, settings, encoded, task, device, progress) -> list[dict[str, Any]]:
    """Probe rows for every final model; fine-tuning rows for the Table 5 arms and the Table 8 mixes."""
    b = settings.budget
    encoders = {name: topic_encoder(r.model, r.config.objective) for name, r in runs.items()}
    features = {name: {s: extract_features(enc, encoded[s], ("mean",), device=device, progress=False)["mean"]
                       for s in ("pool", "dev", "test")} for name, enc in encoders.items()}
    probe = probe_rows(features, task, settings.probe_sizes, settings.probe_seeds, b.l2_grid, progress)
    ft_config = FinetuneConfig(batch_size=b.batch_size, epochs=b.epochs, min_steps=b.min_steps,
                               max_seq_length=b.max_seq_length)
    tuned = {n: e for n, e in encoders.items() if run_role(n) in ("table5", "table8")}
    finetune = finetune_rows(tuned, encoded, task, settings.finetune_sizes, settings.finetune_seeds,
                             settings.learning_rates, ft_config, device, progress)
    return probe + finetune


def measure(runs: Mapping[str, TrainedRun], settings: AblationSettings, seed: int, device: str, progress: bool) -> dict[str, Any]:
    """Every measurement of the ablation; a new experiment adds a part here."""
    data = prepare_data(runs[run_name("mlm", settings.arm_shape)].config)
    vocab = Path(data.vocab_path).read_text()
    for r in runs.values():
        if (r.model_dir / "vocab.txt").read_text() != vocab:
            raise ValueError(f"run {r.name} was trained with another vocabulary than {data.vocab_path}; "
                             f"delete {r.model_dir.parent} and run again")
    summaries = {name: run_summary(r, data) for name, r in runs.items()}
    cg = _cloze_and_gates(runs, summaries, settings, data, device)
    b = settings.budget
    task = topic_task(dev_per_class=b.dev_per_class, max_per_class=b.max_per_class)
    encoded = {s: encode_texts(data.tokenizer, task.split(s)["texts"], b.max_seq_length) for s in ("pool", "dev", "test")}
    curves = _curves(runs, summaries, settings, data, cg["items"], cg["word"], encoded, task, device)
    return {"runs": summaries, "cloze": cg["cloze"], "gates": cg["gates"], "curves": curves,
            "mlm": _perplexities(runs, data, device),
            "topic": {"labels": list(task.label_names), "counts": task.counts(), "pooling": "mean",
                      "rows": _topic(runs, settings, encoded, task, device, progress)}}
