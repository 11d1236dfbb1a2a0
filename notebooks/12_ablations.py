# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12 · Ablations at small scale
#
# Section 5 and Appendix C of the paper take BERT apart to see which pieces matter. This
# chapter re-runs four of those experiments at the scale of the book's profiles:
#
# * **§5.1, Table 5: the pre-training tasks.** BERT (MLM + NSP) against *No NSP* (MLM
#   only) and *LTR & No NSP*, a left-to-right language model. Removing NSP costs a
#   little (most on QNLI); going left-to-right costs a lot (MRPC −9.0, SQuAD −10.1 F1).
# * **Appendix C.1, Figure 5: does MLM converge more slowly?** The paper plots MNLI
#   accuracy against pre-training steps and finds the MLM model "begins to outperform
#   the LTR model almost immediately".
# * **§5.2, Table 6: model size.** Larger $L$, $H$, $A$ give lower held-out perplexity
#   and better accuracy.
# * **Appendix C.2, Table 8: the MASK/SAME/RND mix** of the chosen positions.
#   Fine-tuning is "surprisingly robust" to it; MASK-only is "problematic" for
#   feature-based use.
#
# Tables 6 and 8 train models smaller than chapter 09's; at the `cpu` profile they could
# not
# leave their starting plateau within the minutes the book has, so they run at the `gpu`
# profile only (the section "Table 6 analog" shows the curve that says why).
#
# Two rules hold throughout. **No verdict from an arm that did not learn:** every run
# passes a learning check first, and a comparison that involves a run that failed it is
# *inconclusive*, never "not reproduced". **Compute is counted, not assumed:** one FLOP
# counter prices every objective, and every plot and table says whether FLOPs or steps
# are held equal.

# %% tags=["parameters"]
profile = None  # "smoke" | "cpu" | "gpu"; None picks gpu if CUDA is available, else cpu
seed = 0
device = None

# %%
from bertrepro.chapters import setup

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import dataclasses
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown, display
from torch.testing import assert_close

from bertrepro.ablation.appendix import (
    arm_table,
    crossover,
    crossover_claim,
    curve_rows,
    plot_crossover,
    table8_claims,
    table8_summary,
)
from bertrepro.ablation.cloze import (
    ARM_CLOZE_MODE,
    cloze_scores,
    gate_note,
    learning_check,
    make_cloze_items,
)
from bertrepro.ablation.experiment import run_ablation
from bertrepro.ablation.runs import (
    differing_fields,
    equal_flop_ltr_steps,
    load_run,
    mix_name,
    pretrain_config,
    run_name,
    settings_for,
)
from bertrepro.ablation.tables import (
    gated_sentence,
    gpu_only_sentence,
    matched_flops,
    nsp_sentence,
    plateau_sentence,
    plot_learning_curve,
    plot_table5,
    table5_claims,
    table5_summary,
    table6_claims,
    table6_summary,
)
from bertrepro.attention import scaled_dot_product_attention
from bertrepro.model import BertForPreTraining
from bertrepro.pretrain.config import EVAL_SEED, OBJECTIVES, PretrainConfig
from bertrepro.pretrain.data import epoch_examples, ltr_labels, make_batch, prepare_data
from bertrepro.report import PAPER_TABLES, record
from bertrepro.train.flops import count_step_flops, train_step_flops

settings = settings_for(run.profile)
print(settings)


def md_table(rows, floatfmt=".3g"):
    """A list of dicts as a Markdown table (no index)."""
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=floatfmt)


# %% [markdown]
# ## Three objectives
#
# The three Table 5 arms differ only in what the model is asked to predict. With
# $\tilde{x}$ the input after masking the positions $M$ (chapter 07) and $C$ the pooled
# `[CLS]` vector (chapter 08):
#
# $$
# \mathcal{L}_{\text{MLM+NSP}} = -\frac{1}{|M|}\sum_{t \in M} \log p_\theta(x_t \mid
# \tilde{x}) \;-\; \log p_\theta(\text{IsNext?} \mid C), \qquad \mathcal{L}_{\text{LTR}}
# = -\frac{1}{T-1}\sum_{t=1}^{T-1} \log p_\theta(x_{t+1} \mid x_{\le t}).
# $$
#
# The MLM arm drops the NSP term. The LTR model is the same encoder with a **causal
# mask**: position $i$ attends to $j$ only when $j \le i$. First the causal mask,
# derived with a loop over query positions, then the LTR targets, derived token by
# token.

