"""Appendix C of the paper at small scale: the crossover curve of C.1 (Figure 5) and the masking
mixes of C.2 (Table 8), plus the compact per-run table of chapter 12.

Everything is read from :func:`~bertrepro.ablation.experiment.run_ablation`'s results; every verdict is a
paired difference with its standard error, gated by the arms' learning checks.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..labels import ARM_LABELS
from ..pretrain.config import OBJECTIVES
from ..report import paper_value
from ..stats import in_points, mean_se, ordering_claim, paired_difference, unmeasured_claim
from .runs import AblationSettings, mix_label, mix_name, settings_for, table8_name
from .tables import GPU_ONLY, claim_size, gate_claim, topic_correct

__all__ = ["PAPER_TABLE8_ROWS", "arm_table", "curve_rows", "crossover", "crossover_claim", "table8_summary",
           "table8_claims", "plot_crossover"]


PAPER_TABLE8_ROWS = {"80_10_10": "80/10/10", "100_0_0": "100/0/0", "80_0_20": "80/0/20", "80_20_0": "80/20/0",
                     "0_20_80": "0/20/80", "0_0_100": "0/0/100"}  # run suffix -> row of report's table8


def arm_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per run (its name holds objective, shape and mix): steps, counted FLOPs, training wall
    time, LM losses (without NSP), NSP, the learning check. Short headers keep the table page-wide."""
    rows = []
    for name, r in results["runs"].items():
        g = results["gates"][name]
        rows.append({"run": name, "steps": f"{r['steps']:,}/{r['total_steps']:,}", "TFLOP": r["flops"] / 1e12,
                     "wall s": r["wall_seconds"], "train LM loss": r["final_lm_loss"],
                     "held-out LM loss": r["heldout_loss"], "NSP": r["nsp_balanced_accuracy"],
                     "cloze ÷ base": g["cloze_over_baseline"], "z": g["z"], "learned": g["learned"]})
    return rows


