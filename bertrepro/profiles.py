"""Run profiles shared by every chapter and command line.

A profile sets the scale of a run:

* ``smoke`` -- tiny sizes; every chapter runs in seconds (used by the tests).
* ``cpu``   -- meaningful small-scale results; the whole book within 25 minutes on 2 cores.
* ``gpu``   -- paper-scale sizes where they fit one GPU.

The default is ``gpu`` when CUDA is available, else ``cpu``.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["PROFILES", "OFFLINE_ENV", "SETUP_PARAMETERS", "Run", "default_profile", "resolve_profile", "setup", "pick",
           "set_offline", "cache_dir", "unknown_injected_parameters"]

PROFILES = ("smoke", "cpu", "gpu")

# Without these, transformers/datasets retry a missing network for 20-50 s before failing.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def set_offline(environ: dict | None = None) -> dict:
    """Set the Hugging Face offline switches in ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    for k, v in OFFLINE_ENV.items():
        env.setdefault(k, v)
    return env


def default_profile() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolve_profile(profile: str | None) -> str:
    """Return ``profile`` (or the default when None), raising on an unknown name."""
    if profile is None or profile == "":
        return default_profile()
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(PROFILES)}")
    return profile


def resolve_device(device: str | None, profile: str) -> torch.device:
    if device is None or device == "":
        device = "cuda" if (profile == "gpu" and torch.cuda.is_available()) else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def pick(profile: str, choices: Mapping[str, Any]) -> Any:
    """Select the value for ``profile`` from a ``{"smoke": ..., "cpu": ..., "gpu": ...}`` mapping."""
    missing = [p for p in PROFILES if p not in choices]
    extra = [p for p in choices if p not in PROFILES]
    if missing or extra:
        raise ValueError(f"profile table must have exactly the keys {PROFILES}; missing {missing}, unknown {extra}")
    return choices[resolve_profile(profile)]


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
    import ast

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
        from IPython import get_ipython
    except ImportError:
        return []
    ip = get_ipython()
    if ip is None:
        return []
    return list(ip.user_ns.get("In", []))


def setup(profile: str | None = None, seed: int = 0, device: str | None = None, **unknown: Any) -> Run:
    """Validate a chapter's parameters, seed every RNG and return the resolved :class:`Run`.

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
    return Run(profile=prof, seed=seed, device=dev)


def cache_dir(*parts: str) -> "os.PathLike[str]":
    """Directory for expensive artifacts chapters may share (a trained vocabulary, a pretrained model).

    ``$BERTREPRO_CACHE_DIR`` (the book runner sets it to ``book/_build/cache``), else ``./.bertrepro_cache``
    beside a standalone chapter. Each chapter rebuilds what it needs when the cache is empty.
    """
    from pathlib import Path

    root = Path(os.environ.get("BERTREPRO_CACHE_DIR") or ".bertrepro_cache")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
