"""Every command line's --help is plain text: no reStructuredText markup (double backquotes, roles
such as :func:, literal-block colons) reaches the terminal."""
from __future__ import annotations

import re

import pytest

from bertrepro import bench, book, scorediff, wheelhouse
from bertrepro.arguments import plain_text
from bertrepro.finetune import cli as finetune_cli
from bertrepro.pretrain import cli as pretrain_cli

MARKUP = re.compile(r"``|(?::[a-z]+)+:`|::\s*$|`[^`\s]+`", re.M)

COMMANDS = {
    "book": (book.main, []), "finetune": (finetune_cli.main, []), "pretrain": (pretrain_cli.main, []),
    "bench": (bench.main, []), "wheelhouse": (wheelhouse.main, []),
    "wheelhouse install": (wheelhouse.main, ["install"]),
    "report diff": (scorediff.main, ["diff"]),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_plain_text(name, capsys):
    main, argv = COMMANDS[name]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text and not MARKUP.search(text), MARKUP.search(text)


def test_plain_text_turns_markup_into_what_a_terminal_reads():
    doc = ("Runs ``make test``; see :func:`bertrepro.progress.bar`, :class:`~bertrepro.progress.ChapterProgress`\n"
           "and :py:data:`the table <bertrepro.profiles.PROFILES>`.\n\nExamples::\n\n    python -m x   # a :: inside\n")
    assert plain_text(doc) == ("Runs make test; see bertrepro.progress.bar, ChapterProgress\n"
                               "and the table.\n\nExamples:\n\n    python -m x   # a :: inside\n")
