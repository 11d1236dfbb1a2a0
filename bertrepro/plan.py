r"""The book's compute plan: every training and evaluation run of a profile, its FLOPs and its
predicted seconds, derived from the profile tables (:mod:`bertrepro.profiles`) without running anything.

``python -m bertrepro.book --plan --profile P [--json]`` prints it. Each run has its chapter, name,
model shape (L/H/A), work (steps x batch x tokens, or items x tokens), FLOPs from the package's one
FLOP formula (:func:`bertrepro.train.flops.train_step_flops`, :func:`~bertrepro.train.flops.forward_flops`)
and the scorecard claims it decides.

Predicted seconds:

* ``gpu``: FLOPs at an H100's dense bf16 peak (:data:`GPU_PEAK_FLOPS`, 989 TFLOP/s) times
  :data:`GPU_MFU` (40 %), plus each chapter's fixed cost (:data:`FIXED_SECONDS`).
* ``cpu`` and ``smoke``: FLOPs at the CPU rate for the run's width (:func:`cpu_rate`), plus fixed
  costs (:data:`bertrepro.profiles.PLAN`). The rate of chapter 09's cpu shape is its measured speed, :data:`CPU_CH09_STEPS_PER_S` steps/s
  on a 2-core machine; wider models (H >= 256) run at :data:`CPU_WIDE_FACTOR` times that rate, the ratio
  ``python -m bertrepro.bench`` measured between a MiniLM-shaped and a chapter-09-shaped training step on
  one 2-core machine. ``--measure`` replaces both by :func:`measure_cpu_rates` on this machine.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from .config import BertConfig
from .bench import bench_train_step
from .finetune.analog_runs import analog_budget, load_analog
from .profiles import (ABLATION, ANALOGS, FINETUNE, PLAN, PLAN_RATE_PROFILE, PRETRAIN, PROFILES, check_profile,
                       resolve_profile)
from .train.flops import forward_flops, train_step_flops

__all__ = ["GPU_PEAK_FLOPS", "GPU_MFU", "CPU_CH09_STEPS_PER_S", "CPU_WIDE_FACTOR", "FIXED_SECONDS", "CHAPTERS",
           "PlannedRun", "cpu_rate", "measure_cpu_rates", "plan", "format_plan", "chapter_seconds",
           "predicted_vs_actual", "add_plan_arguments", "plan_main"]

GPU_PEAK_FLOPS = 989e12  # H100 SXM dense bf16 peak (NVIDIA's datasheet, without sparsity)
GPU_MFU = 0.40  # the model-FLOP utilisation the plan assumes on the GPU
CPU_CH09_STEPS_PER_S = 12.5  # chapter 09's cpu run on a fresh 2-core machine (the book's measured build)
CPU_WIDE_FACTOR = 2.4  # bench_train_step: L6/H384 at 15.9 GFLOP/s against L2/H128 at 6.5 on one 2-core machine
CHAPTERS = ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13")
FIXED_SECONDS = {p: PLAN[p]["fixed"] for p in PROFILES}  # per chapter, and "html" (bertrepro.profiles.PLAN)

_TOPIC_CLASSES, _TOPIC_POOL, _TOPIC_EVAL = 11, 915, 892  # the topic task (bertrepro.finetune.tasks.topic_task)
_MINILM = (6, 384, 12, 30522)  # all-MiniLM-L6-v2: L, H, A, vocabulary


@dataclass
class PlannedRun:
    """One run of the plan: what it trains or evaluates, its FLOPs, its predicted seconds, its claims."""

    chapter: str
    name: str
    shape: str  # L/H/A
    work: str  # "steps x batch x tokens" or "items x tokens"
    flops: float
    seconds: float = 0.0
    claims: list[str] = field(default_factory=list)  # scorecard keys (prefixes ending in "*") it decides
    width: int = 0  # H, for the CPU rate

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("width")
        return d


def _bert(L: int, H: int, A: int, V: int, max_positions: int = 512) -> BertConfig:
    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=A,
                      intermediate_size=4 * H, max_position_embeddings=max_positions)


def _pretrain_run(chapter: str, name: str, shape: Sequence[int], V: int, steps: int, B: int, T: int,
                  max_pred: int, objective: str, claims: list[str]) -> PlannedRun:
    """A pre-training run; predicted rows per step nominal: 15 % of T (capped) for MLM, T - 1 for LTR."""
    L, H, A = shape
    rows = B * (T - 1) if objective == "ltr" else B * min(max_pred, max(1, round(0.15 * T)))
    f = steps * train_step_flops(_bert(L, H, A, V), B, T, rows)
    return PlannedRun(chapter, name, f"{L}/{H}/{A}", f"{steps:,} x {B} x {T}", f, claims=claims, width=H)


def _finetune_run(chapter: str, name: str, shape: Sequence[int], V: int, n_train: int, epochs: float, B: int, T: int,
                  min_steps: int, n_eval: int, claims: list[str]) -> PlannedRun:
    """A fine-tuning run: its steps (epochs over n_train, at least min_steps) and its evaluation forwards."""
    L, H, A = shape
    bert = _bert(L, H, A, V)
    steps = max(min_steps, math.ceil(epochs * n_train / B))
    f = steps * train_step_flops(bert, B, T, 0) + forward_flops(bert, max(1, n_eval), T)
    return PlannedRun(chapter, name, f"{L}/{H}/{A}", f"{steps:,} x {B} x {T} + {n_eval:,} items", f, claims=claims,
                      width=H)


def _long_steps(p: Mapping[str, Any]) -> int:
    """Steps of a pre-training preset's second phase (``PretrainConfig.long_phase_start``'s rule)."""
    frac = p.get("long_phase_fraction", 0.0)
    longer = p.get("long_seq_length", p["max_seq_length"]) > p["max_seq_length"]
    return round(frac * p["total_steps"]) if frac > 0 and longer else 0


def _ch09(profile: str) -> list[PlannedRun]:
    """Chapter 09's two phases (Appendix A.2): the first at max_seq_length, the last
    ``long_phase_fraction`` of the steps at ``long_seq_length``."""
    p = PRETRAIN[profile]
    shape = (p["num_hidden_layers"], p["hidden_size"], p["num_attention_heads"])
    total, long = p["total_steps"], _long_steps(p)
    T1, T2 = p["max_seq_length"], p.get("long_seq_length", p["max_seq_length"])
    claims = ["pretrain.*", "ablation.mlm_nsp.*"]
    runs = [_pretrain_run("09", "pretrain mlm_nsp", shape, p["vocab_size"], total - long, p["batch_size"], T1,
                          p["max_predictions_per_seq"], "mlm_nsp", claims)]
    if long:
        runs.append(_pretrain_run("09", "pretrain mlm_nsp, second phase", shape, p["vocab_size"], long,
                                  p["batch_size"], T2, p.get("long_max_predictions_per_seq", 20), "mlm_nsp", claims))
    return runs


def _ch10(profile: str) -> list[PlannedRun]:
    f, p = FINETUNE[profile], PRETRAIN[profile]
    small = ((p["num_hidden_layers"], p["hidden_size"], p["num_attention_heads"]), p["vocab_size"])
    shapes = {"random": small, "pretrained": small, "minilm": (_MINILM[:3], _MINILM[3])}
    n_eval = _TOPIC_EVAL if f["max_per_class"] is None else 2 * _TOPIC_CLASSES * f["max_per_class"]
    runs = []
    for arm, sizes in f["finetune_sizes"].items():
        shape, V = shapes[arm]
        tries = len(f["learning_rates"][arm]) + f["finetune_seeds"][arm] - 1  # lr chosen with the first seed
        for size in sizes:
            n = _TOPIC_POOL if size == "all" else size * _TOPIC_CLASSES
            r = _finetune_run("10", f"fine-tune {arm} @{size}", shape, V, n, f["epochs"], f["batch_size"],
                              f["max_seq_length"], f["min_steps"], n_eval, [f"finetune.{arm}.*"])
            runs.append(_times(r, tries))
    for arm, (shape, V) in shapes.items():  # frozen features for the probe: one forward over every split
        bert = _bert(*shape, V)
        n = _TOPIC_POOL + n_eval
        runs.append(PlannedRun("10", f"probe features {arm}", "/".join(map(str, shape)), f"{n:,} x {f['max_seq_length']}",
                               forward_flops(bert, n, f["max_seq_length"]), claims=[f"probe.{arm}.*"], width=shape[1]))
    return runs


def _times(run: PlannedRun, n: int) -> PlannedRun:
    """``run`` repeated ``n`` times (seeds, learning rates), as one row."""
    run.flops *= n
    run.work = f"{n} x ({run.work})"
    return run


_ANALOG_SEQS = {"swag": 4}  # sequences per item (four endings); a passage of 3 sentences fits one window


def _ch11(profile: str) -> list[PlannedRun]:
    """Chapter 11: per task and arm, the frozen encoding of every split (the feature-based heads on top
    cost next to nothing) and the fine-tuning, with a dev evaluation per epoch where it stops early."""
    p = PRETRAIN[profile]
    small = ((p["num_hidden_layers"], p["hidden_size"], p["num_attention_heads"]), p["vocab_size"])
    shapes = {"random": small, "pretrained": small, "minilm": (_MINILM[:3], _MINILM[3])}
    runs = []
    for task, cfg in ANALOGS[profile].items():
        b = analog_budget(profile, task)
        sizes = load_analog(task, b).sizes()
        seqs = _ANALOG_SEQS.get(task, 1)
        for arm, (shape, V) in shapes.items():
            caps = (b.minilm_train, b.minilm_eval) if arm == "minilm" else (None, None)
            n = min(sizes["train"], caps[0]) if caps[0] is not None else sizes["train"]
            n_eval = sum(min(sizes[s], caps[1]) if caps[1] is not None else sizes[s] for s in ("dev", "test"))
            bert = _bert(*shape, V)
            runs.append(PlannedRun("11", f"{task} {arm} features", "/".join(map(str, shape)),
                                   f"{(n + n_eval) * seqs:,} x {b.max_seq_length}",
                                   forward_flops(bert, (n + n_eval) * seqs, b.max_seq_length),
                                   claims=[f"{task}.{arm}.features.*"], width=shape[1]))
            if arm == "minilm" and not b.minilm_finetune:
                continue
            dev_evals = math.ceil(b.epochs) if b.patience else 1
            r = _finetune_run("11", f"{task} {arm} fine-tune", shape, V, n * seqs, b.epochs, b.batch_size,
                              b.max_seq_length, b.min_steps, (sizes["dev"] * dev_evals + sizes["test"]) * seqs,
                              [f"{task}.{arm}.*", f"{task}.pretraining_helps"])
            runs.append(_times(r, len(cfg["learning_rates"][arm])))
    return runs


def _ch12(profile: str) -> list[PlannedRun]:
    a, p = ABLATION[profile], PRETRAIN[profile]
    shape = (p["num_hidden_layers"], p["hidden_size"], p["num_attention_heads"])
    V, B, T, mp = p["vocab_size"], p["batch_size"], p["max_seq_length"], p["max_predictions_per_seq"]
    mlm = _pretrain_run("12", "MLM arm", shape, V, a["matched_step"], B, T, mp, "mlm", ["table5.*"])
    ltr_step = train_step_flops(_bert(*shape, V), B, T, B * (T - 1))
    ltr_steps = max(a["snapshots"], round(mlm.flops / ltr_step))
    runs = [mlm, _pretrain_run("12", "LTR arm", shape, V, ltr_steps, B, T, mp, "ltr", ["table5.*", "appendix_c1.*"])]
    for s in a["sizes"]:
        runs.append(_pretrain_run("12", f"Table 6 {'/'.join(map(str, s))}", s, V, a["table6_steps"], B, T, mp, "mlm_nsp",
                                  ["table6.*"]))
    for m in a["table8_mixes"]:
        runs.append(_pretrain_run("12", f"Table 8 {'/'.join(str(round(100 * x)) for x in m)}", a["table8_shape"], V,
                                  a["table8_steps"], B, T, mp, "mlm", ["table8.*"]))
    f = FINETUNE[profile]
    tuned = 3 + len(a["table8_mixes"])
    tries = len(a["learning_rates"]) + a["finetune_seeds"] - 1
    for size in a["finetune_sizes"]:
        r = _finetune_run("12", f"fine-tune {tuned} runs @{size}", shape, V, size * _TOPIC_CLASSES, f["epochs"],
                          f["batch_size"], f["max_seq_length"], f["min_steps"], _TOPIC_EVAL, ["table5.*", "table8.*"])
        runs.append(_times(r, tries * tuned))
    snaps = 2 * a["snapshots"] + p["total_steps"] // p["checkpoint_every"]
    n = a["cloze_items"] + _TOPIC_POOL + _TOPIC_EVAL
    bert = _bert(*shape, V)
    runs.append(PlannedRun("12", f"cloze and probe features, {snaps} snapshots", "/".join(map(str, shape)),
                           f"{snaps} x {n:,} x {T}", snaps * forward_flops(bert, n, T), claims=["appendix_c1.*"],
                           width=shape[1]))
    return runs


def cpu_rate(width: int, ch09_step_flops: float, rates: Mapping[str, float] | None = None) -> float:
    """FLOP/s of a CPU training run of hidden width ``width``: chapter 09's measured rate for narrow
    models, :data:`CPU_WIDE_FACTOR` times it for H >= 256 (or ``rates["narrow"]`` / ``rates["wide"]``)."""
    if rates:
        return rates["wide"] if width >= 256 else rates["narrow"]
    narrow = CPU_CH09_STEPS_PER_S * ch09_step_flops
    return narrow * CPU_WIDE_FACTOR if width >= 256 else narrow


def measure_cpu_rates(repeats: int = 3) -> dict[str, float]:
    """This machine's CPU rates, FLOP/s, from :func:`bertrepro.bench.bench_train_step` at chapter 09's cpu
    shape ("narrow") and MiniLM's ("wide")."""
    p = PRETRAIN[PLAN_RATE_PROFILE]
    narrow = bench_train_step(_bert(p["num_hidden_layers"], p["hidden_size"], p["num_attention_heads"], p["vocab_size"]),
                              p["batch_size"], p["max_seq_length"], repeats=repeats, warmup=1)
    wide = bench_train_step(_bert(*_MINILM), 16, 128, repeats=repeats, warmup=1)
    return {"narrow": narrow["ours_gflops"] * 1e9, "wide": wide["ours_gflops"] * 1e9}