# %%
g = run.generator()
q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))  # (B, heads, T, hs)
rows = []
for i in range(7):  # query i sees keys 0..i only
    s = q[:, :, i : i + 1] @ k[:, :, : i + 1].transpose(-1, -2) / math.sqrt(8)
    rows.append(torch.softmax(s, dim=-1) @ v[:, :, : i + 1])
naive = torch.cat(rows, dim=2)  # (B, h, T, hs)
causal_out, causal_weights = scaled_dot_product_attention(
    q, k, v, is_causal=True, training=False
)
assert_close(naive, causal_out)
assert causal_weights.triu(diagonal=1).abs().max() == 0  # no weight on a future key

ids = torch.tensor([[2, 17, 23, 5, 3, 0, 0], [2, 9, 4, 11, 6, 8, 3]])
mask = (ids != 0).long()
naive_labels = torch.full_like(ids, -100)
for b in range(ids.shape[0]):
    for t in range(ids.shape[1] - 1):
        if mask[b, t + 1]:
            naive_labels[b, t] = ids[b, t + 1]  # position t predicts the next token
assert torch.equal(naive_labels, ltr_labels(ids, mask))
print("causal attention = loop over prefixes; LTR labels = next tokens")

# %% [markdown]
# ## Equal compute, counted
#
# An optimizer step costs three forward passes (the backward pass about twice the
# forward). For an encoder with $L$ layers, width $H$, feed-forward width $F = 4H$, a
# batch of $B$ sequences of $T$ tokens, vocabulary $V$ and $P$ predicted positions in
# the batch, the matmul FLOPs (a multiply-add counts 2) of one step are
#
# $$
# 3\Big[L\big(2BT(4H^2 + 2HF) + 4BT^2H\big) + 2BH^2 + 4BH + P\cdot 2(H^2 + HV)\Big].
# $$
#
# The objectives differ only in $P$: about 15 % of the real tokens for the masked LM
# (capped per sequence), every real next token for LTR. So $P$ is **counted** on each
# run's own batches, not taken from the nominal 15 %. The formula is checked below
# against PyTorch's `FlopCounterMode` on one real batch of each objective, through the
# explicit attention path (the counter sees nothing of the fused attention kernel on
# CPU; `tests/test_flops.py` measures that blind spot).

# %%
flops = equal_flop_ltr_steps(settings, run.seed)
base_cfg = PretrainConfig.for_profile(run.profile, seed=run.seed)
data = prepare_data(base_cfg)
tok = data.tokenizer
bert_cfg = base_cfg.bert_config(data.vocab_size)
for o in ("mlm_nsp", "ltr"):
    cfg = dataclasses.replace(base_cfg, objective=o, batch_size=4)
    batch = make_batch(
        epoch_examples(data, cfg, 0).select(slice(0, 4)),
        data,
        cfg,
        torch.Generator().manual_seed(0),
    )
    torch.manual_seed(0)
    m = BertForPreTraining(bert_cfg)
    measured = count_step_flops(m, batch, is_causal=o == "ltr")
    predicted = int((batch["labels"] != -100).sum())
    formula = train_step_flops(bert_cfg, 4, cfg.max_seq_length, predicted)
    assert abs(formula - measured) / measured < 1e-3, (o, formula, measured)
    print(
        f"{o}: formula {formula / 1e9:.4f} GFLOP, "
        f"FlopCounterMode {measured / 1e9:.4f}"
    )
ch09_steps = base_cfg.total_steps
display(
    Markdown(
        md_table(
            [
                {
                    "objective": "MLM (+NSP)",
                    "predicted per step": flops["mlm_predicted"],
                    "GFLOP per step": flops["mlm_step_flops"] / 1e9,
                    "schedule (steps)": ch09_steps,
                    "TFLOP": ch09_steps * flops["mlm_step_flops"] / 1e12,
                },
                {
                    "objective": "LTR",
                    "predicted per step": flops["ltr_predicted"],
                    "GFLOP per step": flops["ltr_step_flops"] / 1e9,
                    "schedule (steps)": flops["ltr_total_steps"],
                    "TFLOP": flops["ltr_total_steps"] * flops["ltr_step_flops"] / 1e12,
                },
            ]
        )
    )
)
print(
    f"Table 5 compares the arms at {flops['matched_flops'] / 1e12:.3g} TFLOP: "
    f"MLM step {flops['matched_step']:,}, LTR step {flops['ltr_stop_step']:,}"
)

