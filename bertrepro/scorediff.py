"""``python -m bertrepro.report diff BASE HEAD``: which claims moved between two ``scorecard.json`` files.

The Markdown report lists, in this order: status changes (a move down the verdict order first),
value changes beyond tolerance, then claims added and removed. A value changes beyond tolerance
when it differs at all for a record without a standard error (seeded CPU runs are deterministic),
or by more than two combined standard errors, ``2 * sqrt(se_base² + se_head²)``, where both give
``se``. Timings (keys under :data:`bertrepro.report.TIMING_PREFIX`) are ignored.

The verdicts of claims are ranked best first: exact, reproduced, qualitatively reproduced, not
reproduced at this scale. "inconclusive" and "not comparable" stand apart: a move into or out of them
is listed, never ranked. A check ranks "pass" above "fail"; a record that changed kind (claim to
check) is listed, never ranked. ``--fail-on-regression`` exits 1 when a claim or check moves down or
disappears; bad input (not a scorecard, an unknown schema version, an empty file, not UTF-8, a record
with a field missing or of the wrong type, an unknown status or kind) prints one line naming the
record and the field and exits 2. A value that is NaN in both files has not changed. A scorecard of
the previous schema (2, before claims and checks were told apart) can be compared with a current one:
the report says so at its top, and its records count as claims.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .report import (CHECK_STATUSES, NO_VERDICT_STATUSES, SCHEMA_VERSION, STATUSES, TIMING_PREFIX, format_value,
                     markdown_table)

__all__ = ["RANKED", "RANKED_CHECKS", "COMPARABLE_SCHEMAS", "ScorecardError", "load_scorecard", "read_scorecard",
           "check_records", "diff", "render_diff", "main"]

#: The verdicts of claims, best first (the others are not ranked).
RANKED = tuple(s for s in STATUSES if s not in NO_VERDICT_STATUSES)
#: The outcomes of checks, best first.
RANKED_CHECKS = CHECK_STATUSES
#: The schema versions this version can read: its own, and 2 (every record a claim, no ``kind``).
COMPARABLE_SCHEMAS = (2, SCHEMA_VERSION)


class ScorecardError(ValueError):
    """A file that cannot be compared (not a scorecard, another schema, empty)."""


def load_scorecard(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{key: record}`` of a ``scorecard.json``; raises :class:`ScorecardError` saying what is wrong."""
    return read_scorecard(path)[1]


