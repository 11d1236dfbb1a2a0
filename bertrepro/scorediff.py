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
disappears; bad input (not a scorecard, an unknown schema version, an empty file) prints one line and
exits 2. A scorecard of the previous schema (2, before claims and checks were told apart) can be
compared with a current one: the report says so at its top, and its records count as claims.
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
           "diff", "render_diff", "main"]

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
    out = {}
    for r in data["records"]:
        if not isinstance(r, dict) or not {"key", "value", "status"} <= set(r):
            raise ScorecardError(f"{path}: a record lacks key, value or status: {str(r)[:80]}")
        if schema == SCHEMA_VERSION and r.get("kind") not in ("claim", "check"):
            raise ScorecardError(f"{path}: record {r['key']!r} has kind {r.get('kind')!r}; schema {schema} records "
                                 "are 'claim' or 'check'")
        out[r["key"]] = {"kind": "claim", **r}
    return schema, out


def _rank(record: Mapping[str, Any]) -> int | None:
    order = RANKED_CHECKS if record["kind"] == "check" else RANKED
    return order.index(record["status"]) if record["status"] in order else None


def _beyond_tolerance(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    va, vb = a["value"], b["value"]
    if va == vb:
        return False
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
