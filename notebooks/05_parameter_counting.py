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
# # 05 · Counting the parameters
#
# The paper gives two sizes: "BERT-BASE (L=12, H=768, A=12, Total Parameters=110M) and
# BERT-LARGE (L=24, H=1024, A=16, Total Parameters=340M)" (§3). This chapter derives the
# exact count from the architecture of chapter 04, checks it four independent ways (the
# closed form written here, `bertrepro.params`, instantiated `bertrepro` models and
# instantiated `transformers` models), breaks it down by component, measures how far the
# popular shortcut $V H + 12 L H^2$ is off, and shows where the parameters sit as models
# grow.

# %% tags=["parameters"]
profile = None  # "smoke" | "cpu" | "gpu"; None picks gpu if CUDA is available, else cpu
seed = 0
device = None

# %%
from bertrepro.chapters import setup

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import json
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
import transformers
from IPython.display import Markdown, display
from safetensors import safe_open

from bertrepro import BertConfig, BertForPreTraining, BertModel
from bertrepro.checkpoints import minilm_dir
from bertrepro.params import (
    breakdown,
    count_parameters,
    layer_parameters,
    shortcut_count,
)
from bertrepro.report import record

# Every count here is exact arithmetic or a model built on the "meta" device (shapes, no
# memory), so
# the profiles differ only in how many of the larger models are also built by
# transformers.
hf_models = run.pick(
    smoke=["BERT-base"],
    cpu=["BERT-base", "BERT-large"],
    gpu=["BERT-base", "BERT-large"],
)

# %% [markdown]
# ## The closed form
#
# Write $V$ for the vocabulary (30,522), $P$ for the positions (512), $S$ for the
# segment types (2), $H$ for the hidden size, $F$ for the feed-forward size (the paper's
# $4H$) and $L$ for the layers. A linear map $\mathbb{R}^{m}\to\mathbb{R}^{n}$ with bias
# has $mn + n$ parameters; a LayerNorm over $H$ features has $2H$ ($\gamma$ and
# $\beta$).
#
# | component | parameters |
# |---|---|
# | embeddings: token, position, segment tables, LayerNorm | $(V + P + S)\,H + 2H$ |
# | attention: $W^Q, W^K, W^V, W^O$ with biases (chapter 02) | $4H^2 + 4H$ |
# | feed-forward: $H\to F\to H$ | $2HF + F + H$ |
# | two LayerNorms per layer | $4H$ |
# | pooler: $H \to H$ | $H^2 + H$ |
#
# so one layer has $4H^2 + 2HF + F + 9H$, which is $12H^2 + 13H$ when $F = 4H$, and
#
# $$
# N_{\text{BertModel}} = (V + P + S)H + 2H + L\,(12H^2 + 13H) + H^2 + H .
# $$
#
# Pre-training adds the heads of §3.1: the masked-LM transform (dense $H\to H$ and a
# LayerNorm, $H^2 + 3H$), an output bias per vocabulary entry ($V$) and the NSP
# classifier ($2H + 2$). The masked-LM output matrix is the token embedding table itself
# (tied), so it adds nothing.


# %%
def closed_form(L, H, F=None, V=30522, P=512, S=2, pooler=True, heads=False):
    """The count derived above, written independently of bertrepro.params."""
    F = 4 * H if F is None else F
    n = (V + P + S) * H + 2 * H  # embeddings
    n += L * (4 * H * H + 4 * H + 2 * H * F + F + H + 4 * H)  # encoder layers
    if pooler or heads:
        n += H * H + H
    if heads:
        n += (H * H + 3 * H) + V + (2 * H + 2)
    return n


def numel(module):
    """Unique parameters of a module (a tied weight counts once)."""
    return sum(p.numel() for p in module.parameters())


