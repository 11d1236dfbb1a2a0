import dataclasses

import pytest

from bertrepro import BertConfig


def test_presets_match_paper():
    b, l, t = BertConfig.base(), BertConfig.large(), BertConfig.tiny()
    assert (b.num_hidden_layers, b.hidden_size, b.num_attention_heads, b.intermediate_size) == (12, 768, 12, 3072)
    assert (l.num_hidden_layers, l.hidden_size, l.num_attention_heads, l.intermediate_size) == (24, 1024, 16, 4096)
    assert (t.num_hidden_layers, t.hidden_size, t.num_attention_heads) == (2, 128, 2)
    assert b.head_size == 64 and l.head_size == 64


def test_hf_round_trip_and_field_names():
    import transformers

    for cfg in (BertConfig.base(), BertConfig.large(), BertConfig.tiny(hidden_dropout_prob=0.0)):
        hf = cfg.to_hf()
        assert isinstance(hf, transformers.BertConfig)
        for f in dataclasses.fields(BertConfig):
            assert getattr(hf, f.name) == getattr(cfg, f.name), f.name
        assert BertConfig.from_hf(hf) == cfg
    # transformers' defaults are BERT-base: the field names and defaults agree
    assert BertConfig.from_hf(transformers.BertConfig()) == BertConfig.base()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hidden_size=100, num_attention_heads=12), "divisible"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(vocab_size=1.5), "vocab_size"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob"),
        (dict(hidden_act="swish"), "hidden_act"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
        (dict(pad_token_id=40000), "pad_token_id"),
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BertConfig(**kwargs)


def test_unknown_field_in_dict_is_an_error():
    with pytest.raises(ValueError, match="unknown BertConfig field"):
        BertConfig.from_dict({"hidden_size": 64, "num_attention_heads": 2, "hiden_layers": 3})


def test_relative_positions_are_rejected():
    with pytest.raises(ValueError, match="absolute"):
        BertConfig.from_hf({"position_embedding_type": "relative_key"})
