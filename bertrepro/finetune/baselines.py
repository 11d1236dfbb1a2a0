r"""Baselines for the Figure 4 tasks (:mod:`bertrepro.finetune.analogs`), and NSP zero-shot on multiple choice.

A fine-tuned model's score means little without the score of a rule that knows nothing: each task
gets rules a reader could write in a minute.

* span QA: the first title-shaped span of the passage (:func:`qa_first_title_span`), the first
  words of a random sentence (:func:`qa_random_sentence`), and the rule a reader tries first: the
  first title-shaped span of the sentence sharing the most content words with the question
  (:func:`qa_question_overlap`); for SQuAD v2.0 also "always no answer" and that rule with a
  threshold on the overlap below which it abstains (:func:`fit_abstain_threshold`);
* tags: "no names", and a per-word lexicon learned on the training split plus a sentence-start rule
  and the tagger's joiner rule (:func:`ner_lexicon`);
* multiple choice: chance (1 / number of endings, a constant) and word overlap (:func:`choice_overlap`);
* pairs: the majority class (:func:`pair_majority`) and word overlap with a threshold fitted on
  the training split (:func:`pair_overlap`);
* :func:`nsp_zero_shot`: the pre-trained next-sentence head of chapter 09 ranks the endings with no
  fine-tuning at all -- multiple choice "given a sentence, which sentence follows?" is the NSP task
  itself (BERT §3.1 Task #2, §4.4).
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import Any, Callable, Sequence

import torch

from ..data import split_sentences
from ..model import IS_NEXT, BertForPreTraining
from .analogs import NAME_JOINERS, ChoiceItem, PairItem, SpanItem, TagItem
from .words import content_words
from .metrics import f1_score
from .tasks import encode_texts

__all__ = ["CHANCE", "title_shaped_spans", "qa_first_title_span", "qa_random_sentence", "qa_question_overlap",
           "fit_abstain_threshold", "ner_lexicon", "choice_overlap", "pair_majority",
           "pair_overlap", "nsp_zero_shot"]

CHANCE = 0.25  # multiple choice among four endings, a uniform guess

# Capitalized for grammar, not as part of a name, when they open a span: "The Aeneid" -> "Aeneid".
_LEADING = frozenset("a an the this that these those in on at by for from of to with as after before".split())
_CAP = "A-Z0-9\u00c0-\u00d6\u00d8-\u00de"  # ASCII and Latin-1 capitals, digits
_NAME_WORD = rf"[{_CAP}](?:[\w'\u2019-]|\.(?=\w))*"  # a period only inside a word ("U.S"), never at its end
_SPAN = re.compile(rf"{_NAME_WORD}(?:\s+(?:of\s+|de\s+|the\s+)?{_NAME_WORD})*")


def title_shaped_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of runs of capitalized words ("title-shaped"), with a leading
    "The"/"A"/"In"/... left out (and a lone one skipped); lower-case "of", "de" and "the" may join two capitalized words
    ("Duke of Wellington"), punctuation other than inner periods, hyphens and apostrophes ends a run."""
    out = []
    for m in _SPAN.finditer(text):
        start, end = m.start(), m.end()
        words = list(re.finditer(r"\S+", text[start:end]))
        if words[0].group(0).lower() in _LEADING:
            if len(words) == 1:
                continue  # a lone "The" or "In" is grammar's capital, not a title
            start += words[1].start()  # "The Aeneid" -> "Aeneid"
        if end > start:
            out.append((start, end))
    return out


def _check_spans(items: Sequence[SpanItem]) -> list[SpanItem]:
    items = list(items)
    bad = [type(it).__name__ for it in items if not isinstance(it, SpanItem)]
    if bad:
        raise TypeError(f"expected SpanItems, got {sorted(set(bad))}")
    return items


def qa_first_title_span(items: Sequence[SpanItem]) -> dict[str, str]:
    """Predict the first title-shaped span of the passage that the question does not already contain.

    A passage opens with some article's lead sentence, which usually opens with that article's
    title, so this rule is right about once in ``k`` (it never answers "no answer").
    """
    out = {}
    for it in _check_spans(items):
        question = it.question.lower()
        spans = [(s, e) for s, e in title_shaped_spans(it.context) if it.context[s:e].lower() not in question]
        out[it.id] = it.context[spans[0][0]: spans[0][1]] if spans else ""
    return out


