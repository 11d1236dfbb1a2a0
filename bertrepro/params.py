r"""Exact parameter counts in closed form (BERT §3: 110M for BERT-base, 340M for BERT-large).

Per encoder layer: attention :math:`4H^2 + 4H` (Q, K, V, :math:`W^O` with biases), feed-forward
:math:`2 H F + F + H` (F = intermediate size, 4H in the paper), and two LayerNorms of :math:`2H` each.
With F = 4H the weight matrices alone give the well-known :math:`12 H^2` per layer.
"""
from __future__ import annotations

from .config import BertConfig

__all__ = ["breakdown", "count_parameters", "layer_parameters", "shortcut_count"]


def layer_parameters(config: BertConfig) -> dict[str, int]:
    H, F = config.hidden_size, config.intermediate_size
    return {
        "attention.qkv": 3 * (H * H + H),
        "attention.output.dense": H * H + H,
        "attention.output.LayerNorm": 2 * H,
        "intermediate.dense": H * F + F,
        "output.dense": F * H + H,
        "output.LayerNorm": 2 * H,
    }


def breakdown(config: BertConfig) -> dict[str, int]:
    """Per-component counts of ``BertForPreTraining`` (tied decoder counted once)."""
    H, V, P, S = config.hidden_size, config.vocab_size, config.max_position_embeddings, config.type_vocab_size
    per_layer = sum(layer_parameters(config).values())
    return {
        "embeddings.word_embeddings": V * H,
        "embeddings.position_embeddings": P * H,
        "embeddings.token_type_embeddings": S * H,
        "embeddings.LayerNorm": 2 * H,
        "encoder.layer (one)": per_layer,
        "encoder": config.num_hidden_layers * per_layer,
        "pooler": H * H + H,
        "cls.predictions.transform": H * H + H + 2 * H,
        "cls.predictions.bias": V,
        "cls.seq_relationship": 2 * H + 2,
    }


def count_parameters(config: BertConfig, pooler: bool = True, heads: bool = False) -> int:
    """Exact number of unique parameters of ``BertModel`` (``heads=True``: ``BertForPreTraining``)."""
    b = breakdown(config)
    n = sum(v for k, v in b.items() if k.startswith("embeddings.")) + b["encoder"]
    if pooler or heads:  # BertForPreTraining always has the pooler (NSP reads it)
        n += b["pooler"]
    if heads:
        n += b["cls.predictions.transform"] + b["cls.predictions.bias"] + b["cls.seq_relationship"]
    return n


def shortcut_count(config: BertConfig) -> int:
    """The popular V·H + 12·L·H² shortcut (ignores biases, LayerNorms, positions, segments, pooler)."""
    H = config.hidden_size
    return config.vocab_size * H + 12 * config.num_hidden_layers * H * H
