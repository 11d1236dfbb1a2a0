"""Saved heads load into transformers with the same logits; transformers' windows, QA model and
token-classification pipeline give our answers."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

from bertrepro.checkpoints import minilm_dir
from bertrepro.config import BertConfig
from bertrepro.finetune.interop import (hf_span_answers, pipeline_agreement, save_hf_head, tag_pipeline_agreement,
                                        to_hf_head)
from bertrepro.heads import BertForMultipleChoice, BertForQuestionAnswering, BertForTokenClassification
from bertrepro.model import BertForSequenceClassification
from bertrepro.spans import decode_spans, featurize_spans, span_and_null_scores

VOCAB = minilm_dir() / "vocab.txt"
CFG = BertConfig.tiny(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64)
TAGS = {0: "O", 1: "B-NAME", 2: "I-NAME"}


@pytest.fixture(scope="module")
def tok():
    return transformers.BertTokenizerFast(vocab=str(VOCAB), do_lower_case=True)


def _heads():
    torch.manual_seed(0)
    return [BertForQuestionAnswering(CFG), BertForTokenClassification(CFG, 3), BertForMultipleChoice(CFG),
            BertForSequenceClassification(CFG, 3)]


@pytest.mark.parametrize("index", range(4))
def test_saved_head_loads_into_transformers_with_equal_logits(tmp_path, tok, index):
    model = _heads()[index].eval()
    name = type(model).__name__
    out = save_hf_head(model, tmp_path / "m", VOCAB, id2label=TAGS if name == "BertForTokenClassification" else None)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == [name]
    hf = getattr(transformers, name).from_pretrained(str(out), attn_implementation="eager").eval()
    hf_tok = transformers.BertTokenizerFast.from_pretrained(str(out))
    text = ("The Thames flows through London.", "It is England's longest river.")
    assert hf_tok(*text)["input_ids"] == tok(*text)["input_ids"] and hf_tok.do_lower_case
    enc = tok(*text, return_tensors="pt")
    args = {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    if name == "BertForMultipleChoice":
        args = {k: v[:, None].expand(1, 4, v.shape[1]).clone() for k, v in args.items()}
        args["input_ids"][0, 1, 3] = 2000
    with torch.no_grad():
        ours, theirs, memory = model(**args), hf(**args), to_hf_head(model)(**args)
    for field in ("start_logits", "end_logits") if name == "BertForQuestionAnswering" else ("logits",):
        torch.testing.assert_close(getattr(ours, field), getattr(theirs, field), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(ours, field), getattr(memory, field), atol=1e-5, rtol=1e-5)
    if name == "BertForTokenClassification":
        assert hf.config.id2label == TAGS


def test_save_refuses_a_vocabulary_of_another_size(tmp_path):
    small = tmp_path / "vocab.txt"
    small.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(ValueError, match="vocabulary mismatch: .* has 5 pieces but the model has vocab_size=30522"):
        save_hf_head(_heads()[0], tmp_path / "m", small)
    with pytest.raises(TypeError, match="not a task head"):
        save_hf_head(torch.nn.Linear(2, 2), tmp_path / "m", VOCAB)


def test_our_windows_equal_the_tokenizers_overflow_windows(tok):
    ctx = " ".join(["alpha", "beta", "gamma", "delta"] * 12 + ["the", "river", "thames"] + ["alpha", "beta"] * 9)
    item = dict(id="a", question="which river", context=ctx, answers=[])
    for max_seq_length, stride in [(23, 8), (30, 5), (23, 30)]:
        f = featurize_spans([item], tok, max_seq_length, stride)
        room = max_seq_length - 2 - 3
        enc = tok(item["question"], ctx, truncation="only_second", max_length=max_seq_length,
                  stride=room - min(stride, room), return_overflowing_tokens=True, padding="max_length",
                  return_tensors="pt")
        assert len(f) >= 3
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(enc[key], getattr(f, key)), key


def _span_items():
    filler = ["alpha", "beta", "gamma", "delta", "river", "stone", "north", "field"]
    long_ctx = " ".join(filler[(n * 3) % 8] for n in range(70)) + ". The Thames flows east."
    return [
        dict(id="1", question="which river flows east", context=long_ctx, answers=[]),
        dict(id="2", question="who wrote it", context="Jane Austen wrote Emma in 1815, in Hampshire.", answers=[]),
        dict(id="3", question="where", context="The castle stands on a hill above the old town.", answers=[]),
        dict(id="4", question="what colour is the sky", context="Blue, mostly; grey in winter.", answers=[]),
    ]


def test_transformers_answers_equal_decode_spans(tmp_path, tok):
    torch.manual_seed(3)
    model = BertForQuestionAnswering(CFG).eval()
    with torch.no_grad():
        model.qa_outputs.weight.mul_(100)  # spread the logits: no near-ties that rounding could flip
    path = save_hf_head(model, tmp_path / "qa", VOCAB)
    items = _span_items()
    settings = dict(max_seq_length=32, doc_stride=10, max_answer_length=6)
    f = featurize_spans(items, tok, settings["max_seq_length"], settings["doc_stride"])
    assert sum(w.example_index == 0 for w in f.windows) >= 3
    with torch.no_grad():
        out = model(f.input_ids, f.token_type_ids, f.attention_mask)
    margins = sorted(span - null for _, span, null in
                     span_and_null_scores(f, out.start_logits, out.end_logits, settings["max_answer_length"]).values())
    middle = (margins[1] + margins[2]) / 2  # two questions answered, two not
    for tau in (middle, None):
        ours = decode_spans(f, out.start_logits, out.end_logits, settings["max_answer_length"], null_threshold=tau)
        assert hf_span_answers(path, items, **settings, null_threshold=tau) == ours
        assert pipeline_agreement(path, items, ours, **settings, null_threshold=tau) == 1.0
        if tau is not None:
            assert sum(v == "" for v in ours.values()) == 2
    assert any(ours.values()) and len(set(ours.values())) > 1
    wrong = {**ours, "2": ours["2"] + " x"}
    assert pipeline_agreement(path, items, wrong, **settings) == 0.75
    with pytest.raises(ValueError, match="no prediction"):
        pipeline_agreement(path, items, {"1": ""}, **settings)


def _first_subtoken_tags(model, tok, sentences):
    out = []
    for words in sentences:
        enc = tok(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            labels = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).logits[0].argmax(-1)
        ids, seen = enc.word_ids(0), set()
        tags = []
        for t, w in enumerate(ids):
            if w is not None and w not in seen:
                seen.add(w)
                tags.append(TAGS[int(labels[t])])
        out.append(tags)
    return out


def test_token_classification_pipeline_equals_first_subtoken_tags(tmp_path, tok):
    torch.manual_seed(5)
    model = BertForTokenClassification(CFG, 3).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    path = save_hf_head(model, tmp_path / "ner", VOCAB, id2label=TAGS)
    sentences = [s.split() for s in ("jane austen wrote emma in hampshire", "the thames flows through london",
                                     "unbelievably long hyphenless wordings appear", "a b c d e f g h",
                                     "photosynthesis converts sunlight into chemical energy")]
    preds = _first_subtoken_tags(model, tok, sentences)
    assert sum(t != "O" for p in preds for t in p) >= 3  # some entities to compare
    assert any(len(tok.tokenize(w)) > 1 for s in sentences for w in s)  # some words have several pieces
    assert tag_pipeline_agreement(path, sentences, preds) == 1.0
    flipped = [list(p) for p in preds]
    flipped[0] = ["B-NAME" if t == "O" else "O" for t in flipped[0]]
    assert tag_pipeline_agreement(path, sentences, flipped) == 0.8
