r"""The five tasks of the paper's Figure 4, built offline from the embedded Wikipedia articles.

BERT §4 fine-tunes one pre-trained model on sentence pairs (GLUE, Table 1), answer spans (SQuAD
v1.1 and v2.0, Tables 2 and 3), token tags (CoNLL-2003 NER, Table 7) and multiple choice (SWAG,
Table 4). Those data sets need a network; this module builds an analog of each from the articles of
:func:`bertrepro.data.load_corpus` (title, topic, short description, sentences). Every label is read
off the corpus, never predicted by a model.

**Splits follow the article splits**, as chapter 10's :func:`bertrepro.finetune.tasks.topic_task`:
pre-training trains only on the corpus's ``train`` split; training items come from the
``validation`` split; dev and test items come from the ``test`` split, divided by article (half of
each topic's articles, drawn with :data:`~bertrepro.finetune.tasks.TASK_SEED`, go to dev). So no test
article is seen in pre-training or in training, and every sentence of an item (distractors
included) comes from articles of the item's own split. Articles without a topic are left out (the
constructions draw "other articles of the same topic").

The constructions (``k`` = sentences per passage):

* ``squad11`` -- the question is an article's short description; the passage is the article's lead
  sentence and the lead sentences of ``k - 1`` other articles of its topic, shuffled; the answer is
  the title where it occurs in the lead sentence. An article is kept only when its title occurs
  (case-insensitively, on word boundaries) exactly once in its lead sentence and nowhere else in the
  passage or in the question. ``companions="overlap"`` takes the topic's other lead sentences that
  share the most content words with the question.
* ``squad20`` -- the same, but in about a third of the items (a seeded coin) the lead sentence is
  replaced by yet another article's lead sentence: the passage keeps ``k`` sentences, so its length
  does not give the missing answer away, and ``answers == []``.
* ``qnli`` -- (description, lead sentence); label 1 when the sentence is the described article's
  own, 0 when it is the lead sentence of another article of the same topic. Half the articles give a
  positive and half a negative pair. A lead sentence often paraphrases its description, so word
  overlap alone goes a long way; ``negatives="overlap"`` picks, as the negative, the sentence of the
  topic's other articles that shares the most content words with the description (hard negatives,
  in the spirit of SWAG's adversarial filtering), and half the positives use the article's second
  sentence.
* ``ner`` -- every sentence, cut into words; the tags (:func:`name_tags`) mark the words the
  original text capitalizes away from the sentence start. The model is uncased and never sees case.
* ``swag`` -- a sentence and four endings: its true next sentence and three non-lead sentences of
  other articles of the same topic (so topic words do not give the answer away), the true one at a
  seeded position; ``distractors="overlap"`` takes those whose content-word overlap with the context
  is closest to the true ending's, and ``pool="other"`` draws them from other topics instead.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..data import TOPICS, load_corpus
from .tasks import TASK_SEED, Encoded, encode_texts
from .words import closest_overlap, most_overlap, content_words

__all__ = ["SpanItem", "PairItem", "TagItem", "ChoiceItem", "AnalogTask", "NAME_TAGS", "TASKS", "Article",
           "NAME_JOINERS",
           "task_articles", "title_pattern", "title_starts", "sentence_words", "name_tags", "squad_task", "qnli_task",
           "ner_task", "swag_task", "build_task", "align_first_subtoken", "first_subtoken_mask",
           "word_tags", "encode_pairs", "encode_choices", "fast_tokenizer"]

TASKS = ("qnli", "squad11", "squad20", "ner", "swag")
NAME_TAGS = ("O", "B-NAME", "I-NAME")
ITEM_SPLITS = ("train", "dev", "test")


@dataclass
class SpanItem:
    """A SQuAD-style question; ``answers`` is ``[{"text", "answer_start"}]``, ``[]`` for no answer."""

    id: str
    question: str
    context: str
    answers: list[dict[str, Any]]
    title: str


@dataclass
class PairItem:
    """A sentence pair; for ``qnli``, label 1 = sentence ``b`` belongs to the article ``a`` describes."""

    id: str
    a: str
    b: str
    label: int
    title: str = ""  # the article the pair was built from


@dataclass
class TagItem:
    """A sentence as words with one BIO tag per word (:data:`NAME_TAGS`)."""

    id: str
    words: list[str]
    tags: list[str]
    title: str = ""  # the article the sentence comes from


@dataclass
class ChoiceItem:
    """A context and its candidate endings; ``endings[label]`` is the true one."""

    id: str
    context: str
    endings: list[str]
    label: int
    title: str = ""  # the article of the context (and of the true ending)
    sources: list[str] = field(default_factory=list)  # the article each ending comes from


@dataclass
class AnalogTask:
    """A task's items per split and a description of how it was built (``info``)."""

    name: str
    train: list
    dev: list
    test: list
    info: dict

    def split(self, name: str) -> list:
        if name not in ITEM_SPLITS:
            raise ValueError(f"unknown split {name!r}; a task has {', '.join(ITEM_SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in ITEM_SPLITS}


# ---------------------------------------------------------------------------------------------
# Articles per split
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Article:
    title: str
    topic: str
    description: str
    sentences: tuple[str, ...]


def _rows(split) -> list[Article]:
    cols = {k: split[k] for k in ("title", "topic", "description", "sentences")}
    return [Article(t, tp, d, tuple(s)) for t, tp, d, s in
            zip(cols["title"], cols["topic"], cols["description"], cols["sentences"]) if tp in TOPICS]


def _divide(articles: list[Article], dev_fraction: float) -> tuple[list[Article], list[Article]]:
    """Half (``dev_fraction``) of each topic's articles, drawn with ``TASK_SEED``, to dev; the rest to test."""
    order = list(range(len(articles)))
    random.Random(TASK_SEED).shuffle(order)
    totals = {t: sum(a.topic == t for a in articles) for t in TOPICS}
    taken = dict.fromkeys(TOPICS, 0)
    dev_idx = set()
    for i in order:
        t = articles[i].topic
        if taken[t] < round(totals[t] * dev_fraction):
            taken[t] += 1
            dev_idx.add(i)
    return ([a for i, a in enumerate(articles) if i in dev_idx],
            [a for i, a in enumerate(articles) if i not in dev_idx])


@lru_cache(maxsize=4)
def _named_articles(name: str, dev_fraction: float) -> dict[str, tuple[Article, ...]]:
    return {k: tuple(v) for k, v in task_articles(load_corpus(name), dev_fraction).items()}


def task_articles(corpus: Any = "wiki-vital", dev_fraction: float = 0.5) -> dict[str, list[Article]]:
    """The articles of each task split: ``train`` = the corpus's validation split, ``dev`` and ``test``
    = its test split divided by article (``dev_fraction`` of each topic to dev). Pre-training uses only
    the corpus's train split, so none of these articles was pre-trained on.

    Args:
        corpus: a name for :func:`bertrepro.data.load_corpus` (loaded once per process) or a mapping with
            ``validation`` and ``test`` splits whose rows have title, topic, description and sentences.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be strictly between 0 and 1, got {dev_fraction}")
    if isinstance(corpus, str):
        return {k: list(v) for k, v in _named_articles(corpus, float(dev_fraction)).items()}
    missing = [s for s in ("validation", "test") if s not in corpus]
    if missing:
        raise ValueError(f"the corpus lacks split(s) {missing}; the tasks are built from its held-out "
                         "validation and test splits")
    dev, test = _divide(_rows(corpus["test"]), dev_fraction)
    return {"train": _rows(corpus["validation"]), "dev": dev, "test": test}


def _by_topic(articles: Sequence[Article], keep: Callable[[Article], bool] = lambda a: True) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {t: [] for t in TOPICS}
    for i, a in enumerate(articles):
        if keep(a):
            out[a.topic].append(i)
    return out


def _rng(task: str, seed: int, split: str) -> random.Random:
    return random.Random(f"{task}\x00{seed}\x00{split}")  # str seeds are hashed (SHA-512): same on every machine


def _check_common(seed: int, max_items: int | None) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be None or a positive int, got {max_items!r}")


def _build(name: str, corpus: Any, seed: int, max_items: int | None, make_split, info: dict) -> AnalogTask:
    _check_common(seed, max_items)
    arts = task_articles(corpus)
    splits = {s: make_split(arts[s], _rng(name, seed, s), s)[: max_items] for s in ITEM_SPLITS}
    info = {**info, "seed": seed, "max_items": max_items,
            "articles": {s: len(arts[s]) for s in ITEM_SPLITS}}
    return AnalogTask(name, splits["train"], splits["dev"], splits["test"], info)


# ---------------------------------------------------------------------------------------------
# Span QA (SQuAD v1.1 and v2.0 analogs)
# ---------------------------------------------------------------------------------------------

def title_pattern(title: str) -> re.Pattern:
    """The title, case-insensitive, on word boundaries (not inside a longer word)."""
    if not title.strip():
        raise ValueError("an empty title has no pattern")
    return re.compile(r"(?<!\w)" + re.escape(title) + r"(?!\w)", re.IGNORECASE)


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def title_starts(title: str, text: str) -> list[int]:
    """Character offsets where ``title`` occurs in ``text``, case-insensitive, on word boundaries.

    Equal to ``[m.start() for m in title_pattern(title).finditer(text)]`` (the tests check it), without
    compiling a pattern per title: the many titles of a split make that the slow part.
    """
    low, t = text.lower(), title.lower()
    if len(low) != len(text) or len(t) != len(title) or not t.strip():  # lowercasing moved offsets: use the regex
        return [m.start() for m in title_pattern(title).finditer(text)]
    out, i = [], low.find(t)
    while i >= 0:
        before = low[i - 1] if i > 0 else " "
        after = low[i + len(t)] if i + len(t) < len(low) else " "
        if not _is_word_char(before) and not _is_word_char(after):
            out.append(i)
        i = low.find(t, i + 1)
    return out


def _span_item(arts: Sequence[Article], i: int, lead_by_topic: dict[str, list[int]], rng: random.Random,
               k: int, drop: bool, item_id: str, lead_words: Sequence[set[str]] | None = None) -> SpanItem | None:
    art = arts[i]
    if not art.description or not art.sentences:
        return None
    target = art.sentences[0]
    starts = title_starts(art.title, target)
    if len(starts) != 1 or title_starts(art.title, art.description):
        return None
    others = [j for j in lead_by_topic[art.topic]
              if j != i and arts[j].sentences[0] != target and not title_starts(art.title, arts[j].sentences[0])]
    if len(others) < k:
        return None
    if lead_words is None:
        chosen = rng.sample(others, k)  # k - 1 companions, and one more replacing the target when dropped
    else:  # the lead sentences sharing the most content words with the question
        question = content_words(art.description)
        chosen = most_overlap(others, [len(question & lead_words[j]) for j in others], k, rng)
        rng.shuffle(chosen)
    sents = [arts[j].sentences[0] for j in chosen[: k - 1]] + [arts[chosen[-1]].sentences[0] if drop else target]
    rng.shuffle(sents)
    context = " ".join(sents)
    answers: list[dict[str, Any]] = []
    if not drop:
        start = sum(len(s) + 1 for s in sents[: sents.index(target)]) + starts[0]
        answers = [{"text": context[start: start + len(art.title)], "answer_start": start}]
    return SpanItem(item_id, art.description, context, answers, art.title)


def squad_task(version: str = "1.1", corpus: Any = "wiki-vital", seed: int = 0, k: int = 4,
               max_items: int | None = None, no_answer_fraction: float = 1 / 3,
               companions: str = "random") -> AnalogTask:
    """The SQuAD analog (v1.1; or v2.0 with no-answer items); see the module docstring.

    Args:
        version: "1.1" or "2.0".
        k: sentences per passage (>= 2).
        max_items: keep at most this many items in each split.
        no_answer_fraction: the chance (v2.0 only) that an item's answer sentence is replaced.
        companions: "random" lead sentences of the topic, or "overlap": those sharing the most content
            words with the question, so that matching the question's words does not find the answer.
    """
    if companions not in ("random", "overlap"):
        raise ValueError(f"companions must be 'random' or 'overlap', got {companions!r}")
    if version not in ("1.1", "2.0"):
        raise ValueError(f"version must be '1.1' or '2.0', got {version!r}")
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k (sentences per passage) must be an int >= 2, got {k!r}")
    if not 0.0 < no_answer_fraction < 1.0:
        raise ValueError(f"no_answer_fraction must be strictly between 0 and 1, got {no_answer_fraction}")
    name = "squad11" if version == "1.1" else "squad20"
    p_drop = no_answer_fraction if version == "2.0" else 0.0

    def make(arts, rng, split):
        lead = _by_topic(arts, lambda a: bool(a.sentences))
        lead_words = ([content_words(a.sentences[0]) if a.sentences else set() for a in arts]
                      if companions == "overlap" else None)
        order = list(range(len(arts)))
        rng.shuffle(order)
        items = []
        for i in order:
            if max_items is not None and len(items) >= max_items:
                break
            drop = rng.random() < p_drop
            item = _span_item(arts, i, lead, rng, k, drop, f"{name}-{split}-{len(items):05d}", lead_words)
            if item is not None:
                items.append(item)
        return items

    return _build(name, corpus, seed, max_items, make,
                  {"version": version, "k": k, "no_answer_fraction": p_drop, "companions": companions})


# ---------------------------------------------------------------------------------------------
# Sentence pairs (QNLI analog)
# ---------------------------------------------------------------------------------------------

def _negative(arts: Sequence[Article], i: int, others: list[int], rng: random.Random,
              words: Sequence[Sequence[set[str]]] | None) -> str:
    """A sentence of another article: a random article's lead sentence, or (given every sentence's
    content words) the sentence of any of ``others`` sharing the most content words with article
    ``i``'s description (ties: a random one of them)."""
    if words is None:
        return arts[rng.choice(others)].sentences[0]
    desc = content_words(arts[i].description)
    cands = [(j, k) for j in others for k in range(len(words[j]))]
    j, k = most_overlap(cands, [len(desc & words[j][k]) for j, k in cands], 1, rng)[0]
    return arts[j].sentences[k]


