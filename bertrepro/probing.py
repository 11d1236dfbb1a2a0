r"""Measuring what a trained encoder does: sentence embeddings and attention patterns.

The BERT paper does not analyse its attention heads. The measurements here follow Clark, Khandelwal,
Levy and Manning (2019), "What Does BERT Look At? An Analysis of BERT's Attention" (BlackboxNLP),
§3: for every layer and head, the average attention a token pays to ``[CLS]``, to ``[SEP]``, to the
previous token, to the next token and to itself, and the average entropy of its attention
distribution (§3.3, "focused vs broad attention").

Definitions, with :math:`\alpha_{ij}` the weight query :math:`i` gives key :math:`j` and the mean
taken over every non-padding query of every sequence (tokens, not sentences, are weighted equally):

* ``cls`` / ``sep``: :math:`\sum_{j:\,x_j=\mathrm{[CLS]}} \alpha_{ij}` (all ``[SEP]``s of a pair count);
* ``prev`` / ``next``: :math:`\alpha_{i,i-1}` / :math:`\alpha_{i,i+1}`, over the queries that have
  a non-padding previous / next token (so the first token is left out of ``prev``);
* ``self``: :math:`\alpha_{ii}`;
* ``entropy``: :math:`-\sum_j \alpha_{ij}\log\alpha_{ij}` in nats (uniform over :math:`n` keys gives
  :math:`\log n`).

Sentence embeddings follow sentence-transformers' recipe for all-MiniLM-L6-v2: the mean of the last
hidden states over the non-padding tokens, then L2 normalisation (Reimers and Gurevych 2019, §3).

Shape legend: L layers, B batch, nh heads, T sequence length, H hidden size.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .progress import bar as tqdm
from .train.optim import eval_mode

__all__ = [
    "PATTERNS", "mean_pool", "attention_pattern_sums", "attention_patterns", "attention_entropy",
    "measure_attention_patterns", "top_heads",
]

#: The measured patterns, in the order the book plots them.
PATTERNS = ("cls", "sep", "prev", "next", "self", "entropy")

# Attention a model gives to padded keys is exactly 0 (softmax of the most negative float); more
# than this means the attention maps and the mask do not belong together.
_PAD_MASS_TOL = 1e-4
_ROW_SUM_TOL = 1e-3


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mask-aware mean of the token vectors, then (by default) L2 normalisation.

    Args:
        last_hidden_state: (B, T, H) token vectors.
        attention_mask: (B, T), 1 for tokens and 0 for padding.
        normalize: divide each sentence vector by its L2 norm (cosine similarity = dot product).

    Returns:
        (B, H) sentence vectors.

    Raises:
        ValueError: mismatched shapes, or a row with no tokens at all (its mean is undefined).
    """
    if last_hidden_state.dim() != 3 or attention_mask.shape != last_hidden_state.shape[:2]:
        raise ValueError(
            f"mean_pool expects last_hidden_state (B, T, H) and attention_mask (B, T); got "
            f"{tuple(last_hidden_state.shape)} and {tuple(attention_mask.shape)}"
        )
    m = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, T, 1)
    n = m.sum(1)  # (B, 1)
    empty = (n.squeeze(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"mean_pool: row(s) {empty} of attention_mask have no tokens; drop empty inputs first")
    pooled = (last_hidden_state * m).sum(1) / n  # (B, H)
    return F.normalize(pooled, p=2, dim=-1) if normalize else pooled


def _layers(attentions: Any) -> Sequence[torch.Tensor]:
    """A sequence of L (B, nh, T, T) maps from a tuple/list of them or a stacked (L, B, nh, T, T) tensor."""
    if isinstance(attentions, torch.Tensor):
        if attentions.dim() == 5:
            return list(attentions)
        if attentions.dim() == 4:
            return [attentions]
        raise ValueError(f"attentions must be (L, B, nh, T, T) or (B, nh, T, T), got shape {tuple(attentions.shape)}")
    if isinstance(attentions, (tuple, list)) and attentions and all(isinstance(a, torch.Tensor) for a in attentions):
        return list(attentions)
    raise ValueError(
        "attentions must be a non-empty tuple of (B, nh, T, T) tensors (the model's output with "
        f"output_attentions=True) or one stacked tensor; got {type(attentions).__name__}"
    )


def _check(a: torch.Tensor, layer: int, mask: torch.Tensor) -> None:
    B, T = mask.shape
    if a.dim() != 4 or a.shape[0] != B or a.shape[2] != T or a.shape[3] != T:
        raise ValueError(f"attention map of layer {layer} has shape {tuple(a.shape)}; expected (B={B}, nh, T={T}, T={T})")
    q = mask[:, None, :]  # (B, 1, T): valid queries
    row = a.sum(-1)  # (B, nh, T)
    bad_rows = ((row - 1).abs() > _ROW_SUM_TOL) & q
    if bad_rows.any():
        worst = (row - 1).abs().masked_fill(~q, 0).max().item()
        raise ValueError(
            f"attention rows of layer {layer} do not sum to 1 (worst |sum - 1| = {worst:.3g}); pass softmax "
            "weights, not scores"
        )
    pad_mass = (a * (~mask)[:, None, None, :]).sum(-1).masked_fill(~q, 0)  # (B, nh, T)
    if pad_mass.max() > _PAD_MASS_TOL:
        raise ValueError(
            f"layer {layer} puts up to {pad_mass.max().item():.3g} of a row's attention on padded keys; "
            "pass the attention_mask the model was run with"
        )


def attention_pattern_sums(
    attentions: Any,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor,
    cls_id: int,
    sep_id: int,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Sums and counts behind :func:`attention_patterns`, so batches can be accumulated exactly.

    Returns:
        ``(sums, counts)``: ``sums[p]`` is (L, nh), the pattern summed over the valid queries of the
        batch; ``counts[p]`` is a 0-d tensor, the number of those queries. ``sums[p] / counts[p]`` is
        the mean.
    """
    layers = _layers(attentions)
    if attention_mask.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"attention_mask and input_ids must both be (B, T); got {tuple(attention_mask.shape)} and {tuple(input_ids.shape)}"
        )
    mask = attention_mask.bool()
    if not mask.any():
        raise ValueError("attention_mask has no tokens; nothing to measure")
    dev = layers[0].device
    mask, input_ids = mask.to(dev), input_ids.to(dev)
    qf = mask.float()[:, None, :]  # (B, 1, T): valid queries
    pair = (mask[:, 1:] & mask[:, :-1]).float()[:, None, :]  # (B, 1, T-1): query and neighbour both tokens
    is_cls = ((input_ids == cls_id) & mask).float()[:, None, None, :]  # (B, 1, 1, T): keys
    is_sep = ((input_ids == sep_id) & mask).float()[:, None, None, :]
    sums: dict[str, list[torch.Tensor]] = {p: [] for p in PATTERNS}
    for layer, a in enumerate(layers):
        _check(a, layer, mask)
        a = a.float()  # (B, nh, T, T)
        per_query = {
            "cls": (a * is_cls).sum(-1),  # (B, nh, T)
            "sep": (a * is_sep).sum(-1),
            "self": a.diagonal(dim1=-2, dim2=-1),  # alpha_ii, (B, nh, T)
            "entropy": -torch.special.xlogy(a, a).sum(-1),
        }
        for p, v in per_query.items():
            sums[p].append((v * qf).sum((0, 2)))  # (nh,)
        # diagonal(offset=-1)[k] = alpha_{k+1, k}: query k+1 looking at its previous token.
        sums["prev"].append((a.diagonal(offset=-1, dim1=-2, dim2=-1) * pair).sum((0, 2)))
        # diagonal(offset=+1)[k] = alpha_{k, k+1}: query k looking at its next token.
        sums["next"].append((a.diagonal(offset=1, dim1=-2, dim2=-1) * pair).sum((0, 2)))
    n_tok, n_pair = qf.sum(), pair.sum()
    counts = {p: (n_pair if p in ("prev", "next") else n_tok) for p in PATTERNS}
    return {p: torch.stack(v) for p, v in sums.items()}, counts


def attention_patterns(
    attentions: Any,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor,
    cls_id: int,
    sep_id: int,
) -> dict[str, torch.Tensor]:
    """Per layer and head, the average attention pattern over a batch (module docstring for definitions).

    Args:
        attentions: L maps (B, nh, T, T) (``output_attentions=True``), or one (L, B, nh, T, T) tensor.
        attention_mask: (B, T), 1 = token, 0 = padding. Padded queries are left out of every mean.
        input_ids: (B, T) token ids, to find ``[CLS]`` and ``[SEP]``.
        cls_id, sep_id: the ids of ``[CLS]`` and ``[SEP]`` in the vocabulary.

    Returns:
        ``{pattern: (L, nh) tensor}`` for every name in :data:`PATTERNS`.

    Raises:
        ValueError: mismatched shapes, rows that are not distributions, or attention on padded keys.
    """
    sums, counts = attention_pattern_sums(attentions, attention_mask, input_ids, cls_id, sep_id)
    empty = [p for p in PATTERNS if counts[p] == 0]
    if empty:
        raise ValueError(f"no query to average for pattern(s) {empty}: every sequence has a single token")
    return {p: sums[p] / counts[p] for p in PATTERNS}


def attention_entropy(attentions: Any, attention_mask: torch.Tensor, per_query: bool = False) -> torch.Tensor:
    r"""Entropy :math:`-\sum_j \alpha_{ij}\log\alpha_{ij}` (nats) of each attention distribution.

    Returns:
        (L, nh) means over the non-padding queries, or with ``per_query=True`` the (L, B, nh, T)
        entropies (padded queries set to 0).
    """
    layers = _layers(attentions)
    mask = attention_mask.bool().to(layers[0].device)
    out = []
    for layer, a in enumerate(layers):
        _check(a, layer, mask)
        out.append(-torch.special.xlogy(a.float(), a.float()).sum(-1) * mask[:, None, :])  # (B, nh, T)
    ent = torch.stack(out)  # (L, B, nh, T)
    if per_query:
        return ent
    return ent.sum((1, 3)) / mask.sum()


@torch.no_grad()
def measure_attention_patterns(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    cls_id: int,
    sep_id: int,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Run ``model`` over ``batches`` with attention maps and accumulate :func:`attention_patterns`.

    Args:
        model: a :class:`bertrepro.model.BertModel` (anything whose forward takes ``input_ids``,
            ``token_type_ids``, ``attention_mask``, ``output_attentions`` and returns ``.attentions``).
        batches: mappings with ``input_ids``, ``attention_mask`` and optionally ``token_type_ids`` (B, T).
        device: where to run (default: the model's device).

    Returns:
        ``{pattern: (L, nh)}``, means over every non-padding query of every batch, and ``"tokens"``,
        the number of queries measured (0-d).
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    total: dict[str, torch.Tensor] = {}
    count: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        for batch in tqdm(batches, desc="attention patterns", disable=not progress):
            missing = [k for k in ("input_ids", "attention_mask") if k not in batch]
            if missing:
                raise ValueError(f"each batch needs input_ids and attention_mask; missing {missing}")
            ids, am = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
            tt = batch.get("token_type_ids")
            out = model(input_ids=ids, token_type_ids=None if tt is None else tt.to(dev), attention_mask=am,
                        output_attentions=True)
            sums, counts = attention_pattern_sums(out.attentions, am, ids, cls_id, sep_id)
            for p in PATTERNS:
                total[p] = total[p] + sums[p] if p in total else sums[p]
                count[p] = count[p] + counts[p] if p in count else counts[p]
    if not total:
        raise ValueError("measure_attention_patterns got no batches")
    result = {p: (total[p] / count[p]).cpu() for p in PATTERNS}
    result["tokens"] = count["self"].cpu()
    return result


def top_heads(scores: torch.Tensor, k: int = 3, largest: bool = True) -> list[tuple[int, int, float]]:
    """The ``k`` heads with the largest (or smallest) score in an (L, nh) table, as (layer, head, score).

    Layers and heads are numbered from 0.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be an (L, nh) table, got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.numel():
        raise ValueError(f"k must be in [1, {scores.numel()}], got {k}")
    vals, idx = scores.flatten().topk(k, largest=largest)
    nh = scores.shape[1]
    return [(int(i) // nh, int(i) % nh, float(v)) for v, i in zip(vals, idx)]
