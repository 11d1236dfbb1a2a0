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
# # 07 · The masked language model
#
# BERT's first pre-training task (§3.1, *Task #1: Masked LM*; Appendix A.1):
#
# > "we simply mask some percentage of the input tokens at random, and then predict
# > those masked tokens ... In all of our experiments, we mask 15% of all WordPiece
# > tokens in each sequence at random."
#
# This chapter explains why BERT needs masking at all, derives the selection and
# replacement rule of the original `create_pretraining_data.py` by hand, checks
# `bertrepro.masking.mask_tokens` against that derivation, measures its statistics on
# more than a million tokens of the corpus with confidence intervals, shows whole-word
# masking, and times `mask_tokens` against `transformers`' data collator.

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
import random

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from torch.testing import assert_close

from bertrepro import bench
from bertrepro.data import load_corpus
from bertrepro.masking import IGNORE_INDEX, mask_tokens, num_to_predict
from bertrepro.nsp import create_pretraining_examples
from bertrepro.report import record
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path

# bert-base-uncased, 30,522 pieces
tok = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
V, MASK, CLS, SEP, PAD = (
    len(tok),
    tok.mask_token_id,
    tok.cls_token_id,
    tok.sep_token_id,
    tok.pad_token_id,
)
# the original defaults for the first 90 % of pre-training
max_seq_length, max_predictions = 128, 20
max_documents = run.pick(smoke=400, cpu=None, gpu=None)
# tokens for the statistics
target_tokens = run.pick(smoke=300_000, cpu=2_000_000, gpu=10_000_000)

# %% [markdown]
# ## Why mask?
#
# A left-to-right language model predicts token $t$ from tokens $1..t-1$; a
# right-to-left one from $t+1..n$. BERT wants every layer to condition on **both** sides
# at once. But in a bidirectional Transformer every position attends to every position,
# its own included, so "predict each token from the sequence" is trivial: after one
# layer the model can copy the input token to the output. In the paper's words,
# "bidirectional conditioning would allow each word to indirectly 'see itself', and the
# model could trivially predict the target word in a multi-layered context" (§3.1).
#
# The masked LM (the *Cloze* task, Taylor 1953) hides the tokens to predict: a random
# 15 % of positions are chosen, corrupted, and the loss counts only those positions,
#
# $$
# \mathcal{L}_{\text{MLM}} = -\frac{1}{|\mathcal{M}|}\sum_{i \in \mathcal{M}}
#   \log p_\theta\big(x_i \mid \tilde{x}\big),
# $$
#
# where $\mathcal{M}$ is the set of chosen positions and $\tilde{x}$ the corrupted
# sequence.
#
# **Why 80 / 10 / 10.** If every chosen token became `[MASK]`, pre-training would create
# "a mismatch between pre-training and fine-tuning, since the [MASK] token does not
# appear during fine-tuning" (§3.1). So a chosen token becomes `[MASK]` 80 % of the
# time, a random token 10 % of the time and stays unchanged 10 % of the time (Appendix
# A.1):
#
# * the **random** 10 % means the model can never trust the token it sees at a position,
#   so it must keep a contextual representation of *every* input token, not only of the
#   `[MASK]`s;
# * the **unchanged** 10 % biases that representation towards the word actually
#   observed, which is the situation at fine-tuning time;
# * random replacement touches only 1.5 % of all tokens (10 % of 15 %), which "does not
#   seem to harm the model's language understanding capability" (Appendix A.1).
#
# ## The rule of the original code, by hand on one sequence
#
# The paper's "15 %" is implemented in `create_masked_lm_predictions` of
# `create_pretraining_data.py`. It does not flip a coin per token. With $n$ the number
# of tokens of the sequence (its `[CLS]` and `[SEP]`s included) it chooses **exactly**
#
# $$
# \begin{aligned}
# k &= \min\big(\text{max\_predictions\_per\_seq},\ k_0\big), \\
# k_0 &= \max\big(1,\ \operatorname{round}(0.15\, n)\big)
# \end{aligned}
# $$
#
# positions uniformly at random among the tokens that are not `[CLS]` or `[SEP]`, with
# `max_predictions_per_seq = 20` at length 128. Python 2's `round` sent halves away from
# zero; Python 3's sends them to the even neighbour, so the rule is
# $\lfloor 0.15 n + \tfrac12 \rfloor$:

