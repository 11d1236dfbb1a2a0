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
# # 04 · The BERT encoder
#
# Chapters 01–03 built the parts; this one assembles them into BERT (§3, Figures 1 and
# 2):
#
# 1. the input representation, token + segment + position embeddings (§3, *Input/Output
#    Representations*);
# 2. one Transformer block, written out by hand: multi-head attention, Add & Norm, a
#    GELU feed-forward network, Add & Norm;
# 3. the two GELUs (exact and tanh) and the pooler;
# 4. the whole `bertrepro.BertModel`, checked tensor for tensor against the
#    `transformers` BERT with the same weights, and checked to ignore padding.
#
# BERT is an {term}`encoder` only: it has no decoder and no "outputs (shifted right)".
# The figure of the original Transformer that many explanations reuse has both halves;
# BERT keeps the left one.

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
import torch.nn.functional as F
import transformers
from IPython.display import Markdown, display
from matplotlib.patches import FancyBboxPatch
from torch.testing import assert_close

from bertrepro import BertConfig, BertForPreTraining, BertModel
from bertrepro.attention import key_padding_mask
from bertrepro.checkpoints import from_hf
from bertrepro.model import activation
from bertrepro.report import record
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path

# The released uncased vocabulary (30,522 pieces) at every profile; the size of the rest
# grows.
config = run.pick(
    smoke=BertConfig.tiny(),  # L=2, H=128, A=2
    cpu=BertConfig(
        num_hidden_layers=4,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
    ),
    gpu=BertConfig.base(),  # L=12, H=768, A=12
)
print(
    f"L={config.num_hidden_layers} H={config.hidden_size} "
    f"A={config.num_attention_heads} "
    f"FFN={config.intermediate_size} V={config.vocab_size} act={config.hidden_act}"
)

# %% [markdown]
# ## The whole model at a glance
#
# The figure below is drawn from the modules this chapter checks, bottom to top: the
# three embeddings summed, $L$ identical post-LN encoder blocks, and the two
# pre-training heads of §3.1 on the final hidden states. The popular diagram of the
# translation Transformer has a second tower on the right, a decoder fed with the
# "outputs (shifted right)"; BERT has nothing of the kind. Every output vector is
# computed in one pass from the whole input, and the masked-LM head predicts the
# masked tokens at their own positions.


# %% tags=["hide-input"]
# The figure's code is hidden on the page: click to show it.
def box(ax, x, y, w, h, text, color):
    shape = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05")
    shape.set(facecolor=color, edgecolor="k")
    ax.add_patch(shape)
    ax.text(x, y, text, ha="center", va="center", fontsize=10)


def arrow(ax, x0, y0, x1, y1, **kw):
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", **kw))


EMB, ENC, NORM, HEAD = "#fde2b4", "#cfe0f5", "#e6e6e6", "#d5ecd4"
inputs = "[CLS]  my  dog  is  [MASK]  [SEP]  he  likes  play  ##ing  [SEP]"
embeddings = [(1.9, "token\nembedding"), (5, "segment\nembedding (A/B)"),
              (8.1, "position\nembedding")]
block = [(4.1, "multi-head self-attention", ENC), (5.3, "add & LayerNorm", NORM),
         (6.6, "feed-forward: H → 4H, GELU, → H", ENC), (7.8, "add & LayerNorm", NORM)]
heads = [(2.5, 4.4, "pooler on $h_{[CLS]}$: tanh\nNSP head: IsNext / NotNext"),
         (7.45, 4.6, "MLM head at [MASK] positions:\ndense, GELU, LayerNorm,\n"
                     "× (token embedding)$^\\top$ + bias")]

fig, ax = plt.subplots(figsize=(7.5, 8.6))
ax.set(xlim=(0, 10), ylim=(-0.4, 13.6))
ax.axis("off")
ax.text(5, -0.1, inputs, ha="center", fontsize=10, family="monospace")
for x, name in embeddings:
    box(ax, x, 1.1, 2.6, 0.9, name, EMB)
    arrow(ax, x, 0.3, x, 0.6)
    arrow(ax, x, 1.6, 5, 2.2)
