"""Baselines of the Figure 4 tasks on hand-made items and on the real tasks, and NSP zero-shot scoring."""
import math

import pytest
import torch

from bertrepro.config import BertConfig
from bertrepro.finetune.baselines import (CHANCE, _fit_threshold, choice_overlap, content_words, ner_lexicon,
                                          nsp_zero_shot, pair_majority, pair_overlap, qa_first_title_span,
                                          qa_random_sentence, title_shaped_spans)
from bertrepro.finetune.analogs import ChoiceItem, PairItem, SpanItem, TagItem, build_task, name_tags, sentence_words
from bertrepro.finetune.tasks import encode_texts
from bertrepro.model import BertForPreTraining
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path


def _span(i, question, context):
    return SpanItem(f"q{i}", question, context, [], "")


def test_title_shaped_spans():
    text = "The Aeneid is a poem by Virgil, the Duke of Wellington. In Paris, U.S. Army. The end"
    assert [text[s:e] for s, e in title_shaped_spans(text)] == \
        ["Aeneid", "Virgil", "Duke of Wellington", "Paris", "U.S", "Army"]


def test_qa_baselines_on_hand_items():
    items = [_span(0, "Latin epic poem", "The Aeneid is a Latin epic poem. Ulysses is a novel."),
             _span(1, "Novel by Joyce", "It rains. Ulysses is a novel by James Joyce.")]
    assert qa_first_title_span(items) == {"q0": "Aeneid", "q1": "It"}  # "Latin" is in the question of q0
    preds = qa_random_sentence(items, seed=3)
    assert preds == qa_random_sentence(items, seed=3)
    assert preds["q0"] in ("The Aeneid", "Ulysses") and preds["q1"] in ("It rains.", "Ulysses")
    many = [_span(i, "q", "Alpha is one. Beta is two. Gamma is three. Delta is four.") for i in range(200)]
    counts = {}
    for v in qa_random_sentence(many, seed=0).values():
        counts[v] = counts.get(v, 0) + 1
    assert set(counts) == {"Alpha", "Beta", "Gamma", "Delta"} and min(counts.values()) > 25
    with pytest.raises(TypeError, match="SpanItems"):
        qa_first_title_span([PairItem("p", "a", "b", 0)])


def test_ner_lexicon_on_hand_items():
    train = [TagItem(str(i), w, name_tags(w)) for i, w in enumerate([
        sentence_words("He lived in Paris and London."), sentence_words("She left Paris for Rome."),
        sentence_words("Rome fell."), sentence_words("They met in London and paris.")])]
    predict = ner_lexicon(train)
    assert predict.names == {"paris", "london", "rome"}  # "paris" once lower-case: still a name 2 to 1
    test = [TagItem("t", sentence_words("Paris Rome and london met ."), []),
            TagItem("u", sentence_words("Paris is big ."), [])]
    assert predict(test) == [["B-NAME", "I-NAME", "O", "B-NAME", "O", "O"], ["O", "O", "O", "O"]]
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        ner_lexicon([TagItem("x", ["a", "b"], ["O"])])


def test_choice_overlap_on_hand_items():
    items = [ChoiceItem("c0", "The violin has four strings.", ["A cat sat.", "Its strings are tuned in fifths.",
                                                               "Rain fell.", "The sun set."], 1),
             ChoiceItem("c1", "Nothing shared here.", ["w", "x", "y", "z"], 2)]
    assert choice_overlap(items).tolist() == [1, 0]  # a tie goes to the first ending
    assert content_words("The violin and its strings") == {"violin", "strings"}


def test_pair_baselines_on_hand_items():
    train = [PairItem("a", "red apple fruit", "the red apple is a fruit", 1),
             PairItem("b", "red apple fruit", "a blue car", 0),
             PairItem("c", "fast blue car", "the fast blue car drove", 1),
             PairItem("d", "fast blue car", "a red apple", 0),
             PairItem("e", "green tree", "a river", 0)]
    assert pair_majority(train, train[:3]).tolist() == [0, 0, 0]
    assert pair_overlap(train, train).tolist() == [1, 0, 1, 0, 0]
    test = [PairItem("t", "green tree leaf", "a green tree leaf", 1), PairItem("u", "green tree", "the moon", 0)]
    assert pair_overlap(train, test).tolist() == [1, 0]


