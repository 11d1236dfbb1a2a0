"""Content words, and picking the candidates whose word overlap is closest or largest: how the analog
tasks (:mod:`bertrepro.finetune.analogs`) choose hard negatives and distractors, and how the word
rules (:mod:`bertrepro.finetune.baselines`) score."""
from __future__ import annotations

import random
import re
from typing import Sequence

__all__ = ["content_words", "closest_overlap", "most_overlap"]

# Not content: SQuAD-style articles and the most frequent function words of English.
_STOP = frozenset("""
    a an the of and or in on at by for from to with as is was are were be been being it its this that these those
    which who whom whose he she his her they their them we our i you also not but than then there has have had
""".split())


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` without the most frequent function words."""
    return {w for w in re.findall(r"\w+", text.lower()) if w not in _STOP}


def closest_overlap(candidates: Sequence[int], overlap: Sequence[int], target: int, n: int,
             rng: random.Random) -> list[int]:
    """``n`` candidates whose overlap is closest to ``target``, those at or above it first (ties in a
    seeded random order)."""
    keys = [(o < target, abs(o - target), rng.random(), c) for c, o in zip(candidates, overlap)]
    return [k[-1] for k in sorted(keys)[:n]]


def most_overlap(candidates: Sequence[int], overlap: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """The ``n`` candidates of largest overlap (ties in a seeded random order)."""
    keys = [(-o, rng.random(), c) for c, o in zip(candidates, overlap)]
    return [c for _, _, c in sorted(keys)[:n]]
