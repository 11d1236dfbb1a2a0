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
# # 03 · Positions
#
# Self-attention compares every token with every other token, and nothing in chapters
# 01–02 tells it *where* a token stands. This chapter shows that precisely (attention is
# permutation-equivariant), derives the fixed sinusoidal {term}`positional encoding` of
# the original Transformer (Vaswani et al. §3.5) and its key property, and then turns to
# what BERT actually does: it **learns** one {term}`position embedding` per position,
# for 512 positions (BERT §3, *Input/Output Representations* and Figure 2, "position
# embeddings"; the released `bert_config.json` has `max_position_embeddings = 512`).
#
# Many explanations of BERT draw the sinusoidal table; BERT does not use it. We show
# both, and what a trained model's learned table looks like.

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

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from torch.testing import assert_close

from bertrepro.attention import MultiHeadAttention
from bertrepro.checkpoints import from_hf, minilm_dir
from bertrepro.config import BertConfig
from bertrepro.model import BertModel
from bertrepro.positional import frequencies, shift_matrix, sinusoidal_encoding
from bertrepro.report import record

# width of the attention demo
H, A = run.pick(smoke=(64, 4), cpu=(384, 12), gpu=(768, 12))
T = run.pick(smoke=10, cpu=32, gpu=128)  # tokens in the permutation demo
# width of the sinusoidal table: MiniLM's H, so the two tables can be compared
d_pe = 384
n_pos = 512  # BERT's max_position_embeddings
g = run.generator()

# %% [markdown]
# ## Attention alone ignores order
#
# Let $P$ be a $T\times T$ permutation matrix: $PX$ is the sequence $X$ with its tokens
# shuffled. Each output of self-attention is a weighted average over *all* tokens with
# weights that depend only on the token vectors, so shuffling the input shuffles the
# output the same way:
#
# $$ \mathrm{Attn}(PX) = P\,\mathrm{Attn}(X). $$
#
# "The dog bit the man" and "the man bit the dog" would produce the same set of output
# vectors. We check the identity on `bertrepro.attention.MultiHeadAttention`, and that
# adding the sinusoidal positions breaks it.

# %%
mha = MultiHeadAttention(H, A).eval()
X = torch.randn(1, T, H, generator=g)  # (1, T, H)
P = torch.eye(T)[torch.randperm(T, generator=g)]  # (T, T) permutation matrix
pe = sinusoidal_encoding(T, H)  # (T, H)

with torch.no_grad():
    lhs, rhs = mha(P @ X)[0], P @ mha(X)[0]
    lhs_pe, rhs_pe = mha(P @ X + pe)[0], P @ mha(X + pe)[0]
assert_close(lhs, rhs)
equivariance_err = (lhs - rhs).abs().max().item()
print(f"without positions: max |Attn(PX) - P Attn(X)| = {equivariance_err:.2e}")
print(
    "with positions:    max |Attn(PX + PE) - P Attn(X + PE)| = "
    f"{(lhs_pe - rhs_pe).abs().max():.2e}"
)
assert not torch.allclose(lhs_pe, rhs_pe, atol=1e-3)
_ = record(
    "positional.permutation_equivariance.max_abs_diff",
    equivariance_err,
    kind="check",
    expected=0.0,
    tolerance=1e-5,
    note="multi-head attention without positions: Attn(PX) = P Attn(X)",
)

# %% [markdown]
# ## The sinusoidal encoding (the original Transformer, not BERT)
#
# Vaswani et al. (§3.5) add to each token vector a fixed vector that depends only on its
# position:
#
# $$
# PE_{pos,\,2i} = \sin\!\left(\frac{pos}{10000^{2i/d}}\right), \qquad
# PE_{pos,\,2i+1} = \cos\!\left(\frac{pos}{10000^{2i/d}}\right),
# $$
#
# a sine and a cosine for each of $d/2$ frequencies $\omega_i = 10000^{-2i/d}$, from one
# cycle per $2\pi$ positions down to one per $2\pi\cdot 10000$. We build it entry by
# entry and compare with `bertrepro.positional.sinusoidal_encoding`.

