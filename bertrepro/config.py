"""The BERT model configuration (BERT §3, Table 6; the released ``bert_config.json``).

Field names are the ones Google's ``bert_config.json`` and Hugging Face's ``BertConfig`` use,
so a released configuration loads unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BertConfig", "ACTIVATIONS"]

# "gelu" is the exact erf form (Hugging Face's default); the original TensorFlow code used the tanh
# approximation, which Hugging Face calls "gelu_new" (alias "gelu_pytorch_tanh").
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass
class BertConfig:
    vocab_size: int = 30522  # WordPiece vocabulary size (30,522 in the released uncased vocab)
    hidden_size: int = 768  # H, the model width
    num_hidden_layers: int = 12  # L, the number of Transformer blocks
    num_attention_heads: int = 12  # A, heads per block; head size H/A
    intermediate_size: int = 3072  # feed-forward inner size, 4H in the paper
    hidden_act: str = "gelu"  # feed-forward non-linearity
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and on each sub-layer's output
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention weights
    max_position_embeddings: int = 512  # learned absolute positions
    type_vocab_size: int = 2  # segments A and B
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon of the released models
    initializer_range: float = 0.02  # std of the truncated-normal initialiser
    pad_token_id: int = 0  # id of [PAD]

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}); the head size is hidden_size / num_attention_heads"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"BertConfig.{name} must be a number (float), got {value!r} of type "
                                f"{type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"BertConfig.{name} must be a finite number, got {value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertConfig.hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        for name in ("layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"BertConfig.{name} must be > 0, got {value!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"BertConfig.pad_token_id must be an id in [0, vocab_size={self.vocab_size}), got {self.pad_token_id!r}"
            )

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # -- presets (paper §3: BERT-base L=12 H=768 A=12; BERT-large L=24 H=1024 A=16) --
    @classmethod
    def base(cls, **overrides: Any) -> "BertConfig":
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides: Any) -> "BertConfig":
        kw = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
        return cls(**{**kw, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> "BertConfig":
        """BERT-Tiny's shape (L=2, H=128, A=2), the smallest of the released small BERTs."""
        kw = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
        return cls(**{**kw, **overrides})

    # -- conversions --
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = True) -> "BertConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if strict and unknown:
            raise ValueError(f"unknown BertConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_hf(cls, config: Any) -> "BertConfig":
        """From a ``transformers.BertConfig``, its dict, a ``bert_config.json`` dict, or the path of a
        ``config.json`` / ``bert_config.json`` file or of a directory holding ``config.json``.

        Raises:
            FileNotFoundError: a path that is neither such a file nor such a directory.
            ValueError: a configuration of another architecture (``model_type`` other than "bert"),
                or relative position embeddings.
            TypeError: an object that is neither a mapping, a path nor has ``to_dict()``.
        """
        if isinstance(config, (str, os.PathLike)):
            path = Path(config)
            file = path / "config.json" if path.is_dir() else path
            if not file.is_file():
                raise FileNotFoundError(
                    f"no BERT configuration at {str(path)!r}: pass a config.json / bert_config.json file, "
                    f"a directory holding config.json, a dict or a transformers.BertConfig"
                )
            try:
                d = json.loads(file.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"{str(file)!r} is not a UTF-8 JSON configuration file: {e}") from None
            if not isinstance(d, dict):
                raise ValueError(f"{str(file)!r} must hold a JSON object, got {type(d).__name__}")
        elif isinstance(config, dict):
            d = config
        elif callable(getattr(config, "to_dict", None)):
            d = config.to_dict()
        else:
            raise TypeError(
                f"BertConfig.from_hf takes a transformers.BertConfig, a dict or a path, got {type(config).__name__}"
            )
        model_type = d.get("model_type", "bert")  # Google's bert_config.json has no model_type
        if model_type != "bert":
            raise ValueError(
                f"BertConfig.from_hf needs a BERT configuration (model_type 'bert'), got model_type {model_type!r}; "
                f"other architectures differ in ways this package does not implement"
            )
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"only absolute (learned) position embeddings are supported, got {d['position_embedding_type']!r}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: d[k] for k in names if k in d and d[k] is not None}
        return cls(**kw)

    def to_hf(self) -> Any:
        """To a ``transformers.BertConfig`` with the same architecture."""
        from transformers import BertConfig as HFBertConfig  # lazily: optional, and slow to import

        return HFBertConfig(**self.to_dict())
