"""Span decoding against the double loop, run_squad.py's windows, the max-context rule and the v2.0 threshold."""
from __future__ import annotations

import pytest
import torch
from transformers import BertTokenizerFast

from bertrepro.checkpoints import minilm_dir
from bertrepro.spans import (best_span_loop, best_spans, choose_threshold, decode_spans, featurize_spans,
                             max_context_scores, null_scores, span_and_null_scores)


@pytest.fixture(scope="module")
def tok():
    return BertTokenizerFast(vocab=str(minilm_dir() / "vocab.txt"), do_lower_case=True)


@pytest.mark.parametrize("integer", [True, False])
def test_vectorized_decoding_equals_the_double_loop(integer):
    g = torch.Generator().manual_seed(0)
    B, T = 60, 17
    if integer:  # few distinct values: many ties
        s, e = torch.randint(-2, 3, (B, T), generator=g).float(), torch.randint(-2, 3, (B, T), generator=g).float()
    else:
        s, e = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    valid = torch.rand(B, T, generator=g) < 0.6
    valid[:, 0] = False  # [CLS] is never in the passage
    valid[valid.sum(1) == 0, 5] = True
    ties = 0
    for L in (1, 3, 30):
        i, j, score = best_spans(s, e, valid, L)
        for b in range(B):
            ref = best_span_loop(s[b], e[b], valid[b], L)
            assert (int(i[b]), int(j[b]), float(score[b])) == ref
            assert valid[b, i[b]] and valid[b, j[b]] and 0 <= j[b] - i[b] < L
            allowed = [(a, c) for a in range(T) for c in range(a, min(T, a + L)) if valid[b, a] and valid[b, c]]
            top = max(float(s[b, a] + e[b, c]) for a, c in allowed)
            ties += sum(float(s[b, a] + e[b, c]) == top for a, c in allowed) > 1
    if integer:
        assert ties > 50  # the tie rule is exercised


def test_span_decoding_respects_length_and_passage():
    s = torch.tensor([[9., 0, 1, 0, 5, 0, 0]])
    e = torch.tensor([[9., 0, 0, 0, 0, 0, 8]])
    passage = torch.tensor([[False, True, True, True, True, True, True]])
    assert [int(x) for x in best_spans(s, e, passage, 3)[:2]] == [4, 6]  # not [CLS] (9 + 9)
    assert [int(x) for x in best_spans(s, e, passage, 2)[:2]] == [5, 6]  # 4..6 (13) is too long; 5..6 scores 8
    no_end = passage.clone()
    no_end[0, 6] = False  # position 6 may start but not end a span: (4, 4) and (4, 5) tie at 5, the shorter wins
    assert [int(x) for x in best_spans(s, e, passage, 3, end_valid=no_end)[:2]] == [4, 4]
    with pytest.raises(ValueError, match="allow no span"):
        best_spans(s, e, torch.zeros_like(passage), 3)
    with pytest.raises(ValueError, match="max_answer_length"):
        best_spans(s, e, passage, 0)
    assert null_scores(s, e).tolist() == [18.0]


def test_threshold_maximizes_f1_on_a_hand_made_dev_set():
    # margins d = span - null: -3, -1, 0.5, 2, 4. Items 0, 1 and 3 have no answer (null right, F1 1),
    # items 2 and 4 have one (span F1 1 and 0.5). Answering exactly items 2 and 4 is impossible
    # (item 3 lies between), so the best splits are: answer {4} (F1 4/5 + ... ) vs answer {2,3,4}.
    span = torch.tensor([0.0, 2.0, 3.5, 5.0, 4.0])
    null = torch.tensor([3.0, 3.0, 3.0, 3.0, 0.0])
    span_f1 = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.5])
    null_f1 = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    tau, f1 = choose_threshold(span, null, span_f1, null_f1)
    # answer {2,3,4} (tau in [-1, 0.5)): (1+1+1+0+0.5)/5 = 0.7; answer {4} (tau in [2, 4)): (1+1+0+1+0.5)/5 = 0.7;
    # ties go to the smallest tau, -1. Answer {3, 4}: 0.5; answer all: 0.3; answer none: 0.6.
    assert tau == -1.0 and f1 == pytest.approx(0.7)
    span_f1[2] = 0.0  # item 2's span now wrong: {2,3,4} drops to 0.5, answering {4} alone wins with 0.7
    tau, f1 = choose_threshold(span, null, span_f1, null_f1)
    assert tau == 2.0 and f1 == pytest.approx(0.7)
    # brute force over a grid of tau agrees
    d = span - null
    grid = torch.linspace(-5, 5, 1001)
    brute = max(float(torch.where(d > t, span_f1, null_f1).mean()) for t in grid)
    assert f1 == pytest.approx(brute)
    assert float(torch.where(d > tau, span_f1, null_f1).mean()) == pytest.approx(f1)
    tau, f1 = choose_threshold(span, null, torch.ones(5), torch.zeros(5))  # answering all is best
    assert tau < float(d.min()) and f1 == 1.0