def fmt(v):
    """Thousands separators for counts, a dash for a missing entry."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f"{v:,}" if isinstance(v, int) else str(v)


def build(cls, config):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return cls(config)


configs = {"BERT-base": BertConfig.base(), "BERT-large": BertConfig.large()}
# the exact counts of transformers' BertModel (with pooler) and BertForPreTraining
published = {
    "BERT-base": {"model": 109_482_240, "pretraining": 110_106_428},
    "BERT-large": {"model": 335_141_888, "pretraining": 336_226_108},
}
paper = {"BERT-base": 110_000_000, "BERT-large": 340_000_000}

# %% [markdown]
# ## Four counts that must agree
#
# For BERT-base and BERT-large: the closed form above,
# `bertrepro.params.count_parameters`, the sum of `numel()` over an instantiated
# `bertrepro` model, and the same for the `transformers` model of the same
# configuration. Models are built on PyTorch's `meta` device, which records shapes
# without allocating memory (BERT-large would otherwise take 1.3 GB of fp32).

# %%
rows = []
for name, cfg in configs.items():
    L, H, F = cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size
    ours_model, ours_pt = numel(build(BertModel, cfg)), numel(
        build(BertForPreTraining, cfg)
    )
    row = {
        "model": name,
        "L/H/A": f"{L}/{H}/{cfg.num_attention_heads}",
        "paper": paper[name],
        "closed form": closed_form(L, H, F),
        "bertrepro.params": count_parameters(cfg),
        "bertrepro (numel)": ours_model,
        "transformers (numel)": (
            numel(build(transformers.BertModel, cfg.to_hf()))
            if name in hf_models
            else None
        ),
        "+ pre-training heads": ours_pt,
    }
    assert (
        row["closed form"]
        == row["bertrepro.params"]
        == ours_model
        == published[name]["model"]
    ), row
    assert row["transformers (numel)"] in (None, published[name]["model"]), row
    assert (
        closed_form(L, H, F, heads=True)
        == count_parameters(cfg, heads=True)
        == ours_pt
        == published[name]["pretraining"]
    )
    if name in hf_models:
        assert numel(build(transformers.BertForPreTraining, cfg.to_hf())) == ours_pt
    rows.append(row)

# One column for the four counts, which the asserts above showed equal.
shown = [
    {
        "model": r["model"],
        "L/H/A": r["L/H/A"],
        "paper": f"{r['paper'] / 1e6:.0f}M",
        "BertModel (4 counts)": r["closed form"],
        "with MLM/NSP heads": r["+ pre-training heads"],
        "transformers built": "yes" if r["transformers (numel)"] else "smoke: no",
    }
    for r in rows
]
table = pd.DataFrame(shown).set_index("model")
table.style.format(fmt)

# %% [markdown]
# All four agree to the parameter: **109,482,240** for BERT-base and **335,141,888** for
# BERT-large (`BertModel` with its pooler); 110,106,428 and 336,226,108 with the
# pre-training heads, the tied output matrix counted once. The paper's 110M and 340M are
# these numbers rounded to two significant figures, so we score them with a tolerance of
# half a unit in the second figure, $\pm 5$M.

# %%
for name, row in zip(configs, rows):
    record(
        f"params.{name.removeprefix('BERT-')}.total",
        row["bertrepro (numel)"],
        kind="claim",
        paper=paper[name],
        tolerance=5_000_000,
        note=f"{name} BertModel with pooler (§3); the paper rounds to 2 significant "
        "figures",
    )
_ = record(
    "params.base.pretraining",
    rows[0]["+ pre-training heads"],
    kind="claim",
    paper=110_000_000,
    tolerance=5_000_000,
    note="BERT-base with MLM and NSP heads, tied decoder counted once",
)

# %% [markdown]
# ## Where BERT-base's parameters are
#
# The breakdown from `bertrepro.params.breakdown`, each entry checked against the
# `numel()` of the matching submodule of a model built on the meta device.

# %%
cfg = configs["BERT-base"]
b = breakdown(cfg)
m = build(BertForPreTraining, cfg)
emb, layer0 = m.bert.embeddings, m.bert.encoder.layer[0]
by_module = {
    "embeddings.word_embeddings": numel(emb.word_embeddings),
    "embeddings.position_embeddings": numel(emb.position_embeddings),
    "embeddings.token_type_embeddings": numel(emb.token_type_embeddings),
    "embeddings.LayerNorm": numel(emb.LayerNorm),
    "encoder.layer (one)": numel(layer0),
    "encoder": numel(m.bert.encoder),
    "pooler": numel(m.bert.pooler),
    "cls.predictions.transform": numel(m.cls.predictions.transform),
    "cls.predictions.bias": m.cls.predictions.bias.numel(),
    "cls.seq_relationship": numel(m.cls.seq_relationship),
}
assert b == by_module, {k: (b[k], by_module[k]) for k in b if b[k] != by_module.get(k)}
assert (
    numel(emb) == 23_837_184
    and numel(layer0) == 7_087_872
    and numel(m.bert.pooler) == 590_592
)
per_layer = layer_parameters(cfg)
assert per_layer["attention.qkv"] + per_layer["attention.output.dense"] == numel(
    layer0.attention.self
) + numel(layer0.attention.output.dense)
parts_ffn = cfg.num_hidden_layers * (
    per_layer["intermediate.dense"] + per_layer["output.dense"]
)
ffn_share = parts_ffn / b["encoder"]
tok_share = b["embeddings.word_embeddings"] / published["BERT-base"]["model"]
# "two thirds" and "a fifth", below: 8H^2 + 5H of 12H^2 + 13H, and V*H of the total
assert abs(ffn_share - 2 / 3) < 0.005, ffn_share
assert abs(tok_share - 1 / 5) < 0.02, tok_share
print(
    f"feed-forward: {ffn_share:.1%} of the encoder; token embeddings: "
    f"{tok_share:.1%} of BertModel"
)
pd.DataFrame({"parameters": b}).style.format("{:,}")

# %%
parts = {
    "token embeddings": b["embeddings.word_embeddings"],
    "position + segment emb. + LN": b["embeddings.position_embeddings"]
    + b["embeddings.token_type_embeddings"]
    + b["embeddings.LayerNorm"],
    "attention (12 layers)": cfg.num_hidden_layers
    * (per_layer["attention.qkv"] + per_layer["attention.output.dense"]),
    "feed-forward (12 layers)": cfg.num_hidden_layers
    * (per_layer["intermediate.dense"] + per_layer["output.dense"]),
    "LayerNorms (12 layers)": cfg.num_hidden_layers
    * (per_layer["attention.output.LayerNorm"] + per_layer["output.LayerNorm"]),
    "pooler": b["pooler"],
    "MLM transform + bias, NSP": b["cls.predictions.transform"]
    + b["cls.predictions.bias"]
    + b["cls.seq_relationship"],
}
assert sum(parts.values()) == published["BERT-base"]["pretraining"]
fig, ax = plt.subplots(figsize=(6.4, 3.6))
ax.barh(list(parts)[::-1], [v / 1e6 for v in parts.values()][::-1])
for i, v in enumerate(list(parts.values())[::-1]):
    ax.text(v / 1e6 + 0.5, i, f"{v:,}", va="center", fontsize=9)
ax.set(
    xlabel="millions of parameters",
    title=f"BERT-base with both heads: {sum(parts.values()):,}",
)
ax.set_xlim(0, 80)
plt.show()

# %% [markdown]
# Two thirds of the encoder is the feed-forward network ($8H^2$ of every $12H^2$), and a
# fifth of BERT-base is the token embedding table alone (both printed and asserted
# above).
#
# ## The popular shortcut
#
# Counting only the big matrices gives $N \approx VH + 12LH^2$. It ignores the biases
# and LayerNorms ($13H$ per layer: 9,984 for BERT-base), the position and segment
# tables, the embedding LayerNorm and the pooler. How far off is it?

# %%
short_rows = []
for name, c in configs.items():
    L, H = c.num_hidden_layers, c.hidden_size
    short = c.vocab_size * H + 12 * L * H * H
    assert short == shortcut_count(c)
    exact = count_parameters(c)
    encoder_gap = breakdown(c)["encoder"] - 12 * L * H * H
    assert encoder_gap == 13 * H * L  # biases and LayerNorms
    short_rows.append(
        {
            "model": name,
            "exact": exact,
            "VH + 12LH²": short,
            "missing": exact - short,
            "missing %": 100 * (exact - short) / exact,
            "13HL of it": encoder_gap,
        }
    )
for r in short_rows:
    print(
        f"{r['model']}: the shortcut misses {r['missing']:,} parameters "
        f"({r['missing %']:.2f} %)"
    )
pd.DataFrame(short_rows).set_index("model").style.format(
    {
        "exact": "{:,}",
        "VH + 12LH²": "{:,}",
        "missing": "{:,}",
        "missing %": "{:.2f} %",
        "13HL of it": "{:,}",
    }
)

# %% [markdown]
# Close enough for an estimate, about one percent; not for a check.
#
# ## Where the parameters go as models grow
#
# The embedding table grows like $H$, the encoder like $LH^2$. For small models the
# embeddings are most of the model; for large ones, a sliver. The heatmap gives the
# embedding share of `BertModel` for a grid of $L$ and $H$ (with $F = 4H$); the markers
# are the six models of the paper's size ablation (Table 6), whose counts the paper does
# not list, and we compute below.

# %%
Ls = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48]
Hs = [128, 256, 384, 512, 768, 1024, 1536, 2048]


def embedding_share(L, H):
    c = BertConfig(
        num_hidden_layers=L,
        hidden_size=H,
        num_attention_heads=H // 64,
        intermediate_size=4 * H,
    )
    bd = breakdown(c)
    return sum(
        v for k, v in bd.items() if k.startswith("embeddings.")
    ) / count_parameters(c)


share = torch.tensor([[embedding_share(L, H) for H in Hs] for L in Ls])
# L/H/A, Table 6
table6 = [
    (3, 768, 12),
    (6, 768, 3),
    (6, 768, 12),
    (12, 768, 12),
    (12, 1024, 16),
    (24, 1024, 16),
]

fig, ax0 = plt.subplots(figsize=(7.5, 5.2))
ax = [ax0]
im = ax[0].imshow(
    share.numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto"
)
ax[0].set_xticks(range(len(Hs)), Hs)
ax[0].set_yticks(range(len(Ls)), Ls)
for i, L in enumerate(Ls):
    for j, H in enumerate(Hs):
        ax[0].text(
            j,
            i,
            f"{share[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=9,
            color="w" if share[i, j] < 0.5 else "k",
        )
for L, H, _ in table6:
    ax[0].plot(Hs.index(H), Ls.index(L), "s", ms=20, mfc="none", mec="r", mew=1.5)
ax[0].set(xlabel="H", ylabel="L", title="embedding share of BertModel (red: Table 6)")
fig.colorbar(im, ax=ax[0])
fig.tight_layout()
plt.show()

t6 = []
for L, H, A in table6:
    c = BertConfig(
        num_hidden_layers=L,
        hidden_size=H,
        num_attention_heads=A,
        intermediate_size=4 * H,
    )
    n = count_parameters(c)
    assert n == numel(build(BertModel, c)) == closed_form(L, H)
    bd = breakdown(c)
    t6.append(
        {
            "L/H/A": f"{L}/{H}/{A}",
            "embeddings": sum(v for k, v in bd.items() if k.startswith("embeddings.")),
            "encoder": bd["encoder"],
            "pooler": bd["pooler"],
            "total": n,
        }
    )
labels = [r["L/H/A"] for r in t6]
fig, ax1 = plt.subplots(figsize=(7.5, 3.4))
ax = [None, ax1]
bottom = torch.zeros(len(t6))
for part in ("embeddings", "encoder", "pooler"):
    vals = torch.tensor([r[part] / 1e6 for r in t6])
    ax[1].bar(labels, vals.numpy(), bottom=bottom.numpy(), label=part)
    bottom += vals
ax[1].set(
    xlabel="L/H/A (Table 6)",
    ylabel="millions of parameters",
    title="the Table 6 models",
)
ax[1].legend()
fig.tight_layout()
plt.show()
for r in t6:
    r["encoder share"] = r["encoder"] / r["total"]
pd.DataFrame(t6).set_index("L/H/A").style.format(
    {
        "embeddings": "{:,}",
        "encoder": "{:,}",
        "pooler": "{:,}",
        "total": "{:,}",
        "encoder share": "{:.0%}",
    }
)

# %% [markdown]
# Down the table, the encoder's share grows from under half to nine tenths of the model,
# while Table 6's accuracies rise with size the whole way.
#
# ## A real checkpoint: all-MiniLM-L6-v2
#
# The book's trained model (L = 6, H = 384, A = 12, F = 1,536) ships as a `safetensors`
# file. We count its tensors straight from the file header, without building a model,
# and compare with the closed form for its configuration. The file also stores
# `embeddings.position_ids`, the integers 0…511: a buffer, not a learned parameter, so
# it is left out.

# %%
path = minilm_dir()
mini_cfg = BertConfig.from_hf(json.loads((path / "config.json").read_text()))
with safe_open(str(path / "model.safetensors"), "pt") as f:
    shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
buffers = [k for k in shapes if k.endswith("position_ids")]
n_file = sum(math.prod(s) for k, s in shapes.items() if k not in buffers)
n_closed = closed_form(
    mini_cfg.num_hidden_layers, mini_cfg.hidden_size, mini_cfg.intermediate_size
)
print(
    f"L={mini_cfg.num_hidden_layers} H={mini_cfg.hidden_size} "
    f"A={mini_cfg.num_attention_heads} "
    f"F={mini_cfg.intermediate_size}; buffers left out: {buffers}"
)
print(
    f"tensors in the file: {n_file:,}; closed form: {n_closed:,}; bertrepro.params: "
    f"{count_parameters(mini_cfg):,}"
)
assert (
    n_file
    == n_closed
    == count_parameters(mini_cfg)
    == numel(build(BertModel, mini_cfg))
    == 22_713_216
)
_ = record(
    "params.minilm.total",
    n_file,
    kind="check",
    expected=22_713_216,
    note="all-MiniLM-L6-v2: tensors in model.safetensors = closed form = "
    "bertrepro.params (22,713,216)",
)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
base_row, large_row = rows
base_short, large_short = short_rows
display(Markdown(f"""
* One BERT layer has $12H^2 + 13H$ parameters ($F = 4H$); the embeddings
  $(V + P + S + 2)H$; the pooler $H^2 + H$.
