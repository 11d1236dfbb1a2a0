"""A book's chapters: the set-up every chapter runs first, and the chapters as files (finding them,
their parameters, their ``.py``/``.ipynb`` pairing).

A chapter starts with ``run = setup(profile=profile, seed=seed, device=device)`` after its
``parameters`` cell (:func:`setup`: checks, seeds, the device). The book runner
(:mod:`bertrepro.book`) uses the rest before and after it executes a chapter.
"""
from __future__ import annotations

import ast
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .figures import install as install_figure_checks
from .io import atomic_write_text
from .profiles import check_profile, pick, resolve_device, resolve_profile, set_offline

__all__ = ["Run", "SETUP_PARAMETERS", "seed_everything", "unknown_injected_parameters", "setup", "NOTEBOOKS_DIR",
           "find_chapters", "select_chapters", "read_notebook", "notebook_parameters", "validate_parameters",
           "pairing_differences", "hide_injected_parameters"]


# ---------------------------------------------------------------------------------------------
# A chapter's set-up
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """The resolved settings of one chapter run."""

    profile: str
    seed: int
    device: torch.device

    def pick(self, **choices: Any) -> Any:
        """``run.pick(smoke=..., cpu=..., gpu=...)`` -> the value for this run's profile."""
        return pick(self.profile, choices)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the run's seed (plus ``offset``)."""
        return torch.Generator().manual_seed(self.seed + offset)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


SETUP_PARAMETERS = ("profile", "seed", "device")
_INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects after the parameters cell


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell assigns at top level (``x = ...``, ``x: T = ...``); None if it does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def unknown_injected_parameters(inputs: list[str]) -> tuple[list[str], list[str]]:
    """``(unknown, valid)`` parameter names from a kernel's input history (IPython's ``In``).

    papermill runs the chapter's ``parameters`` cell, then a cell it injects (starting
    ``# Parameters``) that assigns each ``-p name value``, so a misspelt name would only define an
    unused variable. Valid names are those the parameters cell assigns plus :data:`SETUP_PARAMETERS`.
    Returns two empty lists when no injected cell was run.
    """
    for i in range(len(inputs) - 1, -1, -1):
        if isinstance(inputs[i], str) and inputs[i].lstrip().startswith(_INJECTED_HEADER):
            injected = _assigned_names(inputs[i]) or []
            declared = (_assigned_names(inputs[i - 1]) or []) if i > 0 and isinstance(inputs[i - 1], str) else []
            valid = sorted(set(declared) | set(SETUP_PARAMETERS))
            return sorted(set(injected) - set(valid)), valid
    return [], sorted(SETUP_PARAMETERS)


def _kernel_inputs() -> list[str]:
    """The input history of the IPython kernel running this code; empty outside IPython."""
    try:
        from IPython import get_ipython  # lazily: only inside a kernel, and IPython is optional
    except ImportError:
        return []
    ip = get_ipython()
    if ip is None:
        return []
    return list(ip.user_ns.get("In", []))


def setup(profile: str | None = None, seed: int = 0, device: str | None = None, **unknown: Any) -> Run:
    """Validate a chapter's parameters, seed every RNG, have ``plt.show`` warn on overlapping tick
    labels (:mod:`bertrepro.figures`) and return the resolved :class:`Run`.

    Raises ``ValueError`` for an unknown profile or parameter, listing the valid ones: one passed
    here, or one papermill injected into the chapter (``-p profil smoke``), which would otherwise only
    define an unused variable while the chapter ran at the default profile.
    """
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)}; valid parameters are {', '.join(SETUP_PARAMETERS)}"
        )
    injected, valid = unknown_injected_parameters(_kernel_inputs())
    if injected:
        raise ValueError(
            f"unknown parameter(s) {injected} given to this chapter (papermill -p); "
            f"valid parameters are {', '.join(valid)}"
        )
    prof = resolve_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (0, 1, 2, ...), got {seed!r}")
    dev = resolve_device(device, prof)
    seed_everything(seed)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_offline()
    install_figure_checks()
    return Run(profile=prof, seed=seed, device=dev)


# ---------------------------------------------------------------------------------------------
# The chapters as files
# ---------------------------------------------------------------------------------------------


NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
_CHAPTER_RE = re.compile(r"^\d\d_[A-Za-z0-9_\-]+$")