box(ax, 5, 2.6, 5.5, 0.6, "sum, LayerNorm, dropout", EMB)
frame = FancyBboxPatch((1.2, 3.5), 7.6, 5.0, boxstyle="round,pad=0.1")
frame.set(facecolor="#eef3fb", edgecolor="#3b6ea5", linewidth=1.5)
ax.add_patch(frame)
L_ = config.num_hidden_layers
ax.text(9.05, 6.0, f"× L\n(L = 12 in\nBERT-base;\n{L_} here)", fontsize=10, va="center")
arrow(ax, 5, 2.9, 5, 3.75)
for (y0, _, _), (y1, _, _) in zip(block, block[1:]):
    arrow(ax, 5, y0 + 0.3, 5, y1 - 0.3)
for y, text, color in block:
    box(ax, 5, y, 5.5, 0.6, text, color)
for y_from, y_to in ((3.6, 5.3), (5.75, 7.8)):  # the residual connections
    arrow(ax, 2.25, y_from, 2.25, y_to, connectionstyle="bar,fraction=-0.25",
          color="#3b6ea5")
ax.text(1.35, 4.45, "residual", rotation=90, fontsize=10, color="#3b6ea5", va="center")
arrow(ax, 5, 8.1, 5, 9.1)
box(ax, 5, 9.4, 8.6, 0.6, "final hidden states  $h_1, \\dots, h_T$", ENC)
for x, w, text in heads:
    box(ax, x, 11.0, w, 1.2, text, HEAD)
    arrow(ax, x, 9.7, x, 10.4)
ax.text(5, 12.4, "no decoder, no outputs shifted right", ha="center", fontsize=11,
        style="italic")
ax.set_title("BERT (§3, Figures 1 and 2), as built by bertrepro")
plt.show()

# %% [markdown]
# ## The input
#
# Every input starts with `[CLS]`; a pair of segments is separated by `[SEP]` and ends
# with `[SEP]` (§3, Figure 2). We use Figure 2's own example pair, and a second, shorter
# single sentence, so that the batch needs padding. (Figure 2 shows "play ##ing"; the
# released uncased vocabulary happens to hold "playing" as one piece.)

# %%
tokenizer = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
# a pair, a single
batch = tokenizer.encode_batch(
    ["my dog is cute", "my dog is hairy"], ["he likes playing", None]
)
input_ids, token_type_ids, attention_mask = (
    batch["input_ids"],
    batch["token_type_ids"],
    batch["attention_mask"],
)
B, T = input_ids.shape
for row in range(B):
    print(tokenizer.convert_ids_to_tokens(input_ids[row]))
print(
    "input_ids\n",
    input_ids,
    "\ntoken_type_ids\n",
    token_type_ids,
    "\nattention_mask\n",
    attention_mask,
)
assert input_ids[0].tolist() == [
    101,
    2026,
    3899,
    2003,
    10140,
    102,
    2002,
    7777,
    2652,
    102,
]
assert token_type_ids[0].tolist() == [0] * 6 + [1] * 4

# %% [markdown]
# ## Input representation: three embeddings, summed
#
# "For a given token, its input representation is constructed by summing the
# corresponding token, segment, and position embeddings" (§3, Figure 2). The released
# code then applies LayerNorm and dropout. With $E^{tok} \in \mathbb{R}^{V\times H}$,
# $E^{seg} \in \mathbb{R}^{2\times H}$ and the learned
# $E^{pos} \in \mathbb{R}^{512\times H}$ (chapter 03), token $t$ of the input becomes
#
# $$
# \begin{aligned}
# e_t &= \mathrm{LayerNorm}\big(E^{tok}_{x_t} + E^{seg}_{s_t} + E^{pos}_{t}\big), \\
# \mathrm{LayerNorm}(z) &= \gamma \odot
#   \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \epsilon}} + \beta,
# \end{aligned}
# $$
#
# with $\mu$, $\sigma^2$ the mean and (biased) variance over the $H$ features and
# $\epsilon = 10^{-12}$. We compute it from the weight tables by hand and compare with
# `BertEmbeddings`. (The model is in `eval()` mode throughout, so dropout is the
# identity.)