# %%
py2_round = lambda x: math.floor(x + 0.5)  # noqa: E731  (the original ran on Python 2)
for n in (10, 30, 70, 128):
    print(
        f"n={n:3}: 0.15 n = {0.15 * n:5.2f}   Python 3 round -> {round(0.15 * n):2}   "
        "Python 2 round -> "
        f"{py2_round(0.15 * n):2}"
    )
ns = torch.arange(1, 513)
by_hand = torch.tensor(
    [min(max_predictions, max(1, py2_round(n * 0.15))) for n in range(1, 513)]
)
assert_close(num_to_predict(ns, 0.15, max_predictions), by_hand)
print("num_to_predict == min(20, max(1, round_py2(0.15 n))) for n = 1..512")

# %% [markdown]
# One sentence pair of the corpus, masked by hand. We draw one uniform key per token and
# choose the $k$ candidate positions with the smallest keys (a uniformly random
# $k$-subset); each chosen position then draws $u \sim U(0,1)$: `[MASK]` if $u < 0.8$, a
# random vocabulary id if $0.8 \le u < 0.9$, unchanged otherwise. The labels hold the
# original token at chosen positions and `IGNORE_INDEX` (−100) everywhere else. (The
# original shuffled the candidate list and took its first $k$; any uniformly random
# $k$-subset has the same distribution.)

# %%
corpus = load_corpus("wiki-vital", max_documents=max_documents)
docs = tok.encode_corpus(corpus["train"]["sentences"])
examples = create_pretraining_examples(
    docs, max_seq_length, random.Random(12345), tokenizer=tok
)
input_ids, special = examples["input_ids"], examples["special_tokens_mask"]
print(
    f"{len(docs):,} train articles -> {input_ids.shape[0]:,} sequences of length "
    f"{max_seq_length}, "
    f"{int(examples['attention_mask'].sum()):,} real tokens"
)

g = torch.Generator().manual_seed(run.seed)
x = input_ids[0]
n = int((x != PAD).sum())
cand = [t for t in range(n) if int(x[t]) not in (CLS, SEP)]
k = min(max_predictions, max(1, py2_round(0.15 * n)), len(cand))
keys = torch.rand(n, generator=g)
chosen = sorted(cand, key=lambda t: float(keys[t]))[:k]  # the k smallest keys
# one draw per chosen slot
u, rnd = torch.rand(k, generator=g), torch.randint(0, V, (k,), generator=g)
corrupted = x[:n].clone()
for j, t in enumerate(chosen):
    corrupted[t] = MASK if u[j] < 0.8 else rnd[j] if u[j] < 0.9 else x[t]
print(
    f"n = {n} tokens, {len(cand)} candidates, k = round(0.15 x {n}) = {k} chosen: "
    f"positions {sorted(chosen)}"
)
print("original :", " ".join(tok.convert_ids_to_tokens(x[:n])))
print("corrupted:", " ".join(tok.convert_ids_to_tokens(corrupted)))
for j, t in sorted(enumerate(chosen), key=lambda jt: jt[1]):
    kind = "[MASK]" if u[j] < 0.8 else "random" if u[j] < 0.9 else "unchanged"
    print(
        f"  position {t:3}: {tok.convert_ids_to_tokens([int(x[t])])[0]:>12} -> "
        f"{tok.convert_ids_to_tokens([int(corrupted[t])])[0]:<12} ({kind}, u = "
        f"{u[j]:.3f})"
    )

# %% [markdown]
# `mask_tokens` does the same for a whole batch at once: `topk` over the keys instead of
# a sort per row, `torch.where` and `scatter` instead of the loop. It draws its random
# numbers in the same order: the $(B, T)$ keys, then $u$ and the random ids for
# $K = k(T)$ slots per row (slot $j$ belongs to the $j$-th smallest key; a row uses its
# first $k(n)$ slots). So a loop over rows with the same generator must give identical
# tensors:


