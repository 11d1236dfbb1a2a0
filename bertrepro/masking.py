r"""The masked-LM corruption of BERT §3.1 "Task #1: Masked LM" and Appendix A.1.

    "we mask 15% of all WordPiece tokens in each sequence at random ... If the i-th token is
    chosen, we replace the i-th token with (1) the [MASK] token 80% of the time (2) a random token
    10% of the time (3) the unchanged i-th token 10% of the time."

The reference is ``create_masked_lm_predictions`` in google-research/bert
``create_pretraining_data.py``, which this function follows exactly in distribution:

* It chooses *exactly* :math:`k = \min(\text{max\_predictions}, \max(1, \operatorname{round}(n \cdot p)))`
  positions per sequence, not a Bernoulli(p) draw per token. :math:`n` counts every non-padding
  token, [CLS] and [SEP] included (the original's ``len(tokens)``); [CLS], [SEP] and [PAD] are never
  chosen. :math:`k` is also capped by the number of candidates.
* ``round`` is the original's Python 2 ``round``: halves go away from zero (``round(4.5) = 5``),
  where Python 3's ``round`` goes to even (4). We compute :math:`\lfloor n p + 1/2 \rfloor` in float64,
  which equals Python 2's result (tested for every :math:`n \le 1024` and several :math:`p`).
* Of the chosen positions 80 % become [MASK], 10 % a random token and 10 % stay; the three are
  decided independently per position. A random token is drawn uniformly from the whole vocabulary
  ``[0, vocab_size)``, special tokens included, as the original's ``rng.randint(0, len(vocab) - 1)``
  did -- a token id, never a position.
* Whole-word masking (released after the paper): the pieces of a word (a piece plus its ``##``
  continuations) are chosen together. As in the original, words are visited in random order and
  a word is taken only if all its pieces still fit in the budget of :math:`k` *pieces*, so a
  sequence can end up with fewer than :math:`k` predictions.

Everything is vectorised over the batch: one uniform key per token, ``topk`` of the keys picks
each row's positions, and the 80/10/10 draws are made for those few slots only. No Python loop
runs over tokens and the token path never waits on the device (whole-word masking reads two
counts from the device and loops over at most the longest word's length, each step vectorised
over the batch). The result is a
deterministic function of the generator state.

Shape legend: B batch (sequences), T sequence length.
"""
from __future__ import annotations

import torch

from .model import IGNORE_INDEX

__all__ = ["num_to_predict", "check_mix", "mask_tokens"]


def num_to_predict(num_tokens: torch.Tensor, mlm_probability: float = 0.15,
                   max_predictions: int | None = None) -> torch.Tensor:
    """Positions to predict per sequence: ``min(max_predictions, max(1, round(n * p)))``, Python 2 rounding.

    Args:
        num_tokens: (B,) non-padding tokens per sequence, [CLS]/[SEP] included.

    Returns:
        (B,) int64.
    """
    k = torch.floor(num_tokens.to(torch.float64) * mlm_probability + 0.5).to(torch.long)  # half away from 0
    k = k.clamp(min=1)
    if max_predictions is not None:
        k = k.clamp(max=max_predictions)
    return k


def _check(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, vocab_size: int, mask_token_id: int,
           mlm_probability: float, max_predictions: int | None) -> None:
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
    if special_tokens_mask.shape != input_ids.shape:
        raise ValueError(f"special_tokens_mask shape {tuple(special_tokens_mask.shape)} != input_ids shape "
                         f"{tuple(input_ids.shape)}")
    if not 0.0 < mlm_probability < 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    if max_predictions is not None and max_predictions < 1:
        raise ValueError(f"max_predictions must be >= 1 or None, got {max_predictions}")
    if vocab_size < 1 or not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id={mask_token_id} must lie in [0, vocab_size={vocab_size})")
    out_of_range = (input_ids < 0) | (input_ids >= vocab_size)  # (B, T); one reduction, one sync
    if out_of_range.any():
        b, t = (int(i) for i in out_of_range.nonzero()[0])
        raise ValueError(f"input_ids holds ids outside [0, vocab_size={vocab_size}), e.g. {int(input_ids[b, t])} at "
                         f"row {b}, position {t}; vocab_size must be the size of the vocabulary that produced the ids")


