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
from bertrepro.profiles import setup

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import transformers
from torch.testing import assert_close

from bertrepro import BertConfig, BertModel
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
# e_t = \mathrm{LayerNorm}\big(E^{tok}_{x_t} + E^{seg}_{s_t} + E^{pos}_{t}\big), \qquad
# \mathrm{LayerNorm}(z) = \gamma \odot \frac{z - \mu(z)}{\sqrt{\sigma^2(z) + \epsilon}} + \beta,
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
# a &= \mathrm{LayerNorm}_1\big(x + \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_A)\,W^O + b^O\big), \\
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
print(
    "bertrepro 'gelu' = erf form, 'gelu_new' = tanh form; max |erf - tanh| = "
    f"{gap.max():.2e} "
    f"at x = {xs[gap.argmax()]:.2f}"
)

fig, ax = plt.subplots(1, 2, figsize=(11, 3.4))
ax[0].plot(xs, gelu_exact(xs), label="GELU (erf)")
ax[0].plot(xs, torch.relu(xs), "--", lw=1, label="ReLU")
ax[0].set(xlabel="x", title="GELU vs ReLU")
ax[0].legend()
ax[1].plot(xs, gelu_exact(xs) - gelu_tanh)
ax[1].set(
    xlabel="x", ylabel="erf form − tanh form", title="the two GELUs differ by < 1e-3"
)
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
    paper=0.0,
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
    paper=0.0,
    tolerance=1e-5,
    note=f"real-token outputs before/after appending {extra} masked [PAD] tokens",
)

# %% [markdown]
# The hidden states a single layer sees at the padded positions are not zero (a `[PAD]`
# query still attends to the real tokens); nothing downstream reads them, and the
# heatmap below shows the real tokens' outputs identical with and without the extra
# padding.

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
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
# onto the vocabulary, tied to the token embeddings; chapter 06.)

# %%
print([name for name, _ in model.named_children()])
assert [name for name, _ in model.named_children()] == [
    "embeddings",
    "encoder",
    "pooler",
]
assert not any("decoder" in name for name, _ in model.named_modules())

# %% [markdown]
# ## Summary
#
# * Input = LayerNorm(token + segment + learned position embedding), checked by hand.
# * Each block is post-LN: LayerNorm(x + attention), then LayerNorm(a + GELU-FFN);
#   pre-LN is a different function.
# * `"gelu"` is the exact erf GELU; the original TF code's tanh form differs by < 1e-3.
# * `bertrepro.BertModel` equals `transformers`' `BertModel` with the same weights, with
#   padding, and its outputs do not change when more padding is added.
