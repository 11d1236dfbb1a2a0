"""The scorecard: record(), status derivation, atomic writes, collection, rendering, the paper's tables."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bertrepro import report, scorecard
from bertrepro.report import PAPER_TABLES, STATUSES, collect, paper_value, record


@pytest.fixture
def records_dir(tmp_path, monkeypatch):
    d = tmp_path / "records"
    monkeypatch.setenv(report.RECORDS_ENV, str(d))
    monkeypatch.setenv(report.CHAPTER_ENV, "03_demo")
    return d


def _file(d, chapter="03_demo"):
    return json.loads((d / f"{chapter}.json").read_text())


@pytest.mark.parametrize(
    "value, paper, tol, expected",
    [
        (109_482_240, 109_482_240, 0, "exact"),
        (0.5, 0.5, 0.1, "exact"),
        (0.149, 0.15, 0.005, "reproduced"),
        (0.1 + 0.2, 0.3, 1e-12, "reproduced"),
        (0.16, 0.15, 0.005, "not reproduced at this scale"),
        (3, 5, 2, "reproduced"),
        (3, 5, 1.999, "not reproduced at this scale"),
    ],
)
def test_derive_status(value, paper, tol, expected):
    assert report.derive_status(value, paper, tol) == expected


def test_record_writes_returns_and_prints(records_dir, capsys):
    out = record("params.base.total", 109_482_240, kind="claim", paper=109_482_240, tolerance=0, note="BertModel, base")
    assert out == 109_482_240
    line = capsys.readouterr().out.strip()
    assert line == "[claim] params.base.total = 109,482,240 | paper 109,482,240 ± 0 | exact"
    data = _file(records_dir)
    assert data == {"chapter": "03_demo", "records": [{
        "key": "params.base.total", "value": 109_482_240, "paper": 109_482_240, "tolerance": 0,
        "note": "BertModel, base", "status": "exact", "chapter": "03_demo", "kind": "claim",
            "se": None, "unit": None, "n": None, "expected": None}]}


def test_rerecording_replaces_in_place(records_dir):
    record("a", 1, kind="claim", paper="a quote", status="qualitatively reproduced")
    record("b", 2, kind="claim", paper="a quote", status="qualitatively reproduced")
    record("a", 3, kind="claim", paper=3, tolerance=0)
    recs = collect(records_dir)
    assert [(r.key, r.value, r.status) for r in recs] == [("a", 3, "exact"), ("b", 2, "qualitatively reproduced")]


def test_numpy_and_torch_scalars_are_converted(records_dir):
    t = torch.tensor(0.25)
    assert record("t", t, kind="claim", paper=np.float64(0.25), tolerance=np.float32(0.0)) is t
    record("n", np.int64(7), kind="check", expected=np.int64(7))
    record("b", np.bool_(True), kind="check", expected=True)
    values = {r["key"]: r["value"] for r in _file(records_dir)["records"]}
    assert values == {"t": 0.25, "n": 7, "b": True}
    assert [type(v) for v in values.values()] == [float, int, bool]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(key="has space", value=1, kind="claim", paper=1, tolerance=0), "record key must be"),
        (dict(key="", value=1, kind="claim", paper=1, tolerance=0), "record key must be"),
        (dict(key="../x", value=1, kind="claim", paper=1, tolerance=0), "record key must be"),
        (dict(key="k", value=1, kind="claim", paper=1, status="done"), "unknown status 'done'.*'exact', 'reproduced'"),
        (dict(key="k", value=1, kind="claim", paper=1), "cannot derive a status.*pass paper= and tolerance="),
        (dict(key="k", value=1, kind="claim", tolerance=0.1), "without paper="),
        (dict(key="k", value=1, kind="claim", status="qualitatively reproduced"), "claim .k. has no paper value"),
        (dict(key="k", value=1, kind="claim", paper=1, tolerance=-1), "non-negative"),
        (dict(key="k", value=float("nan"), kind="claim", paper=1, tolerance=0), "must be finite"),
        (dict(key="k", value=float("inf"), kind="check", expected=1), "must be finite"),
        (dict(key="k", value=None, kind="check", expected=1), "is None"),
        (dict(key="k", value=[1, 2], kind="check", expected=1), "JSON number, string or bool, got list"),
        (dict(key="k", value=torch.ones(2), kind="check", expected=1), r"shape \(2,\)"),
        (dict(key="k", value="abc", kind="claim", paper="abc", tolerance=0), "tolerance needs numeric"),
        (dict(key="k", value=1.0, kind="claim", paper=2.0, tolerance=0.5, status="reproduced"), "contradicts the numbers"),
        (dict(key="k", value=1, note=3, kind="check", expected=1), "note of 'k' must be a string"),
        # the kind is required, and each kind has its own fields and statuses
        (dict(key="k", value=1, paper=1, tolerance=0), "record 'k' has no kind; pass kind='claim'.*or kind='check'"),
        (dict(key="k", value=1, paper=1, tolerance=0, kind="fact"), "record 'k' has kind 'fact'"),
        (dict(key="k", value=0.0, kind="check", paper=0.0, tolerance=1e-5), "a check is the book's own guard"),
        (dict(key="k", value=1, kind="check", status="exact"), "a check passes or fails"),
        (dict(key="k", value=1, kind="check", status="pass"), "needs a note stating its criterion"),
        (dict(key="k", value=1, kind="check"), "cannot derive pass or fail"),
        (dict(key="k", value=1, kind="check", tolerance=0.1), "without expected="),
        (dict(key="k", value=1, kind="check", expected=2, status="pass"), "contradicts the numbers"),
        (dict(key="k", value=1, kind="claim", paper=1, tolerance=0, expected=1), "a claim compares with paper="),
        (dict(key="k", value=1, kind="claim", status="pass", paper="q"), "unknown status 'pass'"),
        # "exact" and "reproduced" are defined against the paper's number within a tolerance
        (dict(key="k", value=1, kind="claim", paper="a quote", status="exact"), "needs a numeric paper value and a tolerance"),
        (dict(key="k", value=1, kind="claim", paper=1, status="reproduced"), "needs a numeric paper value and a tolerance"),
    ],
)
def test_bad_input_raises_clear_errors(records_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        record(**kwargs)
    assert not (records_dir / "03_demo.json").exists(), "a rejected record must not be written"


def test_bad_chapter_env(records_dir, monkeypatch):
    monkeypatch.setenv(report.CHAPTER_ENV, "a/b")
    with pytest.raises(ValueError, match="BERTREPRO_CHAPTER"):
        record("k", 1, kind="check", expected=1)


def test_standalone_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv(report.RECORDS_ENV, raising=False)
    monkeypatch.delenv(report.CHAPTER_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record("k", "yes", kind="claim", paper="yes", status="qualitatively reproduced")
    data = json.loads((tmp_path / "records" / "standalone.json").read_text())
    assert data["chapter"] == "standalone" and data["records"][0]["value"] == "yes"


def test_write_is_atomic(records_dir, monkeypatch):
    record("k", 1, kind="check", expected=1)
    before = (records_dir / "03_demo.json").read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        record("k2", 2, kind="check", expected=2)
    monkeypatch.undo()
    assert (records_dir / "03_demo.json").read_bytes() == before
    assert os.listdir(records_dir) == ["03_demo.json"], "the temporary file must be removed"


def test_collect_orders_filters_and_validates(tmp_path, monkeypatch):
    d = tmp_path / "r"
    monkeypatch.setenv(report.RECORDS_ENV, str(d))
    for chapter, key in [("02_b", "y"), ("01_a", "x"), ("01_a", "w")]:
        monkeypatch.setenv(report.CHAPTER_ENV, chapter)
        record(key, 1, kind="check", expected=1)
    assert [(r.chapter, r.key) for r in collect(d)] == [("01_a", "x"), ("01_a", "w"), ("02_b", "y")]
    assert [r.key for r in collect(d, chapters=["02_b"])] == ["y"]
    assert collect(tmp_path / "missing") == []
    (d / "03_c.json").write_text("{not json")
    with pytest.raises(ValueError, match="03_c.json"):
        collect(d)
    (d / "03_c.json").write_text(json.dumps({"chapter": "03_c", "records": [{"key": "z"}]}))
    with pytest.raises(ValueError, match=r"03_c.json: malformed record.*missing fields"):
        collect(d)
    (d / "03_c.json").write_text(json.dumps({"chapter": "01_a", "records": []}))
    with pytest.raises(ValueError, match="malformed"):
        collect(d)


def test_collected_records_are_revalidated(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    rec = {"key": "k", "value": 1.0, "paper": 2.0, "tolerance": 0.1, "note": "", "status": "exact", "chapter": "01_a",
           "kind": "claim"}
    (d / "01_a.json").write_text(json.dumps({"chapter": "01_a", "records": [rec]}))
    with pytest.raises(ValueError, match="contradicts"):
        collect(d)


def test_no_verdict_statuses_replace_the_derived_one(tmp_path, monkeypatch):
    monkeypatch.setenv(report.RECORDS_ENV, str(tmp_path))
    monkeypatch.setenv(report.CHAPTER_ENV, "11_demo")
    # Derived from the numbers, a perplexity of 7.5 against the paper's 3.99 is "not reproduced" ...
    assert report.make_record("ppl", 7.5, kind="claim", paper=3.99, tolerance=0.5).status == "not reproduced at this scale"
    # ... but measured on another vocabulary it is not comparable, and a run that did not learn is inconclusive.
    record("table6.ppl", 7.5, kind="claim", paper=3.99, tolerance=0.5, status="not comparable",
           note="8k vocabulary, not 30k")
    record("ablation.mlm.cloze_over_baseline", 1.02, kind="claim", paper="MLM beats LTR", status="inconclusive",
           note="arm did not learn")
    record("params.total", 5, kind="claim", paper=5, tolerance=0)
    recs = collect(tmp_path)  # re-validated when read back
    assert [r.status for r in recs] == ["not comparable", "inconclusive", "exact"]
    counts = report.count_statuses(recs)
    assert counts["not reproduced at this scale"] == 0
    assert counts["not comparable"] == counts["inconclusive"] == counts["exact"] == 1
    assert sum(counts.values()) == len(recs)


@pytest.mark.parametrize("status", ["inconclusive", "not comparable"])
def test_no_verdict_statuses_need_a_note(status):
    with pytest.raises(ValueError, match=f"status '{status}' for 'k' needs a note"):
        report.make_record("k", 1.0, paper=2.0, tolerance=0.1, status=status, kind="claim")
    with pytest.raises(ValueError, match="needs a note"):
        report.make_record("k", 1.0, paper="q", status=status, note="  ", kind="claim")
    with pytest.raises(ValueError, match="unknown status 'inconclusive: arm did not learn'.*'inconclusive'"):
        report.make_record("k", 1.0, paper="q", status="inconclusive: arm did not learn", note="x", kind="claim")


def test_status_meanings_cover_every_status():
    assert list(report.STATUS_MEANINGS) == list(STATUSES)
    assert set(report.NO_VERDICT_STATUSES) < set(STATUSES)
    for status, text in report.STATUS_MEANINGS.items():
        assert text[0].isupper() and text.endswith(".") and text.count(". ") == 0, status  # one sentence


def _sample_records():
    return [
        report.make_record("params.total", 109_482_240, paper=109_482_240, tolerance=0, chapter="01_a", kind="claim"),
        report.make_record("mlm.fraction", 0.1498, paper=0.15, tolerance=0.005, note="masked | chosen", chapter="01_a",
                           kind="claim"),
        report.make_record("parity.max_abs_diff", 3e-7, expected=0.0, tolerance=1e-5, note="vs transformers",
                           chapter="01_a", kind="check"),
        report.make_record("glue.sst2", 81.2, paper=93.5, status="qualitatively reproduced", chapter="02_b", kind="claim"),
        report.make_record("nsp.acc", 0.51, paper=0.975, status="not reproduced at this scale", chapter="02_b",
                           kind="claim"),
        report.make_record("pretrain.loss_decreased", False, expected=True, note="learning gate", chapter="02_b",
                           kind="check"),
    ]


def test_counts_and_scorecard_json(tmp_path):
    recs = _sample_records()
    assert report.count_statuses(recs) == dict(zip(STATUSES, [1, 1, 1, 1, 0, 0])), "checks are not counted"
    assert report.count_checks(recs) == {"pass": 1, "fail": 1}
    path = report.write_scorecard(recs, tmp_path / "scorecard.json", profile="smoke")
    data = json.loads(path.read_text())
    assert data["profile"] == "smoke" and data["counts"]["exact"] == 1
    assert [r["key"] for r in data["records"]] == ["params.total", "mlm.fraction", "parity.max_abs_diff", "glue.sst2",
                                                  "nsp.acc", "pretrain.loss_decreased"]
    assert data["check_counts"] == {"pass": 1, "fail": 1} and data["schema"] == report.SCHEMA_VERSION == 3


def test_render_scorecard():
    md = scorecard.render_scorecard(_sample_records(), profile="cpu")
    assert md.startswith("# Scorecard")
    # One table per chapter; status, ours and paper first, the claim (key: note) last.
    assert "### [01_a](01_a.ipynb)" in md and "### [02_b](02_b.ipynb)" in md
    assert md.index("### [01_a]") < md.index("`params.total`") < md.index("### [02_b]") < md.index("`glue.sst2`")
    assert md.count("| Status | Ours | Paper | Claim |") == 2
    assert "| exact | 109,482,240 | 109,482,240 ± 0 | `params.total` |" in md
    assert "| not reproduced at this scale | 0.51 | 0.975 | `nsp.acc` |" in md
    assert "masked \\| chosen" in md, "a | in a note must be escaped in the table"
    assert "`cpu` profile" in md
    for t in PAPER_TABLES.values():
        assert t.caption in md
    assert "| BERT-base | 84.6 | 83.4 | 71.2 | 90.5 | 93.5 | 52.1 | 85.8 | 88.9 | 66.4 | 79.6 |" in md
    assert "No chapter recorded" in scorecard.render_scorecard([])


def test_scorecard_counts_claims_and_lists_checks_apart():
    md = scorecard.render_scorecard(_sample_records(), profile="cpu")
    claims, checks = md[md.index("## Claims"):md.index("## Checks")], md[md.index("## Checks"):md.index("## The paper")]
    assert ("**Totals:** 1 exact, 1 reproduced, 1 qualitatively reproduced, 1 not reproduced at this scale, "
            "0 inconclusive, 0 not comparable (4 claims).") in md
    assert "2 claims)." in claims and "parity" not in claims and "loss_decreased" not in claims
    assert "1 pass, 1 fail (2 checks)" in checks
    assert "| Result | Ours | Expected ± tolerance | Paper | Check | Chapter |" in checks
    # a check shows its expected value and tolerance, never as the paper's: its Paper cell is "–"
    assert "| pass | 3e-07 | 0.0 ± 1e-05 | – | `parity.max_abs_diff`: vs transformers |" in checks
    assert "| **fail** | False | True | – | `pretrain.loss_decreased`: learning gate |" in checks
    assert "Paper 0.0" not in md and "0.0 ± 1e-05 | 3e-07" not in claims
    # the sample's claims are "exact" and "reproduced" only with a paper value and a tolerance
    for r in _sample_records():
        if r.status in report.PAPER_VALUE_STATUSES:
            assert isinstance(r.paper, (int, float)) and r.tolerance is not None


def test_every_status_is_the_kind_it_belongs_to():
    for r in _sample_records():
        assert r.status in (STATUSES if r.kind == "claim" else report.CHECK_STATUSES)
        assert (r.paper is None) == (r.kind == "check")
    assert set(report.CHECK_STATUSES).isdisjoint(STATUSES) and report.KINDS == ("claim", "check")
    assert report.STATUS_MEANINGS["inconclusive"].startswith("A run the claim rests on did not pass its learning check")


def test_scorecard_legend_explains_every_status():
    md = scorecard.render_scorecard(_sample_records())
    legend = md[: md.index("## Claims")]
    assert "A **claim** is something the paper says" in legend and "A **check** is the book's own guard" in legend
    for status, meaning in report.STATUS_MEANINGS.items():
        assert f"* **{status}** — {meaning}" in legend, status


def test_table8_rows_and_the_papers_contrasts():
    """Appendix C.2: six MASK/SAME/RND rows summing to 100 %; MASK-only is the worst feature-based
    row (-0.9 F1 against 80/10/10) and RND-only is worse than 80/10/10 on every column."""
    t8 = PAPER_TABLES["table8"]
    assert len(t8.rows) == 6
    for label, values in t8.rows:
        assert sum(map(int, label.split("/"))) == 100 and len(values) == 3
    feat = {label: t8.value(label, "NER (feature-based)") for label, _ in t8.rows}
    assert min(feat, key=feat.get) == "100/0/0"
    assert round(feat["80/10/10"] - feat["100/0/0"], 6) == 0.9
    for col in t8.columns:
        assert paper_value("table8", "80/10/10", col) > paper_value("table8", "0/0/100", col)
    mnli = [t8.value(label, "MNLI") for label, _ in t8.rows]
    assert round(max(mnli) - min(mnli), 6) <= 0.8  # "surprisingly robust" fine-tuning


def test_render_summary():
    timings = {"chapters": {"01_a": {"seconds": 1.24, "status": "ok"}, "02_b": {"seconds": 3.0, "status": "failed"}},
               "html_seconds": 2.0}
    md = scorecard.render_summary(_sample_records(), timings, profile="cpu", failure="chapter 02_b failed")
    assert "| 01_a | 1.2 | ok |" in md
    assert "| 02_b | 3.0 | failed |" in md
    assert "| **total** | **4.2** | |" in md
    assert "HTML build: 2.0 s." in md
    assert "**FAILED:** chapter 02_b failed" in md
    assert ("1 exact, 1 reproduced, 1 qualitatively reproduced, 1 not reproduced at this scale, 0 inconclusive, "
            "0 not comparable (4 claims)") in md
    assert "**Checks:** 1 pass, 1 fail (2 checks)." in md
    assert md.index("### Claims") < md.index("`glue.sst2`") < md.index("### Checks") < md.index("`parity.max_abs_diff`")


@pytest.mark.parametrize("x, s", [(109_482_240, "109,482,240"), (0.14987, "0.1499"), (3.0, "3.0"),
                                  (12345.678, "12,345.7"), (True, "True"), ("ok", "ok"), (None, "–")])
def test_format_value(x, s):
    assert report.format_value(x) == s


# The paper's tables, checked against themselves: typos in the transcription show up here.
def test_table1_average_is_the_mean_of_its_nine_scores():
    t = PAPER_TABLES["table1"]
    for label, values in t.rows:
        scores, avg = values[:-1], values[-1]
        assert len(scores) == 9
        assert round(sum(scores) / 9, 1) == avg, f"{label}: mean {sum(scores) / 9:.3f} vs Avg {avg}"


def test_table6_trends_and_agreement_with_table5():
    t6 = PAPER_TABLES["table6"]
    ppl = [v[0] for _, v in t6.rows]
    assert ppl == sorted(ppl, reverse=True), "LM perplexity falls as the model grows"
    for col in ("MNLI-m", "MRPC", "SST-2"):
        acc = [t6.value(label, col) for label, _ in t6.rows]
        assert acc == sorted(acc), f"{col} accuracy rises with size"
    # Table 5's BERT-base row is Table 6's 12/768/12 model on MNLI-m and MRPC.
    for col in ("MNLI-m", "MRPC"):
        assert paper_value("table5", "BERT-base", col) == paper_value("table6", "12/768/12", col)
    assert paper_value("table1", "BERT-large", "MNLI-m") == 86.7


def test_paper_value_errors_list_valid_names():
    with pytest.raises(ValueError, match=r"valid tables are \['table1', 'table5', 'table6', 'table8'\]"):
        paper_value("table9", "BERT-base", "SST-2")
    with pytest.raises(ValueError, match="valid rows are"):
        paper_value("table1", "BERT-huge", "SST-2")
    with pytest.raises(ValueError, match="valid columns are"):
        paper_value("table1", "BERT-base", "SQuAD")


def test_markdown_table_escapes_cells_and_checks_widths():
    from bertrepro.report import markdown_table

    text = markdown_table(["a", "b"], [(1, "x|y"), ("two\nlines", 2.5)], align=["---", "--:"])
    assert text.splitlines() == ["| a | b |", "|---|--:|", "| 1 | x\\|y |", "| two lines | 2.5 |"]
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [(1,)])
    with pytest.raises(ValueError, match="align has 1 entries for 2 columns"):
        markdown_table(["a", "b"], [], align=["---"])


def test_origin_counts_and_the_scorecard_sentence():
    recs = [report.make_record(f"k{i}", 1, paper=1, tolerance=0, chapter=ch, kind="claim")
            for i, ch in enumerate(["06_a", "06_a", "09_b", "11_c", "12_d"])]
    prov = {"artifacts": [
        {"chapter": "06_a", "path": "v.txt", "fingerprint": "f1", "how": "reused"},  # left by an earlier run
        {"chapter": "09_b", "path": "m", "fingerprint": "f2", "how": "computed"},
        {"chapter": "09_b", "path": "v.txt", "fingerprint": "f1", "how": "reused"},  # a model trained now
        {"chapter": "11_c", "path": "m", "fingerprint": "f2", "how": "reused"},  # made earlier in this run
    ]}
    assert scorecard.origin_counts(recs, prov) == (3, 2)
    assert scorecard.origin_counts(recs, None) == (5, 0)
    page = scorecard.render_scorecard(recs, profile="smoke", provenance=prov)
    assert "3 claims in this run, 2 from artifacts" in page and "fingerprint" in page
    summary = scorecard.render_summary(recs, {"chapters": {}}, profile="smoke", provenance=prov)
    assert "3 computed in this run, 2 from a cache of the same code" in summary


def test_structured_fields_are_checked():
    rec = report.make_record("a", 0.5, paper=0.4, tolerance=0.2, se=0.05, unit="points", n=120, kind="claim")
    assert (rec.se, rec.unit, rec.n) == (0.05, "points", 120)
    with pytest.raises(ValueError, match="se of 'a' must be a finite non-negative number"):
        report.make_record("a", 0.5, paper=0.4, tolerance=0.2, se=-1, kind="claim")
    with pytest.raises(ValueError, match="n of 'a' must be a positive int"):
        report.make_record("a", 0.5, paper=0.4, tolerance=0.2, n=0, kind="claim")
    with pytest.raises(ValueError, match="unit of 'a' must be a non-empty string"):
        report.make_record("a", 0.5, paper=0.4, tolerance=0.2, unit="", kind="claim")
    assert report.Record.from_dict(rec.to_dict()) == rec
    old = {k: v for k, v in rec.to_dict().items() if k not in ("se", "unit", "n", "expected")}  # records without them load
    assert report.Record.from_dict(old).se is None


# Chapters whose record calls are being rewritten elsewhere to pass kind=; the marks go once they do.
_KIND_PENDING: set[str] = set()
_SOURCES = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.py")) + sorted(
    (Path(__file__).resolve().parent.parent / "bertrepro").rglob("*.py"))


@pytest.mark.parametrize("src", [
    pytest.param(p, marks=pytest.mark.xfail(reason="this chapter's records adopt kind= in its own rewrite"))
    if p.stem in _KIND_PENDING else p for p in _SOURCES], ids=lambda p: p.stem)
def test_every_record_call_names_its_kind(src):
    """A record without kind= would fail at run time; this finds it without running the chapter."""
    import ast

    tree = ast.parse(src.read_text(encoding="utf-8"))
    missing = [node.lineno for node in ast.walk(tree)
               if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "record"
               and not any(k.arg == "kind" for k in node.keywords)]
    assert not missing, f"{src.name}: record() without kind= at lines {missing}"


def test_a_quoted_claim_wraps_in_a_left_aligned_paper_column():
    quote = report.make_record("heads.prev", 3, kind="claim", paper="heads attend to the previous token (§3.1)",
                               status="qualitatively reproduced", chapter="13_c")
    number = report.make_record("params.total", 5, kind="claim", paper=5, tolerance=0, chapter="05_p")
    md = scorecard.render_scorecard([number, quote])
    chapter_05, chapter_13 = md.split("### [13_c]")
    assert "|---|--:|--:|---|" in chapter_05 and "|---|--:|---|---|" in chapter_13
    assert "| qualitatively reproduced | 3 | heads attend to the previous token (§3.1) | `heads.prev` |" in chapter_13