def qnli_task(corpus: Any = "wiki-vital", seed: int = 0, max_items: int | None = None,
              negatives: str = "random") -> AnalogTask:
    """The QNLI analog: (description, lead sentence), 1 = the sentence is the described article's own.

    One pair per article; half of each split's articles (a seeded half) give the positive pair, the
    others a negative one with the lead sentence of another article of the same topic, so the classes
    differ in size by at most one. ``negatives="random"`` draws that article at random;
    ``negatives="overlap"`` takes, of all the sentences of the topic's other articles, the one sharing
    the most content words with the description, and half the positives (a seeded coin) take the
    article's second sentence instead of its lead, which repeats fewer of the description's words:
    word overlap alone then tells the classes apart far less well.
    """
    if negatives not in ("random", "overlap"):
        raise ValueError(f"negatives must be 'random' or 'overlap', got {negatives!r}")

    def make(arts, rng, split):
        lead = _by_topic(arts, lambda a: bool(a.sentences))
        words = ([[content_words(x) for x in a.sentences] for a in arts] if negatives == "overlap" else None)
        order = [i for i in range(len(arts)) if arts[i].description and arts[i].sentences]
        rng.shuffle(order)
        if max_items is not None:
            order = order[:max_items]
        items = []
        for n, i in enumerate(order):
            art, positive = arts[i], n % 2 == 0
            b = art.sentences[0]
            if positive and negatives == "overlap" and len(art.sentences) > 1 and rng.random() < 0.5:
                b = art.sentences[1]  # the article's second sentence: its own, with fewer of its words
            if not positive:
                others = [j for j in lead[art.topic] if j != i and arts[j].sentences[0] != b]
                if not others:
                    raise ValueError(f"topic {art.topic!r} of split {split!r} has a single article; a negative "
                                     "pair needs another article of the same topic")
                b = _negative(arts, i, others, rng, words)
            items.append(PairItem("", art.description, b, int(positive), art.title))
        rng.shuffle(items)
        for n, it in enumerate(items):
            it.id = f"qnli-{split}-{n:05d}"
        return items

    return _build("qnli", corpus, seed, max_items, make,
                  {"labels": {0: "other article", 1: "same article"}, "negatives": negatives})