# %%
def mask_by_hand(ids, special_mask, generator):
    B, T = ids.shape
    K = min(T, max_predictions, max(1, py2_round(0.15 * T)))  # slots: k(n) <= k(T)
    keys = torch.rand(B, T, generator=generator)
    u = torch.rand(B, K, generator=generator)
    rnd = torch.randint(0, V, (B, K), generator=generator)
    out, labels = ids.clone(), torch.full_like(ids, IGNORE_INDEX)
    for b in range(B):
        n = int((ids[b] != PAD).sum())
        cand = [t for t in range(T) if not special_mask[b, t]]
        k = min(max_predictions, max(1, py2_round(0.15 * n)), len(cand))
        for j, t in enumerate(sorted(cand, key=lambda t: float(keys[b, t]))[:k]):
            labels[b, t] = ids[b, t]
            out[b, t] = (
                MASK if u[b, j] < 0.8 else rnd[b, j] if u[b, j] < 0.9 else ids[b, t]
            )
    return out, labels


batch, batch_special = input_ids[:64], special[:64]
hand = mask_by_hand(batch, batch_special, torch.Generator().manual_seed(run.seed + 1))
ours = mask_tokens(
    batch,
    batch_special,
    vocab_size=V,
    mask_token_id=MASK,
    pad_token_id=PAD,
    max_predictions=max_predictions,
    generator=torch.Generator().manual_seed(run.seed + 1),
)
assert_close(hand[0], ours[0])
assert_close(hand[1], ours[1])
print(
    f"mask_tokens == the loop on a batch of {batch.shape[0]} corpus sequences "
    f"({int((ours[1] != IGNORE_INDEX).sum())} chosen positions)"
)
for b in range(3):
    m = int(examples["attention_mask"][b].sum())
    print("\n", " ".join(tok.convert_ids_to_tokens(ours[0][b, :m])))

# %% [markdown]
# ## The statistics, measured
#
# We now mask the corpus's sequences over and over (the original did the same with
# `dupe_factor = 10`: each copy of the data gets fresh masks) until at least the target
# number of tokens has passed, and count. If the rule is right:
#
# * every sequence gets exactly $k(n)$ predictions, and `[CLS]`, `[SEP]` and `[PAD]` are
#   never chosen;
# * the chosen fraction $\sum k / \sum n$ is 15 % up to rounding: each sequence's $k$ is
#   within ½ of $0.15\,n$, so
#   $|\sum k/\sum n - 0.15| \le \tfrac12 \cdot \#\text{sequences} / \sum n$;
# * each chosen position is, independently, `[MASK]` / random / unchanged with
#   probabilities 0.8 / 0.1 / 0.1, so each measured share $\hat p$ over $N$ chosen
#   positions lies within a few $\sigma = \sqrt{p(1-p)/N}$ of $p$. We use $5\sigma$
#   bands. (A random draw can hit the original token or `[MASK]` itself, with
#   probability $1/V$ each; that shifts the shares by $0.1/V \approx 3\cdot 10^{-6}$,
#   far inside the bands.)

