"""Masked-LM corruption: exact counts, the 15 % / 80-10-10 statistics, and the properties of §3.1."""
import math
from decimal import ROUND_HALF_UP, Decimal

import pytest
import torch
from scipy import stats

from bertrepro.masking import IGNORE_INDEX, mask_tokens, num_to_predict

V, MASK, CLS, SEP, PAD = 1000, 4, 2, 3, 0
SIGMA = 5.0


def _batch(B: int, T: int, seed: int, min_len: int = 4):
    """[CLS] x.. [SEP] [PAD].. rows of random lengths with ids in [5, V)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    lengths = torch.randint(min_len, T + 1, (B,), generator=g)
    pos = torch.arange(T)[None, :]
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[pos >= lengths[:, None]] = PAD
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    return ids, special, lengths


def _mask(ids, special, seed=0, **kw):
    kw.setdefault("vocab_size", V)
    kw.setdefault("mask_token_id", MASK)
    return mask_tokens(ids, special, generator=torch.Generator().manual_seed(seed), **kw)


def _py2_round(x: float) -> int:
    """Python 2's round(): the exact binary value, halves away from zero."""
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_num_to_predict_is_python2_round():
    n = torch.arange(1, 1025)
    for p in (0.15, 0.1, 0.2, 0.25, 0.3, 0.5, 0.125):
        ours = num_to_predict(n, p).tolist()
        ref = [max(1, _py2_round(int(k) * p)) for k in n]
        assert ours == ref, p
    # Where Python 3's banker's rounding differs: 30 * 0.15 = 4.5 -> 5 (Python 3 round gives 4).
    assert num_to_predict(torch.tensor([30]), 0.15).item() == 5 and round(30 * 0.15) == 4
    assert num_to_predict(torch.tensor([3, 200]), 0.15, max_predictions=20).tolist() == [1, 20]


def test_exact_count_per_sequence_and_never_special():
    ids, special, lengths = _batch(512, 64, seed=1)
    masked, labels = _mask(ids, special, max_predictions=7)
    chosen = labels != IGNORE_INDEX
    expected = num_to_predict(lengths, 0.15, 7).clamp(max=lengths - 2)
    assert chosen.sum(1).tolist() == expected.tolist()
    assert not (chosen & special).any()
    assert (labels[chosen] == ids[chosen]).all()
    assert (masked[~chosen] == ids[~chosen]).all()  # only chosen positions change
    assert (masked[ids == PAD] == PAD).all() and (masked[:, 0] == CLS).all()


def test_uses_attention_mask_for_padding():
    ids, special, lengths = _batch(64, 32, seed=2)
    attn = (torch.arange(32)[None, :] < lengths[:, None]).long()
    _, a = _mask(ids, special, seed=5)
    _, b = _mask(ids, special, seed=5, attention_mask=attn)
    assert torch.equal(a, b)


def test_rows_with_few_candidates():
    ids = torch.tensor([[CLS, SEP, PAD, PAD], [CLS, 7, SEP, PAD], [CLS, 7, 8, SEP]])
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    _, labels = _mask(ids, special)
    assert (labels != IGNORE_INDEX).sum(1).tolist() == [0, 1, 1]


def test_selection_rate_and_80_10_10_statistics():
    """>= 1e6 tokens: 15 % chosen (exact by construction), uniform over positions; 80/10/10 within 5 sigma."""
    B, T = 8192, 128
    ids, special, lengths = _batch(B, T, seed=3, min_len=T)  # full rows: n = 128 -> k = round(19.2) = 19
    assert int((~special).sum()) >= 1_000_000
    masked, labels = _mask(ids, special, seed=11)
    chosen = labels != IGNORE_INDEX
    assert (chosen.sum(1) == 19).all()

    # Every non-special position equally likely: chi-square over the 126 candidate columns.
    per_col = chosen[:, 1:-1].sum(0).double()
    chi2 = stats.chisquare(per_col.numpy()).pvalue
    assert chi2 > 1e-6, chi2

    n = int(chosen.sum())
    is_mask = masked[chosen] == MASK
    kept = masked[chosen] == ids[chosen]
    replaced = ~is_mask & ~kept
    # A random replacement can draw the original id (1/V) or [MASK] itself (1/V): account exactly.
    p_mask = 0.8 + 0.1 / V
    p_keep = 0.1 + 0.1 / V
    for count, p in ((int(is_mask.sum()), p_mask), (int(kept.sum()), p_keep), (int(replaced.sum()), 1 - p_mask - p_keep)):
        mean, sd = n * p, math.sqrt(n * p * (1 - p))
        assert abs(count - mean) < SIGMA * sd, (count, mean, sd)
    assert stats.binomtest(int(is_mask.sum()), n, p_mask).pvalue > 1e-6


