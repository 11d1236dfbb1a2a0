r"""The feature-based approach (BERT §5.3, Table 7): a frozen encoder, a small model trained on its layers.

"We apply the feature-based approach by extracting the activations from one or more layers without
fine-tuning any parameters of BERT. These contextual embeddings are used as input to a randomly
initialized two-layer 768-dimensional BiLSTM before the classification layer." (§5.3)

* :func:`encode_features` runs a frozen encoder once over a split, batched, under ``torch.no_grad``,
  and keeps **every** layer (the embeddings, then layers 1..L) at the positions the task's head
  reads: ``[CLS]`` for pairs and choices, each word's first sub-token for tags, every token for
  spans. :class:`FeatureCache` keeps one encoding per (arm, task, split), so all the layer choices
  below share it.
* :data:`LAYER_CHOICES` are Table 7's rows; :func:`layer_indices` maps each to the layers of an
  encoder with L layers, and :func:`collapsed_choices` says which rows coincide when L < 4.
  :class:`LayerMix` combines the chosen layers: one layer, a concatenation, or a weighted sum whose
  weights are a softmax of learned scalars (ELMo's scalar mix, without its global scale).
* :func:`train_feature_head` trains a head on the features (a one-hidden-layer MLP, a linear layer,
  or Table 7's BiLSTM for tags) with Adam, epoch by epoch, and keeps the epoch that scores best on
  dev (early stopping).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model import BertModel
from ..train.optim import autocast, eval_mode
from .analogs import first_subtoken_mask

__all__ = ["LAYER_CHOICES", "PAPER_TABLE7", "PAPER_TABLE7_FINETUNED", "layer_indices", "collapsed_choices",
           "LayerMix", "FeatureSet", "encode_features", "FeatureCache", "FeatureHead", "TagBiLSTM",
           "train_feature_head", "feature_logits"]

# Table 7's feature-based rows (CoNLL-2003 NER, dev F1, BERT-base) and the fine-tuned row beside them.
LAYER_CHOICES = ("embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all")
PAPER_TABLE7 = {"embeddings": 91.0, "second_to_last": 95.6, "last": 94.9, "sum_last_four": 95.9,
                "concat_last_four": 96.1, "sum_all": 95.5}
PAPER_TABLE7_FINETUNED = 96.4
_MODES = {"embeddings": "one", "second_to_last": "one", "last": "one", "sum_last_four": "sum",
          "concat_last_four": "concat", "sum_all": "sum"}


def layer_indices(choice: str, num_layers: int) -> tuple[int, ...]:
    """Indices into the stacked hidden states (0 = the embedding output, i = layer i) of ``choice``.

    "Last four" means the last four encoder layers, or all of them when there are fewer; "all" means
    the L encoder layers (Table 7: "all 12 layers"), the embedding output left out.
    """
    if choice not in LAYER_CHOICES:
        raise ValueError(f"unknown layer choice {choice!r}; choose one of {', '.join(LAYER_CHOICES)}")
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    L = num_layers
    return {"embeddings": (0,), "second_to_last": (L - 1,), "last": (L,),
            "sum_last_four": tuple(range(max(1, L - 3), L + 1)), "concat_last_four": tuple(range(max(1, L - 3), L + 1)),
            "sum_all": tuple(range(1, L + 1))}[choice]


def _effective(choice: str, num_layers: int) -> tuple[str, tuple[int, ...]]:
    idx = layer_indices(choice, num_layers)
    mode = _MODES[choice]
    if len(idx) == 1:  # a sum or concatenation of one layer is that layer
        mode = "one"
    return mode, idx


def collapsed_choices(num_layers: int) -> dict[str, str]:
    """``{choice: earlier choice it equals}`` for the rows of Table 7 that coincide at ``num_layers``
    layers (same layers, same combination); e.g. at L = 2 "sum_last_four" is "sum_all"."""
    seen: dict[tuple, str] = {}
    out = {}
    for c in LAYER_CHOICES:
        key = _effective(c, num_layers)
        if key in seen:
            out[c] = seen[key]
        else:
            seen[key] = c
    return out


class LayerMix(nn.Module):
    """Combine stacked hidden states (..., L + 1, H) into one feature vector per position.

    ``one``: the layer itself; ``concat``: the chosen layers side by side (K·H); ``sum``:
    :math:`\\sum_k \\mathrm{softmax}(w)_k h_k` over the chosen layers, ``w`` learned (initially equal).
    """

    def __init__(self, choice: str, num_layers: int, hidden_size: int) -> None:
        super().__init__()
        self.choice = choice
        self.mode, idx = _effective(choice, num_layers)
        self.register_buffer("index", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.scalars = nn.Parameter(torch.zeros(len(idx))) if self.mode == "sum" else None
        self.out_dim = hidden_size * (len(idx) if self.mode == "concat" else 1)

    def weights(self) -> torch.Tensor:
        """The mixing weights (a softmax: positive, summing to 1); one weight for ``one``/``concat``."""
        if self.scalars is None:
            return torch.ones(1)
        return torch.softmax(self.scalars, dim=0)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = states.index_select(-2, self.index).float()  # (..., K, H)
        if self.mode == "one":
            return x[..., 0, :]
        if self.mode == "concat":
            return x.flatten(-2)  # (..., K*H)
        return (self.weights()[:, None] * x).sum(-2)  # (..., H)


@dataclass
class FeatureSet:
    """One split's frozen features and what scoring them needs.

    ``x`` is (N, L + 1, H) for pairs (``[CLS]``), (N, K, L + 1, H) for choices, (W, L + 1, H) for tags
    (W words in all, sentence n's words at ``offsets[n]:offsets[n + 1]``), (F, T, L + 1, H) for spans.
    ``targets`` are what the head's loss needs (labels, or start/end positions).
    """

    kind: str
    x: torch.Tensor
    targets: dict[str, torch.Tensor]
    offsets: torch.Tensor | None = None  # tags: (N + 1,) word offsets of each sentence
    first_subtoken: torch.Tensor | None = None  # tags: (N, T) bool, where each word's vector was read
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.kind == "tag" else self.x.shape[0]


_MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@torch.no_grad()
def encode_features(encoder: BertModel, kind: str, inputs: Mapping[str, torch.Tensor], batch_size: int = 64,
                    device: torch.device | str = "cpu", store_dtype: torch.dtype = torch.float32,
                    pooling: str = "cls") -> FeatureSet:
    """Every layer of frozen ``encoder`` at the positions a ``kind`` head reads, for every row of ``inputs``.

    ``inputs`` holds ``input_ids``, ``token_type_ids``, ``attention_mask`` ((N, T), or (N, K, T) for
    choices) and the targets: ``labels`` (pairs, choices, tags: per token, -100 off the first sub-token)
    or ``start_positions``/``end_positions`` (spans). Rows are batched in order and trimmed to the
    longest real sequence of the batch. Token-level features (spans) are stored as ``store_dtype``.
    ``pooling`` (pairs and choices): ``"cls"``, the ``[CLS]`` vector the paper's task layer reads, or
    ``"mean"``, each layer averaged over the real tokens (how a sentence-embedding model such as
    all-MiniLM-L6-v2 was trained to be read).
    """
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    if not isinstance(encoder, BertModel):
        raise TypeError(f"encoder must be a bertrepro BertModel, got {type(encoder).__name__}")
    if kind not in ("pair", "choice", "tag", "span"):
        raise ValueError(f"unknown head kind {kind!r}; choose pair, choice, tag or span")
    t0 = time.perf_counter()
    mask = inputs["attention_mask"]
    N, T = mask.shape[0], mask.shape[-1]
    flat = {k: inputs[k].reshape(-1, T) for k in _MODEL_INPUTS}  # choices: (N*K, T)
    per_row = mask.shape[1] if kind == "choice" else 1
    chunks = []
    encoder.to(device)
    with eval_mode(encoder), autocast(device):
        for start in range(0, N, batch_size):
            rows = slice(start * per_row, min(N, start + batch_size) * per_row)
            m = flat["attention_mask"][rows]
            width = max(1, int(m.sum(-1).max()))
            o = encoder(*(flat[k][rows, :width].to(device) for k in _MODEL_INPUTS), output_hidden_states=True)
            h = torch.stack(o.hidden_states, dim=2).float().cpu()  # (b, width, L+1, H)
            if kind in ("pair", "choice") and pooling == "mean":
                w = m[:, :width, None, None].to(h.dtype)  # (b, width, 1, 1): the real tokens
                chunks.append((h * w).sum(1) / w.sum(1).clamp(min=1))
            elif kind in ("pair", "choice"):
                chunks.append(h[:, 0])
            elif kind == "tag":
                chunks.append(h[first_subtoken_mask(_word_index(inputs, rows, width))])
            else:
                chunks.append(F.pad(h, (0, 0, 0, 0, 0, T - width)).to(store_dtype))
    x = torch.cat(chunks)
    if kind == "choice":
        x = x.view(N, per_row, *x.shape[1:])
    targets = {k: v for k, v in inputs.items() if k not in _MODEL_INPUTS and k != "word_index"}
    out = FeatureSet(kind, x, targets, seconds=time.perf_counter() - t0)
    if kind == "tag":
        first = first_subtoken_mask(inputs["word_index"])
        out.first_subtoken = first
        out.offsets = torch.cat([torch.zeros(1, dtype=torch.long), first.sum(1).cumsum(0)])
        out.targets = {"labels": inputs["labels"][first]}
    return out


def _word_index(inputs: Mapping[str, torch.Tensor], rows: slice, width: int) -> torch.Tensor:
    if "word_index" not in inputs:
        raise ValueError("tag features need the inputs' word_index (from align_first_subtoken)")
    return inputs["word_index"][rows, :width]


@dataclass
class FeatureCache:
    """Frozen features per (arm, task, split), computed once and shared by every layer choice and head.

    ``computed`` counts the encodings actually run, per key, so a reuse is visible (and tested).
    """

    entries: dict[tuple[str, str, str], FeatureSet] = field(default_factory=dict)
    computed: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def get(self, key: tuple[str, str, str], make: Callable[[], FeatureSet]) -> FeatureSet:
        if key not in self.entries:
            self.entries[key] = make()
            self.computed[key] = self.computed.get(key, 0) + 1
        return self.entries[key]

    def seconds(self, arm: str | None = None) -> float:
        return sum(f.seconds for k, f in self.entries.items() if arm is None or k[0] == arm)


class TagBiLSTM(nn.Module):
    """Table 7's tagger: a two-layer BiLSTM over a sentence's word vectors, then a linear layer."""

    def __init__(self, in_dim: int, num_labels: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, num_labels)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """words: (S, W, D) padded sentences; lengths: (S,) -> (S, W, num_labels)."""
        packed = nn.utils.rnn.pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=words.shape[1])
        return self.out(h)


class FeatureHead(nn.Module):
    """A :class:`LayerMix` and the task's layers on top: the only trained weights of the feature-based arm.

    ``tagger`` picks what reads the mixed features: ``"mlp"`` (default) one hidden layer of
    ``hidden`` GELU units then the output layer; ``"linear"`` the output layer alone; ``"bilstm"``
    (tags only) Table 7's two-layer BiLSTM. The output layer is: pair, 2 classes on ``[CLS]``;
    choice, one score per ending's ``[CLS]``; tag, the label set per word; span, start and end scores.
    """

    def __init__(self, kind: str, choice: str, num_layers: int, hidden_size: int, num_labels: int = 2,
                 tagger: str = "mlp", hidden: int = 128) -> None:
        super().__init__()
        if tagger not in ("mlp", "linear", "bilstm"):
            raise ValueError(f"tagger must be 'mlp', 'linear' or 'bilstm', got {tagger!r}")
        if tagger == "bilstm" and kind != "tag":
            raise ValueError(f"the BiLSTM reads a sentence's words: it is for tags, not {kind!r}")
        self.kind, self.tagger = kind, tagger
        self.mix = LayerMix(choice, num_layers, hidden_size)
        d = self.mix.out_dim
        out = {"pair": num_labels, "choice": 1, "tag": num_labels, "span": 2}[kind]
        self.lstm = TagBiLSTM(d, num_labels) if tagger == "bilstm" else None
        if tagger == "mlp":
            self.classifier = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, out))
        elif tagger == "linear":
            self.classifier = nn.Linear(d, out)
        else:
            self.classifier = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.mix(x)
        if self.lstm is not None:
            return self.lstm(h, lengths)
        out = self.classifier(h)
        return out.squeeze(-1) if self.kind == "choice" else out


def _rows(fs: FeatureSet, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Features, sentence lengths (tags) and targets of rows ``idx`` (sentences, for tags)."""
    if fs.kind != "tag":
        return fs.x[idx], None, {k: v[idx] for k, v in fs.targets.items()}
    lengths = fs.offsets[idx + 1] - fs.offsets[idx]
    W = max(1, int(lengths.max()))
    pos = fs.offsets[idx][:, None] + torch.arange(W)  # (S, W)
    valid = torch.arange(W) < lengths[:, None]
    pos = torch.where(valid, pos, torch.zeros_like(pos))
    labels = torch.where(valid, fs.targets["labels"][pos], torch.full_like(pos, -100))
    return fs.x[pos], lengths, {"labels": labels}


def _loss(head: FeatureHead, fs: FeatureSet, x: torch.Tensor, lengths, targets) -> torch.Tensor:
    out = head(x, lengths)
    if fs.kind == "span":
        T = out.shape[1]
        start, end = out[..., 0], out[..., 1]
        return (F.cross_entropy(start, targets["start_positions"].clamp(0, T - 1)) +
                F.cross_entropy(end, targets["end_positions"].clamp(0, T - 1))) / 2
    if fs.kind == "tag":
        return F.cross_entropy(out.flatten(0, 1), targets["labels"].flatten(), ignore_index=-100)
    return F.cross_entropy(out, targets["labels"])


@torch.no_grad()
def feature_logits(head: FeatureHead, fs: FeatureSet, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The head's outputs in the shapes the analogs' scorers read: ``logits`` (N, C) for pairs, (N, K)
    for choices, (N, T, C) for tags (first sub-tokens filled, -1e4 elsewhere); ``start_logits`` and
    ``end_logits`` (F, T) for spans."""
    head.eval()
    n = len(fs)
    outs = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        x, lengths, _ = _rows(fs, idx)
        o = head(x, lengths)
        outs.append(o[lengths[:, None] > torch.arange(o.shape[1])] if fs.kind == "tag" else o)
    out = torch.cat(outs)
    if fs.kind == "span":
        return {"start_logits": out[..., 0], "end_logits": out[..., 1]}
    if fs.kind == "tag":
        first = fs.first_subtoken
        full = torch.full((*first.shape, out.shape[-1]), -1e4)
        full[first] = out
        return {"logits": full}
    return {"logits": out}


def train_feature_head(head: FeatureHead, train: FeatureSet, dev_score: Callable[[FeatureHead], float],
                       max_epochs: int = 40, patience: int = 4, learning_rate: float = 3e-3,
                       batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                       min_epochs: int = 1) -> dict[str, Any]:
    """Train ``head`` on frozen features with Adam, one epoch at a time, scoring dev after each; after
    ``min_epochs``, stop once ``patience`` epochs pass without a better dev score, and restore the best
    epoch's weights.

    Returns ``{"dev": best dev score, "epochs": epochs run, "best_epoch", "curve": dev score per epoch,
    "seconds"}``. Seeded: the same features and seed give the same head.
    """
    if len(train) == 0:
        raise ValueError("no training rows for the feature head")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    best, best_state, best_epoch, curve = -float("inf"), None, 0, []
    for epoch in range(1, max_epochs + 1):
        head.train()
        for idx in torch.split(torch.randperm(len(train), generator=g), batch_size):
            x, lengths, targets = _rows(train, idx)
            loss = _loss(head, train, x, lengths, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        score = float(dev_score(head))
        curve.append(score)
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(head.state_dict()), epoch
        elif epoch >= min_epochs and epoch - best_epoch >= patience:
            break
    head.load_state_dict(best_state)
    head.eval()
    return {"dev": best, "epochs": len(curve), "best_epoch": best_epoch, "curve": curve,
            "seconds": time.perf_counter() - t0}