# %%
attention = examples["attention_mask"].bool()
n_real = int(attention.sum())
passes = math.ceil(target_tokens / n_real)
gen = run.generator(offset=7)
tally = dict(
    tokens=0,
    sequences=0,
    candidates=0,
    chosen=0,
    mask=0,
    random=0,
    same=0,
    special_chosen=0,
)
per_seq_n, per_seq_k = [], []
expected_k = num_to_predict(attention.sum(1), 0.15, max_predictions)
for _ in range(passes):
    masked, labels = mask_tokens(
        input_ids,
        special,
        vocab_size=V,
        mask_token_id=MASK,
        pad_token_id=PAD,
        max_predictions=max_predictions,
        generator=gen,
    )
    chosen = labels != IGNORE_INDEX  # (B, T)
    assert torch.equal(
        chosen.sum(1), expected_k
    ), "a sequence got a number of predictions other than k(n)"
    assert torch.equal(
        masked[~chosen], input_ids[~chosen]
    ), "an unchosen position was changed"
    assert torch.equal(labels[chosen], input_ids[chosen])
    tally["tokens"] += n_real
    tally["sequences"] += input_ids.shape[0]
    tally["candidates"] += int((attention & ~special).sum())
    tally["chosen"] += int(chosen.sum())
    tally["special_chosen"] += int((chosen & special).sum())
    tally["mask"] += int((chosen & (masked == MASK)).sum())
    tally["same"] += int((chosen & (masked == input_ids)).sum())
    tally["random"] += int((chosen & (masked != MASK) & (masked != input_ids)).sum())
assert tally["mask"] + tally["same"] + tally["random"] == tally["chosen"]
assert tally["special_chosen"] == 0
N = tally["chosen"]
fraction = N / tally["tokens"]
rounding_bound = 0.5 * tally["sequences"] / tally["tokens"]
print(
    f"{passes} passes: {tally['tokens']:,} tokens in {tally['sequences']:,} sequences; "
    f"{N:,} chosen "
    f"({tally['special_chosen']} of them special tokens)"
)
print(
    f"chosen / tokens = {fraction:.4%} (paper 15 %; rounding bound "
    f"±{rounding_bound:.3%})"
)
print(
    f"chosen / candidates = {N / tally['candidates']:.4%}  (candidates exclude [CLS] "
    "and [SEP])"
)
shares = {}
for name, p in (("mask", 0.8), ("random", 0.1), ("same", 0.1)):
    hat = tally[name] / N
    sigma = math.sqrt(p * (1 - p) / N)
    shares[name] = (hat, p, sigma)
    assert abs(hat - p) <= 5 * sigma
display(
    Markdown(
        "| replacement | measured | paper | 5σ | z |\n|---|---|---|---|---|\n"
        + "\n".join(
            f"| {name} | {hat:.3%} | {p:.0%} | {5 * sigma:.3%} | "
            f"{(hat - p) / sigma:+.2f} |"
            for name, (hat, p, sigma) in shares.items()
        )
    )
)

