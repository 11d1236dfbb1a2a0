"""Regression tests for the pre-training loss and data bugs that well-known BERT tutorials shipped.

Each test is named for the bug it guards against (see the book's chapter 08):

* the masked-LM loss averaged over padding or over unchosen positions;
* NSP labels swallowed by an ignore index shared with the masked LM;
* a "random" next sentence drawn from A's own document (sometimes the true continuation);
* over-long pairs dropped instead of truncated;
* a random replacement token that is a position index instead of a vocabulary id.

Oracles: cross-entropy recomputed by hand from the full-vocabulary logits, ``F.cross_entropy``
with ``ignore_index``, transformers' ``BertForPreTraining`` with copied weights, and corpora whose
token ids spell out their document and position.
"""
import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bertrepro import nsp
from bertrepro.checkpoints import to_hf
from bertrepro.config import BertConfig
from bertrepro.masking import mask_tokens
from bertrepro.model import IGNORE_INDEX, IS_NEXT, NOT_NEXT, BertForPreTraining
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path

V = 97
CONFIG = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=64)
PAD, CLS, SEP, MASK = 0, 2, 3, 4  # ids of the synthetic batches (ordinary words are 5..V-1)


def _batch(B=6, T=16, seed=0):
    """[CLS] A [SEP] B [SEP] [PAD]... rows of random words, lengths T, T-3, ..., with masked-LM labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)  # (B, T)
    lengths = torch.tensor([max(5, T - 3 * b) for b in range(B)])
    pos = torch.arange(T)[None, :]
    attn = (pos < lengths[:, None]).long()  # (B, T)
    mid = lengths // 2
    ids[:, 0] = CLS
    ids[pos == mid[:, None]] = SEP
    ids[pos == (lengths - 1)[:, None]] = SEP
    ids[attn == 0] = PAD
    types = ((pos > mid[:, None]) & (attn == 1)).long()
    special = (ids == PAD) | (ids == CLS) | (ids == SEP)
    inputs, labels = mask_tokens(ids, special, vocab_size=V, mask_token_id=MASK, pad_token_id=PAD, generator=g)
    nsp_labels = torch.tensor([b % 2 for b in range(B)])  # IsNext and NotNext alternate
    return inputs, types, attn, labels, nsp_labels


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BertForPreTraining(CONFIG).eval()


def _full_logits(model, inputs, types, attn):
    with torch.no_grad():
        return model(inputs, types, attn).prediction_logits  # (B, T, V): every position


# ---------------------------------------------------------------------------------------------
# Masked LM
# ---------------------------------------------------------------------------------------------


def test_mlm_loss_ignores_padding_tokens(model):
    inputs, types, attn, labels, nsp_labels = _batch()
    assert (attn == 0).any() and (labels[attn == 0] == IGNORE_INDEX).all()
    with torch.no_grad():
        ref = model(inputs, types, attn, labels=labels, next_sentence_label=nsp_labels)
        # Other tokens and segment ids at the padded positions (attention_mask 0).
        g = torch.Generator().manual_seed(1)
        noisy, noisy_types = inputs.clone(), types.clone()
        noisy[attn == 0] = torch.randint(5, V, (int((attn == 0).sum()),), generator=g)
        noisy_types[attn == 0] = 1
        changed = model(noisy, noisy_types, attn, labels=labels, next_sentence_label=nsp_labels)
        # Eight more padded columns: a mean over all B*T positions would shrink.
        B = inputs.shape[0]
        pad8 = lambda x, v: torch.cat([x, torch.full((B, 8), v, dtype=x.dtype)], 1)  # noqa: E731
        longer = model(pad8(inputs, PAD), pad8(types, 0), pad8(attn, 0), labels=pad8(labels, IGNORE_INDEX),
                       next_sentence_label=nsp_labels)
    for other in (changed, longer):
        assert_close(other.mlm_loss, ref.mlm_loss, rtol=1e-5, atol=1e-6)
        assert_close(other.nsp_loss, ref.nsp_loss, rtol=1e-5, atol=1e-6)
        assert_close(other.loss, ref.loss, rtol=1e-5, atol=1e-6)


def test_mlm_loss_ignores_unchosen_labels(model):
    """The MLM loss is the mean cross-entropy over exactly the chosen positions, recomputed by hand."""
    inputs, types, attn, labels, nsp_labels = _batch()
    with torch.no_grad():
        out = model(inputs, types, attn, labels=labels, next_sentence_label=nsp_labels)
    full = _full_logits(model, inputs, types, attn)
    chosen = labels != IGNORE_INDEX
    assert torch.equal(out.mlm_positions, chosen)
    assert not (chosen & (attn == 0)).any(), "padding must never carry a label"
    # By hand, position by position, over the chosen ones only.
    terms = []
    for b, t in chosen.nonzero().tolist():
        logp = full[b, t].double().log_softmax(-1)
        terms.append(-logp[labels[b, t]])
    by_hand = torch.stack(terms).mean()
    assert_close(out.mlm_loss.double(), by_hand, rtol=1e-5, atol=1e-6)
    # The loss does react to the labels it does count (the comparison above could not pass by accident).
    moved = labels.clone()
    b, t = chosen.nonzero()[0].tolist()
    moved[b, t] = (labels[b, t] + 1) % V
    with torch.no_grad():
        assert not torch.isclose(model(inputs, types, attn, labels=moved).mlm_loss, out.mlm_loss)


def test_mlm_loss_is_mean_over_chosen_not_over_all_positions(model):
    inputs, types, attn, labels, nsp_labels = _batch()
    with torch.no_grad():
        out = model(inputs, types, attn, labels=labels, next_sentence_label=nsp_labels)
        hf = to_hf(model, attn_implementation="eager").eval()
        hf_out = hf(input_ids=inputs, token_type_ids=types, attention_mask=attn, labels=labels,
                    next_sentence_label=nsp_labels)
    full = _full_logits(model, inputs, types, attn)
    right = F.cross_entropy(full.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    per_position = F.cross_entropy(full.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    wrong = per_position.sum() / labels.numel()  # the tutorial bug: averaged over all B*T positions
    assert_close(out.mlm_loss, right, rtol=1e-5, atol=1e-6)
    assert_close(out.loss, hf_out.loss, rtol=1e-5, atol=1e-6)
    n_chosen = int((labels != IGNORE_INDEX).sum())
    assert n_chosen < labels.numel() / 4
    assert_close(wrong, right * n_chosen / labels.numel(), rtol=1e-5, atol=1e-6)
    assert abs(out.mlm_loss.item() - wrong.item()) > 1.0, "the MLM loss must not be diluted by unchosen positions"


def test_gathered_mlm_logits_equal_full_logits_at_chosen_positions(model):
    inputs, types, attn, labels, nsp_labels = _batch()
    with torch.no_grad():
        out = model(inputs, types, attn, labels=labels, next_sentence_label=nsp_labels)
        hf_logits = to_hf(model, attn_implementation="eager")(
            input_ids=inputs, token_type_ids=types, attention_mask=attn).prediction_logits
    full = _full_logits(model, inputs, types, attn)
    chosen = labels != IGNORE_INDEX
    assert out.prediction_logits.shape == (int(chosen.sum()), V)  # (N, V), not (B, T, V)
    assert_close(out.prediction_logits, full[chosen], rtol=1e-5, atol=1e-5)
    assert_close(out.prediction_logits, hf_logits[chosen], rtol=1e-5, atol=1e-5)


def test_random_replacement_is_a_token_not_an_index():
    """Random replacements are vocabulary ids drawn uniformly from [0, V), not positions in [0, T)."""
    Vbig, T, B = 5000, 16, 8192
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4000, 4011, (B, T), generator=g)  # only 11 distinct ids, none below T
    special = torch.zeros(B, T, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    inputs, labels = mask_tokens(ids, special, vocab_size=Vbig, mask_token_id=103, pad_token_id=0, generator=g)
    chosen = labels != IGNORE_INDEX
    replaced = inputs[chosen & (inputs != 103) & (inputs != ids)]  # the random replacements (minus the 1/V hits)
    n = replaced.numel()
    assert n > 1000, n
    assert replaced.min() >= 0 and replaced.max() < Vbig
    # Positions would all be < T; vocabulary ids are below T with probability T/V.
    p_low = T / Vbig
    assert abs((replaced < T).float().mean().item() - p_low) < 5 * math.sqrt(p_low * (1 - p_low) / n) + 1 / n
    # Uniform over the vocabulary: the mean within 5 sigma of (V-1)/2, and ten equal bins pass chi-square.
    sigma = Vbig / math.sqrt(12 * n)
    assert abs(replaced.double().mean().item() - (Vbig - 1) / 2) < 5 * sigma
    counts = torch.bincount(replaced * 10 // Vbig, minlength=10).double()
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum().item()
    assert chi2 < 27.9, chi2  # chi-square(9) quantile 0.999
    # Not drawn from the batch's own tokens either: almost all fall outside its 11 ids.
    assert ((replaced >= 4000) & (replaced <= 4010)).float().mean().item() < 0.01


# ---------------------------------------------------------------------------------------------
# Next sentence prediction
# ---------------------------------------------------------------------------------------------


def test_nsp_label_not_swallowed_by_ignore_index(model):
    assert (IS_NEXT, NOT_NEXT) == (0, 1) and IGNORE_INDEX not in (IS_NEXT, NOT_NEXT)
    inputs, types, attn, labels, nsp_labels = _batch(B=8)
    assert set(nsp_labels.tolist()) == {IS_NEXT, NOT_NEXT}
    out = model(inputs, types, attn, labels=labels, next_sentence_label=nsp_labels)
    logits = out.seq_relationship_logits
    logits.retain_grad()
    # Every example counts, NotNext (1) included: the mean over all B of -log p(y_b).
    by_hand = -logits.detach().double().log_softmax(-1)[torch.arange(8), nsp_labels].mean()
    assert_close(out.nsp_loss.double(), by_hand, rtol=1e-5, atol=1e-6)
    out.nsp_loss.backward()
    assert (logits.grad.abs().sum(1) > 0).all(), "an example with zero NSP gradient was ignored"
    # A freshly initialised head scores both classes about equally; give it a preference so that
    # relabelling an example must move the loss.
    biased = copy.deepcopy(model)
    with torch.no_grad():
        biased.cls.seq_relationship.bias.copy_(torch.tensor([1.0, -1.0]))
        before = biased(inputs, types, attn, next_sentence_label=nsp_labels).nsp_loss
        # relabel only the NotNext examples: if they were ignored, the loss could not change
        flipped = biased(inputs, types, attn, next_sentence_label=torch.full_like(nsp_labels, IS_NEXT)).nsp_loss
        all_not_next = biased(inputs, types, attn, next_sentence_label=torch.full_like(nsp_labels, NOT_NEXT)).nsp_loss
        all_is_next = biased(inputs, types, attn, next_sentence_label=torch.full_like(nsp_labels, IS_NEXT)).nsp_loss
    assert not torch.isclose(flipped, before, rtol=1e-3)
    assert all_not_next > all_is_next + 1.0  # NotNext labels are scored, against a head that prefers IsNext
    assert torch.isfinite(all_not_next) and all_not_next > 0  # a swallowed label would give nan (nothing to average)
    # The data side: pairs come labelled 0 / 1, never with the MLM's ignore index.
    docs = [[[d * 100 + s * 10 + t for t in range(1, 6)] for s in range(4)] for d in range(1, 30)]
    instances = nsp.create_instances(docs, 24, random.Random(0))
    packed = nsp.pack_instances(instances, 24, cls_token_id=CLS, sep_token_id=SEP, pad_token_id=PAD)
    assert set(packed["next_sentence_label"].tolist()) == {IS_NEXT, NOT_NEXT}
    assert packed["next_sentence_label"].tolist() == [NOT_NEXT if x.is_random_next else IS_NEXT for x in instances]


def _marked_corpus(n_docs, n_sentences, sentence_len):
    """Token id = 1_000_000 * (doc + 1) + position in the flattened document: each id names its source."""
    return [[[1_000_000 * (d + 1) + s * sentence_len + t for t in range(sentence_len)] for s in range(n_sentences)]
            for d in range(n_docs)]


@pytest.mark.parametrize("balanced", [False, True])
def test_random_next_sentence_is_never_from_same_document(balanced):
    # Two documents: the original's 10 tries for "another document" all fail once in 1,024 draws, when
    # it used A's own document anyway. Thousands of NotNext pairs make that certain to show up.
    docs = _marked_corpus(2, 200, 4)
    instances = nsp.create_instances(docs, 32, random.Random(0), dupe_factor=600, balanced=balanced)
    doc_of = lambda tokens: {t // 1_000_000 - 1 for t in tokens}  # noqa: E731
    not_next = [x for x in instances if x.is_random_next]
    is_next = [x for x in instances if not x.is_random_next]
    assert len(not_next) > 10_000 and len(is_next) > 10_000
    for x in not_next:
        (a_doc,) = doc_of(x.tokens_a)
        assert doc_of(x.tokens_b) == {1 - a_doc}, "a NotNext B from A's own document"
    for x in is_next:
        assert doc_of(x.tokens_a) == doc_of(x.tokens_b)
        # B continues A: contiguous positions, except for what truncation removed between them.
        assert x.tokens_a == list(range(x.tokens_a[0], x.tokens_a[-1] + 1))
        assert x.tokens_b == list(range(x.tokens_b[0], x.tokens_b[-1] + 1))
        assert 0 <= x.tokens_b[0] - x.tokens_a[-1] - 1 <= x.num_truncated


@pytest.mark.parametrize("balanced", [False, True])
def test_overlong_pairs_truncated_not_dropped(balanced):
    # Every sentence alone is longer than a whole sequence.
    docs = _marked_corpus(5, 7, 90)
    T = 32
    instances = nsp.create_instances(docs, T, random.Random(0), dupe_factor=4, balanced=balanced, short_seq_prob=0.0)
    # Each 90-token sentence fills a chunk by itself, so every sentence yields a pair in every pass.
    assert len(instances) == 5 * 7 * 4
    assert {(x.a_doc, x.a_sentences[0]) for x in instances} == {(d, s) for d in range(5) for s in range(7)}
    for x in instances:
        assert 1 <= len(x.tokens_a) and 1 <= len(x.tokens_b) and len(x.tokens_a) + len(x.tokens_b) == T - 3
        assert x.num_truncated > 0
        for seg in (x.tokens_a, x.tokens_b):  # trimmed at the ends only: still contiguous text
            assert seg == list(range(seg[0], seg[0] + len(seg)))
    packed = nsp.pack_instances(instances, T, cls_token_id=CLS, sep_token_id=SEP, pad_token_id=PAD)
    assert packed["input_ids"].shape == (len(instances), T)
    assert (packed["attention_mask"].sum(1) == T).all()
    # The tokenizer's pair encoding truncates too, rather than dropping or failing.
    tok = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
    long_a, long_b = "the quick brown fox " * 40, "jumps over the lazy dog " * 30
    enc = tok.encode_batch([long_a, "short"], [long_b, "also short"], max_length=T, padding="max_length")
    assert enc["input_ids"].shape == (2, T) and int(enc["attention_mask"][0].sum()) == T
    assert (enc["input_ids"][0] == tok.sep_token_id).sum() == 2
