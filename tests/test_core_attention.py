import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bertrepro.attention import MultiHeadAttention, key_padding_mask, scaled_dot_product_attention
from bertrepro.positional import shift_matrix, sinusoidal_encoding


def _padding_mask(B=3, T=7):
    m = torch.ones(B, T, dtype=torch.long)
    m[1, 4:] = 0
    m[2, 1:] = 0
    return m


def test_explicit_attention_matches_torch_sdpa_with_padding():
    q, k, v = (torch.randn(3, 4, 7, 8) for _ in range(3))
    mask = key_padding_mask(_padding_mask())
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert_close(w.sum(-1), torch.ones(3, 4, 7))  # rows sum to 1
    assert (w[1, :, :, 4:] == 0).all() and (w[2, :, :, 1:] == 0).all()  # padded keys get no weight


def test_explicit_attention_matches_manual_formula_and_causal():
    q, k, v = torch.randn(5, 8), torch.randn(6, 8), torch.randn(6, 3)
    ref = torch.softmax(q @ k.T / math.sqrt(8), dim=-1) @ v
    assert_close(scaled_dot_product_attention(q, k, v)[0], ref)
    q, k, v = (torch.randn(2, 6, 8) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (w.triu(1) == 0).all()


def test_mha_matches_torch_multiheadattention():
    H, A = 32, 4
    ours = MultiHeadAttention(H, A).eval()
    ref = torch.nn.MultiheadAttention(H, A, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        ref.out_proj.weight.copy_(ours.dense.weight)
        ref.out_proj.bias.copy_(ours.dense.bias)
    x = torch.randn(3, 7, H)
    pad = _padding_mask()
    expected, expected_w = ref(x, x, x, key_padding_mask=pad == 0, average_attn_weights=False)
    got_fast, none = ours(x, key_padding_mask(pad))
    got, w = ours(x, key_padding_mask(pad), output_attentions=True)
    assert none is None
    assert_close(got_fast, expected, atol=1e-5, rtol=1e-5)
    assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert_close(w, expected_w, atol=1e-6, rtol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == 4 * H * H + 4 * H


def test_mha_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)


def test_key_padding_mask_shape_check():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        key_padding_mask(torch.ones(2, 3, 4))


def test_sinusoidal_matches_formula_and_shift():
    P, d = 50, 16
    pe = sinusoidal_encoding(P, d)
    pos, i = 13, 3
    assert_close(pe[pos, 2 * i], torch.tensor(math.sin(pos / 10000 ** (2 * i / d))))
    assert_close(pe[pos, 2 * i + 1], torch.tensor(math.cos(pos / 10000 ** (2 * i / d))))
    for k in (1, 5, 17):
        assert_close(pe[:-k] @ shift_matrix(k, d).T, pe[k:], atol=1e-5, rtol=1e-5)
    assert sinusoidal_encoding(4, 7).shape == (4, 7)
    with pytest.raises(ValueError):
        sinusoidal_encoding(0, 8)