record(
    "mlm.chosen_fraction",
    fraction,
    kind="claim",
    paper=0.15,
    tolerance=rounding_bound,
    note=f"chosen / non-padding tokens over {tally['tokens']:,} tokens; tolerance = "
    "the rounding bound",
)
record(
    "mlm.replace.mask_share",
    shares["mask"][0],
    kind="claim",
    paper=0.8,
    tolerance=5 * shares["mask"][2],
    note=f"of {N:,} chosen positions; tolerance 5 sigma (binomial)",
)
record(
    "mlm.replace.random_share",
    shares["random"][0],
    kind="claim",
    paper=0.1,
    tolerance=5 * shares["random"][2],
    note=f"of {N:,} chosen positions; tolerance 5 sigma (binomial)",
)
record(
    "mlm.replace.unchanged_share",
    shares["same"][0],
    kind="claim",
    paper=0.1,
    tolerance=5 * shares["same"][2],
    note=f"of {N:,} chosen positions; tolerance 5 sigma (binomial)",
)
_ = record(
    "mlm.special_tokens_chosen",
    tally["special_chosen"],
    kind="check",
    expected=0,
    tolerance=0,
    note="[CLS]/[SEP]/[PAD] positions ever chosen",
)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.6))
names = ["mask", "random", "same"]
labels_pp = [f"{s}\n{shares[s][0]:.2%}" for s in names]
ax1.errorbar(
    labels_pp,
    [100 * (shares[s][0] - shares[s][1]) for s in names],
    yerr=[500 * shares[s][2] for s in names],
    fmt="o",
    capsize=8,
    label="measured - paper, ± 5σ",
)
ax1.axhline(0, color="black", lw=1)
ax1.set_ylabel("percentage points")
ax1.set_title(f"80/10/10, {N:,} positions")
ax1.legend()
lengths = attention.sum(1)
ks = expected_k
ax2.scatter(lengths, ks, s=6, alpha=0.3, label="sequences (k is exact)")
grid = torch.arange(1, max_seq_length + 1)
ax2.plot(grid, 0.15 * grid, "k--", lw=1, label="0.15 n")
ax2.plot(
    grid,
    num_to_predict(grid, 0.15, max_predictions),
    color="tab:red",
    lw=1,
    label="min(20, round(0.15 n))",
)
ax2.set_xlabel("tokens n in the sequence")
ax2.set_ylabel("positions chosen k")
ax2.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The popular illustration: 我 [MASK] 天 去 [MASK] 试
#
# Many explanations of BERT show the Chinese sentence "我今天去面试" ("I am going to a job
# interview today") masked as `我 [MASK] 天 去 [MASK] 试`. Two remarks, both computed below:
#
# * **How many masks?** Alone, `[CLS] 我 今 天 去 面 试 [SEP]` has $n = 8$ tokens, and the
#   original rule chooses $\operatorname{round}(1.2) = 1$ position, not 2. Two masks
#   arise when the sentence is segment A of a pair:
#   `[CLS] 我 今 天 去 面 试 [SEP] 准 备 好 了 简 历 [SEP]` has $n = 15$, so
#   $k = \operatorname{round}(2.25) = 2$, and both chosen positions can fall in A.
# * **Which tokens?** With the English uncased vocabulary (chapter 06), 今, 去 and 试 are
#   `[UNK]`, and so is every character of segment B. The model still sees one position
#   per character, and we display each position by its character.
#
# We mask 4,096 copies of the pair and pick the first copy whose two chosen positions
# are 今 and 面, both turned into `[MASK]`. (The chance of that is
# $\binom{12}{2}^{-1} \cdot 0.8^2 = 1/103$ per copy.)

# %%
zh = tok.encode("我 今天 去 面试", "准备 好 了 简历")
zh_ids = torch.tensor(zh["input_ids"])
chars = ["[CLS]", *"我今天去面试", "[SEP]", *"准备好了简历", "[SEP]"]
zh_tokens = tok.convert_ids_to_tokens(zh_ids)
unk_chars = [c for c, t in zip(chars, zh_tokens) if t == "[UNK]"]
assert unk_chars == ["今", "去", "试", *"准备好了简历"], unk_chars
n_zh = len(zh_ids)
print("tokens:", tok.convert_ids_to_tokens(zh_ids))
print(
    f"n = {n_zh}: k = {int(num_to_predict(torch.tensor([n_zh]))[0])};  "
    f"the sentence alone: n = 8, k = {int(num_to_predict(torch.tensor([8]))[0])}"
)
copies = 4096
zh_batch = zh_ids.repeat(copies, 1)  # (copies, 15)
zh_masked, zh_labels = mask_tokens(
    zh_batch,
    tok.special_tokens_mask(zh_batch),
    vocab_size=V,
    mask_token_id=MASK,
    pad_token_id=PAD,
    generator=run.generator(offset=3),
)
want = torch.zeros(n_zh, dtype=torch.bool)
want[[2, 5]] = True  # 今 and 面
hits = (
    ((zh_labels != IGNORE_INDEX) == want).all(1)
    & (zh_masked[:, 2] == MASK)
    & (zh_masked[:, 5] == MASK)
)
row = int(hits.nonzero()[0])
shown = [
    (
        "[MASK]"
        if int(zh_masked[row, t]) == MASK
        else (
            chars[t]
            if zh_masked[row, t] == zh_ids[t]
            else tok.convert_ids_to_tokens([int(zh_masked[row, t])])[0]
        )
    )
    for t in range(n_zh)
]
print(f"copy {row}: ids    ", tok.convert_ids_to_tokens(zh_masked[row]))
print(f"copy {row}: by char", " ".join(shown))
print(
    "labels:",
    [
        tok.convert_ids_to_tokens([int(v)])[0] if v != IGNORE_INDEX else "-"
        for v in zh_labels[row]
    ],
)
print(
    f"{int(hits.sum())} of {copies} copies show this masking (expected "
    f"{copies / 103:.0f} ± "
    f"{math.sqrt(copies * (1 / 103) * (1 - 1 / 103)):.0f})"
)
assert " ".join(shown[1:7]) == "我 [MASK] 天 去 [MASK] 试"

