"""The fresh-machine setup: identical pins in the three dependency files, the README's first
commands, the Makefile targets and the CI workflow."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)\s*==\s*([A-Za-z0-9.+\-]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines, source):
    """``{normalised name: version}``; every line must be an exact ``name==version`` pin."""
    pins = {}
    for line in lines:
        m = _PIN.match(line.strip())
        assert m, f"{source}: {line!r} is not an exact pin name==version"
        name = _norm(m.group(1))
        assert name not in pins, f"{source}: {name} pinned twice"
        pins[name] = m.group(2)
    return pins


def requirements_pins():
    text = (ROOT / "requirements.txt").read_text()
    lines = [ln.split("#")[0].strip() for ln in text.splitlines()]
    return _pins([ln for ln in lines if ln], "requirements.txt")


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        deps += group
    return _pins(deps, "pyproject.toml")


def environment_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip: section"
    lines = [ln for ln in pip[0] if not ln.startswith("-e ")]
    assert "-e ." in pip[0], "environment.yml's pip section must install the package itself (-e .)"
    return _pins(lines, "environment.yml (pip)")


def _diff(a, b, name_a, name_b):
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"  {k}: {name_a} {a.get(k, '(missing)')} vs {name_b} {b.get(k, '(missing)')}")
    return "\n".join(out)


def test_three_dependency_files_have_identical_pins():
    req, pyp, env = requirements_pins(), pyproject_pins(), environment_pins()
    d1 = _diff(req, pyp, "requirements.txt", "pyproject.toml")
    d2 = _diff(req, env, "requirements.txt", "environment.yml")
    assert not (d1 or d2), "dependency pins differ:\n" + "\n".join(x for x in (d1, d2) if x)


@pytest.mark.parametrize("source", [requirements_pins, pyproject_pins, environment_pins])
def test_torch_pinned_exactly(source):
    assert source().get("torch") == "2.13.0", f"{source.__name__}: torch must be pinned ==2.13.0"


def test_requires_python_311():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_readme_opens_with_make_book_and_make_test():
    lines = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.strip()]
    assert lines[0].startswith("# "), "README must start with its title"
    head = lines[1:5]
    assert head[0].startswith("```"), f"the first thing under the title must be a code block, got {head[0]!r}"
    assert head[1].startswith("make book"), head
    assert head[2].startswith("make test"), head
    assert "python3" in "\n".join(lines[:8]) and "3.11 or newer" in "\n".join(lines[:8])


def _make_targets():
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][A-Za-z0-9_\-]*)\s*:(?!=)", text, flags=re.M))


def test_makefile_targets_exist():
    missing = {"book", "test", "install", "sync", "clean", "bench"} - _make_targets()
    assert not missing, f"Makefile lacks targets {sorted(missing)}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize(
    "args, expected",
    [
        (["book"], "-m bertrepro.book"),
        (["book", "PROFILE=smoke"], "-m bertrepro.book --profile smoke"),
        (["book", "ONLINE=1"], "--online"),
        (["test"], "-m pytest"),
    ],
)
def test_make_targets_run_the_right_commands(args, expected):
    out = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout
    assert expected in out, out


def test_ci_script_runs_tests_then_the_cpu_book():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.index("make test") < text.index("make book PROFILE=cpu")


def test_workflow_jobs():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    jobs = wf["jobs"]
    runs = lambda job: "\n".join(s.get("run", "") for s in jobs[job]["steps"])  # noqa: E731
    assert jobs["cpu"]["runs-on"] == "ubuntu-latest" and "bash .ci/run" in runs("cpu")
    assert jobs["gpu"]["runs-on"] == ["self-hosted", "gpu"] and "make book PROFILE=gpu" in runs("gpu")
    for job in ("cpu", "gpu"):
        assert "GITHUB_STEP_SUMMARY" in runs(job) and "book/_build/summary.md" in runs(job)
        uploads = [s for s in jobs[job]["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
        assert any(s["with"]["path"] == "book/_build/html" for s in uploads)
    assert "torchrun --nproc_per_node=gpu -m bertrepro.pretrain" in runs("multi-gpu")
    assert "workflow_dispatch" in jobs["multi-gpu"]["if"]