# %% [markdown]
# **What is held equal.** The MLM + NSP arm **is** chapter 09's run
# (`bertrepro.pretrain.pretrained_model`), read for Table 5 at one of its kept
# checkpoints,
# the *matched step*. The MLM arm repeats its schedule without NSP and stops at that
# step
# (equal steps *and*, since NSP adds 0.03 % of the FLOPs, equal FLOPs). The LTR arm's
# schedule (warm-up share, linear decay) is as long as gives the **same FLOPs** as
# chapter 09's whole run, and it stops at the step whose FLOPs are closest to the
# matched
# step's. So Table 5 compares three models that had **the same counted compute**; the
# crossover curve then follows chapter 09's run to its end. The cell asserts what
# differs
# between the arms' configurations.

# %%
configs = {o: pretrain_config(settings, o, run.seed, flops=flops) for o in OBJECTIVES}
assert configs["mlm_nsp"] == base_cfg
mlm_diff = differing_fields(configs["mlm_nsp"], configs["mlm"])
assert mlm_diff <= {
    "objective",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
}, mlm_diff
assert configs["mlm"].stop_step == settings.matched_step
ltr_diff = differing_fields(configs["mlm_nsp"], configs["ltr"])
assert ltr_diff <= {
    "objective",
    "total_steps",
    "warmup_steps",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
}, ltr_diff
ltr_cfg = configs["ltr"]
share = base_cfg.warmup_steps / base_cfg.total_steps  # chapter 09's warm-up share
assert ltr_cfg.warmup_steps == round(share * ltr_cfg.total_steps)
print("MLM differs from chapter 09's run in", sorted(mlm_diff))
print(
    "LTR differs in",
    sorted(ltr_diff),
    f"- it stops at step {ltr_cfg.stop_step} of " f"{ltr_cfg.total_steps}",
)

# %% [markdown]
# ## The runs and their learning checks
#
# Every run is trained (or read from the cache) and measured once; the models and a
# JSON of the measurements are cached under
# `bertrepro.io.cache_dir("ablation", profile, ...)`.
# One pre-training seed per run: the error bars below are the evaluation's, not the
# spread between pre-training seeds.
#
# The **learning check** asks whether a run learned its own task, on held-out text. A
# *cloze* blank is one whole word (a single alphabetic WordPiece) with context on both
# sides; the masked models read it as `[MASK]` with both sides, the LTR model predicts
# it from the left context. The baseline always answers the most frequent word. A run
# has learned when its cloze accuracy is at least $1.5\times$ the baseline's **and**
# above it by
# $z \ge 3$ (paired on the same blanks), and, for an NSP run, its held-out balanced NSP
# accuracy is at least 65 %.

# %%
results = run_ablation(settings, seed=run.seed, device=run.device)
sec = results["seconds"]
built = sum(line.startswith("cache: computing") for line in results["cache_log"])
print(
    "read from the cache"
    if results["cached"]
    else f"built {built} cached artifacts in {sec['pretraining']:.0f} s of "
         "pre-training + "
    f"{sec['evaluation']:.0f} s of evaluation"
)
arm_rows = arm_table(results)
display(Markdown(md_table(arm_rows)))

# %%
gates = results["gates"]


def gate_key(name, r):
    """A run's record prefix: ablation.<arm>, table6.rank<i>, table8.<M>_<S>_<R>.

    Rank 1 is the smallest size of the grid: the keys join across profiles whose grids
    differ."""
    if r["role"] == "table5":
        return f"ablation.{r['objective']}"
    if r["role"] == "table6":
        sizes = [list(s) for s in settings.sizes]
        return f"table6.rank{sizes.index(list(r['shape'])) + 1}"
    return "table8." + mix_name(r["mix"])


