"""Files of the Figure 4 tasks in their standard formats: SQuAD JSON (v1.1 and v2.0, as
``run_squad.py`` and the official evaluation scripts read them) and CoNLL columns (one ``word tag``
per line, a blank line between sentences, as CoNLL-2003).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import atomic_write_text
from .analogs import SpanItem, TagItem

__all__ = ["write_squad_json", "read_squad_json", "write_conll", "read_conll"]



def write_squad_json(items: Sequence[SpanItem], path: str | os.PathLike) -> Path:
    """Write items in the official SQuAD JSON format (atomically): ``{"version", "data": [{"title",
    "paragraphs": [{"context", "qas": [{"id", "question", "answers", "is_impossible"}]}]}]}``, one
    paragraph per item; version "v2.0" when an item has no answer, else "v1.1"."""
    items = list(items)
    if not items:
        raise ValueError("no items to write")
    impossible = any(not it.answers for it in items)
    data = []
    for it in items:
        qa = {"id": it.id, "question": it.question,
              "answers": [{"text": a["text"], "answer_start": int(a["answer_start"])} for a in it.answers]}
        if impossible:
            qa["is_impossible"] = not it.answers
        data.append({"title": it.title, "paragraphs": [{"context": it.context, "qas": [qa]}]})
    doc = {"version": "v2.0" if impossible else "v1.1", "data": data}
    return atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=1) + "\n")


def _qa_items(path: Path, title: str, paragraph: Mapping[str, Any]) -> list[SpanItem]:
    context = paragraph["context"]
    out = []
    for qa in paragraph["qas"]:
        answers = [] if qa.get("is_impossible") else list(qa["answers"])
        for a in answers:
            start, text = int(a["answer_start"]), a["text"]
            if context[start: start + len(text)] != text:
                raise ValueError(
                    f"{path}: question {qa['id']!r}: answer {text!r} is not in its context at answer_start={start} "
                    f"(found {context[start: start + len(text)]!r}); fix answer_start to the character offset of the "
                    "answer in the context")
        out.append(SpanItem(str(qa["id"]), qa["question"], context,
                            [{"text": a["text"], "answer_start": int(a["answer_start"])} for a in answers], title))
    return out


def read_squad_json(path: str | os.PathLike) -> list[SpanItem]:
    """Read a SQuAD JSON file (v1.1 or v2.0) into :class:`SpanItem` s.

    Raises:
        ValueError: the file is not SQuAD JSON (naming the missing field), or an answer's text is not in
            its context at its ``answer_start``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); expected the SQuAD format") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError(f"{path} has no 'data' list; expected the SQuAD format {{'version', 'data': [...]}}")
    items = []
    try:
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                items.extend(_qa_items(path, article.get("title", ""), paragraph))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed SQuAD JSON, missing or wrong field {e}; each article needs "
                         "'paragraphs', each paragraph 'context' and 'qas', each question 'id', 'question' "
                         "and 'answers'") from None
    return items


def write_conll(items: Sequence[TagItem], path: str | os.PathLike) -> Path:
    """Write tagged sentences as CoNLL columns (``word tag`` per line, a blank line after each sentence)."""
    lines = []
    for it in items:
        if len(it.words) != len(it.tags):
            raise ValueError(f"item {it.id!r} has {len(it.words)} words but {len(it.tags)} tags")
        bad = [w for w in it.words if not w or any(c.isspace() for c in w)]
        if bad:
            raise ValueError(f"item {it.id!r} has words with whitespace or empty words {bad}; CoNLL columns "
                             "are separated by spaces")
        lines.extend(f"{w} {t}" for w, t in zip(it.words, it.tags))
        lines.append("")
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_conll(path: str | os.PathLike, prefix: str = "conll") -> list[TagItem]:
    """Read CoNLL columns (first column the word, last the tag) into :class:`TagItem` s."""
    items, words, tags = [], [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        cols = line.split()
        if not cols:
            if words:
                items.append(TagItem(f"{prefix}-{len(items):05d}", words, tags))
            words, tags = [], []
            continue
        if len(cols) < 2:
            raise ValueError(f"{path}:{n}: expected 'word ... tag', got {line!r}")
        words.append(cols[0])
        tags.append(cols[-1])
    if words:
        items.append(TagItem(f"{prefix}-{len(items):05d}", words, tags))
    return items