# %%
pe_loop = torch.empty(n_pos, d_pe, dtype=torch.float64)
for pos in range(n_pos):
    for i in range(d_pe // 2):
        angle = pos / 10000 ** (2 * i / d_pe)
        pe_loop[pos, 2 * i] = math.sin(angle)
        pe_loop[pos, 2 * i + 1] = math.cos(angle)
PE = sinusoidal_encoding(n_pos, d_pe)  # (512, 384)
assert_close(PE, pe_loop.float())
print(f"max |loop - sinusoidal_encoding| = {(PE - pe_loop.float()).abs().max():.2e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), sharey=True)
for ax, (name, cols) in zip(axes, (("sine", PE[:, 0::2]), ("cosine", PE[:, 1::2]))):
    im = ax.imshow(cols.T.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set(
        xlabel="position",
        title=f"{name} columns $2i$" + ("" if name == "sine" else "$+1$"),
    )
axes[0].set_ylabel("frequency index $i$")
fig.colorbar(im, ax=axes)
fig.suptitle(f"sinusoidal encoding, {n_pos} positions × {d_pe} dimensions", y=1.03)
plt.show()

# %% [markdown]
# The low dimensions oscillate fast, the high ones barely move: each position gets a
# distinct pattern, like the digits of a number in a mixed-radix clock.
#
# ## Relative positions are a rotation
#
# Why sines *and* cosines? Because of the angle-addition formulas,
#
# $$
# \begin{pmatrix} \sin((pos+k)\omega) \\ \cos((pos+k)\omega) \end{pmatrix} =
# \begin{pmatrix} \cos k\omega & \sin k\omega \\
#   -\sin k\omega & \cos k\omega \end{pmatrix}
# \begin{pmatrix} \sin(pos\,\omega) \\ \cos(pos\,\omega) \end{pmatrix},
# $$
#
# so for every offset $k$ there is one matrix $M_k$ (block-diagonal, a $2\times2$
# rotation per frequency) with $PE_{pos+k} = M_k\,PE_{pos}$ **for every** $pos$: "for
# any fixed offset $k$, $PE_{pos+k}$ can be represented as a linear function of
# $PE_{pos}$" (Vaswani et al. §3.5). We build the first block by hand, compare it with
# `bertrepro.positional.shift_matrix`, and check the identity at every position, for
# several offsets, all at once: $PE_{[k:]} = PE_{[:-k]}\,M_k^\top$.

# %%
k = 7
w0 = frequencies(d_pe)[0].item()
block = torch.tensor(
    [[math.cos(k * w0), math.sin(k * w0)], [-math.sin(k * w0), math.cos(k * w0)]]
)
assert_close(shift_matrix(k, d_pe)[:2, :2], block)

shift_err = 0.0
for k in (1, 7, 50, 300):
    M = shift_matrix(k, d_pe)  # (d, d), independent of the position
    shifted = PE[:-k] @ M.T  # (n_pos - k, d): M_k PE_pos for every pos
    assert_close(shifted, PE[k:], atol=1e-4, rtol=0)
    err = (shifted - PE[k:]).abs().max().item()
    shift_err = max(shift_err, err)
    print(
        f"k={k:3d}: max over all {n_pos - k} positions of |M_k PE_pos - PE_pos+k| = "
        f"{err:.1e}"
    )
_ = record(
    "positional.shift_matrix.max_abs_err",
    shift_err,
    kind="check",
    expected=0.0,
    tolerance=1e-4,
    note="PE[pos+k] = M_k PE[pos] for all pos, k in {1, 7, 50, 300} (Vaswani et al. "
    "§3.5; float32)",
)

# %% [markdown]
# A consequence: the dot product of two encodings depends only on their distance,
#
# $$ PE_{p}\cdot PE_{q} = \sum_{i} \cos\big((p - q)\,\omega_i\big), $$
#
# so $PE\,PE^\top$ is a Toeplitz matrix. We check the closed form for all pairs and plot
# the similarity against the offset from three different starting positions: the curves
# coincide.

# %%
gram = PE.double() @ PE.double().T  # (n_pos, n_pos)
offsets = torch.arange(n_pos)[:, None] - torch.arange(n_pos)[None, :]  # p - q
closed = torch.cos(offsets[..., None].double() * frequencies(d_pe)).sum(-1)
assert_close(gram, closed)
print(
    f"max |PE_p·PE_q - sum_i cos((p-q) w_i)| = {(gram - closed).abs().max():.1e} over "
    f"all {n_pos}² pairs"
)

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.4))
span = torch.arange(-100, 101)
for p, lw, ls in ((100, 5, "-"), (250, 2.5, "--"), (400, 1, ":")):
    ax.plot(span, gram[p, p + span].numpy(), lw=lw, ls=ls, label=f"from position {p}")
ax.set(
    xlabel="offset k",
    ylabel="$PE_p \\cdot PE_{p+k}$",
    title="sinusoidal: similarity depends only on the distance",
)
ax.legend()
plt.show()

# %% [markdown]
# ## What BERT does instead: learned absolute positions
#
# BERT's input is the sum of three learned embeddings, token + segment + position (§3,
# Figure 2). The position embeddings are an ordinary trainable table,
# `BertEmbeddings.position_embeddings`, with one row of $H$ numbers for each of 512
# positions, initialised at random like every other weight (Appendix A.2: "we pre-train
# the model with sequence length of 128 for 90% of the steps", then 512 "to learn the
# positional embeddings"). There is no sine anywhere in BERT.

# %%
config = BertConfig(
    hidden_size=H,
    num_attention_heads=A,
    num_hidden_layers=2,
    intermediate_size=4 * H,
    vocab_size=1000,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
model = BertModel(config).eval()
table = model.embeddings.position_embeddings.weight
print(
    f"position_embeddings: {tuple(table.shape)}, learned "
    f"(requires_grad={table.requires_grad})"
)
assert table.shape == (config.max_position_embeddings, H) and table.requires_grad

# %% [markdown]
# The learned table is what makes the whole model order-aware. With it, shuffling the
# input tokens does **not** shuffle the outputs; with the table zeroed (a model with no
# position information), the permutation identity of the first section holds for the
# whole BERT encoder.

# %%
ids = torch.randint(1, config.vocab_size, (1, T), generator=g)
perm = torch.randperm(T, generator=g)
with torch.no_grad():
    out, out_perm = model(ids).last_hidden_state, model(ids[:, perm]).last_hidden_state
    print(
        "learned positions: max |BERT(PX) - P BERT(X)| = "
        f"{(out_perm - out[:, perm]).abs().max():.2e}"
    )
    assert not torch.allclose(out_perm, out[:, perm], atol=1e-3)
    table.zero_()
    out, out_perm = model(ids).last_hidden_state, model(ids[:, perm]).last_hidden_state
assert_close(out_perm, out[:, perm])
print(
    "positions zeroed:  max |BERT(PX) - P BERT(X)| = "
    f"{(out_perm - out[:, perm]).abs().max():.2e}"
)

# %% [markdown]
# ## A trained model's position table
#
# A random table has no structure: two positions are as (dis)similar as any two random
# vectors. Does training give the learned table the smoothness the sinusoid was designed
# to have? We load the trained **all-MiniLM-L6-v2** (a BERT-architecture model,
# $H = 384$, 512 learned positions, shipped inside a Python wheel) and compare the
# cosine similarity between positions for three tables: the sinusoid, a freshly
# initialised BERT table, and MiniLM's learned one.

# %%
minilm = from_hf(minilm_dir())
learned = minilm.embeddings.position_embeddings.weight.detach()  # (512, 384)
fresh = BertModel(
    BertConfig(
        hidden_size=d_pe,
        num_attention_heads=12,
        num_hidden_layers=1,
        intermediate_size=4 * d_pe,
        vocab_size=8,
    )
).embeddings.position_embeddings.weight.detach()
assert learned.shape == PE.shape == fresh.shape


def cosine(t):  # (P, d) -> (P, P)
    u = torch.nn.functional.normalize(t.double(), dim=-1)
    return u @ u.T


sims = {
    "sinusoidal (Transformer)": cosine(PE),
    "BERT table at initialisation": cosine(fresh),
    "learned (all-MiniLM-L6-v2)": cosine(learned),
}
short = ["sinusoidal", "BERT, initialised", "MiniLM, learned"]
fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9), constrained_layout=True)
for ax, title, s in zip(axes, short, sims.values()):
    im = ax.imshow(s.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set(title=title, xlabel="position")
    ax.set_xticks([0, 250, 500])
    ax.set_yticks([0, 250, 500])
axes[0].set_ylabel("position")
fig.colorbar(im, ax=axes, fraction=0.03, label="cosine")
plt.show()

# %% [markdown]
# The trained table has a bright band along the diagonal: nearby positions have similar
# vectors, although nothing in the training objective asks for it. Unlike the sinusoid,
# the similarity does not fall smoothly: parallel stripes, and even negative bands, show
# a periodic structure the model chose for itself. We measure the average cosine
# similarity as a function of the offset $k$ for each table.


# %%
def by_offset(s, ks):
    return torch.stack([torch.diagonal(s, offset=k).mean() for k in ks])


ks = torch.arange(1, 129)
fig, ax = plt.subplots(figsize=(7.5, 3.4))
for name, s in sims.items():
    ax.plot(ks, by_offset(s, ks).numpy(), label=name)
ax.set(
    xlabel="offset k",
    ylabel="mean cosine(pos, pos + k)",
    title="mean similarity against distance",
)
ax.legend()
plt.show()
near, far = (
    by_offset(sims["learned (all-MiniLM-L6-v2)"], torch.tensor(r)).mean().item()
    for r in ([1, 2], range(64, 129))
)
near0, far0 = (
    by_offset(sims["BERT table at initialisation"], torch.tensor(r)).mean().item()
    for r in ([1, 2], range(64, 129))
)
print(
    f"learned table: mean cosine {near:.2f} at offsets 1-2 vs {far:.2f} at offsets "
    "64-128"
)
print(
    f"at init:       mean cosine {near0:.2f} at offsets 1-2 vs {far0:.2f} at offsets "
    "64-128"
)
assert near > far + 0.1 and abs(near0 - far0) < 0.05
_ = record(
    "positional.learned.neighbour_cosine",
    near,
    kind="check",
    status="pass" if near > far + 0.1 else "fail",
    note=f"all-MiniLM-L6-v2 position embeddings: cosine {near:.2f} for offsets 1-2 vs "
    f"{far:.2f} for 64-128 (criterion: near > far + 0.1)",
)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* Without positions, self-attention is permutation-equivariant,
  $\\mathrm{{Attn}}(PX) = P\\,\\mathrm{{Attn}}(X)$: this run measured a largest
  deviation of {equivariance_err:.1e}, and adding positions breaks the identity.
* The sinusoidal encoding of the original Transformer: $PE_{{pos+k}} = M_k PE_{{pos}}$
  for one rotation matrix $M_k$ at every position (largest error {shift_err:.1e} in
  float32), so the similarity of two positions depends only on their distance.
* **BERT does not use it.** BERT learns a 512 × H table of absolute position
  embeddings (`BertEmbeddings.position_embeddings`), added to the token and segment
  embeddings (§3, Figure 2); zeroing it makes the whole encoder order-blind.
* A trained table develops structure on its own: in all-MiniLM-L6-v2 positions 1–2
  apart have mean cosine {near:.2f}, positions 64–128 apart {far:.2f} (at
  initialisation {near0:.2f} and {far0:.2f}).

Chapter 04 assembles the full input representation and the Transformer block around it.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Every row of the sinusoidal table has the same length. Which, and why?
# 2. Is $PE_p \cdot PE_{p+k}$ the same for $k$ and $-k$? Check it on the table.
# 3. How many parameters does BERT-base spend on its learned position table, and what
#    share of the model is that?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: each of the d/2 frequencies contributes sin^2 + cos^2 = 1.
norms = PE.double().norm(dim=-1)
assert_close(norms, torch.full_like(norms, math.sqrt(d_pe / 2)))
print(f"every row has norm sqrt(d/2) = {math.sqrt(d_pe / 2):.4f}")

# %% tags=["hide-cell"]
# Exercise 2: the dot product is a sum of cosines, and cos is even.
p0, span_k = 256, torch.arange(1, 200)
assert_close(gram[p0, p0 + span_k], gram[p0, p0 - span_k])
print(f"PE_p·PE_(p+k) = PE_p·PE_(p-k) at p = {p0} for k = 1..{int(span_k[-1])}")

# %% tags=["hide-cell"]
# Exercise 3: 512 x 768 parameters, of the 109,482,240 of BertModel.
with torch.device("meta"):
    base = BertModel(BertConfig.base())
n_pos_params = base.embeddings.position_embeddings.weight.numel()
n_total = sum(p.numel() for p in base.parameters())
assert n_pos_params == 512 * 768 == 393_216 and n_total == 109_482_240
print(
    f"{n_pos_params:,} position parameters = {n_pos_params / n_total:.2%} of BERT-base"
)