for name, r in results["runs"].items():
    gk, gt = gate_key(name, r), gates[name]
    note = f"{name}: " + gate_note(gt) + f"; {run.profile} profile"
    status = (
        "pass" if gt["learned"] else "fail"
    )  # the book's learning check, not a claim
    record(
        f"{gk}.cloze_over_baseline",
        round(min(gt["cloze_over_baseline"], 1e6), 4),
        kind="check",
        status=status,
        note=note,
    )
    record(f"{gk}.learned", gt["learned"], kind="check", expected=True, note=note)
    if gt["nsp_balanced_accuracy"] is not None:
        record(
            f"{gk}.nsp_balanced_accuracy",
            round(gt["nsp_balanced_accuracy"], 4),
            kind="check",
            status=status,
            note=note,
        )
unlearned = [n for n, gt in gates.items() if not gt["learned"]]
print(f"{len(gates) - len(unlearned)} of {len(gates)} runs passed their learning check")
if unlearned:
    display(Markdown("\n".join("* " + plateau_sentence(results, n) for n in unlearned)))

# %% [markdown]
# One blank, filled by each arm's final model, and the same numbers by hand: the masked
# model on the masked window, the LTR model on the prefix $x_{<t}$ alone.

# %%
names = {o: run_name(o, settings.arm_shape) for o in OBJECTIVES}
arms = {
    o: load_run(settings, names[o], run.seed, str(run.device), progress=False)
    for o in ("mlm", "ltr")
}
items = make_cloze_items(
    data.validation_documents,
    tok,
    base_cfg.max_seq_length,
    settings.cloze_items,
    settings.cloze_context,
    EVAL_SEED,
)
assert len(items) == results["cloze"]["items"]
i = 0
t, n = int(items.position[i]), int(items.attention_mask[i].sum())
x = items.input_ids[i, :n].clone()
masked = x.clone()
masked[t] = tok.mask_token_id
one = items.select(slice(i, i + 1))
with torch.no_grad():
    bi_naive = arms["mlm"].model(masked[None].to(run.device)).prediction_logits[0, t]
    prefix = x[None, :t].to(run.device)  # [CLS] w_1 .. w_{t-1}: no right context
    ltr_naive = arms["ltr"].model(prefix, is_causal=True).prediction_logits[0, -1]
bi = cloze_scores(arms["mlm"].model, one, "bidirectional", tok, device=run.device)
ltr = cloze_scores(arms["ltr"].model, one, "left_to_right", tok, device=run.device)
target = int(items.target[i])
tol = 1e-4 if run.device.type == "cpu" else 5e-2  # bf16 autocast on CUDA
assert_close(
    bi.log_prob[0],
    bi_naive.float().log_softmax(-1)[target].double().cpu(),
    atol=tol,
    rtol=tol,
)
assert_close(
    ltr.log_prob[0],
    ltr_naive.float().log_softmax(-1)[target].double().cpu(),
    atol=tol,
    rtol=tol,
)
for o, s in (("mlm", bi), ("ltr", ltr)):
    mode = ARM_CLOZE_MODE[o]
    cached = results["cloze"]["scores"][f"{names[o]}:{mode}"]["log_prob"][i]
    assert_close(
        torch.tensor(cached, dtype=torch.float64), s.log_prob[0], atol=tol, rtol=tol
    )
words = tok.convert_ids_to_tokens(x.tolist())
print(" ".join(words[1:t]), "[ ____ ]", " ".join(words[t + 1 : n - 1]))
print(
    "answer:", words[t], f"| log p: MLM {bi.log_prob[0]:.3f}, LTR {ltr.log_prob[0]:.3f}"
)

# %% [markdown]
# ## Appendix C.1: the crossover curve
#
# The paper's Figure 5 reads MNLI accuracy off checkpoints of **one** BERT-base run of
# 1M steps. Here the points are the kept checkpoints of each Table 5 arm's run, scored
# with the same cloze blanks (both sides for the masked arms, the left context for LTR,
# and the left-only control for MLM + NSP) and the frozen topic probe (all labels). As
# in Figure 5, an intermediate point is a model in the middle of its schedule, at a
# higher learning rate than a run that *ends* there. **The x-axis is counted
# pre-training FLOPs:** points at the same $x$ had the same compute.

