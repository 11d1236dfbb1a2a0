"""What the setup promises is true: the Python version floor agrees with the pinned packages' own
``Requires-Python``, the Makefile picks an interpreter that meets it (or says which one it found),
and the README's recipe for forking a chapter works exactly as written."""
import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from test_setup import ROOT, requirements_pins, tomllib

MAKE = shutil.which("make")
FLOOR = Version("3.11")


def _floor(spec: str) -> Version | None:
    """The lowest Python a ``Requires-Python`` specifier admits (from its >=, > or ~= clauses)."""
    lows = [Version(s.version.rstrip(".*")) for s in SpecifierSet(spec) if s.operator in (">=", ">", "~=")]
    return max(lows) if lows else None


def _project_floor() -> Version:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = _floor(spec)
    assert floor is not None, f"pyproject's requires-python {spec!r} states no lower bound"
    return floor


def test_python_floor_agrees_with_the_pins():
    floors = {}
    for name, version in requirements_pins().items():
        dist = metadata.distribution(name)
        assert Version(dist.version).public == Version(version).public, (
            f"{name} {dist.version} is installed but {version} is pinned; reinstall the pins to check their metadata"
        )
        spec = dist.metadata.get("Requires-Python")
        if spec and _floor(spec):
            floors[name] = _floor(spec)
    needed = max(floors.values())
    who = sorted(n for n, f in floors.items() if f == needed)
    project = _project_floor()
    assert project >= needed, f"pyproject says Python >= {project}, but {', '.join(who)} need >= {needed}"
    if needed == FLOOR:
        assert project == FLOOR, f"the pins need exactly Python >= {FLOOR}; pyproject says >= {project}"


def test_docs_state_the_floor():
    floor = _project_floor()
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:10])
    assert f"Python {floor} or newer" in head, "the README's setup lines must state the Python version floor"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (python,) = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\b", d)]
    m = re.fullmatch(r"python\s*(?:=|==|>=)\s*([0-9.]+)", python)
    assert m and Version(m.group(1)) >= floor, f"environment.yml asks for {python!r}; needs >= {floor}"
    make = (ROOT / "Makefile").read_text()
    assert f"PYTHON_MIN := {floor}" in make


# ----------------------------------------------------------------------------------------------
# The Makefile's choice of interpreter, with fake interpreters that only print a version
# ----------------------------------------------------------------------------------------------


