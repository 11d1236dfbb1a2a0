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
# # 01 · Self-attention
#
# BERT's model architecture "is a multi-layer bidirectional Transformer encoder based on
# the original implementation described in Vaswani et al. (2017)" (BERT §3, *Model
# Architecture*). The paper then refers the reader to Vaswani et al. for the details, so
# this chapter supplies them, starting from the one operation everything else is built
# on: scaled dot-product {term}`self-attention` (Vaswani et al. §3.2.1),
#
# $$
# \mathrm{Attention}(Q, K, V)
#   = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V .
# $$
#
# We derive it step by step in plain torch, check numerically *why* the scores are
# divided by $\sqrt{d_k}$, add the padding mask that every batch of real sentences
# needs, and then check that `bertrepro.attention` and PyTorch's fused
# `scaled_dot_product_attention` compute the same thing.

# %% tags=["parameters"]
profile = None  # "smoke" | "cpu" | "gpu"; None picks gpu if CUDA is available, else cpu
seed = 0
device = None

# %%
from bertrepro.chapters import setup

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import math
import statistics

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.testing import assert_close

from bertrepro.attention import key_padding_mask, scaled_dot_product_attention
from bertrepro.report import record
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path

d_model = run.pick(smoke=32, cpu=64, gpu=64)  # width of the toy token vectors
d_k = run.pick(smoke=16, cpu=64, gpu=64)  # query/key width; BERT's head size H/A is 64
# samples for the variance experiment
n_samples = run.pick(smoke=4_000, cpu=20_000, gpu=100_000)
g = run.generator()

# %% [markdown]
# ## A toy batch
#
# Two sentences, tokenized with BERT's WordPiece vocabulary (30,522 pieces, §3
# *Input/Output Representations*), each wrapped in `[CLS] … [SEP]`. The second sentence
# is shorter, so it is padded with `[PAD]` to the length of the first: a batch must be a
# rectangle.
#
# The token vectors $X$ are random here: this chapter is about the mechanics, and
# chapter 02 looks at the heads of a trained model.

# %%
tokenizer = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
batch = tokenizer.encode_batch(["the cat sat on the mat", "my dog is hairy"])
# (B, T), 1 = token, 0 = [PAD]
input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
tokens = [tokenizer.convert_ids_to_tokens(row) for row in input_ids]
B, T = input_ids.shape
for row in tokens:
    print(" ".join(row))
print("attention_mask:\n", attention_mask)

X = torch.randn(B, T, d_model, generator=g)  # (B, T, d_model)

# %% [markdown]
# ## Queries, keys and values
#
# Every token vector $x_i$ is projected three times, by learned matrices
# $W^Q, W^K \in \mathbb{R}^{d_{model}\times d_k}$ and
# $W^V \in \mathbb{R}^{d_{model}\times d_v}$:
#
# $$ q_i = x_i W^Q, \qquad k_i = x_i W^K, \qquad v_i = x_i W^V . $$
#
# A query asks "what am I looking for?", a key says "what do I contain?", and a value is
# what a token hands over when it is attended to. The score of query $i$ against key $j$
# is their dot product $q_i \cdot k_j$, divided by $\sqrt{d_k}$. We first compute it
# with explicit loops over the batch, the queries and the keys, then as one matrix
# product, and check they agree.

# %%
std = 1 / math.sqrt(d_model)  # keeps q, k, v at unit scale
W_q = torch.randn(d_model, d_k, generator=g) * std
W_k = torch.randn(d_model, d_k, generator=g) * std
W_v = torch.randn(d_model, d_k, generator=g) * std
Q, K, V = X @ W_q, X @ W_k, X @ W_v  # (B, T, d_k) each

scores_loop = torch.empty(B, T, T)
for b in range(B):
    for i in range(T):
        for j in range(T):
            scores_loop[b, i, j] = torch.dot(Q[b, i], K[b, j]) / math.sqrt(d_k)