# %%
curve = curve_rows(results)
fig, axes = plt.subplots(1, 2, figsize=(7.4, 3.8))
plot_crossover(results, axes=axes)
axes[0].set_title("cloze, equal FLOPs on the x-axis", fontsize=9)
axes[1].set_title("topic probe (all labels), equal FLOPs", fontsize=9)
plt.tight_layout(rect=(0, 0.12, 1, 1))  # room for the legend below the panels
plt.show()
display(
    Markdown(
        md_table(
            [
                {
                    "arm": r["label"],
                    "step": r["step"],
                    "TFLOP": r["tflop"],
                    "cloze %": f"{100 * r['cloze'][0]:.1f} ± {100 * r['cloze'][1]:.1f}",
                    "left only %": (
                        ""
                        if r["left_only"] is None
                        else f"{100 * r['left_only'][0]:.1f}"
                    ),
                    "probe %": f"{100 * r['probe'][0]:.1f} ± {100 * r['probe'][1]:.1f}",
                }
                for r in curve
            ]
        )
    )
)

# %%
cross = {key: crossover(results, key) for key in ("cloze", "probe")}
c1 = [crossover_claim(results, key) for key in ("cloze", "probe")]
steps_per = {o: max(p["step"] for p in results["curves"][o]) for o in results["curves"]}


def crossover_sentence(key, c):
    what = "cloze" if key == "cloze" else "topic probe"
    if c is None:
        return (
            f"* **{what}:** MLM + NSP never beats LTR by two standard errors "
            "at any of its snapshots (LTR read at its latest snapshot with no "
            "more FLOPs): no crossover within this budget."
        )
    return (
        f"* **{what}:** MLM + NSP first beats LTR at step {c['step']} "
        f"({c['flops'] / 1e12:.2f} TFLOP), by {100 * c['difference']:+.1f} ± "
        f"{100 * c['se']:.1f} points against LTR's step {c['ltr_step']} "
        f"({c['ltr_flops'] / 1e12:.2f} TFLOP)."
    )


curve_learned = all(gates[names[o]]["learned"] for o in ("mlm_nsp", "ltr"))
caveat = (
    ""
    if curve_learned
    else (
        "\n\n*The Table 5 models of MLM + NSP and LTR did not both pass their learning "
        "checks, so the curve decides nothing at this profile.*"
    )
)
display(
    Markdown(
        "\n".join(crossover_sentence(k, c) for k, c in cross.items())
        + caveat
        + "\n\n"
        + "\n\n".join("* " + gated_sentence(c) for c in c1)
    )
)

# %% [markdown]
# **Against Figure 5.** Figure 5's x-axis starts at 200k steps of 128k tokens ($2.6
# \cdot 10^{10}$ tokens); at that point MLM is already ahead. The runs here read
# $B \cdot T \cdot$ steps tokens, printed below: thousands of times less than Figure 5's
# *first* point. Per FLOP the LTR model gets several times more training targets, and at
# this budget that dominates. So a curve without a crossover here does not contradict
# the paper's "almost immediately": its "immediately" lies beyond this budget. The
# left-only control shows what the right context is worth to the masked model once it
# has learned.

# %%
tokens = {
    o: configs[o].stop_step * base_cfg.batch_size * base_cfg.max_seq_length
    for o in configs
}
fig5_first = 200_000 * 128_000
print(
    f"tokens read: MLM + NSP {tokens['mlm_nsp']:,}, LTR {tokens['ltr']:,}; "
    f"Figure 5's first point: {fig5_first:,} "
    f"({fig5_first / tokens['mlm_nsp']:,.0f}x)"
)
targets_per_tflop = {
    o: flops[f"{o}_predicted"] / flops[f"{o}_step_flops"] * 1e12 for o in ("mlm", "ltr")
}
print(
    f"training targets per TFLOP: MLM {targets_per_tflop['mlm']:,.0f}, "
    f"LTR {targets_per_tflop['ltr']:,.0f}"
)

# %% [markdown]
# ## Table 5 analog
#
# The three arms at **equal counted FLOPs** (chapter 09's run and the MLM arm at the
# matched step, LTR at the step with the same FLOPs): the cloze, its left-context
# control, and chapter 10's topic task as a linear probe on frozen mean-pooled features
# and fine-tuned with few labels. The LTR arm keeps its causal mask in both ("the
# left-only constraint was also applied at fine-tuning"). Error bars are standard
# errors: the binomial error of the blanks; for the topic task the spread over training
# draws plus the error of the test set.