# ---------------------------------------------------------------------------------------------
# Token tags (NER analog)
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]")
# Capitalized at a sentence start for grammar, not because they are names.
_OPENERS = frozenset("""
    A An The This That These Those It Its He She His Her They Their Them We Our I In On At By For From To Of
    With As After Before During Since Until When While Although Though However Because If But And Or Nor So
    Yet Many Most Some Several Other Others Each Both All There Today Later Also Such Then Thus Unlike Like
    Under Over Between Among Within Without Despite Following According What Which Who Where How
""".split())
# Punctuation inside a name when it stands between two name words: "St. Louis", "Anglo-Saxon", "U.S."
NAME_JOINERS = frozenset(["-", "\u2013", ".", "'", "\u2019", "&"])


def sentence_words(sentence: str) -> list[str]:
    """Words as BERT's pre-tokenizer cuts them: runs of letters/digits, and each punctuation mark alone."""
    return _WORD.findall(sentence)


def name_tags(words: Sequence[str]) -> list[str]:
    """BIO tags (:data:`NAME_TAGS`) of the words the text capitalizes away from the sentence start.

    The rule, exact on the original text:

    1. a word is a name word when its first character is an upper-case letter and it is not the
       sentence's first word (the first word that starts with a letter or a digit; quotes or brackets
       before it do not count);
    2. the first word is a name word only when it is capitalized, is not a common sentence opener
       ("The", "In", "This", ...), and the next word is a name word ("Isaac Newton was ...": both;
       "Newton was ...": neither, as the capital there may be grammar's);
    3. ``- – . ' ’ &`` between two name words belong to the name ("St. Louis", "Anglo-Saxon");
       any other punctuation, and any lower-case word or number, is ``O`` and ends a name;
    4. a maximal run of name words is one entity: ``B-NAME`` then ``I-NAME``.
    """
    n = len(words)
    first = next((i for i, w in enumerate(words) if w[:1].isalnum()), None)
    cap = [w[:1].isupper() for w in words]
    name = [cap[i] and first is not None and i > first for i in range(n)]
    if first is not None and cap[first] and first + 1 < n and name[first + 1] and words[first] not in _OPENERS:
        name[first] = True
    joined = [0 < i < n - 1 and words[i] in NAME_JOINERS and name[i - 1] and name[i + 1] for i in range(n)]
    inside = [a or b for a, b in zip(name, joined)]
    return ["O" if not inside[i] else ("I-NAME" if i > 0 and inside[i - 1] else "B-NAME") for i in range(n)]


