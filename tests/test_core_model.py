"""The model against transformers' BERT with copied weights: hidden states, then logits, then argmax."""
import pytest
import torch
import transformers
from torch.testing import assert_close

from bertrepro import BertConfig, BertForPreTraining, BertModel
from bertrepro.checkpoints import from_hf, to_hf
from bertrepro.model import IGNORE_INDEX

CONFIGS = [
    BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
               max_position_embeddings=24),
    BertConfig(vocab_size=50, hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
               max_position_embeddings=16, hidden_act="gelu_new", type_vocab_size=3, layer_norm_eps=1e-6),
]


def _hf(cls, cfg):
    hfc = cfg.to_hf()
    hfc._attn_implementation = "eager"
    return cls(hfc).eval()


def _batch(cfg, B=4, T=12):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    tt = torch.zeros_like(ids)
    tt[:, T // 2:] = 1
    am = torch.ones_like(ids)
    am[1, 9:] = 0
    am[3, 4:] = 0
    ids = ids.masked_fill(am == 0, cfg.pad_token_id)
    return ids, tt, am


@pytest.mark.parametrize("cfg", CONFIGS)
def test_bert_model_matches_transformers(cfg):
    hf = _hf(transformers.BertModel, cfg)
    ours = from_hf(hf)
    assert isinstance(ours, BertModel)
    ids, tt, am = _batch(cfg)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=tt, attention_mask=am, output_attentions=True)
        got = ours(ids, tt, am, output_attentions=True)
        fast = ours(ids, tt, am)
    assert_close(got.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert_close(fast.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert_close(got.pooler_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
    assert len(got.attentions) == cfg.num_hidden_layers and fast.attentions is None
    for a, b in zip(got.attentions, ref.attentions):
        assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_every_hidden_state_matches_transformers(cfg):
    hf = _hf(transformers.BertModel, cfg)
    ours = from_hf(hf)
    ids, tt, am = _batch(cfg)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=tt, attention_mask=am, output_hidden_states=True)
        got = ours(ids, tt, am, output_hidden_states=True)
    assert len(got.hidden_states) == len(ref.hidden_states) == cfg.num_hidden_layers + 1
    for a, b in zip(got.hidden_states, ref.hidden_states):
        assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert got.hidden_states[-1] is got.last_hidden_state and ours(ids, tt, am).hidden_states is None


@pytest.mark.parametrize("cfg", CONFIGS)
def test_pretraining_heads_match_transformers(cfg):
    hf = _hf(transformers.BertForPreTraining, cfg)
    ours = from_hf(hf)
    assert isinstance(ours, BertForPreTraining)
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight  # still tied
    assert ours.cls.predictions.decoder.bias is ours.cls.predictions.bias
    ids, tt, am = _batch(cfg)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 2], labels[1, 5], labels[2, 7], labels[3, 1] = 5, 6, 7, 8
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=tt, attention_mask=am, labels=labels, next_sentence_label=nsp)
        full = ours(ids, tt, am)
        got = ours(ids, tt, am, labels=labels, next_sentence_label=nsp)
    # logits, then the loss, then the argmax tokens
    assert_close(full.prediction_logits, ref.prediction_logits, atol=1e-5, rtol=1e-5)
    assert_close(full.seq_relationship_logits, ref.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    assert_close(got.prediction_logits, ref.prediction_logits[labels != IGNORE_INDEX], atol=1e-5, rtol=1e-5)
    assert_close(got.loss, ref.loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(full.prediction_logits.argmax(-1), ref.prediction_logits.argmax(-1))


def test_decoder_is_tied_and_bias_shared():
    m = BertForPreTraining(CONFIGS[0])
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
    assert m.cls.predictions.decoder.bias is m.cls.predictions.bias


def test_fast_and_explicit_paths_agree_including_causal_and_gradients():
    cfg = CONFIGS[0]
    m = BertModel(cfg).eval()
    ids, tt, am = _batch(cfg)
    for causal in (False, True):
        a = m(ids, tt, am, is_causal=causal).last_hidden_state
        b = m(ids, tt, am, output_attentions=True, is_causal=causal).last_hidden_state
        assert_close(a, b, atol=1e-5, rtol=1e-5)
    ga = torch.autograd.grad(m(ids, tt, am).last_hidden_state.sum(), m.embeddings.word_embeddings.weight)[0]
    gb = torch.autograd.grad(m(ids, tt, am, output_attentions=True).last_hidden_state.sum(),
                             m.embeddings.word_embeddings.weight)[0]
    assert_close(ga, gb, atol=1e-4, rtol=1e-4)


def test_causal_model_does_not_see_the_future():
    cfg = CONFIGS[0]
    m = BertModel(cfg).eval()
    ids, tt, _ = _batch(cfg)
    ids2 = ids.clone()
    ids2[:, 8:] = (ids2[:, 8:] + 1) % cfg.vocab_size
    a = m(ids, tt, is_causal=True).last_hidden_state
    b = m(ids2, tt, is_causal=True).last_hidden_state
    assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_appending_padding_leaves_outputs_unchanged():
    cfg = CONFIGS[0]
    m = BertForPreTraining(cfg).eval()
    ids, tt, am = _batch(cfg)
    pad = torch.zeros(ids.shape[0], 5, dtype=torch.long)
    with torch.no_grad():
        a = m(ids, tt, am)
        b = m(torch.cat([ids, pad], 1), torch.cat([tt, pad], 1), torch.cat([am, pad], 1))
    real = am.bool()
    assert_close(b.prediction_logits[:, :12][real], a.prediction_logits[real], atol=1e-5, rtol=1e-5)
    assert_close(b.seq_relationship_logits, a.seq_relationship_logits, atol=1e-5, rtol=1e-5)


def test_to_hf_round_trip_equal_outputs():
    cfg = CONFIGS[1]
    ours = BertForPreTraining(cfg).eval()
    hf = to_hf(ours)
    ids, tt, am = _batch(cfg)
    with torch.no_grad():
        assert_close(ours(ids, tt, am).prediction_logits,
                     hf(input_ids=ids, token_type_ids=tt, attention_mask=am).prediction_logits, atol=1e-5, rtol=1e-5)


def test_sequence_longer_than_positions_is_an_error():
    cfg = CONFIGS[1]
    with pytest.raises(ValueError, match="max_position_embeddings"):
        BertModel(cfg)(torch.ones(1, 17, dtype=torch.long))


def test_initialisation_is_truncated_normal():
    cfg = BertConfig.tiny(vocab_size=1000)
    m = BertForPreTraining(cfg)
    w = m.bert.encoder.layer[0].intermediate.dense.weight
    assert w.abs().max() <= 2 * cfg.initializer_range + 1e-7
    assert abs(w.std().item() - 0.88 * cfg.initializer_range) < 0.002  # std of N(0,σ) truncated at ±2σ ≈ 0.88σ
    assert (m.bert.encoder.layer[0].output.dense.bias == 0).all()


def test_truncated_normal_matches_torch_reference_distribution():
    from scipy import stats

    from bertrepro.model import truncated_normal_

    ours = truncated_normal_(torch.empty(200_000), 0.02)
    ref = torch.nn.init.trunc_normal_(torch.empty(200_000), std=0.02, a=-0.04, b=0.04)
    assert ours.abs().max() <= 0.04
    # two-sample Kolmogorov-Smirnov: same distribution (p far from rejection at this seed)
    assert stats.ks_2samp(ours.numpy(), ref.numpy()).pvalue > 1e-3