def _subject(sentence: str, max_words: int) -> str:
    """A sentence's first words: up to its first comma, bracket or verb "is/was/are/were" (at most ``max_words``)."""
    words = []
    for w in sentence.split():
        if w.lower() in ("is", "was", "are", "were") or w.startswith("("):
            break
        words.append(w.rstrip(",;:"))
        if w.endswith((",", ";", ":")) or len(words) == max_words:
            break
    return " ".join(words)


def qa_random_sentence(items: Sequence[SpanItem], seed: int = 0, max_words: int = 6) -> dict[str, str]:
    """Predict the first words (the subject, :func:`_subject`) of a random sentence of the passage, seeded."""
    rng = random.Random(seed)
    out = {}
    for it in _check_spans(items):
        sentences = split_sentences(it.context)
        out[it.id] = _subject(rng.choice(sentences), max_words) if sentences else ""
    return out


def _overlap_answer(it: SpanItem) -> tuple[str, int]:
    """The first title-shaped span (not in the question) of the passage sentence sharing the most
    content words with the question (the first such sentence on ties), and that overlap."""
    question, q_low = content_words(it.question), it.question.lower()
    best, best_n = "", -1
    for sentence in split_sentences(it.context):
        n = len(question & content_words(sentence))
        if n > best_n:
            spans = [sentence[a:b] for a, b in title_shaped_spans(sentence) if sentence[a:b].lower() not in q_low]
            best, best_n = (spans[0] if spans else ""), n
    return best, max(best_n, 0)


def qa_question_overlap(items: Sequence[SpanItem], threshold: float | None = None) -> dict[str, str]:
    """Answer with the first title-shaped span of the sentence that shares the most content words with
    the question. With ``threshold`` (SQuAD v2.0), answer "" (no answer) unless that overlap exceeds it."""
    out = {}
    for it in _check_spans(items):
        text, n = _overlap_answer(it)
        out[it.id] = text if threshold is None or n > threshold else ""
    return out


def fit_abstain_threshold(items: Sequence[SpanItem]) -> float:
    """The overlap threshold of :func:`qa_question_overlap` that maximises mean F1 on ``items`` (training
    items: the rule is fitted like a model, never on test)."""
    scored = [(n, f1_score(text, [a["text"] for a in it.answers]), f1_score("", [a["text"] for a in it.answers]))
              for it in _check_spans(items) for text, n in [_overlap_answer(it)]]
    if not scored:
        raise ValueError("no items to fit the threshold on")
    cuts = sorted({n for n, _, _ in scored})
    cuts = [cuts[0] - 1] + [c for c in cuts]
    mean_f1 = [sum(f if n > t else f0 for n, f, f0 in scored) / len(scored) for t in cuts]
    return float(cuts[max(range(len(cuts)), key=mean_f1.__getitem__)])


def _is_word(w: str) -> bool:
    return w[:1].isalnum()