# (B, T, T): row i = query i, column j = key j
scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
assert_close(scores_loop, scores)
print(f"max |loop - matrix| = {(scores_loop - scores).abs().max():.2e}")

# %% [markdown]
# The softmax turns each row of scores into weights that are positive and sum to one,
# $\alpha_{ij} = e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}$, and the output of token $i$ is the
# weighted average of the values, $z_i = \sum_j \alpha_{ij} v_j$. The softmax runs over
# the **keys** (the last axis): normalising over the queries instead is a classic silent
# bug, the shapes are the same.

# %%
weights = torch.exp(scores) / torch.exp(scores).sum(dim=-1, keepdim=True)  # (B, T, T)
Z = torch.einsum("bij,bjd->bid", weights, V)  # (B, T, d_k)
print(
    "row sums of the first sentence:", [f"{v:.6f}" for v in weights.sum(-1)[0].tolist()]
)

# %% [markdown]
# ## Why divide by $\sqrt{d_k}$?
#
# Vaswani et al. (§3.2.1, note 4) argue: if the components of $q$ and $k$ are
# independent with mean 0 and variance 1, then $q\cdot k = \sum_{i=1}^{d_k} q_i k_i$ is
# a sum of $d_k$ terms of variance 1, so
#
# $$ \mathrm{Var}(q \cdot k) = d_k . $$
#
# Large scores push the softmax towards a one-hot vector, where its gradient
# $\partial \alpha / \partial s = \mathrm{diag}(\alpha) - \alpha\alpha^\top$ nearly
# vanishes. Dividing by $\sqrt{d_k}$ brings the variance back to 1 for every width. We
# check both claims numerically. The sample variance of $n$ draws has relative standard
# error $\sqrt{(\kappa - 1)/n}$, where $\kappa = 3 + 6/d_k$ is the kurtosis of
# $q\cdot k$, so we accept a ratio within five standard errors of 1.