def test_fit_threshold_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 12, (300,), generator=g).double() / 11
    labels = (scores + 0.3 * torch.randn(300, generator=g, dtype=torch.float64) > 0.5).long()
    t = _fit_threshold(scores, labels)
    best = max(((scores > c).long() == labels).double().mean().item() for c in [-1.0, *scores.tolist()])
    assert ((scores > t).long() == labels).double().mean().item() == pytest.approx(best)


@pytest.fixture(scope="module")
def tiny_pretraining_model():
    tok = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    return BertForPreTraining(config).eval(), tok


def test_nsp_zero_shot_scores_isnext_of_the_nsp_head(tiny_pretraining_model):
    model, tok = tiny_pretraining_model
    items = [ChoiceItem("c0", "Paris is a city.", ["It is in France.", "Cats purr.", "A B C.", "Rain."], 0),
             ChoiceItem("c1", "Mars is red.", ["W.", "X.", "It has two moons.", "Z."], 2)]
    preds, scores = nsp_zero_shot(model, tok, items, 32, batch_size=3, return_scores=True)
    enc = encode_texts(tok, [it.context for it in items for _ in range(4)], 32, [e for it in items for e in it.endings])
    with torch.no_grad():
        logits = model(enc.input_ids, enc.token_type_ids, enc.attention_mask).seq_relationship_logits
    # transformers' convention (BertForPreTraining docs): next_sentence_label 0 = "B is a continuation of A"
    want = torch.softmax(logits, -1)[:, 0].view(2, 4)
    torch.testing.assert_close(scores, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(preds, want.argmax(1))
    with torch.no_grad():  # a head that favors class 0 on every input makes every P(IsNext) large
        model.cls.seq_relationship.bias.copy_(torch.tensor([20.0, -20.0]))
        assert (nsp_zero_shot(model, tok, items, 32, return_scores=True)[1] > 0.99).all()
        model.cls.seq_relationship.bias.zero_()
    with pytest.raises(TypeError, match="BertForPreTraining"):
        nsp_zero_shot(model.bert, tok, items, 32)


def _accuracy_se(pred, items):
    y = torch.tensor([it.label for it in items])
    acc = (pred == y).double().mean().item()
    return acc, math.sqrt(acc * (1 - acc) / len(y))


def test_baselines_on_the_real_tasks():
    """Word overlap carries real signal on the choice and pair tasks (above chance by more than 3 SE),
    the majority class does not, and the constant chance level is 1/4."""
    swag, qnli = build_task("swag"), build_task("qnli")
    assert CHANCE == 1 / len(swag.test[0].endings)
    for split in ("dev", "test"):
        acc, se = _accuracy_se(choice_overlap(swag.split(split)), swag.split(split))
        assert acc > CHANCE + 3 * se
        majority, _ = _accuracy_se(pair_majority(qnli.train, qnli.split(split)), qnli.split(split))
        assert abs(majority - 0.5) < 0.01  # balanced classes
        acc, se = _accuracy_se(pair_overlap(qnli.train, qnli.split(split)), qnli.split(split))
        assert acc > majority + 3 * se


def test_qa_and_ner_baselines_on_the_real_tasks():
    squad, ner = build_task("squad11", max_items=200), build_task("ner", max_items=400)
    titles = {it.id: it.answers[0]["text"] for it in squad.test}
    first = qa_first_title_span(squad.test)
    hits = sum(first[i] == t for i, t in titles.items()) / len(titles)
    assert 0 < hits < 0.5  # it sometimes finds the answer and usually not
    predict = ner_lexicon(ner.train)
    pred = predict(ner.test)
    gold_names = sum(t != "O" for it in ner.test for t in it.tags)
    found = sum(p != "O" and g != "O" for it, ps in zip(ner.test, pred) for p, g in zip(ps, it.tags))
    assert 0.2 * gold_names < found < gold_names