def curve_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The crossover curve as rows: arm, step, TFLOP, cloze (own mode), left-only control, probe."""
    rows = []
    for o, points in results["curves"].items():
        for p in points:
            rows.append({"arm": o, "label": ARM_LABELS[o], "step": p["step"], "tflop": p["flops"] / 1e12,
                         "cloze": mean_se([p["cloze"]]), "probe": mean_se([p["probe"]]),
                         "left_only": mean_se([p["left_only"]]) if p["left_only"] is not None else None})
    return rows


def _ltr_at(points: Sequence[Mapping[str, Any]], flops: float):
    """The LTR snapshot with the most FLOPs not above ``flops`` (None if LTR's first is later)."""
    before = [p for p in points if p["flops"] <= flops * (1 + 1e-9)]
    return before[-1] if before else None


def crossover(results: Mapping[str, Any], key: str = "cloze", arm: str = "mlm_nsp",
              sigmas: float = 2.0) -> dict[str, Any] | None:
    """The first snapshot of ``arm`` that beats LTR by more than ``sigmas`` SE on ``key``, LTR read at
    its latest snapshot with no more FLOPs (LTR never gets more compute than the arm); None if none."""
    ltr = results["curves"]["ltr"]
    for p in results["curves"][arm]:
        q = _ltr_at(ltr, p["flops"])
        if q is None:
            continue
        d = paired_difference([p[key]], [q[key]])
        if d["difference"] > sigmas * d["se"]:
            return {"step": p["step"], "flops": p["flops"], "ltr_step": q["step"], "ltr_flops": q["flops"], **d}
    return None


def crossover_claim(results: Mapping[str, Any], key: str = "cloze") -> dict[str, Any]:
    """Figure 5's claim at the arm's last snapshot: MLM + NSP (both sides) beats LTR with at most its FLOPs.

    Without a comparable pair (an arm kept no snapshot, or LTR's first snapshot has more FLOPs than
    MLM + NSP's last) the claim has no measurement: status "inconclusive", verdict "not measured".
    """
    names = [n for n, r in results["runs"].items() if r["role"] == "table5" and r["objective"] in ("mlm_nsp", "ltr")]
    what = "held-out cloze" if key == "cloze" else "topic probe, all labels"
    curve = results["curves"]["mlm_nsp"]
    mlm_nsp = curve[-1] if curve else None
    ltr = _ltr_at(results["curves"]["ltr"], mlm_nsp["flops"]) if mlm_nsp else None
    if mlm_nsp is None or ltr is None:
        why = ("MLM + NSP kept no snapshot" if mlm_nsp is None else
               f"LTR has no snapshot within MLM + NSP's {mlm_nsp['flops'] / 1e12:.3g} TFLOP")
        return gate_claim(unmeasured_claim(f"appendix_c1.{key}.mlm_nsp_minus_ltr",
                                           f"After the whole budget MLM + NSP beats LTR ({what})", why, "points"),
                          results, names)
    c = ordering_claim(f"appendix_c1.{key}.mlm_nsp_minus_ltr",
                       f"After the whole budget MLM + NSP beats LTR ({what}; LTR at "
                       f"{ltr['flops'] / 1e12:.3g} of {mlm_nsp['flops'] / 1e12:.3g} TFLOP)",
                       [in_points(paired_difference([mlm_nsp[key]], [ltr[key]]))], None, "points")
    return gate_claim(c, results, names)


def table8_summary(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """One row per mix: cloze ([MASK] blank) and its learning check, probe and fine-tuning (mean, SE)."""
    rows = []
    p, f = claim_size(settings), settings.finetune_sizes[0]
    for mix in settings.table8_mixes:
        name = table8_name(mix)
        g = results["gates"][name]
        row = {"mix": mix_label(mix), "run": name, "learned": g["learned"], "cloze_over_baseline":
               g["cloze_over_baseline"], "z": g["z"],
               "cloze": mean_se([results["cloze"]["scores"][f"{name}:bidirectional"]["correct"]]),
               f"probe@{p}": mean_se(topic_correct(results, name, "probe", p)),
               f"finetune@{f}": mean_se(topic_correct(results, name, "finetune", f))}
        paper_row = PAPER_TABLE8_ROWS.get(mix_name(mix))
        row["paper"] = {c: paper_value("table8", paper_row, c) for c in ("MNLI", "NER", "NER (feature-based)")} \
            if paper_row else None
        rows.append(row)
    return rows


def table8_claims(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """Appendix C.2's contrasts against the reference mix (the first, 80/10/10): the feature-based
    (probe) and fine-tuned (topic fine-tuning) differences, the paper's from its Table 8."""
    if not settings.table8:
        return _table8_at_gpu()
    ref = settings.table8_mixes[0]
    ref_name, ref_row = table8_name(ref), PAPER_TABLE8_ROWS[mix_name(ref)]
    p, f = claim_size(settings), settings.finetune_sizes[0]
    claims = []
    for mix in settings.table8_mixes[1:]:
        name, row = table8_name(mix), PAPER_TABLE8_ROWS.get(mix_name(mix))
        for regime, size, col in (("probe", p, "NER (feature-based)"), ("finetune", f, "MNLI")):
            paper = None if row is None else paper_value("table8", ref_row, col) - paper_value("table8", row, col)
            d = in_points(paired_difference(topic_correct(results, ref_name, regime, size),
                                          topic_correct(results, name, regime, size)))
            c = ordering_claim(f"table8.{regime}.{mix_name(ref)}_minus_{mix_name(mix)}",
                               f"{mix_label(ref)} beats {mix_label(mix)} "
                               f"({'frozen-feature probe' if regime == 'probe' else 'fine-tuned'}, {size} labels per "
                               f"topic; paper column {col})", [d], paper, "points")
            claims.append(gate_claim(c, results, [ref_name, name]))
    return claims


def _table8_at_gpu() -> list[dict[str, Any]]:
    """Table 8's claims, keyed as the gpu profile keys them, "not measured": decided at the gpu profile."""
    mixes = settings_for("gpu").table8_mixes
    ref = mixes[0]
    return [gate_claim(unmeasured_claim(f"table8.{regime}.{mix_name(ref)}_minus_{mix_name(mix)}",
                                        f"{mix_label(ref)} beats {mix_label(mix)} ({regime})", GPU_ONLY, "points"),
                       {"gates": {}}, [])
            for mix in mixes[1:] for regime in ("probe", "finetune")]


def plot_crossover(results: Mapping[str, Any], axes=None, sigmas: float = 2.0):
    """Cloze and probe accuracy against counted pre-training FLOPs (log x), one line per arm; the legend
    sits below the panels (leave room: ``fig.tight_layout(rect=(0, 0.14, 1, 1))``)."""
    import matplotlib.pyplot as plt  # lazily: plotting is optional, and pyplot is slow to import
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazily, as pyplot

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.4, 3.6))
    rows = curve_rows(results)
    styles = {"mlm_nsp": ("tab:blue", "o"), "mlm": ("tab:orange", "s"), "ltr": ("tab:gray", "^")}
    for ax, key, ylabel in ((axes[0], "cloze", "cloze accuracy (%)"), (axes[1], "probe", "probe accuracy (%)")):
        for o in OBJECTIVES:
            pts = [r for r in rows if r["arm"] == o]
            color, marker = styles[o]
            ax.errorbar([r["tflop"] for r in pts], [100 * r[key][0] for r in pts],
                        yerr=[100 * sigmas * r[key][1] for r in pts], color=color, marker=marker, capsize=2,
                        label=ARM_LABELS[o])
            if key == "cloze" and o == "mlm_nsp":
                ax.plot([r["tflop"] for r in pts], [100 * r["left_only"][0] for r in pts], ls=":", color=color,
                        marker=marker, label=f"{ARM_LABELS[o]}, left only")
        base = results["cloze"]["baseline"]["correct"]
        if key == "cloze":
            ax.axhline(100 * sum(base) / len(base), color="k", lw=0.8, ls="--", label="most frequent word")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, ...: labels apart
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # no labelled minor ticks to collide with the major ones
        ax.set_xlabel("pre-training TFLOP (counted)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=3, frameon=False)  # off the curves
    return axes