def _fake_pythons(tmp_path: Path, versions: dict[str, str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, version in versions.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho {version}\n")
        script.chmod(0o755)
    return bin_dir


def _print_python(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # PATH holds only the fakes: the recipe uses shell builtins only, so no real python can be found.
    return subprocess.run([MAKE, "-s", "-f", str(ROOT / "Makefile"), "print-python", *args], cwd=bin_dir.parent,
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True)


@pytest.mark.skipif(MAKE is None, reason="make not installed")
@pytest.mark.parametrize("versions, expected", [
    ({"python3": "3.10", "python3.11": "3.11", "python3.12": "3.12", "python3.13": "3.13"}, "python3.13 3.13"),
    ({"python3": "3.10", "python3.11": "3.11", "python3.12": "3.12"}, "python3.12 3.12"),
    ({"python3": "3.10", "python3.11": "3.11"}, "python3.11 3.11"),
    ({"python3": "3.12"}, "python3 3.12"),
    ({"python3": "3.10", "python3.13": "", "python3.12": "3.9", "python3.11": "3.11"}, "python3.11 3.11"),
])
def test_makefile_picks_the_newest_suitable_python(tmp_path, versions, expected):
    # "" stands for a broken interpreter (a version-manager shim with nothing behind it)
    bin_dir = _fake_pythons(tmp_path, versions)
    out = _print_python(bin_dir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


@pytest.mark.skipif(MAKE is None, reason="make not installed")
def test_makefile_stops_with_one_clear_line_when_only_310_exists(tmp_path):
    bin_dir = _fake_pythons(tmp_path, {"python3": "3.10", "python3.13": "3.9"})
    out = _print_python(bin_dir)
    assert out.returncode != 0 and out.stdout == ""
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("make:")]
    assert lines == ["bertrepro needs Python 3.11 or newer, but python3 is 3.10; "
                     "install Python 3.11+ or run make PYTHON=/path/to/python3.11"], out.stderr


@pytest.mark.skipif(MAKE is None, reason="make not installed")
def test_makefile_takes_python_from_the_command_line(tmp_path):
    bin_dir = _fake_pythons(tmp_path, {"python3": "3.12", "mypython": "3.11", "oldpython": "3.10"})
    assert _print_python(bin_dir, "PYTHON=mypython").stdout.strip() == "mypython 3.11"
    out = _print_python(bin_dir, "PYTHON=oldpython")
    assert out.returncode != 0 and "but oldpython is 3.10" in out.stderr
    out = _print_python(bin_dir, "PYTHON=nopython")
    assert out.returncode != 0 and "but nopython is not a working Python" in out.stderr


@pytest.mark.skipif(MAKE is None, reason="make not installed")
def test_make_creates_the_venv_only_after_the_check(tmp_path):
    bin_dir = _fake_pythons(tmp_path, {"python3": "3.10"})
    out = subprocess.run([MAKE, "-f", str(ROOT / "Makefile"), ".venv/bin/python"], cwd=tmp_path,
                         env={"PATH": str(bin_dir)}, capture_output=True, text=True)
    assert out.returncode != 0 and "needs Python 3.11 or newer, but python3 is 3.10" in out.stderr
    assert not (tmp_path / ".venv").exists()


# ----------------------------------------------------------------------------------------------
# The README's recipe for forking a chapter, run as written
# ----------------------------------------------------------------------------------------------


def fork_recipe() -> list[str]:
    """The commands of the README's "Forking a chapter" section: inline ``pip install`` spans, then
    the lines of its code blocks, in order."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Forking a chapter\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert section, "README has no '## Forking a chapter' section"
    body = section.group(1)
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    prose = re.sub(r"```bash\n.*?```", "", body, flags=re.S)
    inline = [c for c in re.findall(r"`([^`\n]+)`", prose) if c.startswith("pip install")]
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    return inline + [ln for ln in lines if ln]


def test_fork_recipe_installs_the_tools_it_uses():
    cmds = fork_recipe()
    assert len(cmds) == 3 and cmds[0].startswith("pip install"), cmds
    extras = re.search(r"\.\[([a-z,]+)\]", cmds[0])
    assert extras, f"{cmds[0]!r} installs no extras, so jupytext, papermill and ipykernel are missing"
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = {re.split(r"[=<>]", d)[0] for g in extras.group(1).split(",") for d in groups[g]}
    used = {shlex.split(c)[0] for c in cmds[1:]}
    assert used <= installed, f"the recipe runs {sorted(used - installed)}, which {cmds[0]!r} does not install"
    assert "ipykernel" in installed, "papermill -k python3 needs ipykernel"


def _reuse_environment(env_dir: Path) -> Path:
    """A fresh virtual environment that sees this interpreter's packages (a .pth file), so the recipe's
    pip finds the pins already installed instead of downloading them; returns its python."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    target = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (Path(target) / "_reuse_pins.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py


def _closure(requires: list[str], extras: set[str]) -> set[str]:
    """Normalised names of the distributions ``requires`` (with ``extras``) pulls in, recursively."""
    from packaging.requirements import Requirement

    seen, todo = set(), [(r, extras) for r in requires]
    while todo:
        line, ex = todo.pop()
        req = Requirement(line)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (ex or {""})):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            sub = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue
        todo += [(r, set(req.extras)) for r in sub]
    return seen


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _console_scripts(env_dir: Path, dists: set[str]) -> None:
    """Wrappers in the fresh environment's bin for the console scripts of the reused distributions
    that the install asked for (what a download would have put there), and no others."""
    py = env_dir / "bin" / "python"
    for dist in metadata.distributions():
        if _norm(dist.metadata["Name"]) not in dists:
            continue
        for ep in dist.entry_points.select(group="console_scripts"):
            script = env_dir / "bin" / ep.name
            if script.exists():
                continue
            script.write_text(f"#!{py}\nimport sys\nfrom {ep.module} import {ep.attr.split('.')[0]} as main\n"
                              f"sys.exit(main{''.join('.' + a for a in ep.attr.split('.')[1:])}())\n")
            script.chmod(0o755)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell recipe")
def test_fork_recipe_runs_as_written(tmp_path):
    cmds = fork_recipe()
    env_dir = tmp_path / "env"
    _reuse_environment(env_dir)
    work = tmp_path / "fork"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BERTREPRO_", "PYTHON", "JUPYTER", "VIRTUAL_ENV", "PIP_"))}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", VIRTUAL_ENV=str(env_dir),
               PIP_DISABLE_PIP_VERSION_CHECK="1", JUPYTER_PATH="", JUPYTER_DATA_DIR=str(tmp_path / "jupyter"))

    pip, rest = cmds[0], cmds[1:]
    out = subprocess.run(pip, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"{pip!r} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    where = subprocess.run([env_dir / "bin" / "python", "-c", "import bertrepro; print(bertrepro.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().parent == (ROOT / "bertrepro").resolve(), where
    requires = json.loads(subprocess.run(
        [env_dir / "bin" / "python", "-c", "import json; from importlib.metadata import requires; "
         "print(json.dumps(requires('bertrepro')))"], cwd=work, env=env, capture_output=True, text=True,
        check=True).stdout)
    extras = re.search(r"\.\[([a-z,]+)\]", pip)
    _console_scripts(env_dir, _closure(requires, set(extras.group(1).split(",")) if extras else set()))

    py_name = next(a for c in rest for a in shlex.split(c) if a.endswith(".py"))
    shutil.copy(ROOT / "notebooks" / "03_positional_encoding.py", work / py_name)
    for cmd in rest:
        out = subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{cmd!r} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    records = json.loads((work / "records" / "standalone.json").read_text())
    assert records, "the forked chapter wrote no scorecard records"