def plan(profile: str, rates: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every run of the book at ``profile`` with its FLOPs and predicted seconds, the per-chapter
    seconds (runs plus fixed costs) and ``total_seconds`` (chapters plus the HTML build)."""
    check_profile(profile)
    runs = _ch09(profile) + _ch10(profile) + _ch11(profile) + _ch12(profile)
    anchor = _ch09(PLAN_RATE_PROFILE)[0]  # the run whose speed was measured: its first phase's steps
    p = PRETRAIN[PLAN_RATE_PROFILE]
    ch09_step = anchor.flops / (p["total_steps"] - _long_steps(p))
    on_gpu = PLAN[profile]["device"] == "h100"
    for r in runs:
        rate = GPU_PEAK_FLOPS * GPU_MFU if on_gpu else cpu_rate(r.width, ch09_step, rates)
        r.seconds = r.flops / rate
    fixed = FIXED_SECONDS[profile]
    chapters = {c: fixed[c] + sum(r.seconds for r in runs if r.chapter == c) for c in CHAPTERS}
    device = (f"one H100 at {GPU_MFU:.0%} of {GPU_PEAK_FLOPS / 1e12:.0f} TFLOP/s" if on_gpu else
              "2 CPU cores" + (" (rates measured now)" if rates else
                               f" (chapter 09 at {CPU_CH09_STEPS_PER_S:g} steps/s)"))
    return {"profile": profile, "device": device, "runs": [r.to_dict() for r in runs],
            "chapters": {c: round(s, 1) for c, s in chapters.items()}, "html_seconds": fixed["html"],
            "total_seconds": round(sum(chapters.values()) + fixed["html"], 1)}


def chapter_seconds(profile: str) -> dict[str, float]:
    """Predicted seconds per chapter number at ``profile`` (:func:`plan`'s ``chapters``)."""
    return plan(profile)["chapters"]


def format_plan(p: Mapping[str, Any]) -> str:
    """The plan as a text table: one line per run, then the chapters and the total."""
    lines = [f"plan: profile {p['profile']}, {p['device']}",
             f"{'ch':<3} {'run':<34} {'L/H/A':<10} {'work':<34} {'TFLOP':>9} {'s':>8}  claims"]
    for r in p["runs"]:
        lines.append(f"{r['chapter']:<3} {r['name'][:34]:<34} {r['shape']:<10} {r['work'][:34]:<34} "
                     f"{r['flops'] / 1e12:>9.3g} {r['seconds']:>8.1f}  {', '.join(r['claims'])}")
    lines.append("chapters (runs + fixed costs): " + ", ".join(f"{c} {s:.0f} s" for c, s in p["chapters"].items()))
    lines.append(f"total {p['total_seconds']:.0f} s ({p['total_seconds'] / 60:.1f} min, HTML {p['html_seconds']:.0f} s)")
    return "\n".join(lines)


def predicted_vs_actual(profile: str, timings: Mapping[str, Any]) -> str:
    """A Markdown table of each run chapter's predicted seconds (:func:`plan`) beside its measured ones
    (``timings["chapters"]``, keyed ``NN_slug``), with the ratio; chapters over 60 s are the ones the
    plan must predict within 30 %."""
    predicted = plan(profile)["chapters"]
    rows = ["| chapter | predicted s | actual s | actual / predicted |", "|---|---:|---:|---:|"]
    for stem, t in timings.get("chapters", {}).items():
        pred = predicted.get(stem[:2])
        if pred is None:
            continue
        rows.append(f"| {stem} | {pred:.0f} | {t['seconds']:.0f} | {t['seconds'] / pred:.2f} |")
    return f"### Predicted against actual seconds ({profile} plan)\n\n" + "\n".join(rows) + "\n"


def add_plan_arguments(parser: Any) -> None:
    """The runner's ``--plan``, ``--json`` and ``--measure`` flags."""
    parser.add_argument("--plan", action="store_true",
                        help="print every run of the profile with its FLOPs and predicted seconds; run nothing")
    parser.add_argument("--json", action="store_true", help="with --plan: print the plan as one JSON object")
    parser.add_argument("--measure", action="store_true",
                        help="with --plan: measure this machine's CPU rates first (python -m bertrepro.bench's step)")


def plan_main(args: Any) -> int:
    """``--plan``: print the plan of ``args.profile`` (default: this machine's); returns the exit status."""
    if (args.json or args.measure) and not args.plan:
        print("error: --json and --measure go with --plan; add --plan", file=sys.stderr)
        return 2
    p = plan(resolve_profile(args.profile), measure_cpu_rates() if args.measure else None)
    print(json.dumps(p, indent=1) if args.json else format_plan(p))
    return 0


assert set(FIXED_SECONDS) == set(PROFILES)