def ner_task(corpus: Any = "wiki-vital", seed: int = 0, max_items: int | None = None,
             max_per_article: int | None = None) -> AnalogTask:
    """The NER analog: the sentences of a split's articles (articles in a seeded order), tagged by
    :func:`name_tags`; ``max_items`` keeps the first sentences in that order. ``max_per_article`` keeps
    at most that many sentences of an article (a seeded draw, in text order), so that a few long
    articles, whose names repeat from sentence to sentence, do not make up a test set."""
    if max_per_article is not None and (not isinstance(max_per_article, int) or max_per_article < 1):
        raise ValueError(f"max_per_article must be None or a positive int, got {max_per_article!r}")

    def make(arts, rng, split):
        order = list(range(len(arts)))
        rng.shuffle(order)
        items = []
        for i in order:
            sentences = list(arts[i].sentences)
            if max_per_article is not None and len(sentences) > max_per_article:
                keep = sorted(rng.sample(range(len(sentences)), max_per_article))
                sentences = [sentences[j] for j in keep]
            for s in sentences:
                if max_items is not None and len(items) >= max_items:
                    return items
                words = sentence_words(s)
                if words:
                    items.append(TagItem(f"ner-{split}-{len(items):05d}", words, name_tags(words), arts[i].title))
        return items

    return _build("ner", corpus, seed, max_items, make, {"tags": list(NAME_TAGS), "max_per_article": max_per_article})


