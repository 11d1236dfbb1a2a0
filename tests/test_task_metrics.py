"""SQuAD metrics on worked examples of the official definitions; entity F1 against seqeval."""
from __future__ import annotations

import math
import random

import pytest
import torch
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.metrics import precision_score as seqeval_precision
from seqeval.metrics import recall_score as seqeval_recall
from seqeval.metrics.sequence_labeling import get_entities

from bertrepro.finetune.metrics import (accuracy_se, bio_spans, entity_scores, exact_match, f1_score,
                                        normalize_answer, squad_scores)


@pytest.mark.parametrize("raw,normal", [
    ("The  Quick, brown fox!", "quick brown fox"),  # article, punctuation, case, whitespace
    ("An apple a day", "apple day"),
    ("theater anthem", "theater anthem"),  # articles only as whole words
    ("  the\tU.S.  ", "us"),
    ("Saint-Étienne's", "saintétiennes"),  # ASCII punctuation only; accents stay
    ("", ""),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_f1_worked_examples():
    assert exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    # pred {cat, sat}, gold {cat, sat, down}: precision 1, recall 2/3, F1 0.8
    assert f1_score("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    # multiset overlap: x x y vs x y y share one x and one y: P = R = 2/3
    assert f1_score("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert f1_score("red", ["blue"]) == 0.0
    # multiple golds: the best one counts
    assert f1_score("paris france", ["paris", "in paris france", "london"]) == pytest.approx(0.8)
    assert exact_match("London", ["paris", "london"]) == 1.0


def test_no_answer_is_right_only_for_the_empty_prediction():
    for empty in ([], [""], ["", "  "], ["the"]):  # golds that normalize to nothing mean "no answer"
        assert exact_match("", empty) == 1.0 and f1_score("", empty) == 1.0
        assert exact_match("paris", empty) == 0.0 and f1_score("paris", empty) == 0.0
    assert exact_match("", ["paris"]) == 0.0 and f1_score("", ["paris"]) == 0.0
    assert f1_score("a", ["paris"]) == 0.0  # a prediction that normalizes to nothing is "no answer"


def test_squad_scores_in_percent_with_standard_errors():
    golds = {"1": ["Paris"], "2": ["the cat sat down"], "3": [], "4": ["blue"]}
    preds = {"1": "paris", "2": "cat sat", "3": "", "4": "red"}
    s = squad_scores(preds, golds)
    f1 = [100, 80, 100, 0]
    assert s["em"] == 50.0 and s["f1"] == pytest.approx(70.0) and s["n"] == 4
    assert s["em_se"] == pytest.approx(math.sqrt(torch.tensor([100., 0, 100, 0]).var().item() / 4))
    assert s["f1_se"] == pytest.approx(math.sqrt(torch.tensor(f1, dtype=torch.float64).var().item() / 4))
    with pytest.raises(ValueError, match="1 without a prediction"):
        squad_scores({"1": "x"}, {"1": ["x"], "2": ["y"]})
    with pytest.raises(ValueError, match="1 unknown"):
        squad_scores({"1": "x", "9": "y"}, {"1": ["x"]})


def _random_tags(rng, n):
    return [rng.choice(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) for _ in range(n)]


def test_bio_spans_equal_seqeval_entities():
    rng = random.Random(0)
    for _ in range(300):
        tags = _random_tags(rng, rng.randint(1, 12))
        assert bio_spans(tags) == set(get_entities(tags)), tags
    assert bio_spans(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER"]) == {
        ("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5), ("PER", 6, 6)}
    with pytest.raises(ValueError, match="not BIO"):
        bio_spans(["O", "X-PER"])


def test_entity_scores_equal_seqeval():
    rng = random.Random(1)
    for _ in range(40):
        lengths = [rng.randint(1, 10) for _ in range(rng.randint(1, 8))]
        gold = [_random_tags(rng, n) for n in lengths]
        pred = [[t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC"]) for t in g] for g in gold]
        ours = entity_scores(gold, pred, bootstrap=50)
        assert ours["precision"] == pytest.approx(seqeval_precision(gold, pred))
        assert ours["recall"] == pytest.approx(seqeval_recall(gold, pred))
        assert ours["f1"] == pytest.approx(seqeval_f1(gold, pred))
    # worked example: gold PER 0-1 and LOC 3; pred PER 0-1 and LOC 3-4 -> 1 of 2 right both ways
    s = entity_scores([["B-PER", "I-PER", "O", "B-LOC", "O"]], [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]])
    assert (s["precision"], s["recall"], s["f1"], s["entities"]) == (0.5, 0.5, 0.5, 2)
    assert s["f1_se"] == 0.0  # one sentence: every resample is the same
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1"):
        entity_scores([["O", "O"]], [["O"]])


def test_entity_f1_standard_error_is_seeded_and_sensible():
    rng = random.Random(2)
    gold = [_random_tags(rng, 8) for _ in range(200)]
    pred = [[t if rng.random() < 0.8 else "O" for t in g] for g in gold]
    a, b = entity_scores(gold, pred), entity_scores(gold, pred)
    assert a == b and 0.005 < a["f1_se"] < 0.05
    # more sentences, smaller error (about 1/sqrt(n))
    big = entity_scores(gold * 4, pred * 4)
    assert big["f1"] == pytest.approx(a["f1"]) and big["f1_se"] < 0.7 * a["f1_se"]


def test_accuracy_se():
    acc, se = accuracy_se(torch.tensor([True, False, True, True]))
    assert acc == 0.75 and se == pytest.approx(math.sqrt(0.25 / 4))
    with pytest.raises(ValueError, match="at least one"):
        accuracy_se(torch.tensor([], dtype=torch.bool))
