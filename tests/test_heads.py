"""The Figure 4 heads equal transformers' classes on copied weights, in both directions."""
from __future__ import annotations

import pytest
import torch
import transformers

from bertrepro.checkpoints import load_state_dict_strict
from bertrepro.config import BertConfig
from bertrepro.finetune.classifier import classifier_from_encoder
from bertrepro.heads import (BertForMultipleChoice, BertForQuestionAnswering, BertForTokenClassification,
                             head_from_encoder)
from bertrepro.model import BertForSequenceClassification, BertModel, LeftToRightBertModel, left_to_right

CFG = BertConfig.tiny(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=32)
B, K, T, C = 3, 4, 12, 5


def _hf_config(num_labels: int = 2):
    hf = CFG.to_hf()
    hf.num_labels = num_labels
    hf._attn_implementation = "eager"
    return hf


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CFG.vocab_size, shape, generator=g)
    types = torch.zeros_like(ids)
    types[..., shape[-1] // 2:] = 1
    mask = torch.ones_like(ids)
    mask[..., -3:] = 0  # padding at the end of every sequence
    mask[0, ..., -5:] = 0
    return ids, types, mask


def _pairs():
    g = torch.Generator().manual_seed(1)
    span = (torch.randint(0, T, (B,), generator=g), torch.randint(0, T, (B,), generator=g))
    span[0][0] = T + 7  # out of range: clamped to T and ignored, as transformers does
    tags = torch.randint(0, C, (B, T), generator=g)
    tags[:, 0] = -100
    tags[1, 5:] = -100
    return {
        "span": (lambda: BertForQuestionAnswering(CFG), lambda: transformers.BertForQuestionAnswering(_hf_config()),
                 (B, T), dict(start_positions=span[0], end_positions=span[1]), ("start_logits", "end_logits")),
        "tag": (lambda: BertForTokenClassification(CFG, C),
                lambda: transformers.BertForTokenClassification(_hf_config(C)),
                (B, T), dict(labels=tags), ("logits",)),
        "choice": (lambda: BertForMultipleChoice(CFG), lambda: transformers.BertForMultipleChoice(_hf_config()),
                   (B, K, T), dict(labels=torch.tensor([0, 3, 2])), ("logits",)),
        "pair": (lambda: BertForSequenceClassification(CFG, 3),
                 lambda: transformers.BertForSequenceClassification(_hf_config(3)),
                 (B, T), dict(labels=torch.tensor([0, 2, 1])), ("logits",)),
    }


@pytest.mark.parametrize("kind", ["span", "tag", "choice", "pair"])
@pytest.mark.parametrize("direction", ["ours_to_hf", "hf_to_ours"])
def test_head_equals_transformers_on_copied_weights(kind, direction):
    make_ours, make_hf, shape, targets, names = _pairs()[kind]
    torch.manual_seed(0)
    ours, hf = make_ours().eval(), make_hf().eval()
    assert set(ours.state_dict()) == set(hf.state_dict()) - {"bert.embeddings.position_ids",
                                                            "bert.embeddings.token_type_ids"}
    if direction == "ours_to_hf":
        load_state_dict_strict(hf, ours.state_dict())
    else:
        load_state_dict_strict(ours, hf.state_dict())
    ids, types, mask = _inputs(shape)
    with torch.no_grad():
        a = ours(ids, token_type_ids=types, attention_mask=mask, **targets)
        b = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, **targets)
    for name in names:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=1e-5)
    assert a.loss.item() > 0


def test_span_loss_is_the_mean_of_start_and_end_cross_entropies():
    torch.manual_seed(0)
    model = BertForQuestionAnswering(CFG).eval()
    ids, types, mask = _inputs((B, T))
    s, e = torch.tensor([1, 2, 3]), torch.tensor([4, 2, 5])
    out = model(ids, types, mask, start_positions=s, end_positions=e)
    ref = (torch.nn.functional.cross_entropy(out.start_logits, s) + torch.nn.functional.cross_entropy(out.end_logits, e)) / 2
    torch.testing.assert_close(out.loss, ref)
    with pytest.raises(ValueError, match="both start_positions and end_positions"):
        model(ids, types, mask, start_positions=s)


def test_multiple_choice_rejects_flat_inputs():
    with pytest.raises(ValueError, match=r"\(B, K, T\)"):
        BertForMultipleChoice(CFG)(torch.ones(2, 5, dtype=torch.long))


@pytest.mark.parametrize("kind,cls", [("pair", BertForSequenceClassification), ("span", BertForQuestionAnswering),
                                      ("tag", BertForTokenClassification), ("choice", BertForMultipleChoice)])
def test_head_from_encoder_copies_the_encoder_and_seeds_the_head(kind, cls):
    torch.manual_seed(0)
    enc = BertModel(CFG)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    model = head_from_encoder(kind, enc, num_labels=3, seed=1)
    assert type(model) is cls
    for k, v in model.bert.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())  # encoder untouched
    assert model.bert.embeddings.word_embeddings.weight.data_ptr() != enc.embeddings.word_embeddings.weight.data_ptr()
    head = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    again = [p for n, p in head_from_encoder(kind, enc, num_labels=3, seed=1).named_parameters() if not n.startswith("bert.")]
    other = [p for n, p in head_from_encoder(kind, enc, num_labels=3, seed=2).named_parameters() if not n.startswith("bert.")]
    assert all(torch.equal(a, b) for a, b in zip(head, again))
    assert not torch.equal(head[0], other[0])
    assert 0.005 < head[0].std() < 0.05  # truncated normal, sigma = initializer_range


def test_pair_head_is_chapter_10s_classifier():
    torch.manual_seed(0)
    enc = BertModel(CFG)
    a, b = head_from_encoder("pair", enc, 3, seed=4), classifier_from_encoder(enc, 3, seed=4)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_head_from_encoder_errors_and_options():
    enc = BertModel(CFG, add_pooling_layer=False)
    with pytest.raises(ValueError, match="unknown head kind 'qa'"):
        head_from_encoder("qa", enc)
    with pytest.raises(ValueError, match="no pooler"):
        head_from_encoder("choice", enc)
    with pytest.raises(TypeError, match="BertModel"):
        head_from_encoder("span", torch.nn.Linear(2, 2))
    span = head_from_encoder("span", enc, dropout=0.3)
    assert span.bert.pooler is None and span.bert.embeddings.dropout.p == 0.3
    causal = head_from_encoder("tag", left_to_right(BertModel(CFG)), num_labels=3)
    assert isinstance(causal.bert, LeftToRightBertModel)
