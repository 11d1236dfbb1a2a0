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
# # 09 · Pre-training
#
# "We pre-train BERT using two unsupervised tasks" (BERT §3.1): the masked language
# model, which predicts 15 % of the WordPiece tokens from both sides of their context,
# and next-sentence prediction, which tells whether segment B really followed segment A.
# Appendix A.2 gives the procedure: batches of 256 sequences, 1,000,000 steps, Adam with
# a learning rate of $10^{-4}$, warm-up over 10,000 steps and linear decay, dropout 0.1,
# on BooksCorpus and English Wikipedia.
#
# This chapter trains a small BERT from scratch on the train split of the embedded
# Wikipedia corpus, with a WordPiece vocabulary learned from that split only, by calling
# `bertrepro.pretrain`. It then checks that the model learned something the context-free
# baselines cannot, measures its speed, opens a checkpoint, and explains how the paper's
# 16 and 64 TPU chips map onto data parallelism. Before the library runs, the training
# loop is written out on the page and checked against it bit for bit. Chapter 10 reuses
# the model this chapter leaves in the cache; chapter 12 trains its own runs.

# %% tags=["parameters"]
profile = None  # "smoke" | "cpu" | "gpu"; None picks gpu if CUDA is available, else cpu
seed = 0
device = None

# %%
from bertrepro.chapters import setup
from bertrepro.io import cache_dir
from bertrepro.profiles import PROFILES

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import contextlib
import copy
import io
import json
import math
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from bertrepro.config import BertConfig
from bertrepro.data import load_corpus
from bertrepro.dryrun import is_dry_run
from bertrepro.model import IGNORE_INDEX, IS_NEXT, NOT_NEXT, BertForPreTraining
from bertrepro.params import count_parameters
from bertrepro.pretrain import (
    EVAL_SEED,
    BatchStream,
    PretrainConfig,
    build_optimizer,
    build_scheduler,
    epoch_examples,
    evaluate,
    fill_mask,
    load_checkpoint,
    make_batch,
    mean_predictions,
    nsp_length_baseline,
    pretrain,
    prepare_data,
    pretrained_model,
    validation_examples,
)
from bertrepro.report import record
from bertrepro.train.distributed import derive_seed, split_batch
from bertrepro.train.flops import measure_peak_flops, train_step_flops
from bertrepro.train.optim import (  # autocast: bf16 on CUDA, else fp32
    autocast,
    learning_rate_at,
)

config = PretrainConfig.for_profile(run.profile, seed=run.seed)


def amp():
    """The library's mixed precision: bf16 autocast on CUDA, else float32."""
    return autocast(run.device, config.precision)


# %% [markdown]
# ## The recipe, and where this run departs from it
#
# The loss is the sum of the two tasks' mean losses (§3.1, and `run_pretraining.py`):
# with $M$ the set of chosen positions of the batch, $\tilde{x}$ the corrupted input and
# $y$ the IsNext/NotNext label,
#
# $$
# \begin{aligned}
# \mathcal{L} = &\underbrace{\frac{1}{|M|}\sum_{i\in M}
#   -\log p_\theta(x_i \mid \tilde{x})}_{\text{masked LM}} \\
# &+ \underbrace{\frac{1}{B}\sum_{b=1}^{B}
#   -\log p_\theta(y_b \mid \tilde{x}_b)}_{\text{NSP}} .
# \end{aligned}
# $$
#
# Appendix A.2 trains it with Adam ($\beta_1 = 0.9$, $\beta_2 = 0.999$, L2 weight decay
# 0.01; the $\epsilon = 10^{-6}$ is not in the paper's text but in the released
# `optimization.py`), a learning rate warmed up over the first $w = 10{,}000$ steps and
# then decayed linearly,
#
# $$
# \eta(s) = \eta_0 \cdot \begin{cases} s / w & s < w \\ 1 - s / S & s \ge w \end{cases},
# \qquad \eta_0 = 10^{-4},\; S = 10^6,
# $$
#
# dropout 0.1 everywhere and GELU activations. "To speed up pretraining in our
# experiments, we pre-train the model with sequence length of 128 for 90% of the steps.
# Then, we train the rest 10% of the steps of sequence of 512 to learn the positional
# embeddings" (A.2). The table puts the paper beside this run's profile. The `gpu`
# profile keeps the paper's optimiser and model and shortens the schedule; the `cpu`
# profile departs wherever a few minutes on two cores demand it, and the last column
# says why.


# %% tags=["hide-input"]
# The table's code is hidden on the page: click to show it.
def size(c: PretrainConfig) -> tuple:
    return c.num_hidden_layers, c.hidden_size, c.num_attention_heads


# (setting, the paper's value, this book's value, departs from the paper?, why the cpu
# profile departs)
RECIPE = [
    (
        "layers L / hidden H / heads A",
        "12 / 768 / 12",
        lambda c: "{} / {} / {}".format(*size(c)),
        lambda c: size(c) != (12, 768, 12),
        "BERT-Tiny's shape: BERT-base would need days on two cores, not minutes",
    ),
    (
        "parameters, with MLM/NSP heads",
        f'{count_parameters(BertConfig.base(), heads=True) / 1e6:.1f}M ("110M")',
        lambda c: f"{count_parameters(c.bert_config(c.vocab_size), heads=True):,}",
        lambda c: size(c) != (12, 768, 12) or c.vocab_size != 30522,
        "follows from the shape and the vocabulary",
    ),
    (
        "vocabulary",
        "30,000 WordPiece (released: 30,522)",
        lambda c: f"{c.vocab_size:,} WordPiece, "
        + ("trained on the train split" if c.vocab == "train" else c.vocab),
        lambda c: c.vocab != "bert-base-uncased",
        "a 30k vocabulary on about a million tokens leaves most pieces rare, and a "
        "small softmax is cheap",
    ),
    (
        "sequence length",
        "128 for 90 % of steps, then 512",
        lambda c: f"{c.max_seq_length} for {1 - c.long_phase_fraction:.0%} of steps, "
        f"then {c.long_seq_length}",
        lambda c: (c.max_seq_length, c.long_seq_length) != (128, 512),
        "the articles' lead sections are short, and attention costs grow with T²; the "
        "second phase reaches the 128-token windows of chapter 11",
    ),
    (
        "batch (sequences)",
        "256",
        lambda c: f"{c.batch_size}",
        lambda c: c.batch_size != 256,
        "in a fixed time, many small steps teach a tiny model more than a few large "
        "ones",
    ),
    (
        "steps",
        "1,000,000",
        lambda c: f"{c.total_steps:,}",
        lambda c: c.total_steps != 1_000_000,
        "what fits a few minutes",
    ),
    (
        "warm-up steps",
        "10,000 (1 %)",
        lambda c: f"{c.warmup_steps:,} ({c.warmup_steps / c.total_steps:.0%})",
        lambda c: c.warmup_steps != 10_000,
        "1 % of a short run is too abrupt a start",
    ),
    (
        "peak learning rate",
        "1e-4",
        lambda c: f"{c.learning_rate:g}",
        lambda c: c.learning_rate != 1e-4,
        "a 2-layer model trained briefly tolerates, and needs, a much larger rate",
    ),
    (
        "Adam β1, β2, ε",
        "0.9, 0.999 (ε 1e-6: released code)",
        lambda c: f"{c.adam_beta1:g}, {c.adam_beta2:g}, {c.adam_epsilon:g}",
        lambda c: (c.adam_beta1, c.adam_beta2, c.adam_epsilon) != (0.9, 0.999, 1e-6),
        "",
    ),
    (
        "weight decay",
        "0.01",
        lambda c: f"{c.weight_decay:g}",
        lambda c: c.weight_decay != 0.01,
        "",
    ),
    (
        "dropout",
        "0.1",
        lambda c: f"{c.dropout:g}",
        lambda c: c.dropout != 0.1,
        "a model this small, trained this briefly, underfits: dropout only slows it "
        "down",
    ),
    (
        "masked fraction, max predictions",
        "15 %, 20 (then about 80 at 512)",
        lambda c: f"{c.mlm_probability:.0%}, {c.max_predictions_per_seq} "
        f"(then {c.long_max_predictions_per_seq})",
        lambda c: (c.mlm_probability, c.max_predictions_per_seq) != (0.15, 20),
        "the cap scales with the length: 20 of 128 positions in the paper",
    ),
    (
        "training data",
        "BooksCorpus + Wikipedia, 3.3B words",
        lambda c: f"{c.corpus}, train split"
        + (f", first {c.max_documents} articles" if c.max_documents else ""),
        lambda c: True,
        "the embedded corpus: nothing is downloaded",
    ),
]
presets = {p: PretrainConfig.for_profile(p) for p in PROFILES}
# One column for this run's profile; the reasons are the cpu profile's departures.
mine_ = presets[run.profile]
recipe_rows = [
    f"| {r[0]} | {r[1]} | {r[2](mine_)} | {r[4] if r[3](presets['cpu']) else ''} |"
    for r in RECIPE
]
display(
    Markdown(
        f"| setting | paper (BERT-base) | this run ({run.profile}) | why the cpu "
        "profile "
        "departs |\n|---|---|---|---|\n" + "\n".join(recipe_rows)
    )
)