def check_mix(mask_fraction: float, same_fraction: float, random_fraction: float) -> None:
    """MASK / SAME / RND must be probabilities that add up to 1."""
    mix = {"mask_fraction": mask_fraction, "same_fraction": same_fraction, "random_fraction": random_fraction}
    for name, p in mix.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    if abs(sum(mix.values()) - 1.0) > 1e-9:
        raise ValueError(f"mask_fraction + same_fraction + random_fraction must be 1, got {mask_fraction!r} + "
                         f"{same_fraction!r} + {random_fraction!r} = {sum(mix.values())!r}; e.g. 0.8, 0.1, 0.1")


def _choose_positions(keys: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor,
                      kmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k[b] candidates with the smallest keys in each row b, as slots.

    Returns:
        ``idx`` (B, K) distinct positions per row and ``take`` (B, K) bool, True for the first k[b]
        slots; K = ``kmax`` >= max(k).
    """
    keys = keys.masked_fill(~candidates, 2.0)  # uniform keys lie in [0, 1): non-candidates sort last
    idx = keys.topk(kmax, dim=1, largest=False, sorted=True).indices  # (B, K)
    take = torch.arange(kmax, device=keys.device)[None, :] < k[:, None]  # (B, K)
    return idx, take


def _choose_whole_words(keys: torch.Tensor, candidates: torch.Tensor, word_start: torch.Tensor,
                        k: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: whole words, visited in random order, each taken while its pieces fit the budget k."""
    B, T = keys.shape
    dev = keys.device
    # A word starts at a first piece, or wherever a candidate follows a non-candidate, so that a
    # stray "##" piece after [CLS]/[SEP] never joins the previous segment's last word.
    prev_candidate = torch.zeros_like(candidates)
    prev_candidate[:, 1:] = candidates[:, :-1]
    word_start = candidates & (word_start | ~prev_candidate)  # (B, T)
    word_id = torch.cumsum(word_start.long(), dim=1) - 1  # (B, T) word index of each piece
    in_word = candidates  # every candidate now belongs to a word
    num_words = int(word_start.sum(1).max()) if B else 0
    chosen = torch.zeros(B, T, dtype=torch.bool, device=dev)
    if num_words == 0:
        return chosen
    safe_id = word_id.clamp(min=0)
    size = torch.zeros(B, num_words, dtype=torch.long, device=dev)
    size.scatter_add_(1, safe_id, in_word.long())  # (B, W) pieces per word
    # A word's random key is the key at its first piece; non-starts write into a spill column.
    spill = torch.where(word_start, word_id, torch.full_like(word_id, num_words))
    wkey = torch.full((B, num_words + 1), 2.0, dtype=keys.dtype, device=dev)
    wkey = wkey.scatter(1, spill, torch.where(word_start, keys, torch.full_like(keys, 2.0)))[:, :num_words]
    order = wkey.argsort(dim=1)  # (B, W) words in random order
    sizes = size.gather(1, order)  # (B, W), absent words (size 0) last
    # The original's greedy pass: take each word, in order, if it fits the remaining budget.
    # Up to the first word that does not fit, that is a prefix of the order (a cumsum). After it
    # the budget r is smaller than that word, and every later word taken lowers r by at least 1,
    # so at most max(size) - 1 more rounds remain, each taking the next word that fits.
    cum = sizes.cumsum(1)  # (B, W)
    taken = (cum <= k[:, None]) & (sizes > 0)
    budget = k - (sizes * taken).sum(1)  # (B,)
    last = (cum <= k[:, None]).sum(1)  # (B,) index of the first word that did not fit (W if none)
    rank = torch.arange(num_words, device=dev)[None, :]  # (1, W)
    for _ in range(int(sizes.max()) - 1):  # a handful of rounds, each vectorised over the batch
        fits = (rank > last[:, None]) & (sizes > 0) & (sizes <= budget[:, None])  # (B, W)
        has = fits.any(1)
        nxt = torch.where(fits, rank, num_words).min(1).values  # (B,) the next word that fits
        grab = has[:, None] & (rank == nxt[:, None])
        taken |= grab
        budget = budget - (sizes * grab).sum(1)
        last = torch.where(has, nxt, last)
    word_taken = torch.zeros(B, num_words, dtype=torch.bool, device=dev)
    word_taken.scatter_(1, order, taken)
    return in_word & word_taken.gather(1, safe_id)


def mask_tokens(input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, *, vocab_size: int,
                mask_token_id: int, pad_token_id: int = 0, mlm_probability: float = 0.15,
                max_predictions: int | None = None, generator: torch.Generator | None = None,
                word_start: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                mask_fraction: float = 0.8, same_fraction: float = 0.1, random_fraction: float = 0.1,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for the masked LM: choose positions, apply 80/10/10, return inputs and labels.

    Args:
        input_ids: (B, T) int64 token ids.
        special_tokens_mask: (B, T) bool, True where a token must never be chosen ([CLS], [SEP],
            [PAD]); padding is excluded even if not marked here.
        vocab_size: random replacements are drawn uniformly from ``[0, vocab_size)``.
        mask_token_id: the id of [MASK] (look it up in the vocabulary).
        pad_token_id: padding id; used to find padding when ``attention_mask`` is not given.
        mlm_probability: the share of tokens to predict (0.15 in the paper).
        max_predictions: per-sequence cap (``max_predictions_per_seq``, 20 at length 128); None: no cap.
        generator: a ``torch.Generator`` on ``input_ids``' device, for reproducible masks.
        word_start: optional (B, T) bool, True at the first piece of every word (False at ``##``
            pieces). Given, whole words are masked together (whole-word masking).
        attention_mask: optional (B, T), 1 at real tokens and 0 at padding (preferred over
            ``pad_token_id`` when the vocabulary's [PAD] can also be a real token).
        mask_fraction, same_fraction, random_fraction: what becomes of a chosen position -- [MASK],
            unchanged, or a random token (MASK / SAME / RND of Appendix C.2); each in [0, 1], summing
            to 1. The default is the paper's 80/10/10.

    Returns:
        ``(masked_input_ids, labels)``, both (B, T) int64; ``labels`` holds the original id at the
        chosen positions and :data:`IGNORE_INDEX` (-100) everywhere else. ``input_ids`` is not modified.

    Raises:
        ValueError: wrong shapes or dtypes, or probabilities / ids out of range.
    """
    _check(input_ids, special_tokens_mask, vocab_size, mask_token_id, mlm_probability, max_predictions)
    check_mix(mask_fraction, same_fraction, random_fraction)
    B, T = input_ids.shape
    dev = input_ids.device
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape "
                             f"{tuple(input_ids.shape)}")
        real = attention_mask.bool()
    else:
        real = input_ids != pad_token_id  # (B, T)
    candidates = real & ~special_tokens_mask.bool()  # (B, T)
    k = num_to_predict(real.sum(1), mlm_probability, max_predictions)  # (B,)
    k = torch.minimum(k, candidates.sum(1))  # a row with fewer candidates than k gives them all

    keys = torch.rand(B, T, generator=generator, device=dev)  # one uniform key per token
    if word_start is None:
        # k <= k(T) since k grows with n <= T: a static bound, so no device sync is needed here.
        kmax = min(T, int(num_to_predict(torch.tensor([T]), mlm_probability, max_predictions))) if T else 0
        idx, take = _choose_positions(keys, candidates, k, kmax)  # (B, K) slots
    else:
        if word_start.shape != input_ids.shape:
            raise ValueError(f"word_start shape {tuple(word_start.shape)} != input_ids shape {tuple(input_ids.shape)}")
        chosen = _choose_whole_words(keys, candidates, word_start.bool(), k)  # (B, T)
        n_chosen = chosen.sum(1)
        kmax = int(n_chosen.max()) if B else 0
        idx = chosen.to(keys.dtype).topk(kmax, dim=1).indices  # (B, K) the chosen positions first
        take = torch.arange(kmax, device=dev)[None, :] < n_chosen[:, None]

    # The 80/10/10 decision, drawn per chosen slot only (K is ~T * 0.15, not T):
    # u < MASK -> [MASK], MASK <= u < 1 - SAME -> random token, else unchanged.
    K = idx.shape[1]
    u = torch.rand(B, K, generator=generator, device=dev)
    random_ids = torch.randint(0, vocab_size, (B, K), generator=generator, device=dev, dtype=input_ids.dtype)
    original = input_ids.gather(1, idx)  # (B, K)
    new = torch.where(u < mask_fraction, torch.full_like(original, mask_token_id),
                      torch.where(u < 1.0 - same_fraction, random_ids, original))
    masked = input_ids.clone()
    masked.scatter_(1, idx, torch.where(take, new, original))  # untaken slots write their own value back
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels.scatter_(1, idx, torch.where(take, original, torch.full_like(original, IGNORE_INDEX)))
    return masked, labels