# ---------------------------------------------------------------------------------------------
# Multiple choice (SWAG analog)
# ---------------------------------------------------------------------------------------------

def _choice_item(arts: Sequence[Article], i: int, p: int, pool: list[int], rng: random.Random,
                 num_choices: int, item_id: str, distractors: str = "random", candidates: int = 1000,
                 sentence_pool: Sequence[tuple[int, str, str, set[str]]] = ()) -> ChoiceItem | None:
    art = arts[i]
    true = art.sentences[p + 1]
    others = [j for j in pool if j != i]
    if len(others) < num_choices - 1:
        return None
    if distractors == "random":
        picked = []
        for j in rng.sample(others, len(others)):  # a seeded order of the other articles; take the first that fit
            s = arts[j].sentences[rng.randrange(1, len(arts[j].sentences))]  # never a lead sentence
            if s != true and all(s != e for e, _ in picked):
                picked.append((s, arts[j].title))
            if len(picked) == num_choices - 1:
                break
        else:
            return None
    else:  # as close to the context in content words as the true ending is
        ctx = content_words(art.sentences[p])
        target = len(ctx & content_words(true))
        pool_sents = [c for c in rng.sample(sentence_pool, min(len(sentence_pool), candidates))
                      if c[0] != i and c[1] != true]
        if len(pool_sents) < num_choices - 1:
            return None
        overlap = [len(ctx & c[3]) for c in pool_sents]
        chosen = closest_overlap(range(len(pool_sents)), overlap, target, num_choices - 1, rng)
        picked = [(pool_sents[c][1], pool_sents[c][2]) for c in chosen]
    endings, sources = [e for e, _ in picked], [t for _, t in picked]
    label = rng.randrange(num_choices)
    endings.insert(label, true)
    sources.insert(label, art.title)
    return ChoiceItem(item_id, art.sentences[p], endings, label, art.title, sources)