# %% [markdown]
# The label at 今's position is `[UNK]`: with this vocabulary the model would be trained
# to predict "unknown" there. A Chinese vocabulary (as in the released Chinese and
# multilingual BERTs) has a piece for each of these characters.
#
# ## Whole-word masking
#
# The released code later added *whole-word masking*: the pieces of one word (a piece
# and its `##` continuations) are chosen together, so the model cannot recover `##ing`
# from an unmasked `play`. The budget is still $k$ **pieces**; words are visited in
# random order and a word is taken only if all its pieces fit. `mask_tokens` does this
# when given `word_start`, True at the first piece of each word.

# %%
wb_ids, wb_special = input_ids[:256], special[:256]
word_start = tok.word_start_mask(wb_ids)  # (B, T): False at "##" continuation pieces
wwm, wwm_labels = mask_tokens(
    wb_ids,
    wb_special,
    vocab_size=V,
    mask_token_id=MASK,
    pad_token_id=PAD,
    max_predictions=max_predictions,
    generator=run.generator(offset=5),
    word_start=word_start,
)
chosen = wwm_labels != IGNORE_INDEX
# Check: inside every word, the pieces are chosen all together or not at all.
split_words = 0
for b in range(wb_ids.shape[0]):
    starts = [
        t for t in range(max_seq_length) if word_start[b, t] or wb_special[b, t]
    ] + [max_seq_length]
    for s, e in zip(starts, starts[1:]):
        if not wb_special[b, s]:
            split_words += len(set(chosen[b, s:e].tolist())) > 1
assert split_words == 0
assert (
    chosen.sum(1)
    <= num_to_predict(examples["attention_mask"][:256].sum(1), 0.15, max_predictions)
).all()
multi = next(b for b in range(wb_ids.shape[0]) if (chosen[b] & ~word_start[b]).any())
m = int(examples["attention_mask"][multi].sum())
print("original:", " ".join(tok.convert_ids_to_tokens(wb_ids[multi, :m])))
print("masked  :", " ".join(tok.convert_ids_to_tokens(wwm[multi, :m])))
budget = num_to_predict(examples["attention_mask"][:256].sum(1), 0.15, max_predictions)
print(
    f"no word split in {wb_ids.shape[0]} sequences; {int(chosen.sum())} pieces chosen "
    f"vs {int(budget.sum())} budget"
)

# %% [markdown]
# ## Speed: `mask_tokens` against `transformers`' data collator
#
# `transformers`' `DataCollatorForLanguageModeling` masks with a Bernoulli(0.15) draw
# per token (so the number of predictions per sequence varies, unlike the original). We
# time its masking step, `torch_mask_tokens`, against `mask_tokens` on the same 256 ×
# 128 batch of BERT-base-sized ids, on one CPU thread as in a `DataLoader` worker
# (`bertrepro.bench.bench_masking`; A and B interleaved, median of the repeats).

# %%
res = bench.bench_masking(
    batch=256,
    seq=128,
    repeats=run.pick(smoke=5, cpu=20, gpu=50),
    warmup=2,
    seed=run.seed,
)
print(
    f"{res['what']}: mask_tokens {res['ours']:.2f} ms, DataCollatorForLanguageModeling "
    f"{res['theirs']:.2f} ms "
    f"-> mask_tokens is {res['speedup']:.2f}x as fast "
    f"({res['ours_tokens_per_s'] / 1e6:.1f}M vs "
    f"{res['theirs_tokens_per_s'] / 1e6:.1f}M tokens/s)"
)
print(
    f"chosen fraction of candidates: ours {res['ours_chosen_fraction']:.4f} (exact k "
    "per row), "
    f"collator {res['theirs_chosen_fraction']:.4f} (Bernoulli)"
)
# No paper number: the target is simply "no slower than the collator" (speedup >= 1).
_ = record(
    "timing.masking.speedup_vs_transformers_collator",
    res["speedup"],
    kind="check",
    status="pass" if res["speedup"] >= 1 else "fail",
    note="throughput of mask_tokens / "
    "DataCollatorForLanguageModeling.torch_mask_tokens, 256x128, "
    f"{res['threads']} thread; target >= 1",
)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* A bidirectional encoder could copy each input token to its output; the masked LM hides
  the tokens it predicts, and the loss counts only those positions.
