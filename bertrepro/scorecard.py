"""The Scorecard page and the CI summary, rendered from the records of :mod:`bertrepro.report`.

The page's totals and per-chapter counts cover the paper's claims only; the book's checks follow
in their own table, pass or fail against their expected value and tolerance, with "–" in the
Paper column: the paper says nothing of them.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from .report import (KIND_MEANINGS, PAPER_TABLES, STATUS_MEANINGS, Record, count_checks, count_statuses,
                     format_value, markdown_cell, markdown_table)

__all__ = ["origin_counts", "render_scorecard", "render_summary"]


def origin_counts(records: Sequence[Record], provenance: Mapping[str, Any] | None) -> tuple[int, int]:
    """``(computed, cached)``: claims of chapters that built an artifact in this run or read none, and
    claims of chapters that only read artifacts an earlier run left in a cache of the same code
    (checks are not counted)."""
    records = _claims(records)
    artifacts = (provenance or {}).get("artifacts", [])
    made_now = {(a["path"], a["fingerprint"]) for a in artifacts if a.get("how") == "computed"}
    building = {a["chapter"] for a in artifacts if a.get("how") == "computed"}
    reusing = {a["chapter"] for a in artifacts
               if a.get("how") == "reused" and (a["path"], a["fingerprint"]) not in made_now}
    cached = sum(r.chapter in reusing - building for r in records)
    return len(records) - cached, cached


def _origin_sentence(records: Sequence[Record], profile: str | None, provenance: Mapping[str, Any] | None) -> str:
    computed, cached = origin_counts(records, provenance)
    at = f" at the `{profile}` profile" if profile else ""
    return (f"Every number in the *Ours* column was computed by this book's code{at}: {computed} claims in this "
            f"run, {cached} from artifacts (models, measurements) read from a cache whose fingerprint (the code that "
            "made them, their settings, the corpus, torch, the device type) matches this code.")


def _claims(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.kind == "claim"]


def _checks(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.kind == "check"]


def _with_tolerance(ref: Any, tolerance: float | None) -> str:
    text = format_value(ref)
    if ref is not None and tolerance is not None:
        text += f" ± {format_value(tolerance)}"
    return text


def _paper_cell(r: Record) -> str:
    """A claim's paper value (± tolerance) or quote; a check's is "–": the paper says nothing of it."""
    return _with_tolerance(r.paper, r.tolerance) if r.kind == "claim" else "–"


def _expected_cell(r: Record) -> str:
    """A check's criterion: its expected value ± tolerance, else "see note"."""
    return _with_tolerance(r.expected, r.tolerance) if r.expected is not None else "see note"


def _claims_table(records: Sequence[Record], link_chapters: bool) -> str:
    rows = [(f"`{r.key}`" + (f" — {r.note}" if r.note else ""), _paper_cell(r), format_value(r.value), r.status,
             f"[{r.chapter}]({r.chapter}.ipynb)" if link_chapters else r.chapter) for r in records]
    return markdown_table(["Claim", "Paper", "Ours", "Status", "Chapter"], rows)


def _checks_table(records: Sequence[Record], link_chapters: bool) -> str:
    """The book's checks: pass or fail, our value, the expected value with its tolerance."""
    rows = [("**fail**" if r.status == "fail" else "pass", format_value(r.value), _expected_cell(r), "–",
             f"`{r.key}`" + (f": {r.note}" if r.note else ""),
             f"[{r.chapter}]({r.chapter}.ipynb)" if link_chapters else r.chapter) for r in records]
    return markdown_table(["Result", "Ours", "Expected ± tolerance", "Paper", "Check", "Chapter"], rows,
                          align=["---", "--:", "--:", "---", "---", "---"])


def _checks_line(records: Sequence[Record]) -> str:
    counts = count_checks(records)
    return f"{counts['pass']} pass, {counts['fail']} fail ({sum(counts.values())} checks)"