# %%
assert matched_flops(results, settings)
tflop5 = {o: results["runs"][names[o]]["flops"] / 1e12 for o in OBJECTIVES}
print(
    "counted pre-training TFLOP: "
    + ", ".join(
        f"{o} {tflop5[o]:.3g} (step {results['runs'][names[o]]['steps']:,})"
        for o in OBJECTIVES
    )
)
summary5 = table5_summary(results, settings)
p_small = min(s for s in settings.probe_sizes if s != "all")
f_small = settings.finetune_sizes[0]
metrics = [
    ("cloze", "cloze"),
    ("cloze, left only", "cloze_left_context"),
    (f"probe {p_small}/topic", f"probe@{p_small}"),
    ("probe all", "probe@all"),
    (f"fine-tuned {f_small}/topic", f"finetune@{f_small}"),
]
metrics = [m for m in metrics if m[1] in summary5[0]]
display(
    Markdown(
        md_table(
            [
                {
                    "pre-training": r["label"],
                    "learned": r["learned"],
                    **{
                        m: f"{100 * r[key][0]:.1f} ± {100 * r[key][1]:.1f}"
                        for m, key in metrics
                    },
                }
                for r in summary5
            ]
        )
    )
)
display(Markdown(PAPER_TABLES["table5"].to_markdown()))
fig, ax = plt.subplots(figsize=(7.4, 3.4))
plot_table5(summary5, metrics, ax=ax)
ax.set_title(
    f"Table 5 analog: every arm at ≈ {tflop5['mlm']:.3g} TFLOP, ±2 SE", fontsize=9
)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## NSP in context
#
# The paper's Table 5 finds NSP worth 0.1–3.5 points, most on QNLI. RoBERTa (Liu et al.,
# 2019, §4.2) re-examined this: removing NSP while packing **full-length segments** of
# contiguous text matched or slightly improved downstream results, and the authors
# suggest BERT's No-NSP ablation may have removed only the loss while keeping the
# segment-pair inputs. Our MLM arm reads contiguous text (its second segment is always
# the true continuation) in the same short pairs, so it sits between the two papers'
# settings; and our topic task is a single-text task, unlike QNLI, where the paper's
# gain was largest. What this run measured:

# %%
claims5 = table5_claims(results, settings)
display(Markdown(nsp_sentence([c for c in claims5 if ".nsp_" in c["key"]])))
reversed5 = [
    c
    for c in claims5
    if "bidirectional" in c["key"] and c["verdict"] == "reversed" and not c["unlearned"]
]
if reversed5:
    where = (
        "MLM + NSP first leads at step "
        f"{cross['probe']['step']:,} ({cross['probe']['flops'] / 1e12:.3g} TFLOP)"
        if cross["probe"]
        else "MLM + NSP never leads LTR on the probe at equal FLOPs "
        f"within chapter 09's {results['runs'][names['mlm_nsp']]['total_steps']:,} "
        "steps"
    )
    display(
        Markdown(
            f"At equal compute LTR leads on {len(reversed5)} of the bidirectionality "
            "claims, "
            "so they are *not reproduced at this scale*. The paper's ordering would "
            "need the "
            f"crossover curve's MLM points above LTR's at equal FLOPs: {where}."
        )
    )

# %% [markdown]
# ## Table 6 analog
#
# A grid of MLM + NSP models, smaller than the arms, each trained for the same number of
# steps. The held-out masked-LM perplexity is
# $\exp\big(-\frac{1}{N}\sum \log p(x_t \mid \tilde{x})\big)$ over the $N$ masked
# positions, computed token by token so two sizes are compared on the same tokens; it
# must equal the evaluation `pretrain` ran at the end of each run. Its value is **not
# comparable** with the paper's column (another vocabulary and corpus); only the
# ordering is judged.

