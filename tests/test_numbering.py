"""Chapter numbers: each chapter's title carries its file's number, and every "chapter NN" in the
book's prose and the package's docs names a chapter that exists, in reading order.

The sidebar shows the chapters' titles, so a title numbered after an older file order shows two
chapters with one number; a cross-reference to a number no chapter has sends the reader nowhere.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
TITLE_RE = re.compile(r"^# # (\d{2}) · \S", re.M)
# "chapter 09", "Chapter 12's", "chapters 10 to 12", "Chapters 01–03", "chapters 06 and 07"
MENTION_RE = re.compile(r"\b[Cc]hapters?\s+(\d{1,2})\b(?:(?:\s*[–-]\s*|\s+to\s+|\s+and\s+)(\d{1,2})\b)?")


def chapter_title(py: Path) -> tuple[str, str]:
    """``(number, title line)`` of a chapter's first heading; ``ValueError`` when it has none."""
    m = TITLE_RE.search(py.read_text(encoding="utf-8"))
    if m is None:
        raise ValueError(f"{py.name}: no title of the form '# # NN · Title'")
    line = py.read_text(encoding="utf-8")[m.start():].splitlines()[0]
    return m.group(1), line


def bad_mentions(text: str, numbers: set[int]) -> list[str]:
    """The ``chapter NN`` mentions in ``text`` that name no chapter in ``numbers``, or a range out of order."""
    bad = []
    for m in MENTION_RE.finditer(text):
        first, last = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        named = [first] + ([last] if last is not None else [])
        if any(n not in numbers for n in named) or (last is not None and last <= first):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"line {line}: {m.group(0)!r}")
    return bad


def _prose_sources() -> list[Path]:
    return (CHAPTERS + sorted((ROOT / "book").glob("*.md")) + [ROOT / "README.md"]
            + sorted((ROOT / "bertrepro").rglob("*.py")))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 13, CHAPTERS


@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_title_number_is_the_file_number(py):
    number, line = chapter_title(py)
    assert number == py.name[:2], f"{py.name} is titled {line!r}; its title must start with '# # {py.name[:2]} · '"


def test_no_two_chapters_share_a_number():
    numbers = [chapter_title(py)[0] for py in CHAPTERS]
    assert len(numbers) == len(set(numbers)), numbers


@pytest.mark.parametrize("src", _prose_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_mentions_name_existing_chapters(src):
    numbers = {int(py.name[:2]) for py in CHAPTERS}
    bad = bad_mentions(src.read_text(encoding="utf-8"), numbers)
    assert not bad, f"{src.relative_to(ROOT)} names chapters that do not exist: " + "; ".join(bad)


def test_the_checks_catch_what_they_should():
    numbers = set(range(1, 14))
    assert bad_mentions("as chapter 14 shows; Chapter 09's model; chapters 01–03", numbers) == [
        "line 1: 'chapter 14'"]
    assert bad_mentions("see\nchapters 12 to 10", numbers) == ["line 2: 'chapters 12 to 10'"]
    assert bad_mentions("chapters 10 to 12, chapter 13 and chapter 00", numbers) == ["line 1: 'chapter 00'"]
    with pytest.raises(ValueError, match="no title"):
        chapter_title(Path(__file__))


@pytest.mark.parametrize("py", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_markdown_line_starts_with_a_percent_sign(py):
    """MyST reads a line starting with ``%`` as a comment and drops it ("a random 15" then nothing)."""
    bad = [i for i, line in enumerate(py.read_text(encoding="utf-8").splitlines(), 1)
           if line.startswith("# %") and not line.startswith("# %%")]
    assert not bad, f"{py.name}: Markdown lines starting with '%' (a MyST comment) at {bad}"