* The original rule chooses exactly
  $k = \\min(20, \\max(1, \\operatorname{{round}}(0.15\\,n)))$
  non-special positions per sequence (Python 2 rounding), and `mask_tokens` equals a
  hand-written loop on the same random stream.
* Measured over {tally["tokens"]:,} tokens: {fraction:.3%} chosen (15 % up to the
  rounding bound ±{rounding_bound:.3%}); of the {N:,} chosen positions
  {shares["mask"][0]:.2%} became `[MASK]`, {shares["random"][0]:.2%} a random token and
  {shares["same"][0]:.2%} stayed unchanged, each within 5σ of 80 / 10 / 10;
  `[CLS]`, `[SEP]` and `[PAD]` were chosen {tally["special_chosen"]} times.
* "我 [MASK] 天 去 [MASK] 试" needs the sentence to be segment A of a pair ($n = 15$,
  $k = 2$); with the English vocabulary 今, 去, 试 and all of segment B are `[UNK]`.
* Whole-word masking never split a word ({split_words} split words); `mask_tokens` ran
  {res["speedup"]:.2f}× as fast as `transformers`' collator.
"""))

# %% [markdown]
# ## Exercises
#
# 1. For the 512-token phase the released code raised `max_predictions_per_seq`. How
#    many positions does a full 512-token sequence get with the cap at 20, and with the
#    cap at 80?
# 2. What fraction of *all* tokens shows `[MASK]` in the input? Predict it from the
#    rule and check it against the tally above.
# 3. `transformers`' collator draws Bernoulli(0.15) per token. How often does it give a
#    sequence of 8 candidate tokens no prediction at all, and how often does the
#    original rule?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: round(0.15 x 512) = round(76.8) = 77, under a cap of 80; 20 under 20.
n512 = torch.tensor([512])
k20, k80 = int(num_to_predict(n512, 0.15, 20)), int(num_to_predict(n512, 0.15, 80))
assert (k20, k80) == (20, py2_round(0.15 * 512)) == (20, 77)
print(f"cap 20: {k20} positions; cap 80: {k80} positions")

# %% tags=["hide-cell"]
# Exercise 2: 80 % of the chosen ~15 %: about 12 % of all tokens show [MASK].
mask_share = tally["mask"] / tally["tokens"]
expected = 0.8 * fraction
sd = math.sqrt(0.8 * 0.2 / N) * fraction  # the binomial spread of the 80 %, scaled
assert abs(mask_share - expected) < 5 * sd
print(
    f"[MASK] in {mask_share:.3%} of all tokens; 0.8 x {fraction:.3%} = {expected:.3%}"
)

# %% tags=["hide-cell"]
# Exercise 3: 0.85^8 for the collator; never for the original rule (k >= 1).
p_none = 0.85**8
short_ids = torch.randint(1000, 2000, (4096, 10), generator=run.generator(offset=9))
short_ids[:, 0], short_ids[:, -1] = CLS, SEP
_, short_labels = mask_tokens(
    short_ids,
    tok.special_tokens_mask(short_ids),
    vocab_size=V,
    mask_token_id=MASK,
    pad_token_id=PAD,
    generator=run.generator(offset=9),
)
assert ((short_labels != IGNORE_INDEX).sum(1) >= 1).all()
assert 0.27 < p_none < 0.28
print(
    f"collator: no prediction in {p_none:.1%} of such sequences; original rule: never"
)
