r"""Positional information (Vaswani et al. 2017 §3.5; BERT §3, "Input/Output Representations").

The original Transformer adds a fixed sinusoidal table,
:math:`PE_{pos,2i} = \sin(pos / 10000^{2i/d})` and :math:`PE_{pos,2i+1} = \cos(pos / 10000^{2i/d})`.
BERT does *not* use it: BERT learns an absolute position embedding for each of 512 positions
(``BertEmbeddings.position_embeddings``). The table lives here for the derivation in chapter 03.
"""
from __future__ import annotations

import torch

__all__ = ["sinusoidal_encoding", "frequencies", "shift_matrix"]


def frequencies(dim: int, base: float = 10000.0) -> torch.Tensor:
    """The angular frequencies :math:`\\omega_i = base^{-2i/d}` for i = 0 .. ceil(d/2)-1."""
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def sinusoidal_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The (num_positions, dim) sinusoidal table; even columns sine, odd columns cosine."""
    if num_positions <= 0:
        raise ValueError(f"num_positions must be positive, got {num_positions}")
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    angles = pos * frequencies(dim, base)[None, :]  # (P, ceil(d/2))
    pe = torch.zeros(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return pe.float()


def shift_matrix(k: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    r"""The (dim, dim) matrix :math:`M_k` with :math:`PE_{pos+k} = M_k\,PE_{pos}` for every pos.

    It is block diagonal with one 2x2 rotation by :math:`k\omega_i` per sine/cosine pair, so it
    depends on the offset k but not on the position.
    """
    if dim % 2:
        raise ValueError(f"shift_matrix needs an even dim, got {dim}")
    m = torch.zeros(dim, dim, dtype=torch.float64)
    theta = k * frequencies(dim, base)
    c, s = torch.cos(theta), torch.sin(theta)
    i = torch.arange(0, dim, 2)
    # [sin(a+b), cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] @ [sin a, cos a]
    m[i, i], m[i, i + 1] = c, s
    m[i + 1, i], m[i + 1, i + 1] = -s, c
    return m.float()