def ner_lexicon(train_items: Sequence[TagItem]) -> Callable[[Sequence[TagItem]], list[list[str]]]:
    """Fit the lexicon baseline on the training sentences; returns ``predict(items) -> tag lists``.

    The lexicon sees what the uncased model sees: lower-cased words. A word is a name when, away from
    the sentence start, it was tagged as a name in most of its training occurrences (unseen words:
    ``O``). Sentence-start rule: the first word is a name only when the lexicon says so and the next
    word is a name too (as :func:`bertrepro.finetune.analogs.name_tags` treats capitals there).
    Punctuation is ``O`` except ``- – . ' ’ &`` between two name words, which joins them into one
    name (the tagger's rule 3); runs of name words become ``B-NAME I-NAME ...``.
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    for it in train_items:
        if len(it.words) != len(it.tags):
            raise ValueError(f"item {it.id!r} has {len(it.words)} words but {len(it.tags)} tags")
        first = next((i for i, w in enumerate(it.words) if _is_word(w)), None)
        for i, (w, t) in enumerate(zip(it.words, it.tags)):
            if i != first and _is_word(w):
                votes[w.lower()][t != "O"] += 1
    names = frozenset(w for w, c in votes.items() if c[True] > c[False])

    def predict(items: Sequence[TagItem]) -> list[list[str]]:
        out = []
        for it in items:
            words = it.words
            first = next((i for i, w in enumerate(words) if _is_word(w)), None)
            name = [_is_word(w) and w.lower() in names for w in words]
            if first is not None and name[first] and not (first + 1 < len(words) and name[first + 1]):
                name[first] = False
            # the tagger's joiner rule: "St . Louis", "Anglo - Saxon", "U . S ." hold one name
            name = [n or (0 < i < len(words) - 1 and w in NAME_JOINERS and name[i - 1] and name[i + 1])
                    for i, (w, n) in enumerate(zip(words, name))]
            out.append(["O" if not n else ("I-NAME" if i > 0 and name[i - 1] else "B-NAME")
                        for i, n in enumerate(name)])
        return out

    predict.names = names  # the fitted lexicon, for display
    return predict


def choice_overlap(items: Sequence[ChoiceItem]) -> torch.Tensor:
    """(N,) predicted ending: the one sharing the most content words with the context (ties: the first)."""
    preds = []
    for it in items:
        ctx = content_words(it.context)
        counts = torch.tensor([len(ctx & content_words(e)) for e in it.endings])
        preds.append(int(torch.argmax(counts)))  # argmax returns the first maximum
    return torch.tensor(preds, dtype=torch.long)


def _labels(items: Sequence[PairItem]) -> torch.Tensor:
    if not items:
        raise ValueError("no pairs given")
    return torch.tensor([it.label for it in items], dtype=torch.long)


def pair_majority(train: Sequence[PairItem], items: Sequence[PairItem]) -> torch.Tensor:
    """(N,) the most frequent training label (ties: the smaller label) for every item."""
    counts = torch.bincount(_labels(train))
    return torch.full((len(items),), int(torch.argmax(counts)), dtype=torch.long)


def _overlap(items: Sequence[PairItem]) -> torch.Tensor:
    """Share of the content words of ``a`` found in ``b`` (0 when ``a`` has none)."""
    out = []
    for it in items:
        a = content_words(it.a)
        out.append(len(a & content_words(it.b)) / len(a) if a else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def _fit_threshold(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The threshold t maximizing training accuracy of ``score > t -> 1`` (vectorized over all cuts)."""
    values = torch.unique(scores)  # sorted
    cuts = torch.cat([values[:1] - 1, (values[:-1] + values[1:]) / 2, values[-1:] + 1])
    preds = scores[None, :] > cuts[:, None]  # (C, N)
    acc = (preds == labels.bool()[None, :]).double().mean(1)
    return float(cuts[int(torch.argmax(acc))])


def pair_overlap(train: Sequence[PairItem], items: Sequence[PairItem]) -> torch.Tensor:
    """(N,) label 1 when the share of ``a``'s content words that ``b`` repeats exceeds a threshold
    fitted for accuracy on ``train``."""
    threshold = _fit_threshold(_overlap(train), _labels(train))
    return (_overlap(items) > threshold).long() if items else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def nsp_zero_shot(model: BertForPreTraining, tokenizer: Any, items: Sequence[ChoiceItem], max_seq_length: int,
                  batch_size: int = 64,
                  return_scores: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(N,) predicted ending: the argmax over the endings of P(IsNext | [CLS] context [SEP] ending [SEP])
    from the model's pre-trained NSP head (label ``IS_NEXT`` = 0, as the original and transformers).

    With ``return_scores``, also the (N, K) IsNext probabilities. The model is put in eval mode.
    """
    if not isinstance(model, BertForPreTraining):
        raise TypeError(f"nsp_zero_shot needs a bertrepro.model.BertForPreTraining (it has the NSP head), got "
                        f"{type(model).__name__}")
    items = list(items)
    if not items:
        raise ValueError("no items to score")
    k = len(items[0].endings)
    if any(len(it.endings) != k for it in items):
        raise ValueError(f"every item needs {k} endings, like the first")
    enc = encode_texts(tokenizer, [it.context for it in items for _ in range(k)], max_seq_length,
                       [e for it in items for e in it.endings])
    model.eval()
    device = next(model.parameters()).device
    probs = []
    for start in range(0, len(enc), batch_size):
        batch = enc[start: start + batch_size].to(device)
        pooled = model.bert(batch.input_ids, batch.token_type_ids, batch.attention_mask).pooler_output
        logits = model.cls.seq_relationship(pooled)  # as model(...) computes it, without the (B, T, V) MLM logits
        probs.append(torch.softmax(logits.float(), dim=-1)[:, IS_NEXT].cpu())
    scores = torch.cat(probs).view(len(items), k)
    preds = scores.argmax(dim=1)
    return (preds, scores) if return_scores else preds
