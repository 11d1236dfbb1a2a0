"""The package's shape: short functions and modules, and every per-profile number in bertrepro.profiles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bertrepro.profiles import PROFILES

PACKAGE = Path(__file__).resolve().parent.parent / "bertrepro"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700
# The book runner's driver is the one function allowed past the limit; the test below fails once it
# is short enough, so the exception cannot outlive its reason.
LONG_FUNCTIONS: set[tuple[str, str]] = set()


def _modules() -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 20, paths
    return paths


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_longer_than_the_limit():
    long = {(str(p.relative_to(PACKAGE)), name): n for p in _modules() for name, n in _functions(p)
            if n > MAX_FUNCTION_LINES}
    assert set(long) - LONG_FUNCTIONS == set(), long
    assert LONG_FUNCTIONS <= set(long), f"no longer past the limit, drop from LONG_FUNCTIONS: {LONG_FUNCTIONS - set(long)}"


def test_no_module_longer_than_the_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def _profile_literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and node.value in PROFILES else None


def _per_profile_values(tree: ast.AST) -> list[str]:
    """Places that hard-code a value per profile: ``{"smoke": ..., "cpu": ...}``, ``pick(smoke=..., cpu=...)``
    or ``dict(smoke=...)``, ``table["gpu"]``, ``profile == "smoke"``. (``== "cpu"`` is left alone: it
    is also a device type.)"""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and sum(_profile_literal(k) is not None for k in node.keys if k) >= 2:
            found.append(f"line {node.lineno}: a dict keyed by profile names")
        elif isinstance(node, ast.Call) and sum(k.arg in PROFILES for k in node.keywords) >= 2:
            found.append(f"line {node.lineno}: a call with one keyword per profile")
        elif isinstance(node, ast.Subscript) and _profile_literal(node.slice) is not None:
            found.append(f"line {node.lineno}: indexed by the profile name {node.slice.value!r}")
        elif isinstance(node, ast.Compare) and any(_profile_literal(c) in ("smoke", "gpu") for c in node.comparators):
            found.append(f"line {node.lineno}: compared with a profile name")
    return found


def test_the_scan_finds_per_profile_values():
    code = ('a = {"smoke": 1, "cpu": 2, "gpu": 3}\nb = run.pick(smoke=1, cpu=2, gpu=3)\nc = BUDGETS["gpu"]\n'
            'd = profile == "smoke"\ne = device.type == "cpu"\nf = {"cpu": torch.float32}\n')
    assert len(_per_profile_values(ast.parse(code))) == 4


@pytest.mark.parametrize("path", [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "profiles.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_per_profile_numbers_live_only_in_profiles(path):
    assert _per_profile_values(ast.parse(path.read_text())) == [], f"{path.name}: move the values to bertrepro.profiles"


def test_profiles_table_covers_every_profile():
    from bertrepro import profiles

    for table in (profiles.PRETRAIN, profiles.FINETUNE, profiles.ABLATION, profiles.FIGURE4):
        assert set(table) == set(PROFILES)


def test_every_subpackage_is_installed():
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed == found
