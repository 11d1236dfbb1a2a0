"""The helpers the package's command lines share.

``add_dataclass_arguments(parser, Config)`` adds one ``--field-name`` option per field, typed from
the field's annotation (``int``, ``float``, ``str``, optionally ``| None``; a ``bool`` becomes a
switch), with default None so that only the options given override a preset;
:func:`dataclass_overrides` reads them back. :func:`exit_code` runs a command and turns an expected
error (bad input, a run that cannot start) into one line on stderr and an exit status.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any, Callable, Iterable, Mapping

__all__ = ["add_dataclass_arguments", "dataclass_overrides", "exit_code", "plain_text", "INPUT_ERRORS", "INTERRUPTED"]

# Errors that mean "the request cannot be done as given" (exit 2): bad values, missing files, a
# corpus that needs the network, a folder another run holds. Anything else is a crash (a traceback).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, FileNotFoundError, FileExistsError,
                                                 NotADirectoryError, PermissionError, ConnectionError)


#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def exit_code(command: Callable[[], Any], prog: str, *, debug: bool = False,
              inputs: tuple[type[BaseException], ...] = (), failures: tuple[type[BaseException], ...] = (),
              interrupted: Callable[[], str] | None = None) -> int:
    """Run ``command``: 0 when it returns; 2 and one ``prog: error: ...`` line on stderr for an
    :data:`INPUT_ERRORS` error or one of ``inputs``; 1 and one line for one of ``failures`` (a run
    that stopped on purpose, e.g. diverged); :data:`INTERRUPTED` and one ``prog: interrupted: ...``
    line for Ctrl-C, saying what was kept (``interrupted()``). With ``debug`` these raise too (a
    full traceback); any other error is a crash and always raises."""
    try:
        command()
    except failures + inputs + INPUT_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        return 1 if isinstance(e, failures) else 2
    except KeyboardInterrupt:
        if debug:
            raise
        kept = interrupted() if interrupted is not None else "stopped; files written so far are kept"
        print(f"{prog}: interrupted: {kept}", file=sys.stderr, flush=True)
        return INTERRUPTED
    return 0

# reStructuredText a docstring may hold, and what a terminal shows instead.
_ROLE_WITH_TITLE = re.compile(r"(?::[a-z]+)+:`([^`<]+?)\s*<[^`>]+>`")  # :func:`the bar <bertrepro.progress.bar>`
_ROLE = re.compile(r"(?::[a-z]+)+:`(~?)([^`]+)`")  # :func:`bertrepro.progress.bar`, :class:`~x.Y`
_LITERAL = re.compile(r"``(.+?)``")


def plain_text(doc: str) -> str:
    """A docstring as a terminal should show it (argparse help): a reST role becomes its target (its
    last part after ``~``, its title when it has one), double backquotes are dropped, a paragraph
    ending in ``::`` ends in ``:``, and a line holding only ``::`` goes."""
    doc = _ROLE_WITH_TITLE.sub(r"\1", doc)
    doc = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), doc)
    doc = _LITERAL.sub(r"\1", doc)
    doc = re.sub(r"^[ \t]*::[ \t]*\n", "", doc, flags=re.M)
    return re.sub(r"::[ \t]*$", ":", doc, flags=re.M)


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
                            help_default: str = "the profile's", helps: Mapping[str, str] | None = None) -> list[str]:
    """Add a ``--field-name`` option for each field of dataclass ``cls`` (``include`` in that order, or
    every init field but ``exclude``); returns the field names. ``choices`` restricts some fields;
    ``helps`` adds a sentence to some fields' help."""
    choices, helps = choices or {}, helps or {}
    names = []
    for f in _fields(cls, include, exclude):
        flag = "--" + f.name.replace("_", "-")
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        base = typ.split("|")[0].strip()
        if base == "bool":
            parser.add_argument(flag, action="store_true", default=None,
                                help=f"{cls.__name__}.{f.name} (a switch){_extra(helps, f.name)}")
        elif base in _TYPES:
            kwargs: dict[str, Any] = {"type": _TYPES[base], "default": None,
                                      "help": f"{cls.__name__}.{f.name} ({typ}; default: {help_default})"
                                              f"{_extra(helps, f.name)}"}
            if f.name in choices:
                kwargs["choices"] = tuple(choices[f.name])
            parser.add_argument(flag, **kwargs)
        else:
            raise TypeError(f"no command-line type for {cls.__name__}.{f.name}: {typ}")
        names.append(f.name)
    return names


def _extra(helps: Mapping[str, str], name: str) -> str:
    return f"; {helps[name]}" if name in helps else ""


def dataclass_overrides(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options of ``names`` that were given on the command line (not None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