def swag_task(corpus: Any = "wiki-vital", seed: int = 0, max_items: int | None = None,
              num_choices: int = 4, distractors: str = "random", pool: str = "topic") -> AnalogTask:
    """The SWAG analog: a sentence and ``num_choices`` endings, the true next sentence among non-lead
    sentences of other articles; one item per pair of consecutive sentences (in a seeded order).

    ``pool``: the distractors come from articles of the same topic ("topic"), or of any other topic
    ("other", like pre-training's random next sentences). ``distractors``: "random" sentences of those
    articles, or "overlap": of 1,000 non-lead sentences drawn from them, the ones whose content-word overlap
    with the context is closest to the true ending's (at or above it first), so that word overlap no
    longer points at the true ending.
    """
    if not isinstance(num_choices, int) or num_choices < 2:
        raise ValueError(f"num_choices must be an int >= 2, got {num_choices!r}")
    if distractors not in ("random", "overlap"):
        raise ValueError(f"distractors must be 'random' or 'overlap', got {distractors!r}")
    if pool not in ("topic", "other"):
        raise ValueError(f"pool must be 'topic' or 'other', got {pool!r}")

    def make(arts, rng, split):
        by_topic = _by_topic(arts, lambda a: len(a.sentences) >= 2)
        everyone = [j for js in by_topic.values() for j in js]
        elsewhere = {t: [j for j in everyone if arts[j].topic != t] for t in by_topic}
        # (article, sentence, title, content words) of every non-lead sentence, per candidate pool
        sents = {j: [(j, x, arts[j].title, content_words(x)) for x in arts[j].sentences[1:]] for j in everyone}
        sentence_pools = {t: [c for j in (by_topic[t] if pool == "topic" else elsewhere[t]) for c in sents[j]]
                          for t in by_topic} if distractors == "overlap" else {}
        pairs = [(i, p) for i, a in enumerate(arts) for p in range(len(a.sentences) - 1)]
        rng.shuffle(pairs)
        items = []
        for i, p in pairs:
            if max_items is not None and len(items) >= max_items:
                break
            topic = arts[i].topic
            candidates = by_topic[topic] if pool == "topic" else elsewhere[topic]
            item = _choice_item(arts, i, p, candidates, rng, num_choices, f"swag-{split}-{len(items):05d}",
                                distractors, sentence_pool=sentence_pools.get(topic, ()))
            if item is not None:
                items.append(item)
        return items

    return _build("swag", corpus, seed, max_items, make,
                  {"num_choices": num_choices, "distractors": distractors, "pool": pool})


