"""Scaled dot-product and multi-head attention (Vaswani et al. 2017 §3.2; BERT §3).

Shape legend: B batch, T sequence length, H hidden size, nh heads, hs head size (H / nh).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["scaled_dot_product_attention", "MultiHeadAttention", "key_padding_mask"]


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1/0 padding mask -> (B, 1, 1, T) boolean mask, True where a key may be attended to."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (B, T), got {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    training: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The explicit :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V`, returning the weights too.

    Args:
        q: (..., Tq, d_k) queries.  k: (..., Tk, d_k) keys.  v: (..., Tk, d_v) values.
        attention_mask: boolean (or 0/1) tensor broadcastable to (..., Tq, Tk); True/1 where the
            query may attend to the key (e.g. :func:`key_padding_mask`).
        dropout_p: dropout on the attention weights (applied only when ``training``).
        is_causal: also forbid attending to later positions (a left-to-right model).

    Returns:
        ``(output, weights)`` of shapes (..., Tq, d_v) and (..., Tq, Tk); weights before dropout.
    """
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., Tq, Tk)
    keep = None
    if attention_mask is not None:
        keep = attention_mask.bool()
    if is_causal:
        Tq, Tk = scores.shape[-2:]
        causal = torch.ones(Tq, Tk, dtype=torch.bool, device=scores.device).tril()
        keep = causal if keep is None else keep & causal
    if keep is not None:
        # The most negative finite value, not -inf: a fully masked row then stays finite.
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    dropped = F.dropout(weights, p=dropout_p, training=training) if dropout_p > 0 else weights
    return dropped @ v, weights


class MultiHeadAttention(nn.Module):
    r"""Multi-head self-attention: :math:`\mathrm{Concat}(\mathrm{head}_1..\mathrm{head}_A)W^O`.

    ``query``, ``key`` and ``value`` are the per-head projections stacked into one H x H matrix each
    (their names are the BERT checkpoint keys ``attention.self.{query,key,value}``). With
    ``output_projection=True`` the module also owns :math:`W^O` as ``dense``; BERT keeps :math:`W^O`
    in the following Add & Norm box instead (``attention.output.dense``), so the model builds it
    with ``output_projection=False``.

    The fast path calls :func:`torch.nn.functional.scaled_dot_product_attention`; when attention
    weights are requested, the explicit :func:`scaled_dot_product_attention` is used. Both agree.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 output_projection: bool = True) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.dropout = dropout
        self.query = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.key = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.value = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.dense = nn.Linear(hidden_size, hidden_size, bias=bias) if output_projection else None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, H); attention_mask boolean, broadcastable to (B, nh, T, T).

        Returns ``(context, weights)``: (B, T, H) and (B, nh, T, T) or None.
        """
        B, T, H = hidden_states.shape
        q = self._split(self.query(hidden_states))  # (B, nh, T, hs)
        k = self._split(self.key(hidden_states))
        v = self._split(self.value(hidden_states))
        p = self.dropout if self.training else 0.0
        if output_attentions:
            ctx, weights = scaled_dot_product_attention(q, k, v, attention_mask, p, is_causal, self.training)
        else:
            mask = attention_mask
            if is_causal:
                causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
                mask = causal if mask is None else mask.bool() & causal
            elif mask is not None:
                mask = mask.bool()
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            weights = None
        ctx = ctx.transpose(1, 2).reshape(B, T, H)  # (B, T, H): heads concatenated
        if self.dense is not None:
            ctx = self.dense(ctx)
        return ctx, weights
