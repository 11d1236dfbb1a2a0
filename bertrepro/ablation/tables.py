"""Chapter 12's results read as the paper's Tables 5 and 6: the topic-task rows, summaries with
standard errors, ordering claims decided from the measurements (:func:`bertrepro.stats.ordering_claim`,
never written by hand), and plots.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from ..labels import ARM_LABELS
from ..pretrain.config import OBJECTIVES
from ..report import PAPER_TABLES, paper_value
from ..stats import claim_sentence, in_points, mean_se, ordering_claim, paired_difference, unmeasured_claim
from .cloze import ARM_CLOZE_MODE
from .runs import AblationSettings, run_name, table6_name

__all__ = ["PAPER_ROWS", "PAPER_TABLE5_COLUMNS", "PAPER_TABLE6_COLUMNS", "topic_correct", "claim_size",
           "table5_summary", "table6_summary", "table5_claims", "table6_claims", "paper_difference", "plot_table5",
           "plot_table6", "gate_claim", "gated_sentence", "GPU_ONLY", "matched_flops", "nsp_sentence",
           "plateau_sentence", "plateau_exit", "gpu_only_sentence", "plot_learning_curve"]

PAPER_ROWS = {"mlm_nsp": "BERT-base", "mlm": "No NSP", "ltr": "LTR & No NSP"}  # rows of report's table5
PAPER_TABLE5_COLUMNS = ("MNLI-m", "QNLI", "MRPC", "SST-2")  # the classification columns of Table 5
PAPER_TABLE6_COLUMNS = ("MNLI-m", "MRPC", "SST-2")
GPU_ONLY = "decided at the gpu profile; this profile does not run it"  # the reason of a claim left to the gpu profile


def gate_claim(claim: dict[str, Any], results: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """No verdict from an arm that did not learn: a claim involving one gets status "inconclusive"
    (its measured difference and verdict stay, for the reader), with the arms named in ``unlearned``."""
    unlearned = [n for n in dict.fromkeys(names) if not results["gates"][n]["learned"]]
    claim = {**claim, "unlearned": unlearned}
    if unlearned:
        claim["status"] = "inconclusive"
    return claim


def gated_sentence(claim: Mapping[str, Any]) -> str:
    """:func:`bertrepro.stats.claim_sentence`, naming the arms that failed their learning check."""
    s = claim_sentence(claim)
    if claim.get("unlearned"):
        s += " No verdict: " + ", ".join(f"`{n}`" for n in claim["unlearned"]) + " did not pass its learning check."
    return s


def _rows(results: Mapping[str, Any], name: str, regime: str, size) -> list[Mapping[str, Any]]:
    rows = [r for r in results["topic"]["rows"] if r["arm"] == name and r["regime"] == regime and r["size"] == size]
    if not rows:
        raise ValueError(f"no {regime} result for run {name!r} at size {size!r}")
    return sorted(rows, key=lambda r: r["seed"])


def topic_correct(results: Mapping[str, Any], name: str, regime: str, size: int | str) -> list[list[float]]:
    """The (seeds x test articles) correctness of run ``name`` on the topic task (``regime``: probe or
    finetune, at ``size`` labels per topic), seeds in order: the input of a paired difference."""
    return [[float(c) for c in r["correct"]] for r in _rows(results, name, regime, size)]


def table5_summary(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """One row per arm: cloze accuracy (and the left-only control), probe and fine-tuning accuracy,
    each a (mean, standard error) pair in [0, 1]."""
    rows = []
    for o in OBJECTIVES:
        name = run_name(o, settings.arm_shape)
        row = {"objective": o, "label": ARM_LABELS[o], "paper_row": PAPER_ROWS[o], "run": name}
        sc = results["cloze"]["scores"]
        row["cloze"] = mean_se([sc[f"{name}:{ARM_CLOZE_MODE[o]}"]["correct"]])
        left = sc.get(f"{name}:left_only") or sc[f"{name}:left_to_right"]
        row["cloze_left_context"] = mean_se([left["correct"]])
        row["cloze_nll"] = -float(torch.tensor(sc[f"{name}:{ARM_CLOZE_MODE[o]}"]["log_prob"]).mean())
        row["learned"] = results["gates"][name]["learned"]
        for size in settings.probe_sizes:
            row[f"probe@{size}"] = mean_se(topic_correct(results, name, "probe", size))
        for size in settings.finetune_sizes:
            row[f"finetune@{size}"] = mean_se(topic_correct(results, name, "finetune", size))
        rows.append(row)
    return rows


def table6_summary(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """One row per size (smallest first): parameters, held-out MLM perplexity, probe accuracy."""
    rows = []
    for shape in settings.sizes:
        name = table6_name(shape)
        row = {"learned": results["gates"][name]["learned"], "shape": "/".join(map(str, shape)), "run": name, "parameters": results["runs"][name]["parameters"],
               "perplexity": results["mlm"][name]["perplexity"],
               "pretrain_perplexity": results["mlm"][name]["pretrain_perplexity"]}
        nll = torch.tensor(results["mlm"][name]["nll"], dtype=torch.float64)
        row["perplexity_se"] = row["perplexity"] * float(nll.std() / math.sqrt(nll.numel()))  # delta method
        for size in settings.probe_sizes:
            row[f"probe@{size}"] = mean_se(topic_correct(results, name, "probe", size))
        rows.append(row)
    return rows


def claim_size(settings: AblationSettings) -> int | str:
    """The probe size the claims use: all labels when measured, else the largest size."""
    return "all" if "all" in settings.probe_sizes else max(settings.probe_sizes)


def _topic_difference(results, a: str, b: str, regime: str, size) -> dict[str, float]:
    return in_points(paired_difference(topic_correct(results, a, regime, size), topic_correct(results, b, regime, size)))


def table5_claims(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """The §5.1 orderings, decided from the measurements (differences in accuracy points).

    Bidirectionality is judged as the paper isolates it, No NSP against LTR & No NSP (neither has
    NSP); the value of NSP as BERT against No NSP. The paper's number is its mean difference over
    the classification columns of Table 5 (MNLI-m, QNLI, MRPC, SST-2).
    """
    arm = {o: run_name(o, settings.arm_shape) for o in OBJECTIVES}
    cz = results["cloze"]["scores"]
    bi = paper_difference("table5", PAPER_ROWS["mlm"], PAPER_ROWS["ltr"], PAPER_TABLE5_COLUMNS)
    nsp = paper_difference("table5", PAPER_ROWS["mlm_nsp"], PAPER_ROWS["mlm"], PAPER_TABLE5_COLUMNS)
    p, f = claim_size(settings), settings.finetune_sizes[0]
    cloze = in_points(paired_difference([cz[f"{arm['mlm']}:bidirectional"]["correct"]],
                                      [cz[f"{arm['ltr']}:left_to_right"]["correct"]]))
    pairs = [("mlm", "ltr")] * 3 + [("mlm_nsp", "mlm")] * 2
    claims = [
        ordering_claim("table5.cloze.bidirectional_minus_ltr",
                       "A bidirectional MLM fills held-out blanks better than a left-to-right LM", [cloze], None, "points"),
        ordering_claim("table5.probe.bidirectional_minus_ltr",
                       f"No NSP beats LTR & No NSP (linear probe, {p} labels per topic)",
                       [_topic_difference(results, arm["mlm"], arm["ltr"], "probe", p)], bi, "points"),
        ordering_claim("table5.finetune.bidirectional_minus_ltr",
                       f"No NSP beats LTR & No NSP (fine-tuned, {f} labels per topic)",
                       [_topic_difference(results, arm["mlm"], arm["ltr"], "finetune", f)], bi, "points"),
        ordering_claim("table5.probe.nsp_minus_no_nsp",
                       f"NSP helps: BERT beats No NSP (linear probe, {p} labels per topic)",
                       [_topic_difference(results, arm["mlm_nsp"], arm["mlm"], "probe", p)], nsp, "points"),
        ordering_claim("table5.finetune.nsp_minus_no_nsp",
                       f"NSP helps: BERT beats No NSP (fine-tuned, {f} labels per topic)",
                       [_topic_difference(results, arm["mlm_nsp"], arm["mlm"], "finetune", f)], nsp, "points"),
    ]
    return [gate_claim(_with_flops(c, results, arm[a], arm[b]), results, [arm[a], arm[b]])
            for c, (a, b) in zip(claims, pairs)]


def _with_flops(claim: dict[str, Any], results: Mapping[str, Any], a: str, b: str) -> dict[str, Any]:
    """The claim with the counted pre-training FLOPs of its two runs, in its text and as ``flops``."""
    fa, fb = results["runs"][a]["flops"], results["runs"][b]["flops"]
    la, lb = (ARM_LABELS[results["runs"][n]["objective"]] for n in (a, b))
    return {**claim, "flops": (fa, fb), "claim": f"{claim['claim']}; {la} at {fa / 1e12:.3g} TFLOP, "
                                                 f"{lb} at {fb / 1e12:.3g} TFLOP"}


def matched_flops(results: Mapping[str, Any], settings: AblationSettings, rtol: float = 0.02) -> bool:
    """Whether Table 5's three models had equal counted FLOPs: MLM + NSP and MLM within ``rtol`` (the
    same steps; their predicted positions differ a little, since NSP's random second segments have other
    lengths than the true continuations), LTR within half of one of its steps (its stop is a whole step)."""
    r = {o: results["runs"][run_name(o, settings.arm_shape)] for o in OBJECTIVES}
    f_nsp, f_mlm, f_ltr = r["mlm_nsp"]["flops"], r["mlm"]["flops"], r["ltr"]["flops"]
    return abs(f_nsp - f_mlm) <= rtol * f_mlm and abs(f_ltr - f_mlm) <= r["ltr"]["step_flops"] / 2 + rtol * f_mlm


def nsp_sentence(claims: Sequence[Mapping[str, Any]]) -> str:
    """What the NSP claims measured, from their sign and standard error (not from expectation)."""
    parts, signs = [], set()
    for c in claims:
        if c["value"] is None:
            continue
        how = "linear probe" if ".probe." in c["key"] else "fine-tuned"
        v, se = c["value"], c["se"]
        sign = "helps" if v > 2 * se else "hurts" if v < -2 * se else "within noise"
        signs.add(sign)
        parts.append(f"{v:+.2f} ± {se:.2f} points ({how}: {'NSP ' + sign if sign != 'within noise' else sign})")
    if not parts:
        return "NSP's effect was not measured here."
    learned = all(not c["unlearned"] for c in claims)
    head = "Here NSP's measured effect, BERT minus No NSP at equal steps, is " + " and ".join(parts) + "."
    if not learned:
        return head + " An arm did not pass its learning check, so these numbers decide nothing."
    if signs == {"hurts"} or ("hurts" in signs and "helps" not in signs):
        tail = (" NSP *hurts* here beyond two standard errors in at least one regime: this sides with RoBERTa, "
                "and at this scale it contradicts the paper's small gain.")
    elif "helps" in signs and "hurts" not in signs:
        tail = " NSP helps here beyond two standard errors in at least one regime, as in the paper."
    elif signs == {"within noise"}:
        tail = " Both lie within two standard errors: the data cannot tell a small gain from none."
    else:
        tail = " The two regimes disagree in sign beyond noise: the data give no single answer."
    return head + tail


def plateau_sentence(results: Mapping[str, Any], name: str) -> str:
    """One sentence on a run that failed its learning check: whether it ever left the unigram plateau
    (held-out LM perplexity against the unigram model's on the same positions; NSP at chance)."""
    r = results["runs"][name]
    ev = r["evaluation"]
    ppl = ev.get("mlm_perplexity", ev.get("lm_perplexity"))
    uni = ev.get("unigram_perplexity")
    nsp = r.get("nsp_balanced_accuracy")
    nsp_s = "" if nsp is None else f", NSP {100 * nsp:.1f} % balanced (chance 50 %)"
    if ppl is None or uni is None:
        return f"`{name}` did not pass its learning check{nsp_s}."
    where = ("never got below the unigram plateau" if ppl >= 0.9 * uni
             else "got below the unigram plateau but did not pass its check")
    return (f"`{name}` {where}: held-out perplexity {ppl:,.0f} against the unigram model's {uni:,.0f} after "
            f"{r['steps']:,} steps{nsp_s}.")


def _perplexity_difference(results, a: str, b: str) -> dict[str, float]:
    """ppl(a) - ppl(b) on the same masked tokens; its standard error keeps the z-score of the paired
    test on the mean log-likelihoods (the two are monotone in each other)."""
    nll_a = torch.tensor(results["mlm"][a]["nll"], dtype=torch.float64)
    nll_b = torch.tensor(results["mlm"][b]["nll"], dtype=torch.float64)
    d = paired_difference(nll_a, nll_b)  # nats per token
    ppl_a, ppl_b = math.exp(float(nll_a.mean())), math.exp(float(nll_b.mean()))
    slope = (ppl_a - ppl_b) / d["difference"] if abs(d["difference"]) > 1e-12 else ppl_a  # exp at a point between
    return {**d, "difference": ppl_a - ppl_b, "se": d["se"] * slope, "nll_difference": d["difference"], "nll_se": d["se"]}


def table6_claims(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """The §5.2 orderings: every step up the size grid lowers perplexity and raises probe accuracy.

    The value is the end-to-end difference (smallest vs largest); the paper's, that of its first and
    last rows (3/768/12 and 24/1024/16; accuracy: mean over MNLI-m, MRPC, SST-2).
    """
    if not settings.table6:
        return [gate_claim(unmeasured_claim(k, c, GPU_ONLY, u), results, []) for k, c, u in (
            ("table6.ppl.smallest_minus_largest", "Held-out MLM perplexity falls at every step up the size grid",
             "perplexity"),
            ("table6.probe.largest_minus_smallest", "Probe accuracy rises at every step up the size grid", "points"))]
    names = [table6_name(s) for s in settings.sizes]
    paper_rows = [r for r, _ in PAPER_TABLES["table6"].rows]
    paper_ppl = paper_difference("table6", paper_rows[0], paper_rows[-1], ("LM ppl",))
    paper_acc = paper_difference("table6", paper_rows[-1], paper_rows[0], PAPER_TABLE6_COLUMNS)
    p = claim_size(settings)
    pairs = list(zip(names, names[1:]))
    claims = [
        ordering_claim("table6.ppl.smallest_minus_largest", "Held-out MLM perplexity falls at every step up the size grid",
                       [_perplexity_difference(results, s, b) for s, b in pairs], paper_ppl, "perplexity",
                       overall=_perplexity_difference(results, names[0], names[-1])),
        ordering_claim("table6.probe.largest_minus_smallest",
                       f"Probe accuracy rises at every step up the size grid ({p} labels per topic)",
                       [_topic_difference(results, b, s, "probe", p) for s, b in pairs], paper_acc, "points",
                       overall=_topic_difference(results, names[-1], names[0], "probe", p)),
    ]
    return [gate_claim(c, results, names) for c in claims]


def plateau_exit(curve: Mapping[str, Any], margin: float = 0.1) -> int | None:
    """The first logged step whose training LM loss is ``margin`` below the unigram plateau, the log
    of the held-out unigram perplexity (a model that ignores context); None if the run never gets there."""
    plateau = math.log(curve["unigram_perplexity"])
    return next((s for s, loss in zip(curve["steps"], curve["lm_loss"]) if loss <= (1 - margin) * plateau), None)


def gpu_only_sentence(curve: Mapping[str, Any], steps: int, margin: float = 0.1) -> str:
    """Why Tables 6 and 8 leave a profile, from chapter 09's measured learning curve: the step at which
    even the larger arm shape left the plateau, against the ``steps`` a smaller-shape run would get."""
    plateau = math.log(curve["unigram_perplexity"])
    n = plateau_exit(curve, margin)
    where = (f"never left it in {curve['steps'][-1]:,} steps" if n is None else
             f"left it (a training LM loss {100 * margin:.0f} % below) only at step {n:,}")
    verdict = ("more steps than" if n is None or n > steps else "within the")
    return (f"Tables 6 and 8 are decided at the gpu profile: their shapes are smaller than chapter 09's, and "
            f"chapter 09's own run sat on the unigram plateau (loss {plateau:.2f} nats, the log of the unigram "
            f"perplexity {curve['unigram_perplexity']:,.0f}) and {where}, {verdict} {steps:,} steps a "
            f"smaller-shape run gets in this profile's minutes.")


def plot_learning_curve(curve: Mapping[str, Any], ax=None, margin: float = 0.1):
    """A run's training LM loss against steps, with the unigram plateau and the line ``margin`` below it."""
    import matplotlib.pyplot as plt  # lazily: plotting is optional, and pyplot is slow to import
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.0))
    plateau = math.log(curve["unigram_perplexity"])
    ax.plot(curve["steps"], curve["lm_loss"], color="tab:blue", label=f"{curve['run']} (training LM loss)")
    ax.axhline(plateau, color="k", ls="--", lw=0.8, label="unigram plateau")
    ax.axhline((1 - margin) * plateau, color="k", ls=":", lw=0.8, label=f"{100 * margin:.0f} % below it")
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("loss (nats)", fontsize=9)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return ax


