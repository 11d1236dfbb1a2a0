"""Legible figures: a warning when a figure's tick labels overlap.

:func:`setup <bertrepro.chapters.setup>` calls :func:`install`, which wraps ``matplotlib.pyplot.show``
so that every figure a chapter shows is checked first: the tick labels of all its axes are drawn,
their window extents compared pairwise (rotated labels in their own frame), and a figure with
overlaps raises one :class:`TickLabelOverlapWarning` naming the first pairs. In the built book a warning is a stderr box, which the browser test
(``tests/test_browser.py``) fails on, so a crowded axis cannot reach the page unnoticed.

Labels of ticks outside an axis' view, hidden or empty labels are not compared. Labels of two
different axes are compared too: the last x label of one subplot can run into the first of the
next ("model" + "no context" read as "modelno context").
"""
from __future__ import annotations

import math
import warnings
from typing import Any

__all__ = ["TickLabelOverlapWarning", "tick_label_overlaps", "warn_on_overlaps", "install", "MIN_GAP_PX", "GLYPH_HEIGHT"]

#: Two labels closer than this (pixels at the figure's dpi) count as touching.
MIN_GAP_PX = 1.0
#: The height of a line's letters as a share of its font size (about the cap height).
GLYPH_HEIGHT = 0.7


class TickLabelOverlapWarning(UserWarning):
    """Two tick labels of a figure overlap or touch."""


def _visible_labels(ax: Any) -> list[tuple[str, Any]]:
    """``(axis name, Text)`` of every non-empty, visible tick label inside the axis' view."""
    out = []
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        lo, hi = sorted(axis.get_view_interval())
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            loc = tick.get_loc()
            if loc is None or not (lo - 1e-9 * max(1.0, abs(hi - lo)) <= loc <= hi + 1e-9 * max(1.0, abs(hi - lo))):
                continue
            for label in (tick.label1, tick.label2):
                if label.get_visible() and label.get_text().strip():
                    out.append((name, label))
    return out


def _strip(label: Any, box: Any, dpi: float) -> tuple[float, float, float, float, float, float]:
    """A label as a strip along its direction: centre, unit direction, its length and thickness (px).

    The window extent of rotated text is an axis-aligned box around it, much larger than the text;
    two parallel labels (side by side, stacked, or x labels at 60 or 90 degrees) are compared in
    their own frame, as lines of text: along the line by their widths, across it by the glyphs'
    height, :data:`GLYPH_HEIGHT` of the font size (the box also holds the line spacing).
    """
    theta = math.radians(label.get_rotation())
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    thick = label.get_fontsize() * dpi / 72.0  # one line of text, ascent to descent
    if c > 0.1:
        length = max(0.0, (box.width - thick * s) / c)
    else:
        length = max(0.0, (box.height - thick * c) / s)
    return ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, math.cos(theta), math.sin(theta), length, thick)


def _overlap(a: Any, ba: Any, b: Any, bb: Any, dpi: float) -> bool:
    if a.get_rotation() % 180 != b.get_rotation() % 180:
        return ba.overlaps(bb)
    xa, ya, ux, uy, la, ta = _strip(a, ba, dpi)
    xb, yb, _, _, lb, tb = _strip(b, bb, dpi)
    dx, dy = xb - xa, yb - ya
    along, across = abs(dx * ux + dy * uy), abs(-dx * uy + dy * ux)
    # letters are about 70 % of the font size tall (cap height): lines closer than that touch
    return along < (la + lb) / 2 + MIN_GAP_PX and across < GLYPH_HEIGHT * (ta + tb) / 2


def tick_label_overlaps(fig: Any) -> list[str]:
    """The pairs of tick labels of ``fig`` whose drawn text overlaps or touches, as sentences."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [(i, name, t, t.get_window_extent(renderer)) for i, ax in enumerate(fig.axes)
              for name, t in _visible_labels(ax) if ax.get_visible()]
    problems = []
    for a in range(len(labels)):
        ia, na, ta, ba = labels[a]
        for b in range(a + 1, len(labels)):
            ib, nb, tb, bb = labels[b]
            if _overlap(ta, ba, tb, bb, fig.dpi):
                where = f"axes {ia + 1} {na}" + ("" if (ia, na) == (ib, nb) else f" and axes {ib + 1} {nb}")
                problems.append(f"tick labels {ta.get_text()!r} and {tb.get_text()!r} overlap ({where})")
    return problems


def warn_on_overlaps(fig: Any) -> list[str]:
    """Check ``fig``; one warning naming the first overlaps and their number; return them all."""
    problems = tick_label_overlaps(fig)
    if problems:
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        warnings.warn("; ".join(problems[:2]) + more + ": fewer ticks, shorter labels or a wider figure fix it",
                      TickLabelOverlapWarning, stacklevel=3)
    return problems


def install() -> None:
    """Wrap ``plt.show`` (once) so every open figure is checked before it is shown."""
    import matplotlib.pyplot as plt  # lazily: optional plotting, so the runner that imports chapters stays light

    if getattr(plt.show, "_bertrepro_checks_ticks", False):
        return
    original = plt.show

    def show(*args: Any, **kwargs: Any) -> Any:
        for num in plt.get_fignums():
            warn_on_overlaps(plt.figure(num))
        return original(*args, **kwargs)

    show._bertrepro_checks_ticks = True  # type: ignore[attr-defined]
    plt.show = show