# %%
if settings.table6:
    summary6 = table6_summary(results, settings)
    for r in summary6:
        rtol = 1e-3 if run.device.type == "cuda" else 1e-6
        assert_close(r["perplexity"], r["pretrain_perplexity"], rtol=rtol, atol=0)
    probe_key = "probe@all" if "all" in settings.probe_sizes else f"probe@{p_small}"
    display(
        Markdown(
            md_table(
                [
                    {
                        "L/H/A": r["shape"],
                        "parameters": f"{r['parameters']:,}",
                        "learned": r["learned"],
                        "held-out MLM ppl": f"{r['perplexity']:.1f} ± "
                        f"{r['perplexity_se']:.1f}",
                        "probe %": f"{100 * r[probe_key][0]:.1f} ± "
                        f"{100 * r[probe_key][1]:.1f}",
                    }
                    for r in summary6
                ]
            )
        )
    )
    display(Markdown(PAPER_TABLES["table6"].to_markdown()))
    for rank, r in enumerate(summary6, 1):  # smallest first
        record(
            f"table6.rank{rank}.perplexity",
            round(r["perplexity"], 3),
            kind="claim",
            paper=3.99,
            status="not comparable",
            se=round(r["perplexity_se"], 3),
            unit="perplexity",
            note=f"held-out MLM perplexity of {r['shape']}, {run.profile} profile; the "
            "paper's 3.99 (BERT-base) is over a 30k vocabulary on BooksCorpus + "
            "Wikipedia",
        )
else:  # this profile leaves Tables 6 and 8 to the gpu profile: the curve that says why
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    plot_learning_curve(results["ch09_curve"], ax=ax)
    ax.set_title(
        "chapter 09's run: training LM loss against the unigram plateau", fontsize=9
    )
    plt.tight_layout()
    plt.show()
    display(Markdown(gpu_only_sentence(results["ch09_curve"], settings.table6_steps)))

# %% [markdown]
# ## Appendix C.2: Table 8 analog
#
# The same MLM run (no NSP) at a small shape, four times, with a different fate for the
# chosen positions: replaced by `[MASK]`, kept (SAME), or replaced by a random token
# (RND). They are compared as the paper does, fine-tuned (our topic fine-tuning, the
# paper's MNLI column) and feature-based (our frozen probe, the paper's NER
# feature-based column). The learning check uses the `[MASK]` cloze for every mix. A
# model that never saw `[MASK]` (0/0/100) is then measured on an input it was not
# trained on, so its check mixes learning with the mismatch; such a row stays
# *inconclusive* rather than being judged on a test that is unfair to it.


# %%
def pm(pair):
    return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"


if settings.table8:
    summary8 = table8_summary(results, settings)
    p8 = "all" if "all" in settings.probe_sizes else p_small
    display(
        Markdown(
            md_table(
                [
                    {
                        "MASK/SAME/RND": r["mix"],
                        "learned": r["learned"],
                        "cloze ÷ baseline": f"{r['cloze_over_baseline']:.2f}",
                        f"probe {p8} %": pm(r[f"probe@{p8}"]),
                        f"fine-tuned {f_small} %": pm(r[f"finetune@{f_small}"]),
                        "paper MNLI": (r["paper"] or {}).get("MNLI"),
                        "paper NER feat.": (r["paper"] or {}).get(
                            "NER (feature-based)"
                        ),
                    }
                    for r in summary8
                ]
            )
        )
    )
else:
    print(
        f"Table 8 runs at the gpu profile only (the {run.profile} profile: see Table "
        "6)."
    )
display(Markdown(PAPER_TABLES["table8"].to_markdown()))

# %% [markdown]
# ## Which orderings survive at this scale
#
# Each claim is a difference oriented so that the paper's direction is positive, with
# its standard error. *Qualitatively reproduced*: positive by more than two standard
# errors, and every run behind it learned. *Not reproduced at this scale*: the runs
# learned, but the difference is within noise or reversed. *Inconclusive*: a run behind
# it failed its learning check. The sentences are generated from the numbers.

# %%
claims = (
    claims5 + table6_claims(results, settings) + table8_claims(results, settings) + c1
)
display(Markdown("\n\n".join("* " + gated_sentence(cl) for cl in claims)))
for cl in claims:
    why = (
        (" no verdict: did not learn: " + ", ".join(cl["unlearned"]))
        if cl["unlearned"]
        else ""
    )
    measured = cl["value"] is not None  # None: nothing to compare (unmeasured_claim)
    record(
        cl["key"],
        round(cl["value"], 4) if measured else "not measured",
        kind="claim",
        paper=cl["claim"] if cl["paper"] is None else round(cl["paper"], 4),
        status=cl["status"],
        se=round(cl["se"], 4) if measured else None,
        unit=cl["unit"],
        note=(
            f"{cl['claim']}: {cl['value']:+.2f} ± {cl['se']:.2f} {cl['unit']} "
            if measured
            else f"{cl['claim']}: {cl['reason']} "
        )
        + f"({cl['verdict']}); {run.profile} profile, one seed;{why}",
    )