@pytest.mark.parametrize("mix", [(0.0, 0.0, 1.0), (0.8, 0.0, 0.2), (1.0, 0.0, 0.0), (0.4, 0.3, 0.3)])
def test_other_mask_same_random_mixes(mix):
    """Appendix C.2's mixes: the MASK / SAME / RND shares of 77,824 chosen positions (chi-square)."""
    p_mask, p_same, p_rnd = mix
    ids, special, _ = _batch(4096, 128, seed=15, min_len=128)
    masked, labels = _mask(ids, special, seed=16, mask_fraction=p_mask, same_fraction=p_same, random_fraction=p_rnd)
    chosen = labels != IGNORE_INDEX
    assert (chosen.sum(1) == 19).all() and (masked[~chosen] == ids[~chosen]).all()
    is_mask = masked[chosen] == MASK
    kept = masked[chosen] == ids[chosen]
    # A random token is [MASK] or the original with probability 1/V each.
    expected = torch.tensor([p_mask + p_rnd / V, p_same + p_rnd / V, p_rnd * (1 - 2 / V)], dtype=torch.float64)
    observed = torch.tensor([int(is_mask.sum()), int(kept.sum()), int((~is_mask & ~kept).sum())], dtype=torch.float64)
    n = float(observed.sum())
    assert n == 4096 * 19
    if (expected == 0).any():  # a share of 0 must be observed exactly 0 times
        assert (observed[expected == 0] == 0).all()
    live = expected > 0
    if int(live.sum()) > 1:
        pvalue = stats.chisquare(observed[live].numpy(), (n * expected[live] / expected[live].sum()).numpy()).pvalue
        assert pvalue > 1e-6, (observed, n * expected)
    else:
        assert observed[live].item() == n


def test_mix_decision_matches_a_reference_and_default_is_80_10_10():
    """Replay the generator: slot k of a row is [MASK] when u < MASK, random when u < 1 - SAME, else kept."""
    B, T = 256, 40
    ids, special, _ = _batch(B, T, seed=17, min_len=T)
    for mix in ((0.8, 0.1, 0.1), (0.0, 0.0, 1.0), (0.8, 0.0, 0.2), (0.5, 0.5, 0.0)):
        masked, labels = _mask(ids, special, seed=18, mask_fraction=mix[0], same_fraction=mix[1], random_fraction=mix[2])
        g = torch.Generator().manual_seed(18)
        keys = torch.rand(B, T, generator=g).masked_fill(special, 2.0)
        K = int(num_to_predict(torch.tensor([T]), 0.15))
        idx = keys.topk(K, dim=1, largest=False, sorted=True).indices
        u = torch.rand(B, K, generator=g)
        rnd = torch.randint(0, V, (B, K), generator=g)
        orig = ids.gather(1, idx)
        want = torch.where(u < mix[0], torch.full_like(orig, MASK), torch.where(u < 1 - mix[1], rnd, orig))
        assert torch.equal(masked.gather(1, idx), want), mix
        assert torch.equal(labels.gather(1, idx), orig)
    default = _mask(ids, special, seed=18)
    explicit = _mask(ids, special, seed=18, mask_fraction=0.8, same_fraction=0.1, random_fraction=0.1)
    assert torch.equal(default[0], explicit[0]) and torch.equal(default[1], explicit[1])


def test_random_replacements_are_uniform_token_ids():
    B, T = 8192, 128
    ids, special, _ = _batch(B, T, seed=4, min_len=T)
    masked, labels = _mask(ids, special, seed=12)
    chosen = labels != IGNORE_INDEX
    new = masked[chosen & (masked != ids) & (masked != MASK)]
    assert new.dtype == torch.int64 and new.min() >= 0 and new.max() < V
    # Uniform over the whole vocabulary (original: rng.randint(0, len(vocab) - 1)); ids of positions
    # would cluster below T = 128.
    counts = torch.bincount(new, minlength=V).double()
    keep = torch.ones(V, dtype=torch.bool)
    keep[MASK] = False  # a random [MASK] is indistinguishable from masking, so its cell is short
    assert stats.chisquare(counts[keep].numpy()).pvalue > 1e-6
    assert (new >= T).float().mean() > 0.8


