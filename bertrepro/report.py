r"""The scorecard: every claim of the paper the book tests, next to the paper's number, and the
book's own checks apart.

A chapter calls :func:`record` for each result, saying which of two kinds it is:

* ``kind="claim"`` -- something the paper says: a number with its table or section (``paper=``), or a
  short quote of a qualitative finding (``paper="..."``). Its status is one of :data:`STATUSES`.
* ``kind="check"`` -- the book's own guard: parity with a reference implementation, a learning gate,
  a timing, an agreement with transformers. It has no paper value; it passes or fails
  (:data:`CHECK_STATUSES`) against ``expected=`` and ``tolerance=``, or an explicit ``status=``.

The scorecard's totals count claims only; the checks follow in their own table.
Each call appends one record to a JSON file per chapter; at the end of a book run :func:`collect`
gathers them into ``book/_build/scorecard.json``; :mod:`bertrepro.scorecard` renders the Scorecard
page for the book and a short ``summary.md`` for the CI job summary.

Where records go:

* ``$BERTREPRO_RECORDS_DIR/<chapter>.json`` -- the book runner sets this to ``book/_build/records``
  and ``$BERTREPRO_CHAPTER`` to the chapter's file stem (``03_positional_encoding``).
* ``./records/standalone.json`` -- a chapter run by itself (in Jupyter, or forked into another
  folder) writes beside where it runs; nothing else is needed.

Seeded CPU runs are deterministic, so every record must come out the same when a chapter runs
again with the same seed; measurements of the machine (seconds, tokens/s) go under keys starting
with ``timing.``, the only ones exempt.

Every write goes to a temporary file first and then ``os.replace``-s the old one, so an interrupted
run never leaves half a file.

Example, in a chapter::

    from bertrepro.report import record
    record("params.base.total", n_params, kind="claim", paper=110_000_000, tolerance=5_000_000,
           note="BERT-base parameters (§3)")                              # -> "reproduced"
    record("mlm.masked_fraction", frac, kind="claim", paper=0.15, tolerance=0.005)  # -> or not
    record("glue.sst2.accuracy", acc, kind="claim", paper=93.5, status="qualitatively reproduced",
           note="tiny model, 1 epoch: above chance, far below the paper")
    record("table6.ppl", ppl, kind="claim", paper=3.99, status="not comparable",
           note="8k-piece vocabulary, not the paper's 30k")                # -> no verdict, not counted as failed
    record("encoder.parity.max_abs_diff", diff, kind="check", expected=0.0, tolerance=1e-5,
           note="BertModel vs transformers, same weights")                # -> "pass" or "fail"
    record("timing.speedup", s, kind="check", status="pass" if s >= 1 else "fail",
           note="target >= 1")                                            # the criterion is in the note
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .io import atomic_write_text  # the package's one atomic writer

__all__ = [
    "markdown_table",
    "KINDS",
    "KIND_MEANINGS",
    "STATUSES",
    "CHECK_STATUSES",
    "PAPER_VALUE_STATUSES",
    "count_checks",
    "NO_VERDICT_STATUSES",
    "STATUS_MEANINGS",
    "RECORDS_ENV",
    "CHAPTER_ENV",
    "STANDALONE_CHAPTER",
    "DEFAULT_RECORDS_DIR",
    "TIMING_PREFIX",
    "Record",
    "PaperTable",
    "PAPER_TABLES",
    "record",
    "make_record",
    "derive_status",
    "records_dir",
    "current_chapter",
    "chapter_file",
    "collect",
    "count_statuses",
    "paper_value",
    "format_value",
    "scorecard_json",
    "write_scorecard",
    "markdown_cell",
    "SCHEMA_VERSION",
    "main",
]

#: The four verdicts, strongest first, then the two outcomes that are no verdict on the paper.
STATUSES = ("exact", "reproduced", "qualitatively reproduced", "not reproduced at this scale", "inconclusive",
            "not comparable")
#: The two kinds of record: what the paper says, and the book's own guards.
KINDS = ("claim", "check")
KIND_MEANINGS = {
    "claim": "something the paper says: a number with its table or section, or a quoted qualitative finding",
    "check": "the book's own guard: parity with a reference implementation, a learning gate, a timing, "
             "an agreement with transformers",
}
#: A check passes or fails; it is no verdict on the paper.
CHECK_STATUSES = ("pass", "fail")
#: Claim statuses that compare with the paper's number: they need a numeric ``paper`` and a ``tolerance``.
PAPER_VALUE_STATUSES = ("exact", "reproduced")
#: Statuses that say the comparison cannot be judged; they are only ever set explicitly (``status=``),
#: override what ``paper``/``tolerance`` would derive, and need a ``note`` saying why.
NO_VERDICT_STATUSES = ("inconclusive", "not comparable")
#: One sentence per status, for the scorecard's legend.
STATUS_MEANINGS = {
    "exact": "Our number equals the paper's.",
    "reproduced": "Our number is within the stated tolerance of the paper's.",
    "qualitatively reproduced": "The effect the paper reports shows up (direction, ordering, rough size) at this "
                                "run's much smaller scale.",
    "not reproduced at this scale": "The effect does not show up at this profile's scale, although the runs "
                                    "behind it learned and measure the same thing as the paper.",
    "inconclusive": "A run the claim rests on did not pass its learning check, so the measurement cannot confirm "
                    "or refute the paper.",
    "not comparable": "The paper's number was measured on another corpus, vocabulary or machine, so ours is shown "
                      "beside it but not judged against it.",
}

RECORDS_ENV = "BERTREPRO_RECORDS_DIR"
CHAPTER_ENV = "BERTREPRO_CHAPTER"
STANDALONE_CHAPTER = "standalone"
DEFAULT_RECORDS_DIR = "records"
#: Keys under this prefix (wall times, throughput) depend on the machine; every other record must be
#: identical when a chapter is re-run on CPU with the same seed (tests/test_notebooks.py checks it).
TIMING_PREFIX = "timing."
#: The version of ``scorecard.json``'s layout (``report diff`` refuses another).
#: 3: every record has a ``kind`` (claim or check), checks an ``expected`` value; ``counts`` covers
#: claims only, ``check_counts`` the checks.
SCHEMA_VERSION = 3

# Keys and chapter ids become file names and table cells: keep them to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,119}$")


# ----------------------------------------------------------------------------------------------
# Writing records
# ----------------------------------------------------------------------------------------------


def _check_name(name: Any, what: str, example: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{what} must be 1-120 characters of letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit (e.g. {example!r}); got {name!r}"
        )
    return name


def _to_scalar(x: Any, what: str, allow_none: bool) -> Any:
    """Convert numpy / torch scalars to Python ones; accept only JSON numbers, strings and bools."""
    if x is None:
        if allow_none:
            return None
        raise ValueError(f"{what} is None; record a number, a string or a bool")
    # numpy scalars and 0-d numpy arrays / torch tensors all have ndim == 0 and .item().
    if not isinstance(x, (bool, int, float, str)) and getattr(x, "ndim", None) == 0 and hasattr(x, "item"):
        x = x.item()
    if isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{what} is {x!r}; a record must be finite (a NaN or inf result is a bug to fix, not a number to report)")
        return float(x)
    shape = getattr(x, "shape", None)
    hint = f" with shape {tuple(shape)}; pass a single element (e.g. x.item())" if shape is not None else ""
    raise ValueError(f"{what} must be a JSON number, string or bool, got {type(x).__name__}{hint}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def derive_status(value: Any, paper: Any, tolerance: float | None) -> str | None:
    """The status implied by ``|value - paper|`` and ``tolerance`` (None when not derivable).

    ``|value - paper| == 0`` -> ``"exact"``; ``<= tolerance`` -> ``"reproduced"``;
    otherwise ``"not reproduced at this scale"``.
    """
    if paper is None or tolerance is None:
        return None
    if not (_is_number(value) and _is_number(paper)):
        raise ValueError(
            f"tolerance needs numeric value and paper, got value={value!r}, paper={paper!r}; "
            "drop tolerance= and pass status= instead"
        )
    diff = abs(value - paper)
    if diff == 0:
        return "exact"
    if diff <= tolerance:
        return "reproduced"
    return "not reproduced at this scale"


@dataclass(frozen=True)
class Record:
    """One result: a claim (our ``value`` beside the ``paper``'s, with its verdict ``status``) or a
    check (our ``value`` against ``expected``, ``status`` pass or fail)."""

    key: str
    value: Any
    paper: Any
    tolerance: float | None
    note: str
    status: str
    chapter: str
    kind: str
    se: float | None = None  # the standard error of ``value``, where the claim has one
    unit: str | None = None  # e.g. "points", "%", "perplexity"
    n: int | None = None  # the sample size behind ``value``
    expected: Any = None  # a check's reference value (a claim's is ``paper``)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "record") -> "Record":
        """Rebuild and re-validate a record read from disk."""
        fields = ("key", "value", "paper", "tolerance", "note", "status", "chapter", "kind")
        missing = [f for f in fields if f not in d]
        extra = [f for f in d if f not in fields + _OPTIONAL_FIELDS]
        if missing or extra:
            raise ValueError(f"{source}: malformed record {dict(d)!r}; missing fields {missing}, unknown fields {extra}")
        rec = make_record(d["key"], d["value"], paper=d["paper"], tolerance=d["tolerance"], note=d["note"],
                          status=d["status"], chapter=d["chapter"], kind=d["kind"], se=d.get("se"),
                          unit=d.get("unit"), n=d.get("n"), expected=d.get("expected"))
        return rec


_OPTIONAL_FIELDS = ("se", "unit", "n", "expected")


def _check_extras(key: str, se: Any, unit: Any, n: Any) -> tuple[float | None, str | None, int | None]:
    if se is not None:
        se = _to_scalar(se, f"se of {key!r}", allow_none=False)
        if not _is_number(se) or not math.isfinite(se) or se < 0:
            raise ValueError(f"se of {key!r} must be a finite non-negative number, got {se!r}")
    if unit is not None and (not isinstance(unit, str) or not unit.strip()):
        raise ValueError(f"unit of {key!r} must be a non-empty string such as 'points', got {unit!r}")
    if n is not None:
        n = _to_scalar(n, f"n of {key!r}", allow_none=False)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n of {key!r} must be a positive int (the sample size), got {n!r}")
    return se, unit, n


def _kind_error(key: str, kind: Any) -> ValueError:
    what = "has no kind" if kind is None else f"has kind {kind!r}"
    return ValueError(f"record {key!r} {what}; pass kind='claim' ({KIND_MEANINGS['claim']}) or kind='check' "
                      f"({KIND_MEANINGS['check']})")


def _check_status(key: str, value: Any, expected: Any, tolerance: float | None, note: str,
                  status: str | None) -> str:
    """The pass/fail of a check: derived from ``expected`` (and ``tolerance``), or given with a note."""
    if status is not None and status not in CHECK_STATUSES:
        raise ValueError(f"check {key!r} has status {status!r}; a check passes or fails: "
                         f"status='pass' or 'fail' (claim statuses such as 'exact' are for kind='claim')")
    derived = None
    if expected is not None:
        if tolerance is not None:
            if not (_is_number(value) and _is_number(expected)):
                raise ValueError(f"tolerance of check {key!r} needs numeric value and expected, got value={value!r}, "
                                 f"expected={expected!r}; drop tolerance= to require equality")
            derived = "pass" if abs(value - expected) <= tolerance else "fail"
        else:
            derived = "pass" if value == expected else "fail"
    elif tolerance is not None:
        raise ValueError(f"tolerance={tolerance!r} given for check {key!r} without expected=; pass the reference value")
    if derived is None:
        if status is None:
            raise ValueError(f"cannot derive pass or fail for check {key!r}: pass expected= (and tolerance=), or "
                             "status='pass'/'fail' with a note stating the criterion")
        if not note.strip():
            raise ValueError(f"check {key!r} with an explicit status needs a note stating its criterion "
                             "(e.g. 'target >= 1')")
        return status
    if status is not None and status != derived:
        raise ValueError(f"status {status!r} for check {key!r} contradicts the numbers: value {value!r}, expected "
                         f"{expected!r}, tolerance {tolerance!r} gives {derived!r}; drop status= to use the derived one")
    return derived


def _claim_status(key: str, value: Any, paper: Any, tolerance: float | None, note: str, status: str | None) -> str:
    """The verdict of a claim: derived from ``paper`` and ``tolerance``, or given (and then consistent)."""
    if paper is None:
        raise ValueError(f"claim {key!r} has no paper value; pass paper= (the paper's number, or a short quote of "
                         "its finding), or record it as kind='check' if the paper does not say it")
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r} for {key!r}; valid statuses are {', '.join(map(repr, STATUSES))}")
    if status in NO_VERDICT_STATUSES and not note.strip():
        raise ValueError(f"status {status!r} for {key!r} needs a note saying why (e.g. which run did not learn, or "
                         f"what differs from the paper's setup)")
    if status in PAPER_VALUE_STATUSES and not (_is_number(paper) and tolerance is not None):
        raise ValueError(f"status {status!r} for {key!r} needs a numeric paper value and a tolerance (got paper="
                         f"{paper!r}, tolerance={tolerance!r}); pass both and let the status be derived, or use "
                         "'qualitatively reproduced'")
    derived = derive_status(value, paper, tolerance)
    if status in NO_VERDICT_STATUSES:
        return status  # no verdict: whatever the numbers would give does not apply
    if status is None:
        if derived is None:
            raise ValueError(
                f"cannot derive a status for {key!r}: pass paper= and tolerance= (numbers), or status= "
                f"(one of {', '.join(map(repr, STATUSES))})"
            )
        return derived
    if derived is not None and status != derived:
        raise ValueError(
            f"status {status!r} for {key!r} contradicts the numbers: |{value!r} - {paper!r}| = {abs(value - paper)!r} "
            f"with tolerance {tolerance!r} gives {derived!r}; drop status= to use the derived one"
        )
    return status


def make_record(key: str, value: Any, paper: Any = None, tolerance: float | None = None, note: str = "",
                status: str | None = None, chapter: str = STANDALONE_CHAPTER, se: float | None = None,
                unit: str | None = None, n: int | None = None, *, kind: str | None = None,
                expected: Any = None) -> Record:
    """Validate the arguments of :func:`record` and return the :class:`Record` (no I/O)."""
    _check_name(key, "record key", "params.base.total")
    if kind not in KINDS:
        raise _kind_error(key, kind)
    se, unit, n = _check_extras(key, se, unit, n)
    _check_name(chapter, "chapter id", "03_positional_encoding")
    value = _to_scalar(value, f"value of {key!r}", allow_none=False)
    paper = _to_scalar(paper, f"paper value of {key!r}", allow_none=True)
    expected = _to_scalar(expected, f"expected value of {key!r}", allow_none=True)
    if tolerance is not None:
        tolerance = _to_scalar(tolerance, f"tolerance of {key!r}", allow_none=False)
        if not _is_number(tolerance) or tolerance < 0:
            raise ValueError(f"tolerance of {key!r} must be a non-negative number, got {tolerance!r}")
    if not isinstance(note, str):
        raise ValueError(f"note of {key!r} must be a string, got {type(note).__name__}")
    if kind == "check":
        if paper is not None:
            raise ValueError(f"check {key!r} has paper={paper!r}; a check is the book's own guard and has no paper "
                             "value: pass the reference as expected=, or record a claim")
        status = _check_status(key, value, expected, tolerance, note, status)
    else:
        if expected is not None:
            raise ValueError(f"claim {key!r} has expected={expected!r}; a claim compares with paper=")
        if tolerance is not None and paper is None:
            raise ValueError(f"tolerance={tolerance!r} given for {key!r} without paper=; pass the paper's value too")
        status = _claim_status(key, value, paper, tolerance, note, status)
    return Record(key=key, value=value, paper=paper, tolerance=tolerance, note=note, status=status, chapter=chapter,
                  kind=kind, se=se, unit=unit, n=n, expected=expected)


def records_dir() -> Path:
    """``$BERTREPRO_RECORDS_DIR`` when set (the book runner), else ``./records`` (a standalone chapter)."""
    return Path(os.environ.get(RECORDS_ENV) or DEFAULT_RECORDS_DIR)


def current_chapter() -> str:
    """``$BERTREPRO_CHAPTER`` when set (the book runner), else ``"standalone"``."""
    return _check_name(os.environ.get(CHAPTER_ENV) or STANDALONE_CHAPTER, f"${CHAPTER_ENV}", "03_positional_encoding")


def chapter_file(chapter: str, directory: str | os.PathLike | None = None) -> Path:
    """The JSON file holding ``chapter``'s records."""
    return Path(records_dir() if directory is None else directory) / f"{_check_name(chapter, 'chapter id', '03_positional_encoding')}.json"


def _read_chapter_file(path: Path) -> list[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read records file {path}: {e}; delete it and re-run its chapter") from e
    if not isinstance(data, dict) or not isinstance(data.get("records"), list) or data.get("chapter") != path.stem:
        raise ValueError(
            f"records file {path} is malformed: expected {{'chapter': {path.stem!r}, 'records': [...]}}; "
            "delete it and re-run its chapter"
        )
    out = [Record.from_dict(d, source=str(path)) if isinstance(d, dict) else None for d in data["records"]]
    if any(r is None or r.chapter != path.stem for r in out):
        raise ValueError(f"records file {path} holds records of another chapter or non-objects; delete it and re-run its chapter")
    return out


def record(key: str, value: Any, paper: Any = None, tolerance: float | None = None, note: str = "",
           status: str | None = None, *, kind: str | None = None, expected: Any = None, se: float | None = None,
           unit: str | None = None, n: int | None = None) -> Any:
    """Record one claim of the paper, or one check of the book, and return ``value`` unchanged.

    Args:
        key: a stable id such as ``"params.base.total"`` (letters, digits, ``. _ -``).
        value: our number (int, float, bool, str; numpy / torch scalars are converted).
        kind: required, ``"claim"`` (something the paper says) or ``"check"`` (the book's own guard:
            parity, a learning gate, a timing, agreement with transformers); see :data:`KIND_MEANINGS`.
        paper: a claim's paper value: a number (with its table or section in ``note``) or a short quote
            of the finding. Required for a claim, refused for a check.
        expected: a check's reference value; with ``tolerance`` it passes when
            ``|value - expected| <= tolerance``, without one when ``value == expected``.
        tolerance: absolute tolerance; with ``paper`` a claim's status is derived:
            equal -> ``"exact"``, within -> ``"reproduced"``, outside -> ``"not reproduced at this scale"``.
        note: one line on what is compared (shown on the Scorecard page).
        status: a claim's: one of :data:`STATUSES` ("exact" and "reproduced" need a numeric paper value
            and a tolerance); a check's: "pass" or "fail", with a note stating the criterion when no
            ``expected`` derives it. Required when it cannot be derived, and must agree when it can,
            except ``"inconclusive"`` (a run behind the claim did not learn) and ``"not comparable"``
            (the paper measured on another corpus, vocabulary or machine), which replace the derived
            verdict and need a ``note`` saying why (:data:`STATUS_MEANINGS`).
        se, unit, n: the standard error of ``value``, its unit and its sample size, where the claim
            has them (``report diff`` compares such values within two combined standard errors).

    Returns:
        ``value``, as passed, so a cell can end with ``record(...)``.

    Raises:
        ValueError: bad key, value, tolerance or status, with the values and the fix.

    Re-recording a key in the same chapter replaces the earlier record (re-running a cell is safe).
    """
    chapter = current_chapter()
    rec = make_record(key, value, paper=paper, tolerance=tolerance, note=note, status=status, chapter=chapter,
                      se=se, unit=unit, n=n, kind=kind, expected=expected)
    path = chapter_file(chapter)
    existing = _read_chapter_file(path) if path.exists() else []
    merged = [rec if r.key == key else r for r in existing]
    if not any(r.key == key for r in existing):
        merged.append(rec)
    payload = {"chapter": chapter, "records": [r.to_dict() for r in merged]}
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    print(_summary_line(rec))
    return value


def _summary_line(rec: Record) -> str:
    ref = rec.paper if rec.kind == "claim" else rec.expected
    paper = ""
    if ref is not None:
        paper = f" | {'paper' if rec.kind == 'claim' else 'expected'} {format_value(ref)}"
        if rec.tolerance is not None:
            paper += f" ± {format_value(rec.tolerance)}"
    return f"[{rec.kind}] {rec.key} = {format_value(rec.value)}{paper} | {rec.status}"


# ----------------------------------------------------------------------------------------------
# Collecting and rendering
# ----------------------------------------------------------------------------------------------


def collect(directory: str | os.PathLike | None = None, chapters: Iterable[str] | None = None) -> list[Record]:
    """All records under ``directory`` (default :func:`records_dir`), by chapter then in recording order.

    ``chapters`` keeps only those chapter ids. Raises ``ValueError`` naming a malformed file.
    """
    root = records_dir() if directory is None else Path(directory)
    wanted = None if chapters is None else set(chapters)
    out: list[Record] = []
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        out.extend(_read_chapter_file(path))
    return out


def count_statuses(records: Iterable[Record]) -> dict[str, int]:
    """``{status: number of claims}`` for every claim status, in :data:`STATUSES` order (checks are
    not counted: see :func:`count_checks`)."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in records:
        if r.kind == "claim":
            counts[r.status] += 1
    return counts


def count_checks(records: Iterable[Record]) -> dict[str, int]:
    """``{"pass": n, "fail": m}`` over the checks among ``records``."""
    counts = dict.fromkeys(CHECK_STATUSES, 0)
    for r in records:
        if r.kind == "check":
            counts[r.status] += 1
    return counts


def format_value(x: Any) -> str:
    """Human-readable number: thousands separators for counts, 4 significant digits otherwise."""
    if x is None:
        return "–"
    if isinstance(x, bool) or isinstance(x, str):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.1f}"
        if abs(x) >= 1e4:
            return f"{x:,.1f}"
        return f"{x:.4g}"
    return str(x)


def markdown_cell(text: str) -> str:
    """Escape a string for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A Markdown table: ``header`` names the columns, each row gives one cell per column (``str(cell)``).

    ``align`` gives each column's divider (``"---"`` left, ``"--:"`` right); cells are escaped, so a
    ``|`` or a newline inside one cannot break the table.
    """
    header = list(header)
    dividers = list(align) if align is not None else ["---"] * len(header)
    if len(dividers) != len(header):
        raise ValueError(f"align has {len(dividers)} entries for {len(header)} columns")
    lines = ["| " + " | ".join(markdown_cell(str(h)) for h in header) + " |", "|" + "|".join(dividers) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row!r}")
        lines.append("| " + " | ".join(markdown_cell(str(c)) for c in row) + " |")
    return "\n".join(lines)


def scorecard_json(records: Sequence[Record], profile: str | None = None,
                   provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable scorecard: its schema version, where it comes from (``provenance``: the
    commit, profile, seed, device, versions and every cached artifact read or written), counts by
    status of the claims and of the checks, and every record."""
    return {
        "schema": SCHEMA_VERSION,
        "profile": profile,
        "provenance": dict(provenance or {}),
        "counts": count_statuses(records),
        "check_counts": count_checks(records),
        "records": [r.to_dict() for r in records],
    }


def write_scorecard(records: Sequence[Record], path: str | os.PathLike, profile: str | None = None,
                    provenance: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`scorecard_json` to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(scorecard_json(records, profile, provenance), indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# The paper's own tables (BERT, Devlin et al. 2018)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper, as data: ``rows`` are ``(label, values)`` with one value per column."""

    name: str
    caption: str
    label_header: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float, ...]], ...]

    def value(self, row: str, column: str) -> float:
        """One cell; ``ValueError`` lists the valid rows / columns."""
        labels = [r for r, _ in self.rows]
        if row not in labels:
            raise ValueError(f"{self.name}: unknown row {row!r}; valid rows are {labels}")
        if column not in self.columns:
            raise ValueError(f"{self.name}: unknown column {column!r}; valid columns are {list(self.columns)}")
        return dict(self.rows)[row][self.columns.index(column)]

    def to_markdown(self) -> str:
        head = f"| {self.label_header} | " + " | ".join(self.columns) + " |"
        rule = "|---" * (len(self.columns) + 1) + "|"
        body = [f"| {label} | " + " | ".join(str(v) for v in values) + " |" for label, values in self.rows]
        return "\n".join([f"**{self.caption}**", "", head, rule, *body])


PAPER_TABLES: dict[str, PaperTable] = {
    "table1": PaperTable(
        name="table1",
        caption="Table 1 — GLUE test results (MNLI matched / mismatched; F1 for QQP and MRPC, "
                "Spearman for STS-B, Matthews for CoLA, accuracy otherwise). Avg excludes WNLI.",
        label_header="System",
        columns=("MNLI-m", "MNLI-mm", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE", "Avg"),
        rows=(
            ("OpenAI GPT", (82.1, 81.4, 70.3, 87.4, 91.3, 45.4, 80.0, 82.3, 56.0, 75.1)),
            ("BERT-base", (84.6, 83.4, 71.2, 90.5, 93.5, 52.1, 85.8, 88.9, 66.4, 79.6)),
            ("BERT-large", (86.7, 85.9, 72.1, 92.7, 94.9, 60.5, 86.5, 89.3, 70.1, 82.1)),
        ),
    ),
    "table5": PaperTable(
        name="table5",
        caption="Table 5 — Ablation of the pre-training tasks (dev sets, BERT-base architecture).",
        label_header="Tasks",
        columns=("MNLI-m", "QNLI", "MRPC", "SST-2", "SQuAD F1"),
        rows=(
            ("BERT-base", (84.4, 88.4, 86.7, 92.7, 88.5)),
            ("No NSP", (83.9, 84.9, 86.5, 92.6, 87.9)),
            ("LTR & No NSP", (82.1, 84.3, 77.5, 92.1, 77.8)),
            ("+ BiLSTM", (82.1, 84.1, 75.7, 91.6, 84.9)),
        ),
    ),
    "table6": PaperTable(
        name="table6",
        caption="Table 6 — Model size (dev accuracy, mean of 5 fine-tuning restarts; "
                "LM ppl = held-out masked-LM perplexity).",
        label_header="L/H/A",
        columns=("LM ppl", "MNLI-m", "MRPC", "SST-2"),
        rows=(
            ("3/768/12", (5.84, 77.9, 79.8, 88.4)),
            ("6/768/3", (5.24, 80.6, 82.2, 90.7)),
            ("6/768/12", (4.68, 81.9, 84.8, 91.3)),
            ("12/768/12", (3.99, 84.4, 86.7, 92.9)),
            ("12/1024/16", (3.54, 85.7, 86.9, 93.3)),
            ("24/1024/16", (3.23, 86.6, 87.8, 93.7)),
        ),
    ),
    "table8": PaperTable(
        name="table8",
        caption="Table 8 — Masking strategies of the masked LM (Appendix C.2; MASK/SAME/RND of the chosen "
                "positions, in %; dev sets, BERT-base; NER feature-based = the last 4 layers concatenated).",
        label_header="MASK/SAME/RND",
        columns=("MNLI", "NER", "NER (feature-based)"),
        rows=(
            ("80/10/10", (84.2, 95.4, 94.9)),
            ("100/0/0", (84.3, 94.9, 94.0)),
            ("80/0/20", (84.1, 95.2, 94.6)),
            ("80/20/0", (84.4, 95.2, 94.7)),
            ("0/20/80", (83.7, 94.8, 94.6)),
            ("0/0/100", (83.6, 94.9, 94.6)),
        ),
    ),
}


def paper_value(table: str, row: str, column: str) -> float:
    """A number from the paper's tables, e.g. ``paper_value("table1", "BERT-base", "SST-2") == 93.5``."""
    if table not in PAPER_TABLES:
        raise ValueError(f"unknown paper table {table!r}; valid tables are {sorted(PAPER_TABLES)}")
    return PAPER_TABLES[table].value(row, column)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bertrepro.report diff BASE HEAD [--fail-on-regression]``: the command of
    :mod:`bertrepro.scorediff`, which reads this module's statuses. It is looked up by name, at run
    time, so that this module never imports the one above it."""
    diff_main = importlib.import_module(f"{__package__ or 'bertrepro'}.scorediff").main
    return diff_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
