"""The chapters and the book runner.

* every ``notebooks/NN_slug.py`` is paired with an ``.ipynb`` holding the same cells and no outputs,
  and opens with a ``parameters`` cell (profile, seed, device);
* every chapter runs ALONE at the smoke profile, copied into an empty folder (a forked chapter);
* a seeded chapter records the same numbers twice;
* the runner: unknown parameters, a failing cell, and a small book rendered to HTML offline,
  using throwaway notebooks written here.
"""
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from bertrepro import book, chapters, report
from bertrepro.book import ChapterError, main, run_chapter
from bertrepro.chapters import notebook_parameters, pairing_differences

NOTEBOOKS = sorted(chapters.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
IDS = [p.stem for p in NOTEBOOKS]
CELL_TIMEOUT = 900


def _ipynb(py: Path) -> Path:
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        pytest.fail(f"{py.name} has no {ipynb.name}; run `make sync`")
    return ipynb


# ----------------------------------------------------------------------------------------------
# The chapters
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("py", NOTEBOOKS, ids=IDS)
def test_pairing(py):
    ipynb = _ipynb(py)
    diffs = pairing_differences(py, ipynb)
    assert not diffs, f"{py.name} and {ipynb.name} differ; run `make sync`:\n" + "\n".join(diffs)


@pytest.mark.parametrize("py", NOTEBOOKS, ids=IDS)
def test_parameters_cell_comes_first(py):
    nb = nbformat.read(str(_ipynb(py)), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    params = notebook_parameters(_ipynb(py))
    defaults = {k: params[k] for k in ("profile", "seed", "device") if k in params}
    assert defaults == {"profile": None, "seed": 0, "device": None}, params
    # papermill injects the run's values in a cell *after* the parameters cell, so setup() must
    # be called in the next cell, never in the parameters cell itself (it would see the defaults).
    assert "setup(" not in first.source, "call setup(...) after the parameters cell, not inside it"
    assert len(code) > 1 and "setup(" in code[1].source, "the cell after the parameters cell must call setup(...)"


def _run_alone(py, tmp_path, **kwargs):
    """Copy just the chapter into an empty folder and run it there, as a forked chapter would be."""
    work = tmp_path / "fork"
    work.mkdir(parents=True)
    nb = shutil.copy(_ipynb(py), work)
    return run_chapter(nb, "smoke", tmp_path / "out", timeout=CELL_TIMEOUT, **kwargs)


# Chapters whose record calls are being rewritten elsewhere to pass kind= (record refuses a record
# without it); the marks go once they do.
KIND_PENDING: set[str] = set()
RUNNABLE = [pytest.param(p, marks=pytest.mark.xfail(reason="records adopt kind= in this chapter's rewrite"))
            if p.stem in KIND_PENDING else p for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.parametrize("py", RUNNABLE, ids=IDS)
def test_chapter_runs_alone_at_smoke(py, tmp_path):
    res = _run_alone(py, tmp_path)
    assert res.executed.exists()
    executed = nbformat.read(str(res.executed), as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def _first_recording_chapter():
    for py in NOTEBOOKS:
        if "record(" in py.read_text(encoding="utf-8"):
            return py
    return None


@pytest.mark.slow
def test_seeded_chapter_records_identical_numbers(tmp_path):
    py = _first_recording_chapter()
    if py is None:
        pytest.skip("no chapter calls report.record yet")
    runs = []
    for i in range(2):
        res = _run_alone(py, tmp_path / str(i))
        runs.append([(r.key, r.value) for r in res.records if not r.key.startswith(report.TIMING_PREFIX)])
    assert runs[0], f"{py.name} recorded nothing"
    assert runs[0] == runs[1]


# ----------------------------------------------------------------------------------------------
# The runner, on throwaway notebooks
# ----------------------------------------------------------------------------------------------

PARAMS = "profile = None\nseed = 0\ndevice = None"


def _notebook(path: Path, *code: str, title: str = "A throwaway chapter", params: str | None = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\nA {{term}}`self-attention` link."))
    if params is not None:
        nb.cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(c) for c in code]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


RECORDING = (
    "import os\n"
    "from bertrepro.chapters import setup\n"
    "from bertrepro.io import cache_dir\n"
    "from bertrepro.report import record\n"
    "run = setup(profile=profile, seed=seed, device=device)",
    "import torch\n"
    "x = torch.rand(run.pick(smoke=8, cpu=64, gpu=512), generator=run.generator())\n"
    "record('demo.mean', x.mean(), kind='claim', paper=0.5, tolerance=0.5, note='mean of uniforms')\n"
    "record('env.profile', run.profile, kind='check', status='pass', note='the profile, as run')\n"
    "record('env.offline', os.environ.get('HF_HUB_OFFLINE', 'unset'), kind='check', status='pass', note='offline')\n"
    "record('env.cwd', os.getcwd(), kind='check', status='pass', note='working directory')\n"
    "record('env.cache', str(cache_dir().resolve()), kind='check', status='pass', note='cache')",
)


def _values(records):
    return {r.key: r.value for r in records}


def test_unknown_parameter_lists_valid_ones(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", "pass")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lr'\].*valid parameters are device, profile, seed"):
        run_chapter(nb, "smoke", tmp_path / "out", {"lr": 0.1})
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*smoke, cpu, gpu"):
        run_chapter(nb, "huge", tmp_path / "out")
    assert not (tmp_path / "out" / "01_x.ipynb").exists(), "nothing may run before the parameters are valid"


def test_missing_parameters_cell(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", "pass", params=None)
    with pytest.raises(ValueError, match="no code cell tagged 'parameters'"):
        run_chapter(nb, "smoke", tmp_path / "out")


def test_pairing_differences_catch_drift_and_outputs(tmp_path):
    import jupytext

    ipynb = _notebook(tmp_path / "01_x.ipynb", "x = 1")
    py = tmp_path / "01_x.py"
    jupytext.write(nbformat.read(str(ipynb), as_version=4), str(py), fmt="py:percent")
    assert pairing_differences(py, ipynb) == []
    py.write_text(py.read_text().replace("x = 1", "x = 2"))
    assert any("cell 2 differs" in d for d in pairing_differences(py, ipynb))
    nb = nbformat.read(str(ipynb), as_version=4)
    nb.cells[-1].execution_count = 1
    nbformat.write(nb, str(ipynb))
    assert any("stores outputs" in d for d in pairing_differences(py, ipynb))


def test_chapter_selection_and_unpaired_sources(tmp_path):
    d = tmp_path / "nbs"
    a, b = _notebook(d / "01_a.ipynb", "pass"), _notebook(d / "02_b.ipynb", "pass")
    found = chapters.find_chapters(d)
    assert found == [a, b]
    assert chapters.select_chapters(found, ["2", "01_a"]) == [a, b]
    with pytest.raises(ValueError, match="available chapters: 01_a, 02_b"):
        chapters.select_chapters(found, ["07"])
    (d / "03_c.py").write_text("# %%\n")
    with pytest.raises(ValueError, match=r"03_c.py.*no paired .ipynb.*make sync"):
        chapters.find_chapters(d)


@pytest.mark.slow
def test_standalone_run_writes_beside_the_chapter(tmp_path, monkeypatch):
    # Variables inherited from a surrounding book run must not leak into a standalone run.
    monkeypatch.setenv(report.RECORDS_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.setenv(book.CACHE_ENV, str(tmp_path / "elsewhere"))
    nb = _notebook(tmp_path / "fork" / "05_demo.ipynb", *RECORDING)
    res = run_chapter(nb, "smoke", tmp_path / "out")
    v = _values(res.records)
    assert Path(v["env.cwd"]) == (tmp_path / "fork").resolve()
    assert Path(v["env.cache"]) == (tmp_path / "fork" / ".bertrepro_cache").resolve()
    assert v["env.offline"] == "1" and v["env.profile"] == "smoke"
    assert (tmp_path / "fork" / "records" / "05_demo.json").exists()
    assert not (tmp_path / "elsewhere").exists()
    assert os.environ[report.RECORDS_ENV] == str(tmp_path / "elsewhere"), "the caller's environment is restored"


@pytest.mark.slow
def test_failing_cell_stops_the_book_naming_chapter_and_cell(tmp_path, capsys):
    d = tmp_path / "nbs"
    _notebook(d / "01_ok.ipynb", *RECORDING)
    _notebook(d / "02_fails.ipynb", "x = 1", "# a comment first\ny = x / 0", "z = 2")
    _notebook(d / "03_never.ipynb", "pass")
    out = tmp_path / "build"
    status = main(["--profile", "smoke", "--notebooks", str(d), "--output", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    assert "chapter 02_fails failed in cell index 3 (In [" in captured.err
    assert "y = x / 0" in captured.err and "ZeroDivisionError: division by zero" in captured.err
    assert "[02/03] 02_fails ... FAILED" in captured.out and "03_never" not in captured.out
    partial = nbformat.read(str(out / "executed" / "02_fails.ipynb"), as_version=4)
    assert any(o.output_type == "error" for c in partial.cells if c.cell_type == "code" for o in c.outputs)
    timings = json.loads((out / "timings.json").read_text())
    assert {k: v["status"] for k, v in timings["chapters"].items()} == {"01_ok": "ok", "02_fails": "failed"}
    assert "**FAILED:** chapter 02_fails" in (out / "summary.md").read_text()
    assert not (out / "html").exists()

    # The same failure through run_chapter: a ChapterError carrying the details.
    with pytest.raises(ChapterError) as info:
        run_chapter(d / "02_fails.ipynb", "smoke", tmp_path / "direct")
    e = info.value
    assert (e.chapter, e.cell_index, e.first_line, e.ename) == ("02_fails", 3, "y = x / 0", "ZeroDivisionError")
    assert e.executed == (tmp_path / "direct" / "02_fails.ipynb").resolve() and e.executed.exists()


@pytest.mark.slow
def test_book_builds_html_offline(tmp_path, capsys):
    d = tmp_path / "nbs"
    _notebook(d / "01_first.ipynb", *RECORDING, title="First chapter")
    _notebook(d / "02_second.ipynb", "import math\nmath.pi", title="Second chapter")
    out = tmp_path / "build"
    assert main(["--profile", "smoke", "--notebooks", str(d), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[01/02] 01_first ..." in captured.out and "[02/02] 02_second ..." in captured.out
    assert "sphinx:" not in captured.out, f"the book's own pages must build without warnings:\n{captured.out}"

    # The kernel ran in its own work folder, offline, with the shared records and cache folders.
    recs = report.collect(out / "records")
    v = _values(recs)
    assert Path(v["env.cwd"]) == (out / "work" / "01_first").resolve()
    assert Path(v["env.cache"]) == (out / "cache").resolve()
    assert v["env.offline"] == "1"

    html = out / "html"
    for page in ("index.html", "intro.html", "01_first.html", "02_second.html", "scorecard.html", "glossary.html"):
        assert (html / page).is_file(), page
    import yaml

    toc = yaml.safe_load((out / "src" / "_toc.yml").read_text())
    assert toc["root"] == "intro"
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files == ["01_first", "02_second", "scorecard", "glossary"]
    scorecard = (html / "scorecard.html").read_text()
    assert "demo.mean" in scorecard and "Table 6" in scorecard
    assert "自注意力机制" in (html / "glossary.html").read_text()
    assert 'href="glossary.html#term-self-attention"' in (html / "01_first.html").read_text()

    # every chapter page offers its sources for download; the .py entry is added by the book's script
    page = (html / "01_first.html").read_text()
    assert "btn-download-source-button" in page and "download-py.js" in page
    assert (html / "_sources" / "01_first.ipynb").is_file() and (html / "_static" / "download-py.js").is_file()

    data = json.loads((out / "scorecard.json").read_text())
    assert data["profile"] == "smoke" and data["counts"]["reproduced"] + data["counts"]["exact"] == 1
    assert data["schema"] == report.SCHEMA_VERSION
    prov = data["provenance"]
    assert prov["profile"] == "smoke" and prov["seed"] == 0 and prov["artifacts"] == []
    assert {"git_sha", "dirty", "device", "python", "torch", "transformers"} <= set(prov)
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings["chapters"]) == ["01_first", "02_second"] and timings["html_seconds"] > 0
    assert "| 01_first |" in (out / "summary.md").read_text()


def test_book_config_renders_offline_without_execution():
    import yaml

    cfg = yaml.safe_load((book.BOOK_DIR / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert not (book.BOOK_DIR / "_toc.yml").exists(), "the runner generates _toc.yml"
    assert (book.BOOK_DIR / "intro.md").is_file() and (book.BOOK_DIR / "glossary.md").is_file()


def test_chapter_sources_are_copied_beside_the_downloads(tmp_path):
    (tmp_path / "01_a.ipynb").write_text("{}")
    (tmp_path / "01_a.py").write_text("# %%\nx = 1\n")
    (tmp_path / "02_b.ipynb").write_text("{}")
    logged = []
    copied = book.copy_chapter_sources([tmp_path / "01_a.ipynb", tmp_path / "02_b.ipynb"], tmp_path / "_sources",
                                       logged.append)
    assert copied == [tmp_path / "_sources" / "01_a.py"]
    assert copied[0].read_text() == "# %%\nx = 1\n"
    assert logged == ["  download: 02_b.ipynb has no paired .py; its page offers the .ipynb only"]