assert not any(
    cl["status"] == "not reproduced at this scale" and cl["unlearned"] for cl in claims
)

# %% [markdown]
# ## Summary


# %%
def pct(pair):
    return f"{100 * pair[0]:.1f} %"


by_arm = {r["objective"]: r for r in summary5}
status_count = pd.Series([cl["status"] for cl in claims]).value_counts().to_dict()
display(
    Markdown(
        "\n".join(
            [
                f"* **Learning checks:** {len(gates) - len(unlearned)} of {len(gates)} "
                "runs "
                "learned "
                f"at the `{run.profile}` profile"
                + (f"; not learned: {', '.join(unlearned)}." if unlearned else "."),
                f"* **Table 5 (every arm at ≈ {tflop5['mlm']:.3g} TFLOP):** cloze MLM "
                f"+ NSP {pct(by_arm['mlm_nsp']['cloze'])}, "
                f"MLM {pct(by_arm['mlm']['cloze'])}, LTR {pct(by_arm['ltr']['cloze'])} "
                "(left context; "
                f"most frequent word {100 * gates[names['mlm']]['baseline']:.1f} %).",
                "* **Crossover (C.1):** "
                + (
                    "none within this budget on the cloze"
                    if cross["cloze"] is None
                    else f"on the cloze at step {cross['cloze']['step']}"
                )
                + "; "
                + (
                    "none on the probe."
                    if cross["probe"] is None
                    else f"on the probe at step {cross['probe']['step']}."
                ),
                "* **Verdicts:** "
                + ", ".join(f"{v} {k}" for k, v in status_count.items())
                + ".",
            ]
        )
    )
)

# %% [markdown]
# ## Exercises
#
# **1.** The learning check needs $z \ge 3$ on the paired cloze difference. Compute $z$
# by hand for the LTR arm from the per-blank correctness and the baseline's, and check
# it against `learning_check`.

# %% tags=["hide-cell"]
a = torch.tensor(
    results["cloze"]["scores"][f"{names['ltr']}:left_to_right"]["correct"],
    dtype=torch.float64,
)
bl = torch.tensor(results["cloze"]["baseline"]["correct"], dtype=torch.float64)
d = a - bl
z_hand = float(d.mean() / (d.std() / math.sqrt(len(d)))) if d.std() > 0 else 0.0
z_lib = gates[names["ltr"]]["z"]
assert math.isclose(z_hand, z_lib, rel_tol=1e-6, abs_tol=1e-9) or (
    math.isinf(z_lib) and d.std() == 0
), (z_hand, z_lib)
print(f"z by hand {z_hand:.3f}, learning_check {z_lib:.3f}")

# %% [markdown]
# **2.** How many LTR steps have the FLOPs of 100 MLM steps? Use `train_step_flops` with
# the counted predictions, and check that the MLM arm's FLOPs in the per-run table are
# its steps times its step FLOPs.

# %% tags=["hide-cell"]
ratio = flops["mlm_step_flops"] / flops["ltr_step_flops"]
print(f"100 MLM steps = {100 * ratio:.1f} LTR steps")
assert ratio < 1  # an LTR step predicts more positions, so it costs more
mlm_run = results["runs"][names["mlm"]]
assert math.isclose(mlm_run["flops"], mlm_run["steps"] * mlm_run["step_flops"])

# %% [markdown]
# **3.** A masked LM predicts at most `max_predictions_per_seq` positions of a sequence
# (15 % of its tokens, capped); a left-to-right LM predicts every next real token. From
# chapter 09's settings, what is each bound per sequence, and do the counted predictions
# per step respect them?

# %% tags=["hide-cell"]
cap = min(base_cfg.max_predictions_per_seq, round(0.15 * base_cfg.max_seq_length))
mlm_per_seq = flops["mlm_predicted"] / base_cfg.batch_size
ltr_per_seq = flops["ltr_predicted"] / base_cfg.batch_size
assert 0 < mlm_per_seq <= cap + 1e-9 and mlm_per_seq < ltr_per_seq
assert ltr_per_seq <= base_cfg.max_seq_length - 1
print(
    f"MLM: at most {cap} a sequence, counted {mlm_per_seq:.2f}; LTR: at most "
    f"{base_cfg.max_seq_length - 1}, counted {ltr_per_seq:.2f}"
)