def find_chapters(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """Every ``NN_slug.ipynb`` in ``notebooks_dir``, in chapter order.

    Raises ``ValueError`` when a ``NN_slug.py`` has no ``.ipynb`` pair (run ``make sync``).
    """
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise ValueError(f"notebooks folder {d} does not exist")
    chapters = sorted(d.glob(CHAPTER_GLOB))
    unpaired = [p.name for p in sorted(d.glob("[0-9][0-9]_*.py")) if not p.with_suffix(".ipynb").exists()]
    if unpaired:
        raise ValueError(f"{unpaired} in {d} have no paired .ipynb; create it with `make sync` "
                         "(jupytext --sync notebooks/NN_slug.py)")
    bad = [p.name for p in chapters if not _CHAPTER_RE.match(p.stem)]
    if bad:
        raise ValueError(f"chapter file names {bad} are not NN_slug.ipynb (letters, digits, '_' or '-')")
    return chapters


def select_chapters(chapters: Sequence[Path], wanted: Sequence[str] | None) -> list[Path]:
    """Keep the chapters named in ``wanted`` (``"03"``, ``"03_positional_encoding"`` or its file name)."""
    if not wanted:
        return list(chapters)
    picked: list[Path] = []
    for w in wanted:
        name = Path(w).stem
        hits = [p for p in chapters if p.stem == name or p.stem[:2] == name.zfill(2)]
        if len(hits) != 1:
            avail = ", ".join(p.stem for p in chapters) or "(none)"
            raise ValueError(f"chapter {w!r} matches {len(hits)} notebooks; available chapters: {avail}")
        if hits[0] not in picked:
            picked.append(hits[0])
    return sorted(picked)


def read_notebook(path: Path):
    import nbformat  # lazily: notebook tooling is optional; a chapter's set-up does not need it

    return nbformat.read(str(path), as_version=4)


def notebook_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """The parameters of the notebook's first cell tagged ``parameters``: ``{name: default}``.

    A parameter is a top-level assignment of a literal (``profile = None``, ``seed = 0``); other
    lines of the cell (``run = setup(...)``) are not parameters. The cell is read with
    :mod:`ast` rather than papermill's line parser, which glues a following non-assignment line
    onto the previous default.

    Raises ``ValueError`` when the notebook has no such cell, or the cell is not valid Python.
    """
    path = Path(path)
    nb = read_notebook(path)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None or cell.cell_type != "code":
        raise ValueError(
            f"{path.name} has no code cell tagged 'parameters'; its first code cell should be "
            "`# %% tags=[\"parameters\"]` holding `profile = None`, `seed = 0`, `device = None`"
        )
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise ValueError(f"{path.name}: the parameters cell is not valid Python: {e}") from e
    params: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
            continue
        try:
            params[targets[0].id] = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError):
            continue  # not a literal: computed from the parameters, not one of them
    return params


def validate_parameters(path: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when ``parameters`` holds a name the notebook does not declare, or a bad profile."""
    declared = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {Path(path).name}; "
                         f"valid parameters are {', '.join(sorted(declared))}")
    if "profile" in parameters:
        check_profile(parameters["profile"])


def _cells(nb) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def pairing_differences(py_path: str | os.PathLike, ipynb_path: str | os.PathLike) -> list[str]:
    """How a jupytext ``.py`` and its ``.ipynb`` differ, cell by cell (empty list: same cells and tags).

    Also reports outputs or execution counts stored in the ``.ipynb`` (it is committed without them).
    """
    import jupytext  # lazily: notebook tooling is optional; a chapter's set-up does not need it

    py_nb, ip_nb = jupytext.read(str(py_path)), jupytext.read(str(ipynb_path))
    a, b = _cells(py_nb), _cells(ip_nb)
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a)} cells in {Path(py_path).name} but {len(b)} in {Path(ipynb_path).name}")
    for i, (ca, cb) in enumerate(zip(a, b)):
        if ca != cb:
            first = (ca[1].splitlines() or [""])[0]
            diffs.append(f"cell {i} differs ({ca[0]} {ca[2]} vs {cb[0]} {cb[2]}), starting {first!r}")
    for i, c in enumerate(ip_nb.cells):
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None):
            diffs.append(f"cell {i} of {Path(ipynb_path).name} stores outputs or an execution count")
    return diffs


INJECTED_TAG = "injected-parameters"
HIDE_TAG = "remove-cell"


def hide_injected_parameters(executed: str | os.PathLike) -> int:
    """Tag papermill's injected ``# Parameters`` cell(s) ``remove-cell`` so the HTML leaves them out.

    The chapter's own ``parameters`` cell stays. Returns how many cells were tagged.
    """
    import nbformat  # lazily: notebook tooling is optional; a chapter's set-up does not need it

    executed = Path(executed)
    nb = read_notebook(executed)
    n = 0
    for c in nb.cells:
        tags = c.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            tags.append(HIDE_TAG)
            n += 1
    if n:
        atomic_write_text(executed, nbformat.writes(nb) + "\n")
    return n
