"""Attention-pattern metrics and mean pooling against hand-built cases and loop references."""
import math

import pytest
import torch
from torch.testing import assert_close

from bertrepro import BertConfig, BertModel
from bertrepro.probing import (
    PATTERNS, attention_entropy, attention_pattern_sums, attention_patterns, mean_pool, measure_attention_patterns,
    top_heads,
)

CLS, SEP, PAD = 1, 2, 0
LENGTHS = [6, 4, 5]  # three sequences of different lengths, right-padded to T = 7
T = 7


def _batch(lengths=LENGTHS, T=T, left_pad_row=None):
    """input_ids [CLS] w .. w [SEP] [PAD]..., and the (B, T) mask. ``left_pad_row`` is padded on the left."""
    B = len(lengths)
    mask = torch.zeros(B, T, dtype=torch.long)
    ids = torch.full((B, T), PAD)
    for b, n in enumerate(lengths):
        start = T - n if b == left_pad_row else 0
        mask[b, start:start + n] = 1
        ids[b, start:start + n] = torch.randint(5, 50, (n,))
        ids[b, start], ids[b, start + n - 1] = CLS, SEP
    return ids, mask


def _positions(mask_row):
    return mask_row.nonzero().flatten().tolist()


def _hand_built(ids, mask, garbage_on_pad_queries=True):
    """Five heads with known answers: previous token, next token, uniform, all on [CLS], all on [SEP]."""
    B, T = ids.shape
    A = torch.zeros(B, 5, T, T)
    for b in range(B):
        pos = _positions(mask[b])
        first, last = pos[0], pos[-1]
        for k, i in enumerate(pos):
            A[b, 0, i, pos[k - 1] if k > 0 else i] = 1  # previous (first token: itself)
            A[b, 1, i, pos[k + 1] if k + 1 < len(pos) else i] = 1  # next (last token: itself)
            A[b, 2, i, pos] = 1 / len(pos)  # uniform over the tokens
            A[b, 3, i, first] = 1  # [CLS]
            A[b, 4, i, last] = 1  # [SEP]
        if garbage_on_pad_queries:  # rows of padded queries are anything: they must not count
            for i in range(T):
                if i not in pos:
                    A[b, :, i] = torch.rand(T).softmax(-1)
    return A


def _loop_reference(A, ids, mask):
    """Per-sequence, per-token loops over one layer (B, nh, T, T): the definitions read literally."""
    B, nh = A.shape[:2]
    out = {p: torch.zeros(nh, dtype=torch.float64) for p in PATTERNS}
    n_tok = n_pair = 0
    for b in range(B):
        pos = _positions(mask[b])
        for k, i in enumerate(pos):
            n_tok += 1
            for h in range(nh):
                row = A[b, h, i].double()
                out["cls"][h] += sum(row[j] for j in pos if ids[b, j] == CLS)
                out["sep"][h] += sum(row[j] for j in pos if ids[b, j] == SEP)
                out["self"][h] += row[i]
                out["entropy"][h] -= sum(row[j] * math.log(row[j]) for j in pos if row[j] > 0)
        for k in range(1, len(pos)):
            i, j = pos[k], pos[k - 1]  # i follows j
            if i == j + 1:
                n_pair += 1
                for h in range(nh):
                    out["prev"][h] += A[b, h, i, j].double()
                    out["next"][h] += A[b, h, j, i].double()
    return {p: (v / (n_pair if p in ("prev", "next") else n_tok)).float() for p, v in out.items()}


def test_hand_built_heads_give_known_answers():
    ids, mask = _batch()
    A = _hand_built(ids, mask)
    r = attention_patterns((A, A), mask, ids, CLS, SEP)  # two identical layers
    assert set(r) == set(PATTERNS) and all(v.shape == (2, 5) for v in r.values())
    n_tok = sum(LENGTHS)
    ones, zeros = torch.ones(2), torch.zeros(2)
    assert_close(r["prev"][:, 0], ones)  # the previous-token head puts all its mass there
    assert_close(r["next"][:, 1], ones)
    assert_close(r["cls"][:, 3], ones)
    assert_close(r["sep"][:, 4], ones)
    assert_close(r["next"][:, 0], zeros)
    assert_close(r["prev"][:, 1], zeros)
    # only the first token of each sequence attends itself in the previous-token head
    assert_close(r["self"][:, 0], torch.full((2,), len(LENGTHS) / n_tok))
    # one-hot rows have zero entropy; uniform rows over n tokens have log(n)
    assert_close(r["entropy"][:, [0, 1, 3, 4]], torch.zeros(2, 4))
    uniform = sum(n * math.log(n) for n in LENGTHS) / n_tok
    assert_close(r["entropy"][:, 2], torch.full((2,), uniform))
    assert_close(r["cls"][:, 2], torch.full((2,), sum(n * (1 / n) for n in LENGTHS) / n_tok))


def test_padded_queries_do_not_count():
    ids, mask = _batch()
    a = attention_patterns(_hand_built(ids, mask, garbage_on_pad_queries=True), mask, ids, CLS, SEP)
    b = attention_patterns(_hand_built(ids, mask, garbage_on_pad_queries=False), mask, ids, CLS, SEP)
    for p in PATTERNS:
        assert_close(a[p], b[p])


def test_pad_token_equal_to_cls_id_is_not_counted():
    ids, mask = _batch()
    A = _hand_built(ids, mask)
    ids_pad_cls = ids.masked_fill(mask == 0, CLS)  # padded positions carry the [CLS] id
    assert_close(attention_patterns(A, mask, ids_pad_cls, CLS, SEP)["cls"], attention_patterns(A, mask, ids, CLS, SEP)["cls"])