# %%
dims = [1, 4, 16, 64, 256, 1024]
n_keys = 32  # keys per query for the softmax experiment
variances, ent_raw, ent_scaled, jac_raw, jac_scaled = [], [], [], [], []
for d in dims:
    q = torch.randn(n_samples, d, generator=g)
    k = torch.randn(n_samples, d, generator=g)
    dots = (q * k).sum(-1)  # (n,)
    var = dots.var().item()
    se = math.sqrt((3 + 6 / d - 1) / n_samples)
    assert (
        abs(var / d - 1) < 5 * se
    ), f"Var(q.k)={var:.1f} is not d_k={d} within 5 standard errors"
    variances.append(var)

    n_q = max(n_samples // n_keys, 1)
    s = torch.einsum(
        "nd,nkd->nk",
        torch.randn(n_q, d, generator=g),
        torch.randn(n_q, n_keys, d, generator=g),
    )
    for raw, ent, jac in (
        (s, ent_raw, jac_raw),
        (s / math.sqrt(d), ent_scaled, jac_scaled),
    ):
        a = raw.softmax(-1)  # (n_q, n_keys)
        ent.append(-(a * a.clamp_min(1e-30).log()).sum(-1).mean().item())
        # softmax Jacobian per query
        J = torch.diag_embed(a) - a[:, :, None] * a[:, None, :]
        jac.append(torch.linalg.matrix_norm(J).mean().item())
    print(
        f"d_k={d:5d}: Var(q.k) = {var:9.2f} (ratio {var / d:.3f} ± {se:.3f}); softmax "
        "entropy "
        f"raw {ent_raw[-1]:.2f} vs scaled {ent_scaled[-1]:.2f} nats (uniform "
        f"{math.log(n_keys):.2f})"
    )

ratio_64 = variances[dims.index(64)] / 64
_ = record(
    "attention.scaling.variance_over_dk",
    ratio_64,
    kind="claim",
    paper=1.0,
    tolerance=5 * math.sqrt((2 + 6 / 64) / n_samples),
    note="Var(q·k)/d_k at d_k = 64 for unit-variance q, k (Vaswani et al. §3.2.1, "
    "note 4)",
)

# %%
fig, ax = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
ax[0].loglog(dims, variances, "o-", label="measured Var(q·k)")
ax[0].loglog(dims, dims, "k--", lw=1, label="$d_k$")
ax[0].set(ylabel="variance", title="dot products grow with $d_k$")
ax[0].legend()
ax[1].semilogx(dims, ent_raw, "o-", label="softmax($qk$)")
ax[1].semilogx(dims, ent_scaled, "o-", label=r"softmax($qk/\sqrt{d_k}$)")
ax[1].axhline(
    math.log(n_keys), color="k", ls="--", lw=1, label=f"uniform over {n_keys} keys"
)
ax[1].set(ylabel="entropy (nats)", title="without scaling, attention collapses")
ax[1].legend()
ax[2].loglog(dims, jac_raw, "o-", label="unscaled")
ax[2].loglog(dims, jac_scaled, "o-", label="scaled")
ax[2].set(
    xlabel="$d_k$",
    ylabel=r"mean $\|\partial\alpha/\partial s\|_F$",
    title="…and its gradient vanishes",
)
ax[2].legend()
fig.tight_layout()
plt.show()

# With the scale, the entropy and the gradient norm do not depend on d_k: every width
# sees scores of variance 1. Flat means: spread over the widths within a few percent.
# (At d_k = 1 a score is the product of two normals, heavier-tailed than the near-normal
# sum of d_k >= 4 products, so it is left out.)
flat = [i for i, d in enumerate(dims) if d >= 4]
ent_flat, jac_flat = [ent_scaled[i] for i in flat], [jac_scaled[i] for i in flat]
ent_spread = (max(ent_flat) - min(ent_flat)) / math.log(n_keys)
jac_spread = (max(jac_flat) - min(jac_flat)) / statistics.mean(jac_flat)
assert ent_spread < 0.05, f"scaled entropy varies by {ent_spread:.1%} of ln {n_keys}"
assert jac_spread < 0.15, f"scaled gradient norm varies by {jac_spread:.1%}"
assert ent_raw[-1] < 0.25 * ent_raw[0] and jac_raw[-1] < 0.5 * max(jac_raw)
print(
    f"scaled, d_k = 4..{dims[-1]}: entropy within {ent_spread:.1%} of ln {n_keys}, "
    f"gradient norm within {jac_spread:.1%}\nunscaled at d_k = {dims[-1]}: entropy "
    f"{ent_raw[-1]:.2f} nats, gradient norm {jac_raw[-1]:.3f}"
)

# %% [markdown]
# Without the scale, the entropy of the attention weights falls towards 0 (one key takes
# all the weight) as $d_k$ grows, and so does the gradient that would teach the model to
# attend elsewhere. With it, both stay flat from $d_k = 4$ on (asserted above). BERT's
# heads have $d_k = H/A = 64$ in both BERT-base (768/12) and BERT-large (1024/16).

# %% [markdown]
# ## The padding mask
#
# The second sentence's `[PAD]` positions are not words; no token may read from them.
# The mask acts on the **keys** (columns): score $s_{ij}$ is replaced by $-\infty$
# wherever key $j$ is padding, so $e^{s_{ij}} = 0$ and the weights on real keys still
# sum to one. The original BERT code added $-10000$ to those scores (`modeling.py`,
# `attention_layer`); `bertrepro` writes the most negative finite float instead of
# $-\infty$, so a row whose keys are *all* masked yields finite weights instead of `NaN`
# (a mistake of many hand-written attention layers).
#
# `bertrepro.attention.key_padding_mask` turns the (B, T) 1/0 mask into a boolean (B, 1,
# 1, T) mask (True = may attend), broadcast over the heads and the query rows; this
# single-head example drops the head axis.

# %%
# (B, 1, T); the head axis is dropped for this single-head demo
keep = key_padding_mask(attention_mask)[:, 0]
masked_scores = scores.masked_fill(~keep, float("-inf"))
weights_masked = masked_scores.softmax(dim=-1)  # (B, T, T)
Z_masked = weights_masked @ V

pad_weight = weights_masked.masked_select(~keep.expand(B, T, T)).abs().max().item()
row_sums = weights_masked.sum(-1)
assert pad_weight == 0.0
assert_close(row_sums, torch.ones(B, T))
print(
    f"largest weight on a [PAD] key: {pad_weight}; row sums deviate from 1 by at most "
    f"{(row_sums - 1).abs().max():.1e}"
)
_ = record(
    "attention.mask.weight_on_padding",
    pad_weight,
    kind="check",
    expected=0.0,
    tolerance=0.0,
    note="largest attention weight any query gives a [PAD] key",
)

# %% [markdown]
# The `[PAD]` *rows* (queries) are computed too, and they attend to the real tokens;
# nothing reads their outputs, because every later layer masks them as keys again and
# the losses ignore them. Chapter 04 checks that appending padding leaves the real
# tokens' outputs unchanged.
#
# ## Agreement with `bertrepro` and with PyTorch
#
# `bertrepro.attention.scaled_dot_product_attention` is the explicit reference the model
# uses when attention maps are requested; the model's fast path calls PyTorch's fused
# `torch.nn.functional.scaled_dot_product_attention`. Both take a boolean mask with
# **True = may attend**. (Beware: `torch.nn.MultiheadAttention`'s `key_padding_mask`
# uses the opposite convention, True = ignore; chapter 02 meets it.) All three must
# agree with our derivation.

# %%
ours, ours_weights = scaled_dot_product_attention(Q, K, V, attention_mask=keep)
torch_sdpa = F.scaled_dot_product_attention(Q, K, V, attn_mask=keep)

assert_close(ours, Z_masked)
assert_close(ours_weights, weights_masked)
assert_close(torch_sdpa, Z_masked)
diff_ours = (ours - Z_masked).abs().max().item()
diff_sdpa = (torch_sdpa - ours).abs().max().item()
print(f"max |bertrepro - derivation| = {diff_ours:.2e}")
print(f"max |torch SDPA - bertrepro| = {diff_sdpa:.2e}")
_ = record(
    "attention.explicit_vs_sdpa.max_abs_diff",
    diff_sdpa,
    kind="check",
    expected=0.0,
    tolerance=1e-5,
    note="bertrepro's explicit attention vs "
    "torch.nn.functional.scaled_dot_product_attention, with padding",
)

# %% [markdown]
# The unmasked case agrees too, and so does a fully masked row: the explicit path
# returns uniform weights there instead of `NaN`.

# %%
assert_close(scaled_dot_product_attention(Q, K, V)[0], Z)
assert_close(F.scaled_dot_product_attention(Q, K, V), Z)
none_allowed = torch.zeros(B, 1, T, dtype=torch.bool)
_, w_none = scaled_dot_product_attention(Q, K, V, attention_mask=none_allowed)
assert torch.isfinite(w_none).all()
print(
    "unmasked: max |bertrepro - derivation| =",
    f"{(scaled_dot_product_attention(Q, K, V)[0] - Z).abs().max():.2e}",
)
print("fully masked row -> weights", w_none[0, 0, :4].tolist(), "…")

# %% [markdown]
# ## What the weights look like
#
# Each row of the map is one query's distribution over the keys. The padded sentence's
# `[PAD]` columns are exactly zero, in every row.

# %%
fig, axes = plt.subplots(1, 2, figsize=(7.5, 4.2))
for b, ax in enumerate(axes):
    im = ax.imshow(weights_masked[b].numpy(), cmap="viridis", vmin=0)
    ax.set_xticks(range(T), tokens[b], rotation=90)
    ax.set_yticks(range(T), tokens[b])
    ax.set(xlabel="key", ylabel="query", title=f"sentence {b + 1}")
    fig.colorbar(im, ax=ax, fraction=0.046)
fig.suptitle("attention weights (random projections, padding masked)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
i64 = dims.index(64)
display(Markdown(f"""
* A score is a scaled dot product $q_i\\cdot k_j/\\sqrt{{d_k}}$; the softmax runs over
  the keys, and the explicit loops agree with the matrix product.
* Unscaled, $\\mathrm{{Var}}(q\\cdot k) = d_k$: at $d_k = 64$ this run measured
  {ratio_64:.3f} × $d_k$. Without the scale the attention entropy falls from
  {ent_raw[0]:.2f} to {ent_raw[-1]:.2f} nats between $d_k = {dims[0]}$ and
  {dims[-1]}, and the softmax gradient from {jac_raw[0]:.3f} to {jac_raw[-1]:.3f};
  with it both stay flat from $d_k = 4$ on (entropy within {ent_spread:.1%} of
  $\\ln {n_keys}$).
* Padding is masked on the key axis: the largest weight on a `[PAD]` key is
  {pad_weight}, and every row still sums to 1.
* `bertrepro.attention.scaled_dot_product_attention` equals the derivation, and
  PyTorch's fused kernel equals it to {diff_sdpa:.1e}.

Chapter 02 runs several such attentions side by side: multi-head attention.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Drop the padding mask. Do the outputs of the *real* tokens of the padded sentence
#    change? And those of the unpadded sentence?
# 2. Normalise the softmax over the queries (`dim=-2`) instead of the keys. Which sums
#    are 1 now, and does the output still equal `Z`?
# 3. Divide the scores by $d_k$ instead of $\sqrt{d_k}$ at $d_k = 256$. What happens to
#    the entropy of the weights, and why is that just as bad?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: without the mask, the padded sentence's real tokens read from [PAD] keys.
Z_nomask = (Q @ K.transpose(-2, -1) / math.sqrt(d_k)).softmax(-1) @ V
real = attention_mask.bool()
changed = (Z_nomask - Z_masked).abs().amax(-1)  # (B, T)
assert changed[1][real[1]].min() > 1e-4  # sentence 2 is padded: every real token moves
assert_close(Z_nomask[0], Z_masked[0])  # sentence 1 has no padding: nothing moves
print(
    f"sentence 2 (padded): real-token outputs move by up to {changed[1].max():.3f}; "
    f"sentence 1: by {changed[0].max():.1e}"
)

# %% tags=["hide-cell"]
# Exercise 2: normalising over the queries makes the columns sum to 1, not the rows.
w_wrong = scores.softmax(dim=-2)
assert_close(w_wrong.sum(-2), torch.ones(B, T))
assert not torch.allclose(w_wrong.sum(-1), torch.ones(B, T))
assert not torch.allclose(w_wrong @ V, Z)
print(f"rows now sum to {w_wrong.sum(-1)[0].min():.2f}..{w_wrong.sum(-1)[0].max():.2f}")

# %% tags=["hide-cell"]
# Exercise 3: dividing by d_k shrinks the scores' standard deviation to 1/sqrt(d_k), so
# the softmax is nearly uniform: attention can no longer single out any key.
d = 256
s3 = torch.einsum(
    "nd,nkd->nk",
    torch.randn(500, d, generator=g),
    torch.randn(500, n_keys, d, generator=g),
)
entropy = {}
for name, scale in (("sqrt(d_k)", math.sqrt(d)), ("d_k", d)):
    a = (s3 / scale).softmax(-1)
    entropy[name] = -(a * a.log()).sum(-1).mean().item()
assert entropy["d_k"] > 0.99 * math.log(n_keys) > entropy["sqrt(d_k)"]
print(
    f"entropy at d_k = {d}: {entropy['sqrt(d_k)']:.3f} nats dividing by sqrt(d_k), "
    f"{entropy['d_k']:.3f} dividing by d_k (uniform: {math.log(n_keys):.3f})"
)
