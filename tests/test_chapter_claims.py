"""Claims the chapters make in prose or plots, checked here against independent references.

* the chapters' source stays readable: lines of at most 88 characters, figure text of at
  least 9 pt at the page's width (figures at most 7.5 inches wide, no font below 9 pt);
* chapter 01: with the 1/sqrt(d_k) scale, the softmax entropy and gradient stay flat in d_k;
* chapter 04: the erf and tanh GELUs differ by less than 1e-3; the masked-LM head is dense,
  GELU, LayerNorm and the tied token embeddings plus a bias, equal to transformers' head;
* chapter 05: two thirds of BERT-base's encoder is feed-forward, a fifth of it token table;
* chapters 06-07: which characters of the Chinese example are [UNK]; the word-length limit;
  how few merges a 500-piece vocabulary of the corpus holds;
* chapter 08: the original pairing rule gives P(NotNext) = 1/2 + s/2 on short articles;
* chapter 09: the training loop written on the page equals bertrepro.pretrain bit for bit.
"""
import contextlib
import io
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from torch.testing import assert_close

from bertrepro import BertConfig, BertForPreTraining
from bertrepro.checkpoints import from_hf
from bertrepro.data import load_corpus
from bertrepro.model import IGNORE_INDEX, activation
from bertrepro.nsp import create_instances
from bertrepro.params import breakdown, count_parameters, layer_parameters
from bertrepro.pretrain import (
    BatchStream,
    PretrainConfig,
    build_optimizer,
    build_scheduler,
    make_batch,
    prepare_data,
    pretrain,
)
from bertrepro.train import derive_seed
from bertrepro.tokenization import (
    WordPieceTokenizer,
    bert_uncased_vocab_path,
    load_vocab,
    train_wordpiece,
    truncate_seq_pair,
)

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.py"))
MAX_COLUMNS = 88


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())