def build_task(name: str, **kwargs: Any) -> AnalogTask:
    """Build task ``name`` (one of :data:`TASKS`) with the keyword arguments of its builder."""
    if name == "squad11":
        return squad_task("1.1", **kwargs)
    if name == "squad20":
        return squad_task("2.0", **kwargs)
    builders = {"qnli": qnli_task, "ner": ner_task, "swag": swag_task}
    if name not in builders:
        raise ValueError(f"unknown task {name!r}; valid tasks are {', '.join(TASKS)}")
    return builders[name](**kwargs)


# ---------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------

def fast_tokenizer(tokenizer: Any):
    """A transformers fast tokenizer (``word_ids`` needs one); a bertrepro tokenizer is converted."""
    if hasattr(tokenizer, "is_fast") and tokenizer.is_fast:
        return tokenizer
    if getattr(tokenizer, "vocab_path", None) is not None:
        from transformers import BertTokenizerFast  # lazily: slow to import, and only these answers need it

        # transformers 5 ignores vocab_file= (it builds a 5-piece vocabulary); vocab=<path> loads the file
        fast = BertTokenizerFast(vocab=str(tokenizer.vocab_path), do_lower_case=tokenizer.lowercase)
        if len(fast) != len(tokenizer):
            raise ValueError(f"BertTokenizerFast built {len(fast)} pieces from {tokenizer.vocab_path}, which has "
                             f"{len(tokenizer)}; pass a BertTokenizerFast loaded with from_pretrained instead")
        return fast
    raise TypeError(f"align_first_subtoken needs a transformers fast tokenizer (BertTokenizerFast) or a bertrepro "
                    f"WordPieceTokenizer loaded from a vocab file, got {type(tokenizer).__name__}")


def align_first_subtoken(tokenizer: Any, words_batch: Sequence[Sequence[str]],
                         tags_batch: Sequence[Sequence[str]] | None, label_ids: Mapping[str, int] | Sequence[str],
                         max_seq_length: int) -> tuple[torch.Tensor, ...]:
    """Tokenize pre-split words as ``[CLS] words [SEP]`` and put each word's label on its first
    WordPiece only (BERT §5.3: "we use the representation of the first sub-token as the input to the
    token-level classifier over the NER label set").

    Args:
        tokenizer: ``BertTokenizerFast`` (or a bertrepro ``WordPieceTokenizer`` with a vocab file).
        words_batch: N sentences as lists of words.
        tags_batch: N lists of tags, one per word (None: labels all -100, for prediction).
        label_ids: tag -> id, or the tag names in id order.
        max_seq_length: T; longer sentences are truncated (their last words get no token and no label).
    Returns:
        ``input_ids, attention_mask, token_type_ids, labels, word_index``, each (N, T) int64:
        ``labels`` is the word's tag id on its first sub-token and -100 on specials, padding and later
        sub-tokens; ``word_index`` is the word each token belongs to (-1 for specials and padding).
    """
    words_batch = [list(w) for w in words_batch]
    if not words_batch:
        raise ValueError("no sentences to encode")
    ids = {t: i for i, t in enumerate(label_ids)} if not isinstance(label_ids, Mapping) else dict(label_ids)
    tok = fast_tokenizer(tokenizer)
    enc = tok(words_batch, is_split_into_words=True, truncation=True, max_length=max_seq_length,
              padding="max_length", return_tensors="pt", return_token_type_ids=True, return_attention_mask=True)
    n = len(words_batch)
    word_index = torch.from_numpy(np.nan_to_num(np.array([enc.word_ids(b) for b in range(n)], dtype=float),
                                                nan=-1.0)).long()  # None (specials, padding) -> -1
    labels = torch.full_like(word_index, -100)
    if tags_batch is not None:
        tags_batch = [list(t) for t in tags_batch]
        if len(tags_batch) != n:
            raise ValueError(f"{n} sentences but {len(tags_batch)} tag lists")
        width = max(1, max(len(w) for w in words_batch))
        tag_ids = torch.zeros(n, width, dtype=torch.long)
        for b, (words, tags) in enumerate(zip(words_batch, tags_batch)):
            if len(words) != len(tags):
                raise ValueError(f"sentence {b} has {len(words)} words but {len(tags)} tags")
            unknown = sorted(set(tags) - set(ids))
            if unknown:
                raise ValueError(f"sentence {b} has tags {unknown} missing from label_ids {sorted(ids)}")
            tag_ids[b, : len(tags)] = torch.tensor([ids[t] for t in tags], dtype=torch.long)
        labels = torch.where(first_subtoken_mask(word_index), tag_ids.gather(1, word_index.clamp(min=0)), labels)
    return (enc["input_ids"].long(), enc["attention_mask"].long(), enc["token_type_ids"].long(), labels, word_index)


