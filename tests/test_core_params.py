"""Closed-form parameter counts against instantiated models and the published figures."""
import pytest
import torch
import transformers

from bertrepro import BertConfig, BertForPreTraining, BertModel
from bertrepro.params import breakdown, count_parameters, shortcut_count


def _numel(m):
    return sum(p.numel() for p in m.parameters())  # parameters() yields tied tensors once


def test_published_exact_counts():
    assert count_parameters(BertConfig.base()) == 109_482_240
    assert count_parameters(BertConfig.base(), pooler=False) == 108_891_648
    assert count_parameters(BertConfig.large()) == 335_141_888
    assert count_parameters(BertConfig.large(), pooler=False) == 334_092_288
    assert count_parameters(BertConfig.base(), heads=True) == 110_106_428
    assert count_parameters(BertConfig.large(), heads=True) == 336_226_108


def test_base_breakdown_matches_reference():
    b = breakdown(BertConfig.base())
    assert b["embeddings.word_embeddings"] == 23_440_896
    assert b["embeddings.position_embeddings"] == 393_216
    assert sum(v for k, v in b.items() if k.startswith("embeddings.")) == 23_837_184
    assert b["encoder.layer (one)"] == 7_087_872
    assert b["encoder"] == 85_054_464
    assert b["pooler"] == 590_592
    assert b["cls.predictions.transform"] == 592_128 and b["cls.predictions.bias"] == 30_522
    assert b["cls.seq_relationship"] == 1_538
    assert b["encoder"] - 12 * 12 * 768 ** 2 == 12 * 9_984


@pytest.mark.parametrize("cfg", [BertConfig.base(), BertConfig.large(),
                                 BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
                                 BertConfig(vocab_size=777, hidden_size=60, num_hidden_layers=3, num_attention_heads=5,
                                            intermediate_size=100, type_vocab_size=3, max_position_embeddings=33)])
def test_counts_equal_instantiated_models(cfg):
    with torch.device("meta"):
        ours, ours_pt = BertModel(cfg), BertForPreTraining(cfg)
        ours_np = BertModel(cfg, add_pooling_layer=False)
        hf = transformers.BertModel(cfg.to_hf())
        hf_pt = transformers.BertForPreTraining(cfg.to_hf())
    assert _numel(ours) == _numel(hf) == count_parameters(cfg)
    assert _numel(ours_np) == count_parameters(cfg, pooler=False)
    assert _numel(ours_pt) == _numel(hf_pt) == count_parameters(cfg, heads=True)


def test_minilm_shape_count():
    assert count_parameters(BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)) == 22_713_216


def test_shortcut_undercounts():
    cfg = BertConfig.base()
    assert shortcut_count(cfg) == 30522 * 768 + 12 * 12 * 768 ** 2
    assert shortcut_count(cfg) < count_parameters(cfg)