def paper_difference(table: str, row_a: str, row_b: str, columns: Sequence[str]) -> float:
    """The paper's mean difference ``row_a - row_b`` over ``columns`` of one of its tables."""
    return sum(paper_value(table, row_a, c) - paper_value(table, row_b, c) for c in columns) / len(columns)


def plot_table5(summary: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], ax=None, sigmas: float = 2.0):
    """Grouped bars: one group per metric (label, key), one bar per arm, ± ``sigmas`` standard errors."""
    import matplotlib.pyplot as plt  # lazily: plotting is optional, and pyplot is slow to import
    if ax is None:
        _, ax = plt.subplots(figsize=(7.4, 3.6))
    colors = {"mlm_nsp": "tab:blue", "mlm": "tab:orange", "ltr": "tab:gray"}
    width = 0.8 / len(summary)
    for j, row in enumerate(summary):
        xs = [i + (j - (len(summary) - 1) / 2) * width for i in range(len(metrics))]
        means = [100 * row[k][0] for _, k in metrics]
        errs = [100 * sigmas * row[k][1] for _, k in metrics]
        ax.bar(xs, means, width, yerr=errs, capsize=3, color=colors[row["objective"]], label=row["label"])
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m for m, _ in metrics], fontsize=9)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Table 5 analog: equal compute, different objectives (error bars ±{sigmas:g} SE)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    return ax