def read_scorecard(path: str | Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """``(schema version, {key: record})`` of a ``scorecard.json``; a schema-2 record gets
    ``kind="claim"``. Raises :class:`ScorecardError` saying what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ScorecardError(f"{path}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ScorecardError(f"{path}: not UTF-8 text (byte {e.start}); pass a scorecard.json written by a "
                             f"book run") from None
    if not text.strip():
        raise ScorecardError(f"{path}: the file is empty; pass a scorecard.json written by a book run")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScorecardError(f"{path}: not JSON ({e.msg}, line {e.lineno}); pass a scorecard.json") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ScorecardError(f"{path}: not a scorecard (no 'records' list); pass a scorecard.json")
    schema = data.get("schema")
    if schema not in COMPARABLE_SCHEMAS:
        raise ScorecardError(f"{path}: scorecard schema {schema!r}, this version compares schemas "
                             f"{', '.join(map(str, COMPARABLE_SCHEMAS))}; render both with a recent version of the book")
    records = check_records(path, data["records"], schema)
    return schema, {k: {"kind": "claim", **r} for k, r in records.items()}


# ----------------------------------------------------------------------------------------------
# The records of a scorecard, checked field by field before any comparison
# ----------------------------------------------------------------------------------------------

_REQUIRED = ("key", "value", "status")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _scalar(x: Any) -> bool:
    return isinstance(x, (int, float, str, bool))


def _field_problem(r: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first field of record ``r`` that does not fit the schema, and why (None: it fits)."""
    checks = (
        ("key", lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
        ("value", _scalar, "a number, a string or a bool"),
        ("status", lambda v: v in STATUSES or v in CHECK_STATUSES,
         "one of " + ", ".join(map(repr, (*STATUSES, *CHECK_STATUSES)))),
        ("kind", lambda v: v in ("claim", "check"), "'claim' or 'check'"),
        ("paper", lambda v: v is None or _scalar(v), "a number, a string, a bool or null"),
        ("tolerance", lambda v: v is None or (_number(v) and v >= 0), "a non-negative number or null"),
        ("note", lambda v: isinstance(v, str), "a string"),
        ("chapter", lambda v: isinstance(v, str), "a string"),
        ("se", lambda v: v is None or (_number(v) and not v < 0), "a non-negative number or null"),
        ("unit", lambda v: v is None or isinstance(v, str), "a string or null"),
        ("n", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
         "a positive whole number or null"),
    )
    for name, fits, wanted in checks:
        if name in r and not fits(r[name]):
            return name, f"is {r[name]!r}, not {wanted}"
    if r.get("tolerance") is not None:  # a verdict from a tolerance compares two numbers
        for name in ("value", "paper"):
            if not _number(r.get(name)):
                return name, f"is {r.get(name)!r}, but a record with a tolerance compares numbers"
    return None


def check_records(path: str | Path, records: Sequence[Any], schema: int = SCHEMA_VERSION) -> dict[str, dict[str, Any]]:
    """``{key: record}`` of a scorecard's records, each checked: an object with ``key``, ``value`` and
    ``status`` (and, from schema 3, ``kind``), every field of the right type, a known status, no key
    twice. Raises :class:`ScorecardError` naming the record and the field."""
    out: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ScorecardError(f"{path}: record {i} is {type(r).__name__}, not an object; pass a scorecard.json")
        name = f"record {i}" + (f" ({r['key']!r})" if isinstance(r.get("key"), str) and r["key"].strip() else "")
        missing = [f for f in (*_REQUIRED, *(("kind",) if schema == SCHEMA_VERSION else ())) if f not in r]
        if missing:
            raise ScorecardError(f"{path}: {name} has no field {missing[0]!r}; pass a scorecard.json written by a "
                                 f"book run")
        problem = _field_problem(r)
        if problem is not None:
            raise ScorecardError(f"{path}: {name}: field {problem[0]!r} {problem[1]}")
        if r["key"] in out:
            raise ScorecardError(f"{path}: {name}: field 'key' appears twice; a scorecard holds each claim once")
        out[r["key"]] = r
    return out


def _rank(record: Mapping[str, Any]) -> int | None:
    order = RANKED_CHECKS if record["kind"] == "check" else RANKED
    return order.index(record["status"]) if record["status"] in order else None


def _beyond_tolerance(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    va, vb = a["value"], b["value"]
    if va == vb or (isinstance(va, float) and isinstance(vb, float) and math.isnan(va) and math.isnan(vb)):
        return False  # NaN to NaN is no change
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
    if numeric and a.get("se") is not None and b.get("se") is not None:
        return abs(va - vb) > 2 * math.hypot(a["se"], b["se"])
    return True


def diff(base: Mapping[str, Mapping[str, Any]], head: Mapping[str, Mapping[str, Any]]) -> dict[str, list]:
    """The changes from ``base`` to ``head`` (both :func:`load_scorecard`): ``down``, ``up`` and ``apart``
    (status moves: down or up the verdict order, or into/out of a status that is not ranked),
    ``values`` (beyond tolerance), ``added`` and ``removed`` (keys)."""
    out: dict[str, list] = {k: [] for k in ("down", "up", "apart", "values", "added", "removed")}
    for key in sorted(set(base) | set(head)):
        if key.startswith(TIMING_PREFIX):
            continue
        if key not in head:
            out["removed"].append(key)
        elif key not in base:
            out["added"].append(key)
        else:
            a, b = base[key], head[key]
            if a["status"] != b["status"] or a["kind"] != b["kind"]:
                ra, rb = _rank(a), _rank(b)
                same = a["kind"] == b["kind"] and ra is not None and rb is not None
                move = "apart" if not same else ("down" if rb > ra else "up")
                out[move].append((key, _status(a), _status(b)))
            if _beyond_tolerance(a, b):
                out["values"].append((key, a, b))
    return out


def _status(r: Mapping[str, Any]) -> str:
    """``"exact"`` for a claim, ``"check: pass"`` for a check."""
    return f"check: {r['status']}" if r["kind"] == "check" else r["status"]


def _value(r: Mapping[str, Any]) -> str:
    s = format_value(r["value"])
    if r.get("se") is not None:
        s += f" ± {format_value(r['se'])}"
    return s + (f" {r['unit']}" if r.get("unit") else "")


def render_diff(changes: Mapping[str, list], base_name: str = "base", head_name: str = "head",
                schemas: tuple[int, int] = (SCHEMA_VERSION, SCHEMA_VERSION)) -> str:
    """The Markdown report of :func:`diff`; ``schemas`` are the two files' schema versions."""
    n_status = sum(len(changes[k]) for k in ("down", "up", "apart"))
    lines = [f"## Scorecard diff: `{base_name}` → `{head_name}`", ""]
    if schemas[0] != schemas[1]:
        lines += [f"**Schema versions differ:** `{base_name}` is schema {schemas[0]}, `{head_name}` schema "
                  f"{schemas[1]}. Schema 2 did not tell the paper's claims from the book's checks: its records all "
                  "count as claims, so a record that is now a check shows as a move that is not ranked.", ""]
    if not n_status and not any(changes[k] for k in ("values", "added", "removed")):
        return "\n".join(lines + ["No claim changed status or value beyond tolerance; none added or removed.", ""])
    lines += [f"### Status changes ({n_status})", ""]
    rows = ([(f"`{k}`", a, b, "**down**") for k, a, b in changes["down"]]
            + [(f"`{k}`", a, b, "up") for k, a, b in changes["up"]]
            + [(f"`{k}`", a, b, "not ranked") for k, a, b in changes["apart"]])
    lines += [markdown_table(["Claim", "Before", "After", "Move"], rows) if rows else "None.", ""]
    lines += [f"### Values beyond tolerance ({len(changes['values'])})", ""]
    rows = [(f"`{k}`", _value(a), _value(b), "2 combined SE" if a.get("se") is not None and b.get("se") is not None
             else "exact") for k, a, b in changes["values"]]
    lines += [markdown_table(["Claim", "Before", "After", "Tolerance"], rows) if rows else "None.", ""]
    for kind in ("added", "removed"):
        keys = changes[kind]
        lines += [f"### Claims {kind} ({len(keys)})", "", ", ".join(f"`{k}`" for k in keys) if keys else "None.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``diff BASE HEAD [--fail-on-regression]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bertrepro.report",
                                     description="Compare two scorecard.json files (Markdown on stdout).")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diff", help="which claims moved from BASE to HEAD")
    d.add_argument("base", help="the earlier scorecard.json (e.g. main's)")
    d.add_argument("head", help="the later scorecard.json (e.g. this commit's)")
    d.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when a claim moves down the verdict order or disappears")
    args = parser.parse_args(argv)
    try:
        (base_schema, base), (head_schema, head) = read_scorecard(args.base), read_scorecard(args.head)
    except ScorecardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    changes = diff(base, head)
    print(render_diff(changes, args.base, args.head, schemas=(base_schema, head_schema)))
    return 1 if args.fail_on_regression and (changes["down"] or changes["removed"]) else 0
