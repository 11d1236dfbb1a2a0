"""One dataclass-to-argparse helper for the package's command lines.

``add_dataclass_arguments(parser, Config)`` adds one ``--field-name`` option per field, typed from
the field's annotation (``int``, ``float``, ``str``, optionally ``| None``; a ``bool`` becomes a
switch), with default None so that only the options given override a preset;
:func:`dataclass_overrides` reads them back.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Iterable, Mapping

__all__ = ["add_dataclass_arguments", "dataclass_overrides"]

_TYPES = {"int": int, "float": float, "str": str}


def _fields(cls: type, include: Iterable[str] | None, exclude: Iterable[str]) -> list[dataclasses.Field]:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in set(exclude)}
    if include is None:
        return list(fields.values())
    unknown = [n for n in include if n not in fields]
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    return [fields[n] for n in include]


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, include: Iterable[str] | None = None,
                            exclude: Iterable[str] = (), choices: Mapping[str, Iterable[Any]] | None = None,
                            help_default: str = "the profile's") -> list[str]:
    """Add a ``--field-name`` option for each field of dataclass ``cls`` (``include`` in that order, or
    every init field but ``exclude``); returns the field names. ``choices`` restricts some fields."""
    choices = choices or {}
    names = []
    for f in _fields(cls, include, exclude):
        flag = "--" + f.name.replace("_", "-")
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        base = typ.split("|")[0].strip()
        if base == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=f"{cls.__name__}.{f.name} (a switch)")
        elif base in _TYPES:
            kwargs: dict[str, Any] = {"type": _TYPES[base], "default": None,
                                      "help": f"{cls.__name__}.{f.name} ({typ}; default: {help_default})"}
            if f.name in choices:
                kwargs["choices"] = tuple(choices[f.name])
            parser.add_argument(flag, **kwargs)
        else:
            raise TypeError(f"no command-line type for {cls.__name__}.{f.name}: {typ}")
        names.append(f.name)
    return names


def dataclass_overrides(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options of ``names`` that were given on the command line (not None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