# %%
model = BertModel(config).eval()
emb = model.embeddings
z = (
    emb.word_embeddings.weight[input_ids]
    + emb.token_type_embeddings.weight[token_type_ids]
    + emb.position_embeddings.weight[torch.arange(T)]
)  # (B, T, H)
mu = z.mean(-1, keepdim=True)
var = z.var(-1, unbiased=False, keepdim=True)
e_hand = (
    emb.LayerNorm.weight * (z - mu) / torch.sqrt(var + config.layer_norm_eps)
    + emb.LayerNorm.bias
)
with torch.no_grad():
    e_model = emb(input_ids, token_type_ids)
assert_close(e_hand, e_model)
print(f"max |by hand - BertEmbeddings| = {(e_hand - e_model).abs().max():.2e}")

# %% [markdown]
# ## One Transformer block, by hand
#
# Each of the $L$ blocks (Vaswani et al. §3.1) has two sub-layers, each wrapped in a
# residual connection followed by LayerNorm,
# "$\mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$":
#
# $$
# \begin{aligned}
# c &= \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_A)\,W^O + b^O, \\
# a &= \mathrm{LayerNorm}_1(x + c), \\
# y &= \mathrm{LayerNorm}_2\big(a + \mathrm{GELU}(a W_1 + b_1)\, W_2 + b_2\big),
# \end{aligned}
# $$
#
# with $W_1 \in \mathbb{R}^{H\times 4H}$ and $W_2 \in \mathbb{R}^{4H\times H}$ (the
# feed-forward size is $4H$: 3072 for BERT-base, 4096 for BERT-large; §3). This is
# **post-LN**: the normalisation comes *after* the residual addition. Many later models
# and some tutorials use pre-LN, $x + \mathrm{Sublayer}(\mathrm{LayerNorm}(x))$; it is a
# different function of the same weights, as the check below shows, and not what BERT
# does.
#
# We write the block with `F.linear` on the named weights of `model.encoder.layer[0]`.

# %%
layer = model.encoder.layer[0]
sa, so = layer.attention.self, layer.attention.output
nh, hs = config.num_attention_heads, config.head_size
keep = key_padding_mask(attention_mask)  # (B, 1, 1, T), True = real token


def attention_by_hand(x):
    q, k, v = (
        F.linear(x, lin.weight, lin.bias).view(B, T, nh, hs)
        for lin in (sa.query, sa.key, sa.value)
    )
    s = torch.einsum("btad,bsad->bats", q, k) / math.sqrt(hs)  # (B, nh, T, T)
    alpha = s.masked_fill(~keep, float("-inf")).softmax(-1)
    # (B, T, H): heads concatenated
    return torch.einsum("bats,bsad->btad", alpha, v).reshape(B, T, -1)


def layer_norm(x, ln):
    return F.layer_norm(x, (x.size(-1),), ln.weight, ln.bias, ln.eps)