@pytest.mark.parametrize("left_pad_row", [None, 1])
def test_random_attention_matches_loop_reference(left_pad_row):
    ids, mask = _batch(left_pad_row=left_pad_row)
    scores = torch.randn(3, 4, T, T)
    A = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf")).softmax(-1)  # (B, nh, T, T)
    got = attention_patterns(A, mask, ids, CLS, SEP)
    ref = _loop_reference(A, ids, mask)
    for p in PATTERNS:
        assert_close(got[p][0], ref[p], atol=1e-6, rtol=1e-5, msg=p)
    assert_close(attention_entropy(A, mask), got["entropy"])


def test_entropy_per_query_and_uniform():
    ids, mask = _batch()
    A = _hand_built(ids, mask)
    ent = attention_entropy(A, mask, per_query=True)  # (1, B, nh, T)
    assert ent.shape == (1, 3, 5, T)
    for b, n in enumerate(LENGTHS):
        assert_close(ent[0, b, 2, :n], torch.full((n,), math.log(n)))
        assert (ent[0, b, :, n:] == 0).all()


def test_sums_accumulate_exactly_across_batches():
    ids, mask = _batch()
    A = _hand_built(ids, mask)
    s_all, c_all = attention_pattern_sums(A, mask, ids, CLS, SEP)
    s1, c1 = attention_pattern_sums(A[:1], mask[:1], ids[:1], CLS, SEP)
    s2, c2 = attention_pattern_sums(A[1:], mask[1:], ids[1:], CLS, SEP)
    for p in PATTERNS:
        assert_close(s1[p] + s2[p], s_all[p])
        assert c1[p] + c2[p] == c_all[p]


def test_bad_inputs_are_clear_errors():
    ids, mask = _batch()
    A = _hand_built(ids, mask)
    with pytest.raises(ValueError, match="padded keys"):
        leak = A.clone()
        leak[0, 0, 0] = 0
        leak[0, 0, 0, T - 1] = 1  # query 0 of sequence 0 looks at a padded key
        attention_patterns(leak, mask, ids, CLS, SEP)
    with pytest.raises(ValueError, match="do not sum to 1"):
        attention_patterns(A * 2, mask, ids, CLS, SEP)
    with pytest.raises(ValueError, match="expected"):
        attention_patterns(A[:, :, :, :-1], mask, ids, CLS, SEP)
    with pytest.raises(ValueError, match="both be"):
        attention_patterns(A, mask, ids[:, :-1], CLS, SEP)
    with pytest.raises(ValueError, match="no tokens"):
        attention_patterns(A, torch.zeros_like(mask), ids, CLS, SEP)
    with pytest.raises(ValueError, match="tuple"):
        attention_patterns([], mask, ids, CLS, SEP)


def test_measure_on_a_model_equals_one_big_batch():
    cfg = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16)
    model = BertModel(cfg).eval()
    ids, mask = _batch()
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=True)
    whole = attention_patterns(out.attentions, mask, ids, CLS, SEP)
    batches = [{"input_ids": ids[:2], "attention_mask": mask[:2]}, {"input_ids": ids[2:], "attention_mask": mask[2:]}]
    split = measure_attention_patterns(model, batches, CLS, SEP, progress=False)
    for p in PATTERNS:
        assert_close(split[p], whole[p], atol=1e-6, rtol=1e-5)
    assert split["tokens"] == sum(LENGTHS)
    with pytest.raises(ValueError, match="no batches"):
        measure_attention_patterns(model, [], CLS, SEP, progress=False)


def test_top_heads():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.95]])
    assert top_heads(scores, 2) == [(1, 2, pytest.approx(0.95)), (0, 1, pytest.approx(0.9))]
    assert top_heads(scores, 1, largest=False) == [(0, 0, pytest.approx(0.1))]
    with pytest.raises(ValueError, match="k must be"):
        top_heads(scores, 7)


def _mean_pool_loop(h, mask):
    rows = []
    for b in range(h.shape[0]):
        toks = [h[b, t] for t in range(h.shape[1]) if mask[b, t]]
        v = sum(toks) / len(toks)
        rows.append(v / v.norm())
    return torch.stack(rows)


def test_mean_pool_matches_loop_and_ignores_padding():
    ids, mask = _batch()
    h = torch.randn(3, T, 8)
    assert_close(mean_pool(h, mask), _mean_pool_loop(h, mask))
    h2 = h.clone()
    h2[mask == 0] = 1e3  # whatever sits at padded positions
    assert_close(mean_pool(h2, mask), mean_pool(h, mask))
    assert_close(mean_pool(h, mask).norm(dim=-1), torch.ones(3))
    raw = mean_pool(h, mask, normalize=False)
    assert_close(raw[1], h[1, :LENGTHS[1]].mean(0))
    with pytest.raises(ValueError, match="no tokens"):
        mean_pool(h, mask * torch.tensor([[1], [0], [1]]))
    with pytest.raises(ValueError, match="expects"):
        mean_pool(h, mask[:, :-1])


def test_mean_pool_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from transformers import BertTokenizerFast

    from bertrepro.checkpoints import from_hf, minilm_dir

    path = minilm_dir()
    sentences = ["A man is playing a guitar.", "The cat sleeps.", "Stock prices fell sharply on Monday morning."]
    reference = st.SentenceTransformer(str(path), device="cpu").encode(sentences, convert_to_tensor=True)
    tok = BertTokenizerFast.from_pretrained(path)
    enc = tok(sentences, padding=True, return_tensors="pt")
    model = from_hf(path)
    with torch.no_grad():
        h = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).last_hidden_state
    assert_close(mean_pool(h, enc["attention_mask"]), reference.cpu(), atol=1e-5, rtol=1e-4)
