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

    for table in (profiles.PRETRAIN, profiles.FINETUNE, profiles.ABLATION, profiles.ANALOGS):
        assert set(table) == set(PROFILES)


def test_every_subpackage_is_installed():
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed == found


# ----------------------------------------------------------------------------- imports

LOWER_THAN_TRAIN = {"pretrain", "finetune", "ablation", "report", "book", "bench", "chapters", "setup"}
LAZY_MARKERS = ("lazily", "optional")  # a function-level import says why it is not at the top


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, tree: ast.AST) -> list[tuple[ast.stmt, str, list[str]]]:
    """Every import statement (functions included): (node, the module it names, the names it takes)."""
    package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.append((node, target, [a.name for a in node.names]))
    return out


def import_graph() -> dict[str, set[str]]:
    """bertrepro module -> the bertrepro modules it imports, imports inside functions included. A
    ``from package import submodule`` counts as importing the submodule."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for _, target, names in _imports(name, ast.parse(path.read_text())):
            if target in MODULES:
                subs = {f"{target}.{n}" for n in names} & MODULES.keys()
                edges |= subs if subs and len(subs) == len(names) else {target} | subs
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        state[u] = 2
        path.pop()
        return None

    for u in sorted(graph):
        if u not in state and (cycle := visit(u)):
            return cycle
    return None


def test_the_cycle_search_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_bertrepro_modules():
    graph = import_graph()
    assert len(graph) > 20 and graph["bertrepro.ablation.appendix"]  # the graph was built
    assert find_cycle(graph) is None


def test_train_imports_no_higher_package():
    up = {(m, t) for m, targets in import_graph().items() if m.startswith("bertrepro.train")
          for t in targets if t.split(".")[1] in LOWER_THAN_TRAIN}
    assert up == set(), "bertrepro.train is shared by the loops below it: move the code down, or into the loop"


def test_imports_are_at_the_top_or_say_why_not():
    """A bertrepro import is always at the top; an import inside a function is an optional
    dependency loaded lazily, with the reason in a comment on its line."""
    bad = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner, target, _ in _imports(name, node):
                line = lines[inner.lineno - 1]
                if target.startswith("bertrepro") or not any(m in line.split("#", 1)[-1] for m in LAZY_MARKERS) \
                        or "#" not in line:
                    bad.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}: {line.strip()}")
    assert bad == [], "move these imports to the top (or say why they are lazy in a comment on the line)"


def test_every_all_lists_the_modules_own_names():
    """``__all__`` holds names the module defines; a package's may add its own submodules' names.
    A name another package defines is imported from there, not passed on."""
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        defined, imported = set(), {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    defined |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    imported[a.asname or a.name] = (node.level, node.module)
        listed = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)), [])
        own_package = path.name == "__init__.py"
        for n in listed:
            level, _ = imported.get(n, (0, None))
            if n not in defined and not (own_package and level == 1):
                bad.append(f"{name}: {n}")
    assert bad == [], "import these names from the module that defines them"


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{name}: {target}.{n}" for name, path in MODULES.items()
           for _, target, names in _imports(name, ast.parse(path.read_text()))
           if target.startswith("bertrepro") for n in names if n.startswith("_") and not n.startswith("__")]
    assert bad == [], "make the helper public (it is shared), or keep it in one module"


def _defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_names_are_imported_from_the_module_that_defines_them():
    """Inside the package a name comes from its own module (a package's ``__init__`` may gather its
    submodules' names for users, but the package itself does not go through it for another's)."""
    bad = []
    for name, path in MODULES.items():
        for _, target, names in _imports(name, ast.parse(path.read_text())):
            if target not in MODULES:
                continue
            if MODULES[target].name == "__init__.py":  # a package: only its submodules, or its own gathering
                if name != target:
                    bad += [f"{name}: {n} from {target}" for n in names if f"{target}.{n}" not in MODULES]
                continue
            defined = _defined_names(MODULES[target])
            bad += [f"{name}: {n} from {target}" for n in names if n not in defined and f"{target}.{n}" not in MODULES]
    assert bad == [], "import these names from the module that defines them"