def gelu_exact(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


x = e_model
a = layer_norm(
    x + F.linear(attention_by_hand(x), so.dense.weight, so.dense.bias), so.LayerNorm
)
ffn = F.linear(
    gelu_exact(
        F.linear(a, layer.intermediate.dense.weight, layer.intermediate.dense.bias)
    ),
    layer.output.dense.weight,
    layer.output.dense.bias,
)
y_hand = layer_norm(a + ffn, layer.output.LayerNorm)

with torch.no_grad():
    y_model, _ = layer(x, keep)
assert_close(y_hand, y_model)
print(f"max |by hand (post-LN) - BertLayer| = {(y_hand - y_model).abs().max():.2e}")

# The pre-LN variant, with the same weights, is a different function:
a_pre = x + F.linear(
    attention_by_hand(layer_norm(x, so.LayerNorm)), so.dense.weight, so.dense.bias
)
h_pre = layer_norm(a_pre, layer.output.LayerNorm)
y_pre = a_pre + F.linear(
    gelu_exact(
        F.linear(h_pre, layer.intermediate.dense.weight, layer.intermediate.dense.bias)
    ),
    layer.output.dense.weight,
    layer.output.dense.bias,
)
print(f"max |pre-LN - BertLayer| = {(y_pre - y_model).abs().max():.2e}  (not BERT)")
assert not torch.allclose(y_pre, y_model, atol=1e-3)

# %% [markdown]
# ## GELU: exact or tanh?
#
# BERT uses "a gelu activation (Hendrycks and Gimpel, 2016) rather than the standard
# relu, following OpenAI GPT" (Appendix A.2). GELU is $x\,\Phi(x)$, with $\Phi$ the
# standard normal CDF:
#
# $$
# \mathrm{GELU}(x) = \tfrac12 x\big(1 + \mathrm{erf}(x/\sqrt2)\big) \approx
# \tfrac12 x\Big(1 + \tanh\big(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\big)\Big).
# $$
#
# The released `bert_config.json` says `"gelu"`, which in the original TensorFlow code
# meant the tanh approximation. In the `transformers` library, `hidden_act="gelu"` is
# the **exact** erf form (the tanh form is `"gelu_new"`). `bertrepro` follows
# `transformers`, so that the two agree to floating-point precision. The two forms
# differ by less than $10^{-3}$ everywhere:

# %%
xs = torch.linspace(-6, 6, 2001)
gelu_tanh = (
    0.5 * xs * (1 + torch.tanh(math.sqrt(2 / math.pi) * (xs + 0.044715 * xs**3)))
)
assert_close(activation("gelu")(xs), gelu_exact(xs))
assert_close(activation("gelu_new")(xs), gelu_tanh)
gap = (gelu_exact(xs) - gelu_tanh).abs()
assert gap.max() < 1e-3, f"the two GELUs differ by {gap.max():.2e}"
print(
    "bertrepro 'gelu' = erf form, 'gelu_new' = tanh form; max |erf - tanh| = "
    f"{gap.max():.2e} "
    f"at x = {xs[gap.argmax()]:.2f}"
)

fig, ax = plt.subplots(1, 2, figsize=(7.5, 3.2))
ax[0].plot(xs, gelu_exact(xs), label="GELU (erf)")
ax[0].plot(xs, torch.relu(xs), "--", lw=1, label="ReLU")
ax[0].set(xlabel="x", title="GELU vs ReLU")
ax[0].legend()
ax[1].plot(xs, gelu_exact(xs) - gelu_tanh)
ax[1].set(xlabel="x", ylabel="erf form − tanh form", title="difference < 1e-3")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The pooler
#
# For classification, BERT reads "the final hidden vector of the special [CLS] token",
# written $C$ (§3, Figure 1; §4.1). In the released code $C$ passes through one more
# dense layer with a tanh, the pooler, trained by the next-sentence task:
# $C = \tanh(W_p\,h_{[CLS]} + b_p)$.

# %%
with torch.no_grad():
    out = model(input_ids, token_type_ids, attention_mask)
pool_hand = torch.tanh(
    F.linear(
        out.last_hidden_state[:, 0], model.pooler.dense.weight, model.pooler.dense.bias
    )
)
assert_close(pool_hand, out.pooler_output)
print(
    "max |tanh(W h_CLS + b) - pooler_output| = "
    f"{(pool_hand - out.pooler_output).abs().max():.2e}"
)

# %% [markdown]
# ## The whole model against `transformers`
#
# Now the strongest check: build a `transformers` `BertModel` from the same
# configuration (`config.to_hf()`), with *its own* random initialisation and the
# explicit ("eager") attention, copy its weights into a `bertrepro.BertModel` with
# `bertrepro.checkpoints.from_hf` (which checks every key and shape), and compare every
# output on the padded batch: the hidden states of every layer's output, the attention
# maps and the pooled vector.

# %%
hf = transformers.BertModel(config.to_hf()).eval()
hf.set_attn_implementation("eager")
ours = from_hf(hf)
with torch.no_grad():
    ref = hf(
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        attention_mask=attention_mask,
        output_attentions=True,
    )
    got = ours(input_ids, token_type_ids, attention_mask, output_attentions=True)

assert_close(got.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
assert_close(got.pooler_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
for mine, theirs in zip(got.attentions, ref.attentions, strict=True):
    assert_close(mine, theirs, atol=1e-6, rtol=1e-5)
parity = max(
    (got.last_hidden_state - ref.last_hidden_state).abs().max().item(),
    (got.pooler_output - ref.pooler_output).abs().max().item(),
)
print(
    f"max |bertrepro - transformers| = {parity:.2e} (hidden states and pooled output, "
    "padded batch)"
)
_ = record(
    "encoder.transformers_parity.max_abs_diff",
    parity,
    kind="check",
    expected=0.0,
    tolerance=1e-5,
    note="BertModel vs transformers BertModel, same weights, padding; "
    f"L={config.num_hidden_layers} H={config.hidden_size}",
)

# %% [markdown]
# The fast path (PyTorch's fused attention, used when no attention maps are requested)
# gives the same numbers:

# %%
with torch.no_grad():
    fast = ours(input_ids, token_type_ids, attention_mask)
assert_close(fast.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
print(
    "max |bertrepro (SDPA path) - transformers| = "
    f"{(fast.last_hidden_state - ref.last_hidden_state).abs().max():.2e}"
)

# %% [markdown]
# ## Padding changes nothing
#
# Padding is a batching device, not part of the input: appending any number of `[PAD]`
# tokens (with attention mask 0) must leave every real token's output, and the pooled
# vector, unchanged. We pad the batch with 7 more positions.

# %%
extra = 7


def pad(t, value):  # (B, T) -> (B, T + extra)
    return F.pad(t, (0, extra), value=value)


with torch.no_grad():
    padded = ours(
        pad(input_ids, config.pad_token_id),
        pad(token_type_ids, 0),
        pad(attention_mask, 0),
    )
real = attention_mask.bool()
assert_close(padded.last_hidden_state[:, :T][real], fast.last_hidden_state[real])
assert_close(padded.pooler_output, fast.pooler_output)
pad_diff = (
    (padded.last_hidden_state[:, :T][real] - fast.last_hidden_state[real])
    .abs()
    .max()
    .item()
)
print(
    f"max change of a real token's output after appending {extra} [PAD]: {pad_diff:.2e}"
)
_ = record(
    "encoder.padding_invariance.max_abs_diff",
    pad_diff,
    kind="check",
    expected=0.0,
    tolerance=1e-5,
    note=f"real-token outputs before/after appending {extra} masked [PAD] tokens",
)

# %% [markdown]
# The hidden states a single layer sees at the padded positions are not zero (a `[PAD]`
# query still attends to the real tokens); nothing downstream reads them, and the
# heatmap below shows the real tokens' outputs identical with and without the extra
# padding.

# %%
fig, ax = plt.subplots(1, 2, figsize=(7.5, 3.2), sharey=True)
ax[0].imshow(
    fast.last_hidden_state[1, :, :64].numpy(),
    aspect="auto",
    cmap="RdBu_r",
    vmin=-3,
    vmax=3,
)
ax[0].set(
    title=f"sequence 2, T = {T} (first 64 features)",
    xlabel="feature",
    ylabel="position",
)
ax[1].imshow(
    padded.last_hidden_state[1, :, :64].numpy(),
    aspect="auto",
    cmap="RdBu_r",
    vmin=-3,
    vmax=3,
)
ax[1].set(title=f"same sequence, {extra} more [PAD]", xlabel="feature")
for a_ in ax:
    a_.axhline(int(attention_mask[1].sum()) - 0.5, color="k", lw=1)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## No decoder
#
# The model is embeddings → $L$ encoder blocks → pooler, and nothing else. Every output
# position is computed from the whole input at once, left and right context alike
# ("bidirectional", §3). There are no "outputs (shifted right)": that is the decoder of
# the translation Transformer. (`BertForPreTraining` has a module called
# `cls.predictions.decoder`, but it is only the linear projection of the masked-LM head
# onto the vocabulary, tied to the token embeddings; the next section derives it.)

# %%
print([name for name, _ in model.named_children()])
assert [name for name, _ in model.named_children()] == [
    "embeddings",
    "encoder",
    "pooler",
]
assert not any("decoder" in name for name, _ in model.named_modules())

# %% [markdown]
# ## The masked-LM head
#
# Pre-training puts two heads on the encoder (§3.1). The NSP head is one linear layer on
# the pooled $C$ (chapter 08). The masked-LM head, `cls.predictions` in the released
# checkpoints, turns the final hidden vector $h$ of a masked position into a
# distribution over the $V$ vocabulary entries in four steps: a dense layer $H \to H$,
# a GELU, a LayerNorm, and a projection onto the vocabulary whose matrix is the token
# embedding table itself, transposed (the input and output embeddings are *tied*),
# plus one bias per vocabulary entry:
#
# $$
# \begin{aligned}
# u &= \mathrm{LayerNorm}\big(\mathrm{GELU}(h W_t + b_t)\big), \\
# \mathrm{logits} &= u \, (E^{tok})^\top + b_V \in \mathbb{R}^{V}, \qquad
# p(x = v \mid \tilde{x}) = \mathrm{softmax}(\mathrm{logits})_v .
# \end{aligned}
# $$
#
# Tying saves $V \cdot H$ parameters (23.4M for BERT-base) and lets the output layer
# reuse what the input layer learned about each piece. We derive the head in plain
# torch from `bertrepro.BertForPreTraining`'s weights, and compare with `bertrepro` and
# with `transformers`' `BertForPreTraining` head, whose weights (all of them random,
# including the LayerNorm and the bias, so that no parameter hides behind an initial 1
# or 0) are copied into ours by `bertrepro.checkpoints.from_hf`.

# %%
torch.manual_seed(run.seed)
hf_pt = transformers.BertForPreTraining(config.to_hf()).eval()
with torch.no_grad():
    for name, p in hf_pt.cls.predictions.named_parameters():
        p.add_(0.1 * torch.randn_like(p))  # no parameter left at its 0 or 1
pt = from_hf(hf_pt)  # a bertrepro BertForPreTraining, every key and shape checked
head = pt.cls.predictions
E_tok = pt.bert.embeddings.word_embeddings.weight  # (V, H)
assert head.decoder.weight is E_tok  # tied: one tensor, not a copy

with torch.no_grad():
    h = pt.bert(
        input_ids, token_type_ids, attention_mask
    ).last_hidden_state  # (B, T, H)
    t = head.transform
    u = F.layer_norm(
        gelu_exact(F.linear(h, t.dense.weight, t.dense.bias)),
        (config.hidden_size,),
        t.LayerNorm.weight,
        t.LayerNorm.bias,
        t.LayerNorm.eps,
    )
    logits_hand = u @ E_tok.T + head.bias  # (B, T, V)
    logits_ours = head(h)
    logits_hf = hf_pt.cls.predictions(h)
assert_close(logits_hand, logits_ours)
assert_close(logits_hf, logits_ours, atol=1e-5, rtol=1e-5)
mlm_head_diff = (logits_hf - logits_ours).abs().max().item()
print(
    f"logits {tuple(logits_ours.shape)}: max |by hand - bertrepro| = "
    f"{(logits_hand - logits_ours).abs().max():.1e}, max |transformers - bertrepro| "
    f"= {mlm_head_diff:.1e}"
)
n_tied = E_tok.numel()
n_head = sum(p.numel() for p in head.parameters())  # the tied matrix counted once
print(
    f"head parameters besides the tied {tuple(E_tok.shape)} matrix: "
    f"{n_head - n_tied:,} (dense H x H + H, LayerNorm 2H, bias V)"
)
assert n_head - n_tied == config.hidden_size**2 + 3 * config.hidden_size + (
    config.vocab_size
)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* Input = LayerNorm(token + segment + learned position embedding), equal to the hand
  computation to {(e_hand - e_model).abs().max():.1e}.
* Each block is post-LN: LayerNorm(x + attention), then LayerNorm(a + GELU-FFN), equal
  to `BertLayer` to {(y_hand - y_model).abs().max():.1e}; pre-LN is a different function
  of the same weights.
* `"gelu"` is the exact erf GELU; the original TF code's tanh form differs from it by at
  most {gap.max():.1e} (asserted < 1e-3).
* `bertrepro.BertModel` equals `transformers`' `BertModel` with the same weights to
  {parity:.1e} on a padded batch (L = {config.num_hidden_layers},
  H = {config.hidden_size}), and appending {extra} `[PAD]` changes a real token's output
  by {pad_diff:.1e}.
* There is no decoder. The masked-LM head is dense, GELU, LayerNorm and the tied token
  embedding matrix plus a bias; it equals `transformers`' `cls.predictions` to
  {mlm_head_diff:.1e}.
"""))

# %% [markdown]
# ## Exercises
#
# 1. After a post-LN block, what are the mean and variance of each token's output
#    vector over its $H$ features, with the LayerNorm at its initial $\gamma = 1$,
#    $\beta = 0$? And after the pre-LN variant?
# 2. GELU, unlike ReLU, dips below zero. Where is its minimum, and how deep?
# 3. How many parameters would BERT-base's masked-LM head have if its output matrix
#    were not tied to the token embeddings?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: post-LN ends on a LayerNorm, so every token comes out standardized.
assert torch.all(layer.output.LayerNorm.weight == 1)
assert torch.all(layer.output.LayerNorm.bias == 0)
mean, var_ = y_model.mean(-1), y_model.var(-1, unbiased=False)
assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
assert_close(var_, torch.ones_like(var_), atol=1e-4, rtol=0)
pre_var = y_pre.var(-1, unbiased=False)
print(
    f"post-LN: mean within {mean.abs().max():.1e} of 0, variance within "
    f"{(var_ - 1).abs().max():.1e} of 1; pre-LN: variance "
    f"{pre_var.min():.2f}..{pre_var.max():.2f}"
)

# %% tags=["hide-cell"]
# Exercise 2: the minimum of x * Phi(x), on the grid of the GELU plot.
gelu_vals = gelu_exact(xs)
x_min, y_min = xs[gelu_vals.argmin()].item(), gelu_vals.min().item()
assert abs(x_min + 0.75) < 0.01 and abs(y_min + 0.17) < 0.001
print(f"minimum GELU({x_min:.3f}) = {y_min:.4f}")

# %% tags=["hide-cell"]
# Exercise 3: an untied decoder would add a second V x H matrix.
base_cfg = BertConfig.base()
with torch.device("meta"):
    base_pt = BertForPreTraining(base_cfg)
tied = sum(p.numel() for p in base_pt.parameters())
untied = tied + base_cfg.vocab_size * base_cfg.hidden_size
assert tied == 110_106_428 and untied - tied == 23_440_896
print(f"tied: {tied:,} parameters; untied: {untied:,} (+{untied / tied - 1:.0%})")