def test_labels_are_ignore_index_elsewhere():
    ids, special, _ = _batch(16, 32, seed=6)
    _, labels = _mask(ids, special)
    chosen = labels != IGNORE_INDEX
    assert IGNORE_INDEX == -100
    assert set(labels[~chosen].unique().tolist()) == {-100}


def test_deterministic_and_input_untouched():
    ids, special, _ = _batch(32, 40, seed=7)
    before = ids.clone()
    a = _mask(ids, special, seed=9)
    b = _mask(ids, special, seed=9)
    c = _mask(ids, special, seed=10)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert torch.equal(ids, before)


def test_whole_word_masking_keeps_words_intact():
    B, T = 2048, 64
    ids, special, lengths = _batch(B, T, seed=8)
    g = torch.Generator().manual_seed(0)
    word_start = torch.rand(B, T, generator=g) < 0.6  # ~40 % of pieces continue a word
    masked, labels = _mask(ids, special, seed=13, word_start=word_start)
    chosen = labels != IGNORE_INDEX
    cand = ~special
    prev_cand = torch.zeros_like(cand)
    prev_cand[:, 1:] = cand[:, :-1]
    starts = cand & (word_start | ~prev_cand)
    word = torch.cumsum(starts.long(), 1)  # (B, T) word ids
    # Within a word every piece has the same fate.
    for b in range(0, B, 97):
        for w in word[b][cand[b]].unique():
            fate = chosen[b][cand[b] & (word[b] == w)]
            assert fate.all() or not fate.any()
    k = num_to_predict(lengths, 0.15)
    got = chosen.sum(1)
    assert (got <= k).all() and not (chosen & special).any()
    # Greedy over words: a row stops short of k only when no remaining word fits.
    assert got.float().mean() > 0.9 * k.float().mean()


def test_whole_word_masking_reproduces_the_greedy_reference():
    """Compare with a direct transcription of the original's loop, given the same word order."""
    B, T = 64, 48
    ids, special, lengths = _batch(B, T, seed=14)
    word_start = torch.rand(B, T, generator=torch.Generator().manual_seed(1)) < 0.5
    gen = torch.Generator().manual_seed(21)
    keys = torch.rand(B, T, generator=torch.Generator().manual_seed(21))  # the keys mask_tokens draws first
    masked, labels = mask_tokens(ids, special, vocab_size=V, mask_token_id=MASK, generator=gen, word_start=word_start)
    chosen = labels != IGNORE_INDEX
    k = num_to_predict(lengths, 0.15)
    for b in range(B):
        cand = [t for t in range(T) if not special[b, t]]
        words: list[list[int]] = []
        for t in cand:
            if words and word_start[b, t] == 0 and words[-1][-1] == t - 1:
                words[-1].append(t)
            else:
                words.append([t])
        words.sort(key=lambda w: keys[b, w[0]].item())
        picked: list[int] = []
        for w in words:
            if len(picked) >= k[b]:
                break
            if len(picked) + len(w) > k[b]:
                continue
            picked += w
        assert sorted(picked) == chosen[b].nonzero().flatten().tolist(), b


def test_bad_inputs_raise():
    ids, special, _ = _batch(2, 8, seed=0)
    with pytest.raises(ValueError, match="shape"):
        _mask(ids, special[:, :4])
    with pytest.raises(ValueError, match="mlm_probability"):
        _mask(ids, special, mlm_probability=1.5)
    with pytest.raises(ValueError, match="mask_token_id"):
        _mask(ids, special, mask_token_id=V)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        _mask(ids[0], special[0])
    with pytest.raises(ValueError, match="same_fraction must be a probability"):
        _mask(ids, special, mask_fraction=0.9, same_fraction=-0.1, random_fraction=0.2)
    with pytest.raises(ValueError, match="must be 1"):
        _mask(ids, special, mask_fraction=0.8, same_fraction=0.1, random_fraction=0.2)
    with pytest.raises(ValueError, match="random_fraction must be a probability"):
        _mask(ids, special, mask_fraction=0.0, same_fraction=0.0, random_fraction=float("nan"))