def _chapter_tables(records: Sequence[Record]) -> str:
    """The book's claims, one table per chapter, narrow enough for the page's column.

    The columns a reader scans come first (status, our number, the paper's); the claim's key and
    description close the row, where a long text wraps.
    """
    by_chapter: dict[str, list[Record]] = {}
    for r in _claims(records):
        by_chapter.setdefault(r.chapter, []).append(r)
    parts: list[str] = []
    for chapter, recs in by_chapter.items():
        parts += [f"### [{chapter}]({chapter}.ipynb)", "", f"{_counts_line(recs)}.", "",
                  markdown_table(["Status", "Ours", "Paper", "Claim"],
                                 [(r.status, format_value(r.value), _paper_cell(r),
                                   f"`{r.key}`" + (f": {r.note}" if r.note else "")) for r in recs],
                                 align=["---", "--:", _paper_align(recs), "---"]), ""]
    return "\n".join(parts).rstrip("\n")


def _paper_align(records: Sequence[Record]) -> str:
    """Numbers align right (and keep on one line); a column holding a quote aligns left and wraps."""
    return "---" if any(isinstance(r.paper, str) for r in records) else "--:"


def _counts_line(records: Sequence[Record]) -> str:
    counts = count_statuses(records)
    return ", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({sum(counts.values())} claims)"


_STATUS_HELP = "\n".join(f"* **{status}** — {meaning}" for status, meaning in STATUS_MEANINGS.items())


def render_scorecard(records: Sequence[Record], profile: str | None = None,
                     provenance: Mapping[str, Any] | None = None) -> str:
    """The book's Scorecard page (MyST Markdown): the status legend, the paper's claims (the totals
    count only these), the book's checks in their own table, then the paper's tables."""
    claims, checks = _claims(records), _checks(records)
    parts = [
        "# Scorecard",
        "",
        _origin_sentence(records, profile, provenance)
        + " Each row is a call to `bertrepro.report.record` in the chapter it names; "
        "the status is derived from the tolerance where one is given.",
        "",
        f"A **claim** is {KIND_MEANINGS['claim']}. A **check** is {KIND_MEANINGS['check']}: it passes or "
        "fails, says nothing about the paper, and is not counted in the totals.",
        "",
        _STATUS_HELP,
        "",
        f"**Totals:** {_counts_line(claims)}.",
        "",
        "## Claims",
        "",
        _chapter_tables(claims) if claims else "*No chapter recorded a claim in this run.*",
        "",
        "## Checks",
        "",
        f"The book's own guards: {_checks_line(checks)}. *Expected* is the reference the check compares "
        "with (another implementation, a closed form, a learning threshold); where it says *see note*, the "
        "criterion is in the note.",
        "",
        _checks_table(checks, link_chapters=True) if checks else "*No chapter recorded a check in this run.*",
        "",
        "## The paper's tables",
        "",
        "For reference, the results of Devlin et al. (2018) that the chapters compare against.",
        "",
    ]
    for t in PAPER_TABLES.values():
        parts += [t.to_markdown(), ""]
    return "\n".join(parts)


def render_summary(records: Sequence[Record], timings: Mapping[str, Any], profile: str | None = None,
                   failure: str | None = None, provenance: Mapping[str, Any] | None = None) -> str:
    """A short Markdown summary (for ``$GITHUB_STEP_SUMMARY``): wall times, claim counts, claims, checks."""
    chapters = timings.get("chapters", {})
    lines = ["## bertrepro book" + (f" — profile `{profile}`" if profile else ""), ""]
    if failure:
        lines += ["**FAILED:** " + markdown_cell(failure), ""]
    lines += ["| Chapter | Wall time (s) | Result |", "|---|---:|---|"]
    for name, t in chapters.items():
        lines.append(f"| {name} | {t['seconds']:.1f} | {t['status']} |")
    total = sum(t["seconds"] for t in chapters.values())
    lines += [f"| **total** | **{total:.1f}** | |", ""]
    if "html_seconds" in timings:
        lines += [f"HTML build: {timings['html_seconds']:.1f} s.", ""]
    claims, checks = _claims(records), _checks(records)
    computed, cached = origin_counts(records, provenance)
    lines += [f"**Scorecard:** {_counts_line(claims)}; {computed} computed in this run, {cached} from a cache "
              "of the same code.", "", f"**Checks:** {_checks_line(checks)}.", ""]
    if claims:
        lines += ["### Claims", "", _claims_table(claims, link_chapters=False), ""]
    if checks:
        lines += ["### Checks", "", _checks_table(checks, link_chapters=False), ""]
    return "\n".join(lines)
