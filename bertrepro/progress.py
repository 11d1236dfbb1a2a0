"""One progress bar for the package.

Every loop that reports progress calls :func:`bar`. Interactive use (a terminal or JupyterLab)
gets a live ``tqdm`` bar. The book runner decides what an executed chapter keeps; see
:func:`bar` for the rule.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["bar"]


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str | None = None,
        disable: bool = False, **kwargs: Any):
    """A ``tqdm`` progress bar over ``iterable`` (or a manual one with ``total``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=disable, **kwargs)
