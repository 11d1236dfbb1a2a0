"""The CI workflow parses and is wired as the README says: the cpu job restores the artifact cache
keyed by ``python -m bertrepro.cache key`` before the book runs, diffs the scorecard against main's
and publishes to GitHub Pages on pushes to main; the gpu job diffs against the cpu job's scorecard
within 30 minutes; ``.ci/run`` still runs the tests, the cpu book and the browser test."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps(job):
    return job["steps"]


def index(job, predicate, what):
    found = [i for i, s in enumerate(steps(job)) if predicate(s)]
    assert found, f"no step {what}"
    return found[0]


def uses(name):
    return lambda s: str(s.get("uses", "")).startswith(name)


def runs(text):
    return lambda s: text in str(s.get("run", ""))


def test_cpu_job_caches_by_fingerprint_before_the_book(workflow):
    cpu = workflow["jobs"]["cpu"]
    key = index(cpu, runs("python -m bertrepro.cache key"), "computing the cache key")
    cache = index(cpu, uses("actions/cache@"), "restoring the cache")
    book = index(cpu, runs("bash .ci/run"), "running .ci/run")
    assert key < cache < book
    cache_step = steps(cpu)[cache]
    assert cache_step["with"]["path"] == "book/_build/cache"
    assert "${{ steps.%s.outputs.key }}" % steps(cpu)[key]["id"] in cache_step["with"]["key"]


def test_cpu_summary_diffs_against_main_then_shows_the_summary(workflow):
    cpu = workflow["jobs"]["cpu"]
    base = index(cpu, runs("gh run download"), "downloading main's scorecard")
    assert "--branch main" in steps(cpu)[base]["run"] and "--status success" in steps(cpu)[base]["run"]
    assert "book-results-cpu" in steps(cpu)[base]["run"]
    summary = steps(cpu)[index(cpu, runs("GITHUB_STEP_SUMMARY"), "writing the job summary")]["run"]
    assert summary.index("bertrepro.report diff") < summary.index("summary.md")
    assert "No scorecard from main" in summary  # the first run on a branch says so
    assert workflow["jobs"]["cpu"]["permissions"]["actions"] == "read"
    upload = [s for s in steps(cpu) if s.get("with", {}).get("name") == "book-results-cpu"]
    assert upload and "book/_build/scorecard.json" in upload[0]["with"]["path"]


def test_pages_are_published_on_pushes_to_main(workflow):
    cpu, pages = workflow["jobs"]["cpu"], workflow["jobs"]["pages"]
    upload = steps(cpu)[index(cpu, uses("actions/upload-pages-artifact@"), "uploading the Pages artifact")]
    assert upload["with"]["path"] == "book/_build/html"
    assert "refs/heads/main" in upload["if"] and "push" in upload["if"]
    assert pages["needs"] == "cpu" and "refs/heads/main" in pages["if"]
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["environment"]["name"] == "github-pages"
    index(pages, uses("actions/deploy-pages@"), "deploying")


def test_gpu_job_fits_30_minutes_and_diffs_against_the_cpu_job(workflow):
    gpu = workflow["jobs"]["gpu"]
    assert gpu["needs"] == "cpu" and gpu["timeout-minutes"] <= 30
    download = steps(gpu)[index(gpu, uses("actions/download-artifact@"), "downloading the cpu scorecard")]
    assert download["with"]["name"] == "book-results-cpu"
    summary = steps(gpu)[index(gpu, runs("bertrepro.report diff"), "diffing")]["run"]
    assert f"{download['with']['path']}/scorecard.json" in summary
    # the per-chapter gpu budget is the plan's, printed by the job (tests/test_plan.py checks the timeout)
    index(gpu, runs("bertrepro.book --plan --profile gpu"), "printing the gpu plan")


def test_ci_run_keeps_its_three_steps():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.index("make test") < text.index("make book PROFILE=cpu") < text.index("make browser-test")


def test_book_config_has_download_buttons():
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["html"]["use_download_button"] is True


def test_readme_links_the_published_book_and_scorecard():
    readme = (ROOT / "README.md").read_text()
    assert ".github.io/bertrepro/" in readme and ".github.io/bertrepro/scorecard.html" in readme


def zizmor_executable():
    """zizmor from requirements.txt: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "zizmor"
    found = str(beside) if beside.exists() else shutil.which("zizmor")
    assert found, "zizmor is not installed: it is pinned in requirements.txt; run make install"
    return found


def test_zizmor_finds_nothing_in_the_workflows():
    """The static auditor: actions pinned to commit SHAs, no persisted git token, no template
    expansion inside scripts. Offline, so it needs no network and no GitHub token."""
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    done = subprocess.run([zizmor_executable(), "--offline", "--no-progress", str(WORKFLOW.parent)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "No findings" in done.stdout, done.stdout + done.stderr


def test_every_job_asks_for_its_own_least_permissions(workflow):
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} names no permissions"
        assert all(v in ("read", "write", "none") for v in job["permissions"].values())
        assert "write" not in job["permissions"].values() or name == "pages", name