# %% [markdown]
# Two departures hold at every profile and are stated in `bertrepro.pretrain`: masking
# is *dynamic* (a fresh 15 % is drawn every time a sequence is used, where the original
# wrote 10 static copies, `dupe_factor=10`), and torch's AdamW bias-corrects its moment
# estimates, which BERT's optimizer did not. The second phase keeps the paper's share of
# the steps, the last 10 %, at a length this profile's later chapters read: below, the
# position table shows what each phase taught.
#
# ## The training loop, on one page
#
# `bertrepro.pretrain.pretrain` wraps the loop in checkpoints, logging, evaluation and
# data parallelism. Stripped of those, one process on the CPU, it is the loop below, and
# every piece it calls is the library's: the data (the corpus, the trained vocabulary
# and its token ids), the stream of global batches (balanced NSP pairs re-drawn every
# epoch and shuffled), the dynamic masking, AdamW with weight decay on the matrices
# only, and the warm-up-then-decay schedule. Each random stream has its own seed derived
# from `(seed, name)`, so that the weights, the masks and the dropout draws do not
# depend on the order in which things are built.


# %%
def train_by_hand(cfg, corpus, cache_dir):
    """Pre-train on one CPU process: the arithmetic of bertrepro.pretrain.pretrain."""
    data = prepare_data(cfg, corpus, cache_dir)  # vocabulary and token ids
    torch.manual_seed(derive_seed(cfg.seed, "init"))  # the initial weights
    net = BertForPreTraining(cfg.bert_config(data.vocab_size, data.pad_token_id))
    net.train()  # dropout on
    optimizer = build_optimizer(
        net, cfg, torch.device("cpu")
    )  # AdamW, decay on matrices
    scheduler = build_scheduler(optimizer, cfg)  # linear warm-up, then linear decay
    masking = torch.Generator().manual_seed(derive_seed(cfg.seed, "masking"))
    streams = derive_seed(cfg.seed, "rank-streams", 0, 0)  # dropout (and python, numpy)
    torch.manual_seed(streams), random.seed(streams), np.random.seed(streams % 2**32)
    batches = BatchStream(data, cfg)  # NSP pairs, re-drawn and shuffled every epoch
    losses = []
    for step in range(cfg.stop_step):
        batch = make_batch(batches.next(), data, cfg, masking)  # 15 %: 80/10/10
        n_pred = int((batch["labels"] != IGNORE_INDEX).sum())  # |M| of the batch
        out = net(
            batch["input_ids"],
            batch["token_type_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            mlm_denominator=n_pred,  # mean over the chosen positions
        )
        nsp_loss = F.cross_entropy(
            out.seq_relationship_logits.float(),
            batch["next_sentence_label"],
            reduction="sum",
        ) / len(batch["next_sentence_label"])
        loss = out.mlm_loss + nsp_loss  # the sum of the two means
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()  # the learning rate of the next update
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return net, losses


# %% [markdown]
# The check: a few steps at the `smoke` size, dropout on, once by the loop above and
# once by `pretrain` with the same settings and seed. The two models must be equal bit
# for bit, and the library's logged losses (the means over its logging windows) must be
# the loop's.

# %%
loop_cfg = PretrainConfig.for_profile(
    "smoke",
    seed=run.seed,
    device="cpu",
    total_steps=6,
    warmup_steps=2,
    log_every=2,
    checkpoint_every=6,
    long_phase_fraction=0.0,  # one phase here; the second phase is shown below
)
loop_corpus = {
    "train": load_corpus(loop_cfg.corpus)["train"]["sentences"][
        : loop_cfg.max_documents
    ]
}
loop_cache = cache_dir("pretrain")
by_hand_model, by_hand_losses = train_by_hand(loop_cfg, loop_corpus, loop_cache)
with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    library = pretrain(
        loop_cfg, Path(tmp), corpus=loop_corpus, cache_dir=loop_cache, progress=False
    )
mine_sd, theirs_sd = by_hand_model.state_dict(), library.model.state_dict()
assert mine_sd.keys() == theirs_sd.keys()
assert all(torch.equal(mine_sd[k], theirs_sd[k]) for k in mine_sd)
window_means = [
    statistics.fmean(by_hand_losses[i : i + 2])
    for i in range(0, len(by_hand_losses), 2)
]
assert_close(
    torch.tensor(window_means, dtype=torch.float64),
    torch.tensor([m["loss"] for m in library.metrics], dtype=torch.float64),
)
print(
    f"{loop_cfg.stop_step} steps: all {len(mine_sd)} tensors bit-identical to "
    f"bertrepro.pretrain; losses {', '.join(f'{x:.4f}' for x in by_hand_losses)}"
)

# %% [markdown]
# ## Training
#
# `pretrained_model(profile, seed)` trains with the profile's preset into
# `bertrepro.io.cache_dir()/pretrain/<profile>/seed<seed>`, or loads that run when an
# earlier chapter run left it there, and resumes it when it was interrupted. Chapter 10
# calls the same function to reuse this model; chapter 12 trains its own runs.

# %%
t0 = time.perf_counter()
# the resolved settings it prints are in the table above
with contextlib.redirect_stdout(io.StringIO()) as captured:
    result = pretrained_model(run.profile, run.seed, device=str(run.device))
wall = time.perf_counter() - t0
# the cache's lines: what was reused (with its fingerprint), or built now and why
lines = captured.getvalue().splitlines()
cache_lines = [ln for ln in lines if ln.startswith("cache: ")]
print("\n".join(cache_lines))
model, data, metrics = result.model, result.data, result.metrics
T, B = config.max_seq_length, config.batch_size
same = lambda c: {
    k: v for k, v in c.to_dict().items() if k not in PretrainConfig.RESUMABLE
}
assert (
    same(result.config) == same(config)
    and result.step == config.total_steps == metrics[-1]["step"]
)
per_epoch = json.loads((result.checkpoint / "trainer_state.json").read_text())["data"][
    "examples_in_epoch"
]
# the run's folder relative to the cache, not this machine's absolute path
shown_dir = (
    f"<cache>/{result.output_dir.relative_to(cache_dir())}"
    if result.output_dir.is_relative_to(cache_dir())
    else result.output_dir.name
)
print(f"run directory: {shown_dir}")
print(
    f"{'trained' if result.steps_run else 'loaded from the cache'} in {wall:.1f} s: "
    f"{result.step:,} steps of "
    f"{B} x {T} tokens = {result.step * B:,} sequences, about "
    f"{result.step * B / per_epoch:.1f} epochs of "
    f"{per_epoch:,} freshly paired examples"
)
print(
    f"training corpus: {len(data.train_documents):,} articles, "
    f"{int(data.token_counts.sum()):,} WordPiece tokens; "
    f"held-out: {len(data.validation_documents):,} validation articles"
)

# %% [markdown]
# ## Loss curves
#
# Every `log_every` steps the loop appends the window's mean losses and accuracies to
# `metrics.jsonl`. The dashed lines are what a model that ignores the context can reach:
# the cross-entropy of the train unigram distribution on the held-out masked tokens, and
# $\ln 2$ for a coin-flip NSP guess. The logged learning rate must follow $\eta(s)$
# exactly.

# %%
steps = [m["step"] for m in metrics]
ev = result.evaluation
fig, axes = plt.subplots(3, 1, figsize=(7.5, 7.5), sharex=True)
axes[0].plot(steps, [m["mlm_loss"] for m in metrics], label="train (window mean)")
axes[0].plot([ev["step"]], [ev["mlm_loss"]], "o", label="held-out, final")
axes[0].axhline(
    math.log(ev["unigram_perplexity"]), ls="--", c="gray", label="unigram baseline"
)
axes[0].set(title="masked LM loss (nats)")
axes[0].legend()
axes[1].plot(steps, [m["nsp_loss"] for m in metrics], label="train (window mean)")
axes[1].axhline(math.log(2), ls="--", c="gray", label="chance, ln 2")
axes[1].set(title="NSP loss (nats)")
axes[1].legend()
lr_formula = [
    learning_rate_at(
        s - 1, config.learning_rate, config.warmup_steps, config.total_steps
    )
    for s in steps
]
axes[2].plot(steps, [m["lr"] for m in metrics], "o", ms=3, label="logged")
axes[2].plot(steps, lr_formula, lw=1, label="η(s)")
axes[2].set(title="learning rate", xlabel="step")
axes[2].legend()
plt.tight_layout()
plt.show()

# the learning rate of update s (the metrics line of step s logs update s - 1, 0-based)
assert_close(
    torch.tensor([m["lr"] for m in metrics]),
    torch.tensor(lr_formula),
    rtol=1e-12,
    atol=0,
)
losses = torch.tensor([[m["mlm_loss"], m["nsp_loss"]] for m in metrics])
assert torch.isfinite(losses).all()
# a dry run (the gpu profile's code on the CPU, a few steps) checks that cells run, not
# learning
assert is_dry_run() or metrics[-1]["loss"] < metrics[0]["loss"], (
    metrics[0]["loss"],
    metrics[-1]["loss"],
)
print(
    f"training loss {metrics[0]['loss']:.3f} (first window) -> "
    f"{metrics[-1]['loss']:.3f} (last window)"
)
_ = record(
    "pretrain.loss_decreased",
    bool(metrics[-1]["loss"] < metrics[0]["loss"]),
    kind="check",
    expected=True,
    note=f"learning gate: MLM+NSP training loss {metrics[0]['loss']:.3f} -> "
    f"{metrics[-1]['loss']:.3f} ({run.profile} profile)",
)

# %% [markdown]
# ## Two phases: the positions a sequence reaches are the positions that learn
#
# BERT's position embeddings are learned, one row $P_t \in \mathbb{R}^H$ per position
# $t < 512$ (not the sine table of the original Transformer). A row gets a gradient only
# from sequences at least $t + 1$ tokens long. The first phase trains on
# `max_seq_length` tokens, so rows beyond it stay at their random initialization, only
# shrunk by weight decay; the second phase (Appendix A.2) trains on longer sequences
# for the last 10 % of the steps, and those rows learn there. Below, the norm
# $\lVert P_t \rVert$ of every row, at the last kept checkpoint of phase 1 and at the
# end of phase 2, beside a fresh initialization.

# %%
phase1_steps, phase2_steps = config.phase_steps()
T1, T2 = config.max_seq_length, config.long_seq_length
ckpts = sorted((result.output_dir / "checkpoints").glob("step-*"))
before = [c for c in ckpts if int(c.name.split("-")[1]) <= config.long_phase_start][-1]
step_before = int(before.name.split("-")[1])
rows_before = load_checkpoint(before).model.bert.embeddings.position_embeddings.weight
rows_after = model.bert.embeddings.position_embeddings.weight.detach().cpu()
torch.manual_seed(derive_seed(config.seed, "init"))
rows_init = BertForPreTraining(model.config).bert.embeddings.position_embeddings.weight
norms = {
    "initialization": rows_init.detach().norm(dim=1),
    f"phase 1 (step {step_before:,})": rows_before.detach().norm(dim=1),
    f"phase 2 (step {result.step:,})": rows_after.norm(dim=1),
}
fig, ax = plt.subplots(figsize=(7.5, 3.2))
for (name, v), c in zip(norms.items(), ["#bbbbbb", "#4c72b0", "#dd8452"]):
    ax.plot(range(min(len(v), 2 * T2)), v[: 2 * T2], label=name, color=c, lw=1.2)
for t, label in ((T1, f"{T1} tokens"), (T2, f"{T2} tokens")):
    ax.axvline(t, ls="--", c="gray", lw=0.8)
    ax.text(t + 1, ax.get_ylim()[1] * 0.95, label, fontsize=9, va="top")
ax.set(xlabel="position t", ylabel="‖P_t‖")
ax.legend(fontsize=9, loc="center right")
plt.tight_layout()
plt.show()
band = lambda v, a, b: float(v[a:b].mean())  # noqa: E731
pos_table = pd.DataFrame(
    {
        name: [band(v, 0, T1), band(v, T1, T2), band(v, T2, 512)]
        for name, v in norms.items()
    },
    index=[f"rows 0–{T1 - 1}", f"rows {T1}–{T2 - 1}", f"rows {T2}–511"],
).round(3)
display(Markdown(pos_table.to_markdown()))
# Rows past T2 never got a gradient: fresh rows, only decayed. Rows T1..T2-1 were still
# that way after phase 1 and moved in phase 2.
untouched = rows_init.detach()[T2:]
decayed = (rows_after[T2:] * untouched).sum() / (untouched**2).sum()
assert_close(rows_after[T2:], decayed * untouched, rtol=0, atol=1e-5)
moved_2 = float((rows_after[T1:T2] - rows_before.detach()[T1:T2]).norm(dim=1).mean())
moved_1 = float((rows_after[:T1] - rows_before.detach()[:T1]).norm(dim=1).mean())
assert moved_2 > 0
display(
    Markdown(
        f"Phase 1 ran {phase1_steps:,} steps at {T1} tokens, phase 2 {phase2_steps:,} "
        "at "
        f"{T2}. In phase 2 rows {T1}–{T2 - 1} moved by {moved_2:.3f} on average (rows "
        f"0–{T1 - 1}, already trained, by {moved_1:.3f}); rows {T2}–511 are still "
        "their "
        "initialization, scaled by weight decay."
    )
)

# %% [markdown]
# ## Held-out evaluation: does the model use the context?
#
# `evaluate` scores the model on balanced NSP pairs built from the validation articles,
# which neither the vocabulary nor the training ever saw, with masks drawn from a fixed
# seed (12,345, the original's `random_seed`), so every model in the book is scored on
# the same positions. Three reference points make the masked-LM numbers readable:
#
# * the **most-frequent-token** baseline always guesses the commonest training token:
#   the best accuracy without looking at anything;
# * the **unigram** baseline predicts every masked token with the training unigram
#   distribution (add-one smoothed): its perplexity
#   $\exp\big(-\frac{1}{|M|}\sum_{i\in M}\log q(x_i)\big)$ is roughly the best a
#   context-free model can do;
# * the same model with its **context removed**: every unmasked token of the input
#   replaced by `[MASK]`, so only the chosen positions themselves remain.
#
# One trap: of the chosen positions, 10 % keep their true token in the input (§3.1's
# 80/10/10 rule), and a model that merely copies its input gets those right. The overall
# accuracy and perplexity mix that copying with real prediction, so the verdict on the
# context comes from the positions that show `[MASK]`, where the answer is hidden.
#
# Balanced NSP accuracy is the mean of the IsNext and NotNext recalls, so a constant
# guess scores exactly 50 %. The pairs come from `bertrepro.nsp`'s balanced mode, where
# a NotNext B has exactly the length the true B would have had (chapter 08): a
# classifier that sees only lengths is at chance, so any accuracy above 50 % comes from
# reading the two segments. First, we recompute `evaluate`'s numbers independently: the
# model's head applied to *every* position, the chosen ones picked out afterwards (the
# library gathers them first).

# %%
valid = validation_examples(data, config)
# evaluate's masks
batch = make_batch(valid, data, config, torch.Generator().manual_seed(EVAL_SEED))
chosen = batch["labels"] != IGNORE_INDEX  # (N, T)
counts = data.token_counts.double()
# (V,) add-one unigram
log_q = torch.log((counts + 1) / (counts.sum() + counts.numel()))

nll = hits = 0.0
pred_ctx = []  # argmax at every chosen position, in row-major order
recall_hits, recall_n = torch.zeros(2), torch.zeros(2)
eval_bs = run.pick(smoke=32, cpu=64, gpu=32)
with torch.no_grad():
    for s in range(0, len(valid), eval_bs):
        mb = {k: v[s : s + eval_bs].to(run.device) for k, v in batch.items()}
        with amp():
            # no labels: (B, T, V)
            out = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"])
        logits = out.prediction_logits.float()[mb["labels"] != IGNORE_INDEX]  # (n, V)
        targets = mb["labels"][mb["labels"] != IGNORE_INDEX]  # (n,)
        nll += F.cross_entropy(logits, targets, reduction="sum").item()
        hits += (logits.argmax(-1) == targets).sum().item()
        pred_ctx.append(logits.argmax(-1).cpu())
        pred = out.seq_relationship_logits.argmax(-1)
        for k, label in enumerate((IS_NEXT, NOT_NEXT)):
            sel = mb["next_sentence_label"] == label
            recall_hits[k] += (pred[sel] == label).sum().item()
            recall_n[k] += sel.sum().item()
pred_ctx = torch.cat(pred_ctx)
targets = batch["labels"][chosen]
mft_id = int(counts.argmax())
mine = {
    "mlm_accuracy": hits / chosen.sum().item(),
    "mlm_perplexity": math.exp(nll / chosen.sum().item()),
    "mft_accuracy": (targets == mft_id).double().mean().item(),
    "unigram_perplexity": math.exp(-log_q[targets].mean().item()),
    "nsp_accuracy": (recall_hits / recall_n).mean().item(),
}
# the library, gathered head
ev = evaluate(model, valid, data, config, device=run.device)
# Lengths alone (chapter 08): trained on the first epoch's pairs, scored on the held-out
# pairs.
ev.update(nsp_length_baseline(epoch_examples(data, config, 0), valid))
assert ev["nsp_length_baseline"] == result.evaluation["nsp_length_baseline"]
# bf16 on CUDA
tol = (
    dict(rtol=1e-5, atol=1e-6)
    if run.device.type == "cpu"
    else dict(rtol=1e-2, atol=5e-3)
)
for key, value in mine.items():
    assert_close(
        torch.tensor(value),
        torch.tensor(ev[key]),
        **tol,
        msg=lambda m, key=key: f"{key}: {m}",
    )
    # and the model read back from disk scores what the model at the end of training
    # scored
    assert_close(torch.tensor(ev[key]), torch.tensor(result.evaluation[key]), **tol)
print(
    f"{len(valid):,} held-out pairs ({recall_n[0]:.0f} IsNext, {recall_n[1]:.0f} "
    "NotNext), "
    f"{ev['mlm_predictions']:,} masked positions: the full-vocabulary recomputation "
    "matches evaluate()"
)

# %%
# The same positions with the context removed: every other real token becomes [MASK].
no_context = dict(batch)
keep = chosen | valid.special_tokens_mask.bool()
no_context["input_ids"] = torch.where(
    keep, batch["input_ids"], torch.full_like(batch["input_ids"], data.mask_token_id)
)
pred_nc = []
with torch.no_grad():
    for s in range(0, len(valid), eval_bs):
        mb = {k: v[s : s + eval_bs].to(run.device) for k, v in no_context.items()}
        with amp():
            out = model(
                mb["input_ids"],
                mb["token_type_ids"],
                mb["attention_mask"],
                labels=mb["labels"],
            )
        pred_nc.append(out.prediction_logits.argmax(-1).cpu())
pred_nc = torch.cat(pred_nc)
acc_no_context = (pred_nc == targets).double().mean().item()

# What the input shows at each chosen position: [MASK] (80 %), a random token (10 %),
# the true token (10 %).
shown = batch["input_ids"][chosen]
kind = torch.where(shown == data.mask_token_id, 0, torch.where(shown == targets, 2, 1))
right, right_nc, right_mft = pred_ctx == targets, pred_nc == targets, targets == mft_id
breakdown = pd.DataFrame(
    [
        {
            "input shows": name,
            "positions": int(sel.sum()),
            "model": right[sel].double().mean().item(),
            "model, context removed": right_nc[sel].double().mean().item(),
            f"most frequent token ({ev['mft_token']!r})": right_mft[sel]
            .double()
            .mean()
            .item(),
        }
        for name, sel in (
            ("[MASK]", kind == 0),
            ("a random token", kind == 1),
            ("the true token", kind == 2),
            ("all chosen positions", torch.ones_like(kind, dtype=torch.bool)),
        )
    ]
).set_index("input shows")
assert_close(breakdown.loc["all chosen positions", "model"], ev["mlm_accuracy"], **tol)


def mcnemar_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """Paired test on the same positions, in standard deviations.

    Counts (a right, b wrong) against (a wrong, b right).
    """
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    return (n10 - n01) / math.sqrt(max(n10 + n01, 1))


m = kind == 0
z_context, z_mft = mcnemar_z(right[m], right_nc[m]), mcnemar_z(right[m], right_mft[m])
mask_ratio = right[m].double().mean().item() / max(
    right_mft[m].double().mean().item(), 1e-12
)
uses_context = z_context >= 3 and z_mft >= 3
guesses = pd.Series(
    data.tokenizer.convert_ids_to_tokens(pred_ctx[m].tolist())
).value_counts()
commonest = ", ".join(
    f"`{g}` {n / m.sum().item():.0%}" for g, n in guesses.head(5).items()
)
display(Markdown(f"""
* Balanced NSP accuracy {ev['nsp_accuracy']:.1%} (IsNext recall
  {ev['nsp_accuracy_is_next']:.1%}, NotNext recall {ev['nsp_accuracy_not_next']:.1%});
  chance 50 %, the paper's final model 97–98 %. A classifier that sees only the pairs'
  lengths scores {ev['nsp_length_baseline']:.1%} on the same pairs (chapter 08).
* At `[MASK]` positions: accuracy {right[m].double().mean():.3f} =
  {mask_ratio:.2f} × the most frequent token; paired z = {z_context:.1f} against the
  model without context, {z_mft:.1f} against the constant guess.
* The model's guesses at `[MASK]` positions: {len(guesses)} distinct pieces, the
  commonest {commonest}.
"""))
breakdown.style.format("{:.3f}", subset=breakdown.columns[1:])

# %%
# Horizontal bars on linear axes from zero: labels never collide, and a bar's length is
# its value (the perplexities too, so 232 against 881 looks like a quarter).
fig, axes = plt.subplots(3, 1, figsize=(7.5, 4.8))
row = breakdown.loc["[MASK]"]
panels = [
    (
        "accuracy at [MASK]",
        ["model", "no context", "most frequent"],
        row.iloc[1:].to_numpy(),
        ["C0", "C1", "gray"],
    ),
    (
        "MLM perplexity (lower is better)",
        ["model", "unigram"],
        [ev["mlm_perplexity"], ev["unigram_perplexity"]],
        ["C0", "gray"],
    ),
    (
        "NSP balanced accuracy",
        ["model", "lengths only", "paper"],
        [ev["nsp_accuracy"], ev["nsp_length_baseline"], 0.975],
        ["C0", "gray", "C2"],
    ),
]
for ax, (title, labels, values, colors) in zip(axes, panels):
    ax.barh(labels, values, color=colors)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlim(0, 1.18 * max(values))
    for y, v in enumerate(values):
        ax.annotate(f" {v:.3g}", (v, y), va="center", ha="left", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# At the `cpu` profile and above the chapter insists on two things: the masked LM beats
# the most-frequent-token guess at least twice over, and NSP is clearly above chance (≥
# 60 % balanced accuracy, with the length-only classifier at 50 ± 3 %). The first is a
# low bar, partly cleared by copying; the scorecard therefore also records the accuracy
# at `[MASK]` positions, and calls the context used only when the model beats both the
# constant guess and its own context-free self there by at least 3 standard deviations
# of a paired (McNemar) test. Early in training a masked LM typically learns first where
# frequent pieces such as punctuation and "the" go, and only later uses the words around
# a gap; the distinct guesses counted above show which stage a run reached. The paper's
# 97–98 % NSP accuracy (§3.1) belongs to BERT-base after 1M steps on 3.3B words; a model
# this size trained for minutes is far from it. The masked-LM perplexity is not
# comparable with Table 6's (3.99 for BERT-base): a different vocabulary, corpus and
# tokenization change what a perplexity measures.

# %%
ratio = ev["mlm_accuracy"] / ev["mft_accuracy"]
for v in (
    ev["mlm_accuracy"],
    ev["mlm_perplexity"],
    ev["nsp_accuracy"],
    ratio,
    z_context,
    z_mft,
):
    assert math.isfinite(v), v
if run.profile in ("cpu", "gpu") and not is_dry_run():
    assert (
        ev["nsp_accuracy"] >= 0.60
    ), f"balanced NSP accuracy {ev['nsp_accuracy']:.3f} < 0.60"
    assert (
        abs(ev["nsp_length_baseline"] - 0.5) < 0.03
    ), "the held-out pairs' lengths predict their labels"
    assert (
        ratio >= 2.0
    ), f"MLM accuracy {ev['mlm_accuracy']:.3f} < 2x baseline {ev['mft_accuracy']:.3f}"
    assert ev["mlm_perplexity"] < ev["unigram_perplexity"]
print(
    f"MLM accuracy {ev['mlm_accuracy']:.3f} = {ratio:.1f} x the most-frequent-token "
    "baseline "
    f"({mask_ratio:.2f} x at [MASK] positions); perplexity {ev['mlm_perplexity']:.1f} "
    "vs unigram "
    f"{ev['unigram_perplexity']:.1f}"
)
verdict = (
    f"**Verdict:** the model {'uses' if uses_context else 'does not measurably use'} "
    f"the context at `[MASK]` positions (paired z = {z_mft:.1f} against the most "
    f"frequent token and {z_context:.1f} against itself without context; 3 required), "
    f"where it names {len(guesses)} distinct pieces of a {data.vocab_size:,}-piece "
    f"vocabulary. Balanced NSP accuracy {ev['nsp_accuracy']:.1%}, lengths alone "
    f"{ev['nsp_length_baseline']:.1%}."
)
display(Markdown(verdict))

record(
    "pretrain.nsp.balanced_accuracy",
    round(100 * ev["nsp_accuracy"], 2),
    kind="claim",
    unit="%",
    paper=97.5,
    tolerance=0.5,
    note=f"held-out balanced NSP accuracy (%), {run.profile} profile; the paper's "
    "97-98 % (taken as 97.5 ± 0.5) is BERT-base after 1M steps (§3.1)",
)
record(
    "pretrain.nsp.above_chance",
    bool(ev["nsp_accuracy"] >= 0.60),
    kind="check",
    expected=True,
    note=f"NSP is learnable: balanced accuracy {ev['nsp_accuracy']:.3f} >= 0.60 "
    "(chance 0.5; lengths alone "
    f"{ev['nsp_length_baseline']:.3f})",
)
record(
    "pretrain.mlm.accuracy_over_mft",
    round(ratio, 4),
    kind="check",
    unit="ratio",
    status="pass" if ratio >= 2 else "fail",
    note=f"pre-training learns: held-out MLM accuracy {ev['mlm_accuracy']:.3f} vs "
    "most-frequent-token "
    f"{ev['mft_accuracy']:.3f} (>= 2x required), all chosen positions, copies of "
    "shown tokens included",
)
record(
    "pretrain.mlm.mask_positions.accuracy_over_mft",
    round(mask_ratio, 4),
    kind="check",
    unit="ratio",
    status="pass" if uses_context else "fail",
    note="the context is used: accuracy where the input shows [MASK], vs the most "
    "frequent token (paired z "
    f"{z_mft:.1f}) and vs the model without context (z {z_context:.1f}); >= 3 for "
    "both required",
)
_ = record(
    "pretrain.mlm.perplexity",
    round(ev["mlm_perplexity"], 3),
    kind="claim",
    unit="perplexity",
    paper=3.99,
    status="not comparable",
    note=f"held-out MLM perplexity vs unigram {ev['unigram_perplexity']:.1f}; Table "
    "6's 3.99 (BERT-base) is over a 30k vocabulary on BooksCorpus + Wikipedia, ours "
    "over this profile's vocabulary on wiki-vital",
)

# %% [markdown]
# ## Fill in the blank
#
# A few sentences from held-out articles, one word hidden, next to the model's five most
# likely pieces. The hidden word is drawn at random among the words that are a single
# piece of the vocabulary, so the truth is something the model could name.

# %%
val_docs = load_corpus(config.corpus)["validation"]["sentences"]
if config.eval_documents is not None:
    val_docs = val_docs[: config.eval_documents]
tok = result.tokenizer
rng = torch.Generator().manual_seed(run.seed)
rows = []
order = torch.randperm(len(val_docs), generator=rng).tolist()
for d in order:
    sentences = [
        s
        for s in val_docs[d]
        if 8 <= len(s.split()) <= 30 and len(tok.tokenize(s)) <= T - 2
    ]
    if not sentences:
        continue
    s = sentences[int(torch.randint(len(sentences), (1,), generator=rng))]
    words = [
        m
        for m in re.finditer(r"(?<![\w'-])[A-Za-z]+(?![\w'-])", s)
        if tok.tokenize(m.group()) == [m.group().lower()]
    ]
    if not words:
        continue
    w = words[int(torch.randint(len(words), (1,), generator=rng))]
    masked = s[: w.start()] + "[MASK]" + s[w.end() :]
    top = fill_mask(model, tok, masked, top_k=5)[0]
    pieces = [p for p, _ in top]
    truth = w.group().lower()
    rows.append(
        {
            "sentence": s[: w.start()] + "____" + s[w.end() :],
            "truth": truth,
            "top-5 (probability)": ", ".join(f"{p} ({q:.2f})" for p, q in top),
            "rank of truth": pieces.index(truth) + 1 if truth in pieces else "-",
        }
    )
    if len(rows) == run.pick(smoke=4, cpu=8, gpu=8):
        break
in_top5 = sum(r["rank of truth"] != "-" for r in rows)
print(f"truth in the top 5 for {in_top5} of {len(rows)} sentences")
pd.set_option("display.max_colwidth", 120)
pd.DataFrame(rows)

# %% [markdown]
# ## Throughput and model FLOPs utilization
#
# A training step costs about three forward passes (the backward pass is twice the
# forward), and a forward pass costs two FLOPs per multiply-add of every weight matrix,
# plus attention's $QK^\top$ and $AV$. For a batch of $B$ sequences of $T$ tokens, $L$
# layers of width $H$ with feed-forward width $I$, vocabulary $V$ and $P$ positions sent
# through the MLM head (counted: the batch's non-ignored labels),
#
# $$
# \text{FLOPs/step} = 3\Big[L\big(2BT(4H^2 + 2HI) + 4BT^2H\big) + 2BH^2 + 4BH
#   + 2P\,(H^2 + HV)\Big] ,
# $$
#
# the familiar $6N + 12LHT$ per token with the pooler ($2BH^2$), the NSP classifier
# ($4BH$) and the gathered head made explicit. This one formula,
# `bertrepro.train.flops.train_step_flops`, prices a step everywhere in the book: the
# loop's MFU, chapter 12's equal-compute schedules and the benchmarks. We check it
# against PyTorch's own FLOP counter on one real step (the attention is run on its
# explicit path so the counter sees its matrix products). The model FLOPs utilization
# is the achieved model FLOP/s over the accelerator's peak (Chowdhery et al. 2022); on
# CPU we divide by a measured float32 matmul rate.

# %%
counted_model = copy.deepcopy(model).train()
probe = make_batch(
    valid.select(slice(0, min(B, len(valid)))),
    data,
    config,
    torch.Generator().manual_seed(run.seed),
)
probe = {k: v.to(run.device) for k, v in probe.items()}
with FlopCounterMode(display=False) as counter:
    out = counted_model(
        probe["input_ids"],
        probe["token_type_ids"],
        probe["attention_mask"],
        labels=probe["labels"],
        next_sentence_label=probe["next_sentence_label"],
        output_attentions=True,
    )
    out.loss.backward()
del counted_model
b, n_pred = probe["input_ids"].shape[0], int((probe["labels"] != IGNORE_INDEX).sum())
formula = train_step_flops(model.config, b, T, n_pred)
assert counter.get_total_flops() == formula
print(
    f"one step on {b} x {T} tokens with {n_pred} predictions: FlopCounterMode "
    f"{counter.get_total_flops():.4e} = formula {formula:.4e}"
)

# %%
# the first window includes start-up
windows = metrics[1:] if len(metrics) > 1 else metrics
tokens_per_s = statistics.median(m["tokens_per_s"] for m in windows)
predicted = mean_predictions(data, config)  # per step, counted on the run's own batches
fpt = train_step_flops(model.config, B, T, predicted) / (B * T)
achieved = fpt * tokens_per_s
if "mfu" in metrics[-1]:
    mfu, peak_note = (
        statistics.median(m["mfu"] for m in windows),
        "bf16 peak of this GPU (measured matmul)",
    )
else:
    peak = measure_peak_flops("cpu", dtype=torch.float32, n=1024, iters=10)
    mfu, peak_note = (
        achieved / peak,
        f"float32 matmul rate of this CPU, {peak / 1e9:.1f} GFLOP/s measured now",
    )
# The paper: 1M steps of 256 sequences, 90 % at 128 and 10 % at 512 tokens, in 4 days
# (A.2, BERT-base).
paper_tokens = 1_000_000 * 256 * (0.9 * 128 + 0.1 * 512)
paper_tokens_per_s = paper_tokens / (4 * 24 * 3600)
# BERT-base, batch 256 at 128 tokens, 20 predictions a sequence
base_flops = train_step_flops(BertConfig.base(), 256, 128, 256 * 20) / (256 * 128)
print(
    f"{run.device.type}: median {tokens_per_s:,.0f} tokens/s over {len(windows)} "
    "logging windows "
    f"({metrics[-1]['steps_per_s']:.1f} steps/s in the last), {fpt / 1e6:.2f} "
    "MFLOP/token -> "
    f"{achieved / 1e9:.2f} GFLOP/s of model FLOPs; MFU {mfu:.2%} of the {peak_note}"
)
# every token at the 128-token cost: a lower bound
paper_flops = paper_tokens_per_s * base_flops
print(
    f"the paper, BERT-base on 16 TPU chips: {paper_tokens / 1e9:.1f}B tokens in 4 days "
    "= "
    f"{paper_tokens_per_s:,.0f} tokens/s, at least {paper_flops / 1e12:.0f} TFLOP/s of "
    "model FLOPs"
)
_ = record(
    "timing.pretrain.model_tflops",
    round(achieved / 1e12, 4),
    kind="claim",
    paper=round(paper_flops / 1e12, 1),
    status="not comparable",
    note=f"achieved model TFLOP/s, {run.profile} profile on {run.device.type}, not "
    "comparable with the paper's TPUs "
    f"({tokens_per_s:,.0f} tokens/s, MFU "
    f"{mfu:.2%}); paper: BERT-base on 16 TPU chips, implied by 4 days for 1M steps "
    "(A.2)",
)

# %% [markdown]
# ## What a checkpoint holds, and resuming
#
# A run can be stopped at any step and continued as if it never stopped, which is what a
# 4-day job on shared hardware needs. A checkpoint is a directory written under a
# temporary name and renamed when complete; `checkpoints/latest` names the newest one.
# It holds everything the next step depends on: the weights, Adam's two moment estimates
# for every parameter, the schedule's position, every random-number generator (masking,
# dropout, Python, NumPy; per process under data parallelism), the position in the data
# (epoch and index into that epoch's shuffled examples) and a SHA-256 of every file, so
# a damaged checkpoint is an error rather than a silent restart.

# %%
ckpt = result.checkpoint
state = load_checkpoint(ckpt)
print(f"{ckpt.relative_to(result.output_dir)}:")
for f in sorted(ckpt.iterdir()):
    print(f"  {f.name:24s} {f.stat().st_size / 1e6:8.2f} MB")
n_params = sum(1 for p in state.model.parameters() if p.requires_grad)
moments = {k for s in state.optimizer["state"].values() for k in s}
print(f"step {state.step}; data position {state.data}; scheduler {state.scheduler}")
print(
    f"optimizer: {len(state.optimizer['state'])} parameter states with "
    f"{sorted(moments)}, "
    "groups with weight decay "
    f"{[g['weight_decay'] for g in state.optimizer['param_groups']]}"
)
print(
    f"random-number generators: masking ({state.masking_rng.numel()} bytes) and, for "
    "each of "
    f"{state.world_size} process(es), "
    f"{sorted(k for k, v in state.rank_rng[0].items() if v is not None)}"
)
assert state.step == config.total_steps and state.scheduler["last_epoch"] == state.step
assert (
    len(state.optimizer["state"]) == n_params and {"exp_avg", "exp_avg_sq"} <= moments
)
final = model.state_dict()
for k, v in state.model.state_dict().items():
    assert torch.equal(v, final[k].cpu()), k
print("the checkpoint's weights are the final model's, bit for bit")

# %% [markdown]
# The long run above is not repeated. To see that resuming is exact, a run of the
# `smoke` size is trained twice, once straight through and once stopped halfway and
# resumed from its checkpoint, and the two final models are compared bit for bit
# (`tests/test_pretrain.py` checks the same, and `tests/test_distributed.py` does it
# under `torchrun`).

# %%
small = dict(
    device="cpu", total_steps=8, warmup_steps=2, log_every=2, checkpoint_every=4
)
demo = PretrainConfig.for_profile("smoke", seed=run.seed, **small)
half = demo.total_steps // 2
# dropout draws random numbers every step: their streams must resume too
assert demo.dropout > 0
# no held-out eval
articles = {
    "train": load_corpus(config.corpus)["train"]["sentences"][: demo.max_documents]
}
with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    kw = dict(corpus=articles, cache_dir=cache_dir("pretrain"), progress=False)
    straight = pretrain(demo, Path(tmp) / "straight", **kw)
    pretrain(
        PretrainConfig.for_profile("smoke", seed=run.seed, max_steps=half, **small),
        Path(tmp) / "resumed",
        **kw,
    )
    resumed = pretrain(demo, Path(tmp) / "resumed", resume=True, **kw)
a, b_ = straight.model.state_dict(), resumed.model.state_dict()
assert a.keys() == b_.keys() and all(torch.equal(a[k], b_[k]) for k in a)
assert [m["loss"] for m in straight.metrics] == [m["loss"] for m in resumed.metrics]
print(
    f"smoke size, dropout on: {demo.total_steps} steps straight == {half} steps + "
    "resume for "
    f"{resumed.steps_run} more: all {len(a)} tensors and every logged loss identical"
)

# %% [markdown]
# ## Scaling out: from one device to 16 and 64 TPU chips
#
# "Training of BERT$_\text{BASE}$ was performed on 4 Cloud TPUs in Pod configuration (16
# TPU chips total). Training of BERT$_\text{LARGE}$ was performed on 16 Cloud TPUs (64
# TPU chips total). Each pretraining took 4 days to complete" (A.2). The chips ran
# **data parallelism**: every device holds the whole model, processes its share of the
# batch, and the gradients are averaged across devices before every (identical)
# optimizer step.
#
# ### Global batch, per-device batch, learning rate
#
# The batch of 256 sequences in A.2 is the **global** batch, the sum over all devices.
# On $W$ devices each one processes $b = 256 / W$ sequences per step: 16 per chip for
# BERT-base, 4 for BERT-large (a TPU v2 or v3 chip has two cores, each a replica of its
# own, so 8 and 2 per replica). When $b$ does not fit in a device's memory, it is
# processed as $k$ micro-batches whose gradients are accumulated before the step:
# $b_\text{micro} \cdot W \cdot k = 256$. When $W$ does not divide the global batch, no
# accumulation can fix it: the world size or the batch has to change, and `split_batch`
# says so. `bertrepro.pretrain` keeps `--batch-size` global, so one `--learning-rate`
# means the same thing on 1 or 64 devices.
#
# Changing the global batch is a different experiment. The *linear scaling rule* (Goyal
# et al. 2017) multiplies the learning rate by the factor the batch grows, with a
# warm-up; it holds for SGD up to a point and then fails, and for Adam a square-root
# rule is often the better first guess. Large-batch BERT training needed a different
# optimizer (LAMB, You et al. 2019) to reach batches of about 32k sequences.

# %%
rows = []
for name, world, micro in (
    ("one GPU", 1, 32),
    ("one node, 8 GPUs", 8, None),
    ("8 GPUs, micro-batch 16", 8, 16),
    ("BERT-base: 16 TPU chips", 16, None),
    ("BERT-large: 64 TPU chips", 64, None),
):
    sp = split_batch(256, world, micro)
    rows.append(
        {
            "setup": name,
            "world size W": world,
            "per-device batch": sp.per_rank,
            "micro-batch": sp.micro_batch_size,
            "accumulation steps k": sp.accumulation_steps,
            "check b·W·k": sp.micro_batch_size * world * sp.accumulation_steps,
        }
    )
    assert sp.micro_batch_size * world * sp.accumulation_steps == 256
try:
    split_batch(256, 3)
except ValueError as e:
    message = str(e)
assert "cannot be split over world size 3" in message
print("W = 3:", message[:150], "...")
pd.DataFrame(rows)

# %% [markdown]
# ### The masked-LM loss must be normalized by the global count
#
# Let rank $r$ of $W$ hold $n_r$ chosen positions with per-token losses $\ell_i$,
# $i \in M_r$, and $N = \sum_r n_r$. The loss of the global batch, the one a single
# device computes, is
#
# $$
# \mathcal{L} = \frac{1}{N} \sum_{r=1}^{W} \sum_{i \in M_r} \ell_i .
# $$
#
# The tempting implementation takes each rank's own mean and lets data parallelism
# average the gradients across ranks:
#
# $$
# \tilde{\mathcal{L}} = \frac{1}{W} \sum_{r=1}^{W} \frac{1}{n_r} \sum_{i \in M_r} \ell_i
# \quad\Longrightarrow\quad \text{token } i \in M_r \text{ gets weight } \frac{1}{W n_r}
# \text{ instead of } \frac{1}{N} .
# $$
#
# The two agree only when every $n_r = N / W$. They are not: 15 % of a short pair is
# fewer positions than 15 % of a long one, and with dynamic masking the counts vary from
# step to step, so $\tilde{\mathcal{L}}$ over-weights the tokens of ranks that happen to
# hold few predictions, and the result depends on $W$. The fix: rank $r$ minimizes
# $\mathcal{L}_r = \frac{1}{N} \sum_{i\in M_r} \ell_i$ with the **global** $N$ (an
# `all_reduce` of the $n_r$, or, as in `bertrepro.pretrain`, where every rank draws the
# masks of the whole global batch, counted locally), and since the gradients are
# averaged over $W$ ranks, each rank back-propagates $W \mathcal{L}_r$:
#
# $$
# \frac{1}{W} \sum_{r=1}^{W} \nabla \big(W \mathcal{L}_r\big)
#   = \nabla \sum_r \mathcal{L}_r = \nabla \mathcal{L} .
# $$
#
# NSP has exactly one prediction per sequence, so its per-rank mean is already fair when
# the ranks hold equal numbers of sequences; the library divides it by the global batch
# all the same. First the arithmetic, then the gradients of a real model, with two
# "ranks" simulated in one process.

# %%
g = torch.Generator().manual_seed(run.seed)
ell = [
    torch.rand(2, generator=g, dtype=torch.float64) * 4,
    torch.rand(18, generator=g, dtype=torch.float64) * 4,
]
W, N = len(ell), sum(len(x) for x in ell)
global_mean = torch.cat(ell).mean()
mean_of_means = torch.stack([x.mean() for x in ell]).mean()
global_normalized = sum(x.sum() / N for x in ell)
print(
    f"n_r = {[len(x) for x in ell]}: global mean {global_mean:.4f}, mean of rank means "
    f"{mean_of_means:.4f}, "
    f"sum of rank sums / N {global_normalized:.4f}"
)
print(
    f"weight per token: 1/N = {1 / N:.4f}; per-rank means give "
    f"{[round(1 / (W * len(x)), 4) for x in ell]}"
)
assert_close(global_normalized, global_mean)

# %%
tiny = BertConfig.tiny(
    vocab_size=200, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
)
torch.manual_seed(run.seed)
net = BertForPreTraining(tiny)
x = torch.randint(5, 200, (8, 16), generator=g)
labels = torch.full_like(x, IGNORE_INDEX)
labels[:4, 1:3] = x[:4, 1:3]  # "rank 0": rows 0-3, 2 predictions each
labels[4:, 1:12] = x[4:, 1:12]  # "rank 1": rows 4-7, 11 predictions each
nsp_y = torch.randint(0, 2, (8,), generator=g)
tt, am = torch.zeros_like(x), torch.ones_like(x)


def grads_of(backward) -> torch.Tensor:
    net.zero_grad(set_to_none=True)
    backward()
    return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


def one_device():
    net(x, tt, am, labels=labels, next_sentence_label=nsp_y).loss.backward()


ranks = [slice(0, 4), slice(4, 8)]
W_sim, B_global = len(ranks), len(x)
N_global = int((labels != IGNORE_INDEX).sum())


def data_parallel(global_count: bool):
    """Every rank's backward in turn.

    .grad accumulates their sum, and DDP's all-reduce divides it by W.
    """
    for rows in ranks:
        o = net(
            x[rows],
            tt[rows],
            am[rows],
            labels=labels[rows],
            mlm_denominator=N_global if global_count else None,
        )
        nsp_sum = F.cross_entropy(
            o.seq_relationship_logits, nsp_y[rows], reduction="sum"
        )
        # bertrepro.pretrain: this rank's sums over GLOBAL counts, times W
        if global_count:
            loss = W_sim * (o.mlm_loss + nsp_sum / B_global)
        else:  # the tempting way: this rank's own means
            loss = o.mlm_loss + nsp_sum / len(x[rows])
        loss.backward()


g_one = grads_of(one_device)
g_global = grads_of(lambda: data_parallel(True)) / W_sim
g_naive = grads_of(lambda: data_parallel(False)) / W_sim
assert_close(g_global, g_one, rtol=1e-5, atol=1e-7)
err = ((g_naive - g_one).norm() / g_one.norm()).item()
assert err > 0.05, err
n_r = [int((labels[r] != IGNORE_INDEX).sum()) for r in ranks]
print(
    f"2 ranks holding {n_r} predictions: global normalization reproduces the "
    "one-device gradient "
    f"(max |diff| {(g_global - g_one).abs().max():.1e}); per-rank means miss it by "
    f"{err:.0%} (relative norm)"
)

# %% [markdown]
# ### BERT-large: what fits where
#
# Data parallelism keeps a full copy of the training state on every device. In float32
# that is 4 bytes each for the weight, its gradient and Adam's two moments: 16 bytes per
# parameter (mixed precision keeps the same total: 2 + 2 bytes of half-precision weight
# and gradient, 12 of float32 master weight and moments). The activations saved for the
# backward pass grow with the batch and, through attention, with the square of the
# length; we use the estimate of Korthikanti et al. (2022) for one layer in 16-bit
# precision, $T H (34 + 5 A T / H)$ bytes per sequence.
#
# Two remedies, neither of which `bertrepro.pretrain` implements (it offers data
# parallelism and gradient accumulation, `--micro-batch-size`): *activation (gradient)
# checkpointing* keeps only each layer's input and recomputes the rest during the
# backward pass, about a third more compute; *fully sharded data parallelism* (FSDP,
# after ZeRO) splits the 16 bytes per parameter over the $W$ devices and gathers each
# layer's weights when needed.


# %%
def state_bytes(cfg: BertConfig) -> int:
    return 16 * count_parameters(cfg, heads=True)


# per sequence, all layers, 16-bit
def activation_bytes(cfg: BertConfig, t: int) -> float:
    return (
        cfg.num_hidden_layers
        * t
        * cfg.hidden_size
        * (34 + 5 * cfg.num_attention_heads * t / cfg.hidden_size)
    )


large = BertConfig.large()
n_large = count_parameters(large, heads=True)
# BertForPreTraining, unique parameters (tied decoder counted once)
assert n_large == 336_226_108
rows = []
for W_, t in ((1, 128), (8, 128), (8, 512), (64, 512)):
    per_device = 256 // W_
    act = per_device * activation_bytes(large, t)
    ckpt_act = per_device * (
        large.num_hidden_layers * t * large.hidden_size * 2
        + activation_bytes(large, t) / large.num_hidden_layers
    )
    rows.append(
        {
            "W": W_,
            "T": t,
            "per device": int(per_device),
            "state, DDP (GB)": state_bytes(large) / 1e9,
            "state, FSDP (GB)": state_bytes(large) / W_ / 1e9,
            "activations (GB)": act / 1e9,
            "checkpointed (GB)": ckpt_act / 1e9,
        }
    )
memory = pd.DataFrame(rows)
print(
    f"BERT-large: {n_large:,} parameters x 16 bytes = {state_bytes(large) / 1e9:.2f} "
    "GB of training state; "
    f"BERT-base: {state_bytes(BertConfig.base()) / 1e9:.2f} GB"
)
chips, gpus = memory.iloc[3], memory.iloc[2]
print(
    f"64 chips, 512 tokens: {chips['per device']:.0f} sequences per chip, "
    f"{chips['activations (GB)'] + chips['state, DDP (GB)']:.1f} GB in "
    "all; "
    f"8 GPUs: {gpus['per device']:.0f} per GPU, "
    f"{gpus['activations (GB)']:.1f} GB of activations alone"
)
memory.style.format(precision=2)

# %% [markdown]
# Spread over 64 chips, BERT-large's batch leaves a few sequences per chip, and state
# plus activations fit an accelerator of 16 GB. The same global batch on one 8-GPU
# machine puts eight times as many sequences on each device: at 512 tokens that needs
# the largest GPUs, or micro-batches (the same update in more passes), or checkpointing;
# FSDP matters once the state itself dominates.
#
# ### Running it
#
# The command line is the same on one process and under `torchrun`; every flag is a
# `PretrainConfig` field (`python -m bertrepro.pretrain --help`). Only rank 0 writes, so
# with several machines `--output-dir` and `--cache-dir` must be on a shared file
# system.
#
# ```bash
# # one machine, 8 GPUs: global batch 256 = 8 x 32, NCCL
# torchrun --nproc_per_node 8 -m bertrepro.pretrain --profile gpu --output-dir runs/gpu8
#
# # the same update with micro-batches of 16 (2 accumulation steps per optimizer step)
# torchrun --nproc_per_node 8 -m bertrepro.pretrain --profile gpu \
#     --output-dir runs/gpu8 --micro-batch-size 16
#
# # two machines x 8 GPUs: run on each, --node_rank 0 on the first and 1 on the second
# torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 \
#     --rdzv_endpoint node0.example.org:29500 \
#     -m bertrepro.pretrain --profile gpu \
#     --output-dir /shared/runs/gpu16 --cache-dir /shared/cache
#
# # continue after an interruption, from checkpoints/latest (weights, Adam,
# # schedule, RNGs, data position); on another world size the data order and
# # masks continue exactly, dropout streams are re-seeded
# torchrun --nproc_per_node 8 -m bertrepro.pretrain --profile gpu \
#     --output-dir runs/gpu8 --resume
#
# # CPU, 2 processes over gloo
# torchrun --nproc_per_node 2 -m bertrepro.pretrain --profile cpu --output-dir runs/ddp
# ```
#
# With dropout off, 2 processes end where 1 process ends, up to float summation order.
# To measure it (it prints both wall times and the largest weight difference):
#
# ```bash
# .venv/bin/pytest -q -s -m slow tests/test_distributed.py::test_two_processes_match_one
# ```

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* The recipe of §3.1 and A.2 (loss, optimizer, schedule) runs in `bertrepro.pretrain`,
  and the loop written on this page reproduces it bit for bit. This run
  ({run.profile} profile, seed {run.seed}, {run.device.type}) took {result.step:,}
  steps, {"trained in" if result.steps_run else "read from the cache in"} {wall:.0f} s;
  the training loss fell from {metrics[0]["loss"]:.3f} to {metrics[-1]["loss"]:.3f} and
  the logged learning rate follows $\\eta(s)$ exactly.
* Held-out masked-LM accuracy {ev["mlm_accuracy"]:.3f}, {ratio:.1f}× the
  most-frequent-token guess ({ev["mft_accuracy"]:.3f}) and {acc_no_context:.3f} without
  the context; perplexity {ev["mlm_perplexity"]:.1f} against the unigram's
  {ev["unigram_perplexity"]:.1f}. These overall numbers include the positions where the
  input shows the true token.
* At the `[MASK]` positions alone the model scores {mask_ratio:.2f}× the constant guess
  (paired z = {z_mft:.1f}) and z = {z_context:.1f} against itself without context: it
  **{"uses" if uses_context else "does not measurably use"}** the context.
* Balanced NSP accuracy {ev["nsp_accuracy"]:.1%} (lengths alone
  {ev["nsp_length_baseline"]:.1%}; the paper's BERT-base 97–98 %), at
  {tokens_per_s:,.0f} tokens/s.
* A checkpoint holds everything the next step depends on, and resuming from it is
  exact. Scaling out is data parallelism over a fixed global batch, with the masked-LM
  loss divided by the global number of predictions.
"""))

# %% [markdown]
# ## Exercises
#
# 1. With the paper's schedule ($\eta_0 = 10^{-4}$, $w = 10{,}000$, $S = 10^6$), what
#    is the learning rate of update 5,000, of update 10,000 and of update 500,000?
# 2. Two ranks hold 5 and 15 masked positions. With per-rank means averaged over the
#    ranks, how much weight does one token of each rank get, and how much should it get?
# 3. How many GB of training state (weights, gradients, Adam's two moments, float32)
#    does BERT-base need, with its pre-training heads?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: warm-up is linear from 0; the decay counts from step 0, not from w.
lrs = [learning_rate_at(s, 1e-4, 10_000, 1_000_000) for s in (5_000, 10_000, 500_000)]
assert_close(torch.tensor(lrs), torch.tensor([0.5e-4, 0.99e-4, 0.5e-4]))
print(", ".join(f"{x:.3g}" for x in lrs))

# %% tags=["hide-cell"]
# Exercise 2: 1/(W n_r) instead of 1/N.
n_ranks = [5, 15]
per_rank = [1 / (len(n_ranks) * n) for n in n_ranks]
assert_close(torch.tensor(per_rank), torch.tensor([0.1, 1 / 30]))
print(f"per-rank means: {per_rank[0]:.3f} and {per_rank[1]:.4f}; right: {1 / 20:.3f}")

# %% tags=["hide-cell"]
# Exercise 3: 16 bytes per parameter.
n_base_pt = count_parameters(BertConfig.base(), heads=True)
assert n_base_pt == 110_106_428 and state_bytes(BertConfig.base()) == 16 * n_base_pt
print(f"{n_base_pt:,} x 16 bytes = {state_bytes(BertConfig.base()) / 1e9:.2f} GB")