def plot_table6(summary: Sequence[Mapping[str, Any]], probe_key: str, paper=None, axes=None, sigmas: float = 2.0):
    """Perplexity and probe accuracy against parameters (log scale), ± ``sigmas`` standard errors.

    ``paper``: optional (parameters, perplexity) pairs of the paper's rows for the left panel.
    """
    import matplotlib.pyplot as plt  # lazily: plotting is optional, and pyplot is slow to import
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.4, 3.4))
    n = [r["parameters"] for r in summary]
    ax = axes[0]
    ax.errorbar(n, [r["perplexity"] for r in summary], yerr=[sigmas * r["perplexity_se"] for r in summary],
                marker="o", capsize=3, label="ours (held-out MLM)")
    for r in summary:
        ax.annotate(r["shape"], (r["parameters"], r["perplexity"]), fontsize=9, xytext=(3, 3), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    if paper:
        ax2 = ax.twinx()
        ax2.plot([p for p, _ in paper], [v for _, v in paper], "s--", color="tab:red", label="paper, Table 6 (right axis)")
        ax2.set_ylabel("paper LM ppl", color="tab:red", fontsize=9)
        ax2.set_xscale("log")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_xscale("log")
    ax.set_xlabel("parameters (BertModel)")
    ax.set_ylabel("held-out MLM perplexity")
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, fontsize=9, loc="lower center")
    ax = axes[1]
    ax.errorbar(n, [100 * r[probe_key][0] for r in summary], yerr=[100 * sigmas * r[probe_key][1] for r in summary],
                marker="o", capsize=3, color="tab:green")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (BertModel)")
    ax.set_ylabel("probe test accuracy (%)")
    ax.grid(alpha=0.3)
    return axes