def first_subtoken_mask(word_index: torch.Tensor) -> torch.Tensor:
    """(N, T) bool: the tokens that start a word (``word_index`` from :func:`align_first_subtoken`)."""
    previous = torch.cat([torch.full_like(word_index[:, :1], -1), word_index[:, :-1]], dim=1)
    return (word_index >= 0) & (word_index != previous)


def word_tags(predicted: torch.Tensor, word_index: torch.Tensor, num_words: Sequence[int],
              tag_names: Sequence[str]) -> list[list[str]]:
    """Per-word tags from per-token predictions: each word takes the tag predicted on its first sub-token.

    Args:
        predicted: (N, T) tag ids (e.g. ``logits.argmax(-1)``).
        word_index: (N, T) from :func:`align_first_subtoken`.
        num_words: the number of words of each sentence.
        tag_names: tag of each id.
    Returns:
        N lists of ``num_words[n]`` tags; a word cut off by truncation (no token) gets ``"O"``.
    """
    if predicted.shape != word_index.shape or len(num_words) != predicted.shape[0]:
        raise ValueError(f"predicted {tuple(predicted.shape)}, word_index {tuple(word_index.shape)} and "
                         f"{len(num_words)} sentences do not match")
    out = [["O"] * n for n in num_words]
    rows, cols = first_subtoken_mask(word_index).nonzero(as_tuple=True)
    for r, w, t in zip(rows.tolist(), word_index[rows, cols].tolist(), predicted[rows, cols].tolist()):
        out[r][w] = tag_names[t]
    return out


def encode_pairs(tokenizer: Any, items: Sequence[PairItem], max_seq_length: int) -> tuple[Encoded, torch.Tensor]:
    """``[CLS] a [SEP] b [SEP]`` (token types 0 then 1) for each pair, and the (N,) labels."""
    items = list(items)
    if not items:
        raise ValueError("no pairs to encode")
    enc = encode_texts(tokenizer, [it.a for it in items], max_seq_length, [it.b for it in items])
    return enc, torch.tensor([it.label for it in items], dtype=torch.long)


def encode_choices(tokenizer: Any, items: Sequence[ChoiceItem],
                   max_seq_length: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``[CLS] context [SEP] ending_k [SEP]`` for every ending (BERT §4.4).

    Returns:
        ``{"input_ids", "token_type_ids", "attention_mask"}`` each (N, K, T), and the (N,) labels.
    """
    items = list(items)
    if not items:
        raise ValueError("no items to encode")
    k = len(items[0].endings)
    bad = [it.id for it in items if len(it.endings) != k]
    if bad:
        raise ValueError(f"items {bad[:5]} do not have {k} endings like the first; every item needs the same number")
    enc = encode_texts(tokenizer, [it.context for it in items for _ in range(k)], max_seq_length,
                       [e for it in items for e in it.endings])
    shape = (len(items), k, enc.input_ids.shape[1])
    inputs = {"input_ids": enc.input_ids.view(shape), "token_type_ids": enc.token_type_ids.view(shape),
              "attention_mask": enc.attention_mask.view(shape)}
    return inputs, torch.tensor([it.label for it in items], dtype=torch.long)