* Exactly {base_row["closed form"]:,} (BERT-base) and {large_row["closed form"]:,}
  (BERT-large), four ways: the paper's 110M and 340M, rounded.
* In BERT-base the feed-forward networks are {ffn_share:.1%} of the encoder and the
  token embedding table is {tok_share:.1%} of the model.
* The shortcut $VH + 12LH^2$ is {base_short["missing %"]:.2f} % (BERT-base) and
  {large_short["missing %"]:.2f} % (BERT-large) low.
* Small models are mostly embedding table; large ones mostly encoder: across Table 6's
  models the encoder's share runs from {min(r["encoder share"] for r in t6):.0%} to
  {max(r["encoder share"] for r in t6):.0%}.
* all-MiniLM-L6-v2's file holds {n_file:,} parameters, the closed form's count.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Count the parameters of a 4-layer, $H = 256$ BERT (the size of the released
#    "BERT-Mini") with the closed form, and check it on a model built on the `meta`
#    device.
# 2. How many parameters would BERT-base gain with a 50,000-piece vocabulary?
# 3. With $H = 768$, from which number of layers on does the encoder hold more
#    parameters than the embeddings?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: L = 4, H = 256, A = 4, F = 1024.
mini = BertConfig(
    num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024
)
n_mini = closed_form(4, 256)
assert n_mini == numel(build(BertModel, mini)) == count_parameters(mini)
print(f"L=4, H=256: {n_mini:,} parameters")

# %% tags=["hide-cell"]
# Exercise 2: only the token table (and nothing else) grows, by (50,000 - 30,522) x H.
big_vocab = BertConfig.base(vocab_size=50_000)
gain = count_parameters(big_vocab) - count_parameters(BertConfig.base())
assert (
    gain
    == (50_000 - 30_522) * 768
    == closed_form(12, 768, V=50_000) - closed_form(12, 768)
)
print(f"+{gain:,} parameters")

# %% tags=["hide-cell"]
# Exercise 3: the smallest L with L (12H^2 + 13H) > (V + P + S) H + 2H.
H768 = 768
emb_768 = (30_522 + 512 + 2) * H768 + 2 * H768
L_over = next(
    L
    for L in range(1, 100)
    if breakdown(BertConfig.base(num_hidden_layers=L))["encoder"] > emb_768
)
assert L_over == math.floor(emb_768 / (12 * H768**2 + 13 * H768)) + 1
print(f"from L = {L_over} on ({emb_768:,} embedding parameters)")