# ----------------------------------------------------------------------------------------------
# The chapters' source
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("py", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_lines_fit_88_columns(py):
    """Every line, code and prose; a Markdown table row cannot be wrapped and is exempt."""
    long = [
        f"{i}: {line[:60]}... ({len(line)} characters)"
        for i, line in enumerate(py.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_COLUMNS and not line.startswith("# |")
    ]
    assert not long, f"{py.name}: lines over {MAX_COLUMNS} columns:\n" + "\n".join(long)


@pytest.mark.parametrize("py", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_figures_are_legible_at_page_width(py):
    """Figures at most 7.5 inches wide (the content column at 100 dpi), no text below 9 pt."""
    src = py.read_text(encoding="utf-8")
    small = [m.group(0) for m in re.finditer(r"fontsize=(\d+(?:\.\d+)?)", src) if float(m.group(1)) < 9]
    wide = [
        m.group(0)
        for m in re.finditer(r"figsize=\((\d+(?:\.\d+)?),", src)
        if float(m.group(1)) > 7.5
    ]
    assert not small and not wide, f"{py.name}: {small + wide}"


# ----------------------------------------------------------------------------------------------
# Chapter 01: the scale keeps attention from collapsing
# ----------------------------------------------------------------------------------------------


def _softmax_stats(d, scaled, g, n_q=2000, n_keys=32):
    s = torch.einsum("nd,nkd->nk", torch.randn(n_q, d, generator=g), torch.randn(n_q, n_keys, d, generator=g))
    if scaled:
        s = s / math.sqrt(d)
    a = s.softmax(-1)
    entropy = -(a * a.clamp_min(1e-30).log()).sum(-1).mean().item()
    jac = torch.diag_embed(a) - a[:, :, None] * a[:, None, :]
    return entropy, torch.linalg.matrix_norm(jac).mean().item()


def test_scaled_attention_entropy_and_gradient_stay_flat():
    g = torch.Generator().manual_seed(0)
    dims = [4, 16, 64, 256, 1024]
    scaled = [_softmax_stats(d, True, g) for d in dims]
    raw = [_softmax_stats(d, False, g) for d in dims]
    ent, jac = [e for e, _ in scaled], [j for _, j in scaled]
    assert (max(ent) - min(ent)) / math.log(32) < 0.05
    assert (max(jac) - min(jac)) / (sum(jac) / len(jac)) < 0.15
    # without the scale both collapse as d_k grows
    assert raw[-1][0] < 0.25 * raw[0][0] and raw[-1][1] < 0.5 * raw[0][1]


# ----------------------------------------------------------------------------------------------
# Chapter 04: GELU, and the masked-LM head
# ----------------------------------------------------------------------------------------------


def test_erf_and_tanh_gelu_differ_by_less_than_1e3():
    x = torch.linspace(-8, 8, 100_001, dtype=torch.float64)
    exact, tanh = F.gelu(x), F.gelu(x, approximate="tanh")
    gap = (exact - tanh).abs().max().item()
    assert 1e-4 < gap < 1e-3  # different functions, but close
    assert_close(activation("gelu")(x), exact)
    assert_close(activation("gelu_new")(x), tanh)


def test_mlm_head_is_dense_gelu_layernorm_then_tied_decoder():
    config = BertConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    hf = transformers.BertForPreTraining(config.to_hf()).eval()
    with torch.no_grad():
        for p in hf.cls.predictions.parameters():  # no parameter left at its initial 0 or 1
            p.add_(0.1 * torch.randn_like(p))
    ours = from_hf(hf)
    head, emb = ours.cls.predictions, ours.bert.embeddings.word_embeddings.weight
    assert head.decoder.weight is emb  # tied: the same tensor
    h = torch.randn(3, 5, config.hidden_size)
    t = head.transform
    z = F.linear(h, t.dense.weight, t.dense.bias)
    gelu = 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))  # the exact GELU, written out
    u = F.layer_norm(gelu, (config.hidden_size,), t.LayerNorm.weight, t.LayerNorm.bias, t.LayerNorm.eps)
    by_hand = u @ emb.T + head.bias
    with torch.no_grad():
        assert_close(head(h), by_hand)
        assert_close(hf.cls.predictions(h), by_hand, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Chapter 05: where BERT-base's parameters are
# ----------------------------------------------------------------------------------------------


def test_bert_base_feed_forward_and_token_table_shares():
    cfg = BertConfig.base()
    H, L = cfg.hidden_size, cfg.num_hidden_layers
    per_layer = layer_parameters(cfg)
    ffn = L * (per_layer["intermediate.dense"] + per_layer["output.dense"])
    assert ffn == L * (8 * H * H + 5 * H)  # H -> 4H -> H with biases
    encoder = breakdown(cfg)["encoder"]
    assert encoder == L * (12 * H * H + 13 * H)
    assert abs(ffn / encoder - 2 / 3) < 0.005
    token_share = cfg.vocab_size * H / count_parameters(cfg)
    assert abs(token_share - 1 / 5) < 0.02


# ----------------------------------------------------------------------------------------------
# Chapters 06-07: the tokenizer's [UNK]s and a small trained vocabulary
# ----------------------------------------------------------------------------------------------


def test_chinese_example_unknown_characters(tok):
    a, b = "我 今天 去 面试", "准备 好 了 简历"
    pieces = tok.convert_ids_to_tokens(tok.encode(a, b)["input_ids"])
    chars = ["[CLS]", *"我今天去面试", "[SEP]", *"准备好了简历", "[SEP]"]
    assert len(pieces) == len(chars)  # one position per character
    vocab = load_vocab(bert_uncased_vocab_path())
    unknown = [c for c in chars if c not in vocab and not c.startswith("[")]
    assert [c for c, p in zip(chars, pieces) if p == "[UNK]"] == unknown
    assert unknown == ["今", "去", "试", *"准备好了简历"]  # three of A's six, all of B


def test_word_length_limit_is_transformers_100(tok):
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert "[UNK]" not in tok.tokenize("x" * 100)


def test_500_piece_vocabulary_holds_few_merges(tmp_path):
    train = [s for doc in load_corpus("wiki-vital")["train"]["sentences"] for s in doc]
    train_wordpiece(train, 500, tmp_path / "v.txt")
    pieces = list(load_vocab(tmp_path / "v.txt"))
    merges = sum(len(p.removeprefix("##")) > 1 for p in pieces[5:500])
    assert 0 < merges < 50, merges  # "little more than the alphabet": a few dozen at most


def test_truncate_seq_pair_trims_only_the_longer_segment():
    a, b = list(range(10)), list(range(100, 103))
    truncate_seq_pair(a, b, 9, random.Random(0))
    assert len(a) == 6 and b == [100, 101, 102]


# ----------------------------------------------------------------------------------------------
# Chapter 08: the original rule's label balance on short articles
# ----------------------------------------------------------------------------------------------


def _original_pairs(documents, max_seq_length, short_seq_prob, rng):
    """create_instances_from_document of create_pretraining_data.py, counting one-sentence chunks."""
    labels, one_sentence, chunks = [], 0, 0
    for index, document in enumerate(documents):
        max_num_tokens = max_seq_length - 3
        target = rng.randint(2, max_num_tokens) if rng.random() < short_seq_prob else max_num_tokens
        chunk, length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                chunks += 1
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                one_sentence += len(chunk) == 1
                if len(chunk) == 1 or rng.random() < 0.5:
                    for _ in range(10):
                        other = rng.randint(0, len(documents) - 1)
                        if other != index:
                            break
                    b, start = [], rng.randint(0, len(documents[other]) - 1)
                    for s in documents[other][start:]:
                        b += s
                        if len(b) >= target - len(a):
                            break
                    i -= len(chunk) - a_end
                    is_random = True
                else:
                    b, is_random = [t for s in chunk[a_end:] for t in s], False
                truncate_seq_pair(a, b, max_num_tokens, rng)
                labels.append((a, b, is_random))
                chunk, length = [], 0
            i += 1
    return labels, one_sentence / chunks


def test_original_rule_not_next_share_is_half_plus_s_over_two(tok):
    docs = tok.encode_corpus(load_corpus("wiki-vital", max_documents=400)["train"]["sentences"])
    docs = [d for d in ([s for s in d if s] for d in docs) if d]
    pairs, s = _original_pairs(docs, 128, 0.1, random.Random(7))
    ours = create_instances(docs, 128, random.Random(7), short_seq_prob=0.1, balanced=False, shuffle=False)
    assert [(x.tokens_a, x.tokens_b, x.is_random_next) for x in ours] == pairs
    n = len(pairs)
    measured = sum(is_random for _, _, is_random in pairs) / n
    # given the chunks, NotNext = one-sentence chunks + Binomial(other chunks, 1/2)
    z = (measured - (0.5 + s / 2)) / (0.5 * math.sqrt((1 - s) / n))
    assert s > 0.1 and abs(z) < 5, (s, measured, z)


# ----------------------------------------------------------------------------------------------
# Chapter 09: the training loop on the page
# ----------------------------------------------------------------------------------------------


def _train_by_hand(cfg, corpus, cache_dir):
    data = prepare_data(cfg, corpus, cache_dir)
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    net = BertForPreTraining(cfg.bert_config(data.vocab_size, data.pad_token_id)).train()
    optimizer = build_optimizer(net, cfg, torch.device("cpu"))
    scheduler = build_scheduler(optimizer, cfg)
    masking = torch.Generator().manual_seed(derive_seed(cfg.seed, "masking"))
    streams = derive_seed(cfg.seed, "rank-streams", 0, 0)
    torch.manual_seed(streams)
    random.seed(streams)
    np.random.seed(streams % 2**32)
    batches = BatchStream(data, cfg)
    losses = []
    for _ in range(cfg.stop_step):
        batch = make_batch(batches.next(), data, cfg, masking)
        n_pred = int((batch["labels"] != IGNORE_INDEX).sum())
        out = net(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                  labels=batch["labels"], mlm_denominator=n_pred)
        nsp = F.cross_entropy(out.seq_relationship_logits.float(), batch["next_sentence_label"],
                              reduction="sum") / len(batch["next_sentence_label"])
        loss = out.mlm_loss + nsp
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return net, losses


def test_training_loop_on_the_page_equals_pretrain(tmp_path):
    cfg = PretrainConfig.for_profile(
        "smoke", seed=3, device="cpu", total_steps=6, warmup_steps=2, log_every=2, checkpoint_every=6,
        long_phase_fraction=0.0,  # the page's loop is one phase; the second is tested in test_pretrain
    )
    assert cfg.dropout > 0  # the dropout streams must line up too
    corpus = {"train": load_corpus(cfg.corpus)["train"]["sentences"][: cfg.max_documents]}
    net, losses = _train_by_hand(cfg, corpus, tmp_path / "cache")
    with contextlib.redirect_stdout(io.StringIO()):
        ref = pretrain(cfg, tmp_path / "run", corpus=corpus, cache_dir=tmp_path / "cache", progress=False)
    mine, theirs = net.state_dict(), ref.model.state_dict()
    assert mine.keys() == theirs.keys()
    different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert not different, different
    windows = [sum(losses[i : i + 2]) / 2 for i in range(0, len(losses), 2)]
    assert_close(torch.tensor(windows, dtype=torch.float64),
                 torch.tensor([m["loss"] for m in ref.metrics], dtype=torch.float64))
    assert losses[0] != losses[-1]  # it trained
