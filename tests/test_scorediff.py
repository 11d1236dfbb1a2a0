"""``python -m bertrepro.report diff``: each kind of change, on small hand-made scorecards."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bertrepro import report, scorediff


def rec(key, value, status, se=None, **extra):
    kind = "check" if status in report.CHECK_STATUSES else "claim"
    return {"key": key, "value": value, "paper": None, "tolerance": None, "note": "", "status": status,
            "chapter": "09_pretraining", "kind": kind, "se": se, "unit": "points" if se is not None else None,
            "n": None, **extra}


def card(tmp_path, name, records, schema=report.SCHEMA_VERSION):
    path = tmp_path / name
    path.write_text(json.dumps({"schema": schema, "profile": "smoke", "provenance": {}, "counts": {},
                                "records": records}))
    return str(path)


def run(tmp_path, base, head, *flags):
    return scorediff.main(["diff", card(tmp_path, "base.json", base), card(tmp_path, "head.json", head), *flags])


def test_identical_scorecards_have_no_changes(tmp_path, capsys):
    recs = [rec("a", 1, "exact"), rec("b", 0.5, "reproduced", se=0.1)]
    assert run(tmp_path, recs, recs, "--fail-on-regression") == 0
    assert "No claim changed" in capsys.readouterr().out


def test_status_moves_are_ranked_and_listed_first(tmp_path, capsys):
    base = [rec("down", 1, "reproduced"), rec("up", 1, "not reproduced at this scale"),
            rec("apart", 1, "qualitatively reproduced")]
    head = [rec("down", 1, "qualitatively reproduced"), rec("up", 1, "exact"), rec("apart", 1, "inconclusive")]
    assert run(tmp_path, base, head) == 0
    out = capsys.readouterr().out
    assert out.index("Status changes (3)") < out.index("Values beyond tolerance (0)")
    assert "| `down` | reproduced | qualitatively reproduced | **down** |" in out
    assert "| `up` | not reproduced at this scale | exact | up |" in out
    assert "| `apart` | qualitatively reproduced | inconclusive | not ranked |" in out
    assert out.index("`down`") < out.index("`up`") < out.index("`apart`")
    assert run(tmp_path, base, head, "--fail-on-regression") == 1


def test_moves_between_unranked_statuses_are_no_regression(tmp_path):
    base = [rec("a", 1, "not comparable", note="x"), rec("b", 1, "inconclusive")]
    head = [rec("a", 1, "inconclusive"), rec("b", 1, "exact")]
    assert run(tmp_path, base, head, "--fail-on-regression") == 0


def test_values_exact_without_se_within_two_combined_se_with_it(tmp_path, capsys):
    base = [rec("det", 0.25, "exact"), rec("close", 1.0, "reproduced", se=0.3), rec("far", 1.0, "reproduced", se=0.3),
            rec("timing.train_s", 10.0, "not comparable")]
    head = [rec("det", 0.2500001, "exact"), rec("close", 1.8, "reproduced", se=0.4),  # 0.8 < 2 * 0.5
            rec("far", 2.2, "reproduced", se=0.4), rec("timing.train_s", 99.0, "not comparable")]  # 1.2 > 1.0
    assert run(tmp_path, base, head, "--fail-on-regression") == 0
    out = capsys.readouterr().out
    assert "Values beyond tolerance (2)" in out
    assert "| `det` | 0.25 | 0.25 | exact |" in out or "`det`" in out
    assert "`far`" in out and "2 combined SE" in out
    assert "`close`" not in out and "timing" not in out


def test_added_and_removed_claims(tmp_path, capsys):
    base = [rec("kept", 1, "exact"), rec("gone", 1, "exact")]
    head = [rec("kept", 1, "exact"), rec("new", 1, "exact")]
    assert run(tmp_path, base, head) == 0
    out = capsys.readouterr().out
    assert "Claims added (1)\n\n`new`" in out and "Claims removed (1)\n\n`gone`" in out
    assert run(tmp_path, base, head, "--fail-on-regression") == 1  # a disappearance is a regression


@pytest.mark.parametrize("text,message", [
    ("", "the file is empty"),
    ("[1, 2]", "not a scorecard"),
    ("{not json", "not JSON"),
    (json.dumps({"schema": 1, "records": []}), "scorecard schema 1, this version compares schemas 2, 3"),
    (json.dumps({"schema": 3, "records": [{"key": "a", "value": 1, "status": "exact"}]}), "has no field 'kind'"),
    (json.dumps({"records": []}), "scorecard schema None"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    good = card(tmp_path, "good.json", [])
    assert scorediff.main(["diff", str(bad), good]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_file_is_named(tmp_path, capsys):
    assert scorediff.main(["diff", str(tmp_path / "nope.json"), card(tmp_path, "g.json", [])]) == 2
    assert "nope.json: cannot read it" in capsys.readouterr().err


def test_the_module_command_runs(tmp_path):
    base = card(tmp_path, "b.json", [rec("a", 1, "exact")])
    head = card(tmp_path, "h.json", [])
    proc = subprocess.run([sys.executable, "-m", "bertrepro.report", "diff", base, head, "--fail-on-regression"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Claims removed (1)" in proc.stdout


def test_written_scorecards_load(tmp_path):
    recs = [report.make_record("a.b", 1.5, paper=1.0, tolerance=1.0, se=0.2, unit="points", n=40, kind="claim")]
    path = report.write_scorecard(recs, tmp_path / "s.json", profile="smoke", provenance={"seed": 0})
    loaded = scorediff.load_scorecard(path)
    assert loaded["a.b"]["se"] == 0.2 and loaded["a.b"]["n"] == 40 and loaded["a.b"]["unit"] == "points"
    assert json.loads(path.read_text())["provenance"] == {"seed": 0}


def claim(**changes):
    """A record as a book run writes it (a verdict from a tolerance), with some fields changed."""
    return {**rec("mlm.accuracy", 0.5, "reproduced"), "paper": 0.55, "tolerance": 0.1, **changes}


def test_a_file_that_is_not_utf8_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"schema": 2, "records": [], "note": "\xff\xfe latin-1"}')
    assert scorediff.main(["diff", str(bad), card(tmp_path, "good.json", [])]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not UTF-8 text" in err and err.count("\n") == 1


@pytest.mark.parametrize("changes,message", [
    (dict(value="abc"), "record 0 ('mlm.accuracy'): field 'value' is 'abc', but a record with a tolerance"),
    (dict(value=[1]), "record 0 ('mlm.accuracy'): field 'value' is [1], not a number, a string or a bool"),
    (dict(status=123), "record 0 ('mlm.accuracy'): field 'status' is 123, not one of 'exact'"),
    (dict(status="made up"), "record 0 ('mlm.accuracy'): field 'status' is 'made up', not one of"),
    (dict(tolerance="0.1"), "field 'tolerance' is '0.1', not a non-negative number or null"),
    (dict(se=-1.0), "field 'se' is -1.0, not a non-negative number or null"),
    (dict(n=True), "field 'n' is True, not a positive whole number"),
    (dict(note=None), "field 'note' is None, not a string"),
    (dict(key=""), "record 0: field 'key' is '', not a non-empty string"),
])
def test_a_record_of_the_wrong_type_names_the_record_and_field(tmp_path, capsys, changes, message):
    assert scorediff.main(["diff", card(tmp_path, "bad.json", [claim(**changes)]), card(tmp_path, "g.json", [])]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("field", ["key", "value", "status"])
def test_a_missing_field_names_the_record(tmp_path, capsys, field):
    r = claim()
    del r[field]
    assert scorediff.main(["diff", card(tmp_path, "bad.json", [claim(key="ok"), r]), card(tmp_path, "g.json", [])]) == 2
    err = capsys.readouterr().err
    assert f"record 1" in err and f"has no field {field!r}" in err and err.count("\n") == 1


def test_a_key_twice_and_a_record_that_is_not_an_object_are_refused(tmp_path, capsys):
    assert scorediff.main(["diff", card(tmp_path, "bad.json", [claim(), claim()]), card(tmp_path, "g.json", [])]) == 2
    assert "record 1 ('mlm.accuracy'): field 'key' appears twice" in capsys.readouterr().err
    assert scorediff.main(["diff", card(tmp_path, "bad.json", ["x"]), card(tmp_path, "g.json", [])]) == 2
    assert "record 0 is str, not an object" in capsys.readouterr().err


def test_nan_to_nan_is_no_change(tmp_path, capsys):
    nan = rec("probe.loss", float("nan"), "inconclusive", note="diverged")
    assert run(tmp_path, [nan], [dict(nan)]) == 0
    assert "No claim changed status or value" in capsys.readouterr().out
    assert run(tmp_path, [nan], [rec("probe.loss", 1.0, "inconclusive", note="diverged")]) == 0
    assert "Values beyond tolerance (1)" in capsys.readouterr().out


def test_a_check_that_stops_passing_is_a_regression(tmp_path, capsys):
    base = [rec("parity", 0.0, "pass"), rec("gate", True, "fail")]
    head = [rec("parity", 0.5, "fail"), rec("gate", True, "pass")]
    assert run(tmp_path, base, head, "--fail-on-regression") == 1
    out = capsys.readouterr().out
    assert "| `parity` | check: pass | check: fail | **down** |" in out
    assert "| `gate` | check: fail | check: pass | up |" in out
    assert "Schema versions differ" not in out


def test_across_schema_versions_the_diff_says_so(tmp_path, capsys):
    old = {k: v for k, v in rec("parity", 0.0, "exact").items() if k != "kind"}  # schema 2: no kind
    base = card(tmp_path, "base.json", [old, {k: v for k, v in rec("n", 1, "exact").items() if k != "kind"}],
                schema=2)
    head = card(tmp_path, "head.json", [rec("parity", 0.0, "pass"), rec("n", 1, "exact")])
    assert scorediff.main(["diff", base, head, "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "**Schema versions differ:**" in out and "is schema 2" in out and "schema 3" in out
    # a claim that became a check is listed, not ranked; the claim that stayed one did not move
    assert "| `parity` | exact | check: pass | not ranked |" in out and "`n`" not in out
