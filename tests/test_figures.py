"""The chapters' figure check: overlapping tick labels warn (bertrepro.figures), clean ones do not."""
from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from bertrepro import figures  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_crowded_labels_overlap():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
    ax.bar(range(12), range(12))
    ax.set_xticks(range(12), [f"a long label {i}" for i in range(12)])
    problems = figures.tick_label_overlaps(fig)
    assert problems and "'a long label 0' and 'a long label 1' overlap (axes 1 x)" in problems[0]


def test_labels_of_neighbouring_subplots_collide():
    """Chapter 09's old bars: the last label of one panel ran into the first of the next."""
    fig, axes = plt.subplots(1, 2, figsize=(4, 2), dpi=100)
    for ax, tick in zip(axes, (1, 0)):
        ax.bar([0, 1], [1, 2])
        ax.set_xticks([tick], ["model, a long name" if tick else "no context, a long name"])
    problems = figures.tick_label_overlaps(fig)
    assert problems == ["tick labels 'model, a long name' and 'no context, a long name' overlap "
                        "(axes 1 x and axes 2 x)"], problems


def test_clean_figure_has_no_problem_and_hidden_ticks_are_ignored():
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3), dpi=100)
    axes[0].plot([1, 10, 100], [1, 2, 3])
    axes[0].set_xscale("log")
    axes[1].bar([0, 1, 2], [3, 1, 2])
    axes[1].set_xticks([0, 1, 2], ["MLM", "LTR", "random"])
    axes[1].set_xlim(-0.5, 1.5)  # the third tick is outside the view, its label not drawn
    assert figures.tick_label_overlaps(fig) == []


def test_show_warns_once_installed(monkeypatch):
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(True))
    figures.install()
    figures.install()  # idempotent: one wrapper
    fig, ax = plt.subplots(figsize=(2, 2), dpi=100)
    ax.set_yticks([0, 0.01], ["zero", "one hundredth"])
    with pytest.warns(figures.TickLabelOverlapWarning, match="'zero' and 'one hundredth' overlap"):
        plt.show()
    assert shown == [True]
    plt.close("all")
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    ax.plot([0, 1], [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plt.show()


def test_rotated_labels_are_compared_in_their_own_frame():
    """Chapter 13's sentence heatmap: labels at 60 degrees whose boxes overlap but whose text does not."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=100)
    ax.imshow([[0, 1] * 15] * 30)
    labels = [f"A sentence about guitars, number {i}." for i in range(30)]
    ax.set_xticks(range(30), labels, rotation=60, ha="right", fontsize=9)
    assert figures.tick_label_overlaps(fig) == []
    ax.set_xticks(range(30), labels, rotation=60, ha="right", fontsize=16)  # lines thicker than their spacing
    assert figures.tick_label_overlaps(fig)


def test_warning_is_one_per_figure():
    fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
    ax.set_xticks(range(12), [f"a long label {i}" for i in range(12)])
    ax.set_xlim(-0.5, 11.5)
    with pytest.warns(figures.TickLabelOverlapWarning) as caught:
        problems = figures.warn_on_overlaps(fig)
    assert len(caught) == 1 and f"and {len(problems) - 2} more" in str(caught[0].message)


def test_stacked_labels_touch_only_when_their_glyphs_do():
    """Token labels on a y axis: one line per token is legible; three tokens on one line's height are not."""
    fig, ax = plt.subplots(figsize=(3, 4), dpi=100)
    ax.imshow([[0] * 20] * 20)
    ax.set_yticks(range(20), [f"token{i}" for i in range(20)], fontsize=9)
    assert figures.tick_label_overlaps(fig) == []
    ax.set_yticks(range(20), [f"token{i}" for i in range(20)], fontsize=20)
    assert any("(axes 1 y)" in p for p in figures.tick_label_overlaps(fig))
