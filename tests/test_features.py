"""The feature-based arm (BERT §5.3, Table 7): layer choices, the weighted sum, frozen features read
from the model's own hidden states, one encoding per split shared by every choice, and the heads."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bertrepro.config import BertConfig
from bertrepro.finetune.analog_features import best_choice, run_features
from bertrepro.finetune.analog_runs import AnalogBudget, encode_task, score_outputs
from bertrepro.finetune.analogs import NAME_TAGS, PairItem, TagItem, first_subtoken_mask
from bertrepro.finetune.features import (LAYER_CHOICES, PAPER_TABLE7, FeatureCache, FeatureHead, LayerMix,
                                         collapsed_choices, encode_features, feature_logits, layer_indices,
                                         train_feature_head)
from bertrepro.finetune.tasks import Arm, load_arm
from bertrepro.model import BertModel


def test_layer_choices_are_table_7s_rows():
    assert set(LAYER_CHOICES) == set(PAPER_TABLE7) and len(LAYER_CHOICES) == 6
    assert PAPER_TABLE7["concat_last_four"] == 96.1 and PAPER_TABLE7["embeddings"] == 91.0
    assert layer_indices("embeddings", 12) == (0,) and layer_indices("second_to_last", 12) == (11,)
    assert layer_indices("last", 12) == (12,) and layer_indices("sum_last_four", 12) == (9, 10, 11, 12)
    assert layer_indices("sum_all", 12) == tuple(range(1, 13))


def test_which_rows_collapse_at_small_depth():
    assert collapsed_choices(12) == {} and collapsed_choices(6) == {}
    assert collapsed_choices(2) == {"sum_all": "sum_last_four"}
    # one layer: the second-to-last is the embeddings, and every sum or concatenation is that layer
    one = collapsed_choices(1)
    assert one["second_to_last"] == "embeddings" and one["sum_all"] == "last" and one["concat_last_four"] == "last"
    with pytest.raises(ValueError, match="unknown layer choice"):
        layer_indices("middle", 4)


def test_weighted_sum_is_a_softmax_and_one_weight_picks_one_layer():
    states = torch.randn(4, 5, 7, 8, generator=torch.Generator().manual_seed(0))  # (B, T, L+1, H)
    mix = LayerMix("sum_all", num_layers=6, hidden_size=8)
    with torch.no_grad():
        mix.scalars.copy_(torch.tensor([0.3, -2.0, 1.0, 0.0, 0.5, -0.1]))
    w = mix.weights().detach()
    assert (w > 0).all() and math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
    assert_close(w, torch.softmax(mix.scalars.detach(), 0))
    assert_close(mix(states), sum(w[k] * states[..., 1 + k, :] for k in range(6)))
    with torch.no_grad():
        mix.scalars.copy_(torch.tensor([-1e9, -1e9, 0.0, -1e9, -1e9, -1e9]))  # weight 1 on layer 3
    assert_close(mix(states), states[..., 3, :])
    concat = LayerMix("concat_last_four", num_layers=6, hidden_size=8)
    assert concat.out_dim == 32 and concat.scalars is None
    assert_close(concat(states), states[..., 3:7, :].flatten(-2))
    assert_close(LayerMix("embeddings", 6, 8)(states), states[..., 0, :])


# ----------------------------------------------------------------------------- frozen features


@pytest.fixture(scope="module")
def arm():
    tok = load_arm("minilm").tokenizer  # bert-base-uncased's vocabulary, no network
    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    return Arm("tiny", BertModel(cfg).eval(), tok, "tiny")


BUDGET = AnalogBudget(max_train=None, max_eval=None, max_seq_length=24, doc_stride=8, max_query_length=8,
                      max_answer_length=5, epochs=1, batch_size=4, min_steps=0, learning_rates={},
                      feature_epochs=3, feature_min_epochs=1, feature_patience=1)


def _pairs(n=20):
    return [PairItem(f"p{i}", f"an item about topic {i % 4}", f"a sentence on topic {i % 4 if i % 2 else 9}",
                     int(i % 2 == 1), f"T{i}") for i in range(n)]


def _tags(n=12):
    words = [["Isaac", "Newton", "was", "born", "in", "Woolsthorpe", "."], ["the", "apple", "fell", "."]]
    tags = [["B-NAME", "I-NAME", "O", "O", "O", "B-NAME", "O"], ["O", "O", "O", "O"]]
    return [TagItem(f"t{i}", words[i % 2], tags[i % 2], "") for i in range(n)]


def test_features_are_the_models_hidden_states_at_the_heads_positions(arm):
    enc = encode_task("pair", _pairs(6), arm.tokenizer, BUDGET)
    fs = encode_features(arm.encoder, "pair", enc.inputs, batch_size=4)
    with torch.no_grad():
        o = arm.encoder(enc.inputs["input_ids"], enc.inputs["token_type_ids"], enc.inputs["attention_mask"],
                        output_hidden_states=True)
    want = torch.stack(o.hidden_states, 2)[:, 0]  # [CLS], every layer: (N, L+1, H)
    assert fs.x.shape == (6, 4, 16)
    assert_close(fs.x, want, atol=1e-5, rtol=1e-5)  # trimmed batches change nothing (padding is masked)
    mean = encode_features(arm.encoder, "pair", enc.inputs, batch_size=4, pooling="mean")
    m = enc.inputs["attention_mask"][:, :, None, None].float()
    assert_close(mean.x, (torch.stack(o.hidden_states, 2) * m).sum(1) / m.sum(1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling must be"):
        encode_features(arm.encoder, "pair", enc.inputs, pooling="max")
    tags = encode_task("tag", _tags(4), arm.tokenizer, BUDGET)
    inputs = {**tags.inputs, "word_index": tags.word_index}
    ft = encode_features(arm.encoder, "tag", inputs, batch_size=3)
    with torch.no_grad():
        o = arm.encoder(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"],
                        output_hidden_states=True)
    first = first_subtoken_mask(tags.word_index)
    assert_close(ft.x, torch.stack(o.hidden_states, 2)[first], atol=1e-5, rtol=1e-5)
    assert ft.offsets.tolist()[-1] == sum(len(it.words) for it in tags.items) and len(ft) == 4
    assert (ft.targets["labels"] >= 0).all()  # one label per word, on its first piece


def test_one_encoding_per_split_shared_by_every_layer_choice(arm, monkeypatch):
    import bertrepro.finetune.analog_features as af

    calls = []
    real = af.encode_features
    monkeypatch.setattr(af, "encode_features", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    items = _pairs(24)
    enc = {s: encode_task("pair", items, arm.tokenizer, BUDGET) for s in ("train", "dev", "test")}
    cache = FeatureCache()
    out = run_features("qnli", arm, enc, BUDGET, cache, seed=0)
    assert set(out) == set(LAYER_CHOICES) and len(calls) == 3  # train, dev, test: once each
    assert cache.computed == {("tiny", "qnli", s): 1 for s in ("train", "dev", "test")}
    run_features("qnli", arm, enc, BUDGET, cache, choices=("last",), seed=0)
    assert len(calls) == 3  # a second pass over the same splits encodes nothing
    assert best_choice(out) in LAYER_CHOICES


def test_a_feature_head_learns_and_keeps_its_best_epoch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, 8, generator=g)  # (N, L+1, H) with L = 2
    y = (x[:, 2, 0] > 0).long()  # the last layer's first unit decides
    from bertrepro.finetune.features import FeatureSet

    train = FeatureSet("pair", x[:150], {"labels": y[:150]})
    dev = FeatureSet("pair", x[150:], {"labels": y[150:]})

    def acc(h):
        return float((feature_logits(h, dev)["logits"].argmax(-1) == y[150:]).double().mean())

    scores = []
    for seed in (0, 0):
        head = FeatureHead("pair", "last", 2, 8, tagger="linear")
        info = train_feature_head(head, train, acc, max_epochs=15, patience=3, learning_rate=0.05, seed=seed)
        scores.append((info["dev"], acc(head)))
        assert info["dev"] == max(info["curve"]) and acc(head) == info["dev"]  # the best epoch is restored
    assert scores[0] == scores[1] and scores[0][0] > 0.9  # seeded and learned
    with pytest.raises(ValueError, match="BiLSTM reads a sentence"):
        FeatureHead("pair", "last", 2, 8, tagger="bilstm")


def test_tag_heads_score_through_the_fine_tuned_scorer(arm):
    items = _tags(12)
    enc = {s: encode_task("tag", items, arm.tokenizer, BUDGET) for s in ("train", "dev", "test")}
    out = run_features("ner", arm, enc, BUDGET, FeatureCache(), choices=("last",), seed=0)["last"]
    # the scorer's per-token logits put each word's score on its first piece: predictions cover every word
    assert [len(p) for p in out.test["predictions"]] == [len(it.words) for it in items]
    assert len(out.test["per_item"]) == 12 and 0.0 <= out.test["f1"] <= 100.0
    bil = run_features("ner", arm, enc, BUDGET, FeatureCache(), choices=("last",), seed=0, tagger="bilstm")["last"]
    assert [len(p) for p in bil.test["predictions"]] == [len(it.words) for it in items]
    assert set(NAME_TAGS) >= {t for p in bil.test["predictions"] for t in p}