def _long_item(tok):
    context = " ".join(["alpha", "beta", "gamma", "delta"] * 12 + ["the", "river", "thames", "flows"] +
                       ["alpha", "beta", "gamma", "delta"] * 6)
    start = context.index("river thames")
    item = dict(id="q1", question="which river", context=context,
                answers=[{"text": "river thames", "answer_start": start}])
    offsets = tok(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    ans = ([n for n, (a, b) in enumerate(offsets) if a == start][0],
           [n for n, (a, b) in enumerate(offsets) if b == start + len("river thames")][0])
    assert ans == (49, 50)  # one piece per word
    return item, ans


def test_windows_answer_across_a_boundary_and_max_context(tok):
    item, ans = _long_item(tok)
    q_len = len(tok(item["question"], add_special_tokens=False)["input_ids"])
    max_seq_length, stride = q_len + 3 + 18, 8  # 18 passage tokens per window
    f = featurize_spans([item], tok, max_seq_length, stride)
    n_tokens = len(tok(item["context"], add_special_tokens=False)["input_ids"])
    assert len(f) >= 3 and [w.start for w in f.windows] == list(range(0, 8 * len(f), 8))
    assert f.windows[-1].start + f.windows[-1].length == n_tokens
    # the answer straddles the end of the window that starts at 32 (tokens 32..49 hold "river", not "thames")
    assert any(w.start <= ans[0] < w.start + w.length <= ans[1] for w in f.windows)
    has = [w for w in range(len(f)) if f.start_positions[w] > 0]
    assert len(has) >= 1
    for w in has:
        start, first = f.windows[w].start, q_len + 2
        assert start <= ans[0] and ans[1] < start + f.windows[w].length
        s, e = int(f.start_positions[w]), int(f.end_positions[w])
        assert item["context"][int(f.offsets[w, s, 0]):int(f.offsets[w, e, 1])] == "river thames"
        assert s == ans[0] - start + first
    cut = [w for w in range(len(f)) if f.windows[w].start <= ans[1] < f.windows[w].start + f.windows[w].length
           and not f.windows[w].start <= ans[0]] + \
          [w for w in range(len(f)) if f.windows[w].start <= ans[0] < f.windows[w].start + f.windows[w].length
           and not ans[1] < f.windows[w].start + f.windows[w].length]
    assert cut and all(f.start_positions[w] == 0 and f.end_positions[w] == 0 for w in cut)
    # max context: each passage token is max-context in exactly one window, the argmax of min(left,right)+0.01*len
    for t in range(n_tokens):
        best, owner = float("-inf"), None
        for w, win in enumerate(f.windows):
            if win.start <= t < win.start + win.length:
                score = min(t - win.start, win.start + win.length - 1 - t) + 0.01 * win.length
                if score > best:
                    best, owner = score, w
        flags = [bool(f.token_is_max_context[w, q_len + 2 + t - win.start]) for w, win in enumerate(f.windows)
                 if win.start <= t < win.start + win.length]
        owners = [w for w, win in enumerate(f.windows) if win.start <= t < win.start + win.length
                  and f.token_is_max_context[w, q_len + 2 + t - win.start]]
        assert owners == [owner] and sum(flags) == 1
    assert max_context_scores([(0, 4)], 6).tolist()[0][4:] == [float("-inf")] * 2


def test_decoding_across_windows_recovers_the_answer(tok):
    item, ans = _long_item(tok)
    other = dict(id="q2", question="what comes first", context="alpha beta gamma", answers=[])
    f = featurize_spans([item, other], tok, 23, 8)  # 18 passage tokens per window for q1
    assert sum(w.example_index == 0 for w in f.windows) >= 3
    s, e = torch.zeros(f.input_ids.shape), torch.zeros(f.input_ids.shape)
    decoys = 0
    for w, win in enumerate(f.windows):
        first = int(f.passage_mask[w].nonzero()[0])
        if win.example_index == 1:
            s[w, first], e[w, first + 1] = 1.0, 1.0
            s[w, 0] = e[w, 0] = 3.0
            continue
        for t in range(win.length):
            pos, at = win.start + t, first + t
            if pos == ans[0]:
                s[w, at] = 5.0
            if pos == ans[1]:
                e[w, at] = 5.0
            if pos not in ans and not f.token_is_max_context[w, at]:  # a decoy start scoring >= 12 > 10, where
                s[w, at] = 12.0  # the max-context rule forbids a start
                decoys += 1
    assert decoys > 0
    pred = decode_spans(f, s, e, max_answer_length=5)
    assert pred == {"q1": "river thames", "q2": "alpha beta"}
    scored = span_and_null_scores(f, s, e, 5)
    assert scored["q1"][1] == 10.0 and scored["q2"] == ("alpha beta", 2.0, 6.0)
    assert decode_spans(f, s, e, 5, null_threshold=0.0)["q2"] == ""  # 2 <= 6 + 0: no answer
    assert decode_spans(f, s, e, 5, null_threshold=-4.5)["q2"] == "alpha beta"
    # without the max-context rule a decoy would win
    ignore = best_spans(s, e, f.passage_mask, 5)[2]
    assert float(ignore.max()) >= 12.0


def test_bad_items_raise_clear_errors(tok):
    long_q = dict(id="x", question="word " * 30, context="a short context", answers=[])
    with pytest.raises(ValueError, match="question has 30 word pieces, more than the window allows"):
        featurize_spans([long_q], tok, 32, 8)
    with pytest.raises(ValueError, match="max_query_length=10"):
        featurize_spans([long_q], tok, 128, 8, max_query_length=10)
    wrong = dict(id="y", question="q", context="the cat sat", answers=[{"text": "dog", "answer_start": 4}])
    with pytest.raises(ValueError, match="gold answer 'dog' is not in its context"):
        featurize_spans([wrong], tok, 32, 8)
