"""The Figure 4 tasks built from the embedded corpus: each construction's properties, no leakage,
the file formats, first-sub-token labels and the pair/choice encoders."""
import math
import re

import pytest
import torch
from transformers import BertTokenizerFast

from bertrepro.data import TOPICS, load_corpus, split_sentences
from bertrepro.finetune.analogs import (NAME_TAGS, TASKS, ChoiceItem, PairItem, SpanItem, TagItem, align_first_subtoken,
                                        build_task, encode_choices, encode_pairs, name_tags, ner_task, qnli_task,
                                        word_tags, sentence_words, squad_task, swag_task, task_articles,
                                        title_pattern, title_starts)
from bertrepro.finetune.formats import read_conll, read_squad_json, write_conll, write_squad_json
from bertrepro.pretrain.data import _load_splits
from bertrepro.tokenization import WordPieceTokenizer, bert_uncased_vocab_path


@pytest.fixture(scope="module")
def tasks():
    return {name: build_task(name) for name in TASKS}


@pytest.fixture(scope="module")
def articles():
    arts = task_articles()
    return {s: {a.title: a for a in arts[s]} for s in arts}


def _items(task):
    return [(s, it) for s in ("train", "dev", "test") for it in task.split(s)]


def test_article_splits_follow_the_corpus():
    corpus = load_corpus("wiki-vital")
    arts = task_articles()
    train_titles = {a.title for a in arts["train"]}
    dev_titles, test_titles = {a.title for a in arts["dev"]}, {a.title for a in arts["test"]}
    assert train_titles == {t for t, tp in zip(corpus["validation"]["title"], corpus["validation"]["topic"])
                            if tp in TOPICS}
    assert dev_titles | test_titles == {t for t, tp in zip(corpus["test"]["title"], corpus["test"]["topic"])
                                        if tp in TOPICS}
    assert not dev_titles & test_titles
    for topic in TOPICS:  # half of each topic's held-out articles go to dev
        n_dev = sum(a.topic == topic for a in arts["dev"])
        n_test = sum(a.topic == topic for a in arts["test"])
        assert abs(n_dev - n_test) <= 1


def test_title_starts_equals_the_regex(articles):
    cases = [("Paris", "Parisian Paris, paris. PARIS"), ("C++", "C++ and C+++"), ("Mary", "Mary-Anne Mary")]
    cases += [(a.title, s) for arts in articles.values() for a in arts.values() for s in a.sentences[:2]]
    for title, text in cases:
        assert title_starts(title, text) == [m.start() for m in title_pattern(title).finditer(text)]


@pytest.mark.parametrize("name", ["squad11", "squad20"])
def test_span_items_answer_is_the_title_once(tasks, articles, name):
    task = tasks[name]
    for split, it in _items(task):
        assert isinstance(it, SpanItem)
        art = articles[split][it.title]
        assert it.question == art.description
        assert not title_starts(it.title, it.question)
        sentences = [a.sentences[0] for a in articles[split].values() if a.sentences[0] in it.context]
        assert len(sentences) >= task.info["k"]  # the passage is k lead sentences of the split's articles
        if it.answers:
            (ans,) = it.answers
            start = ans["answer_start"]
            assert it.context[start: start + len(ans["text"])] == ans["text"]
            assert ans["text"].lower() == it.title.lower()
            assert title_starts(it.title, it.context) == [start]  # the title nowhere else
            assert art.sentences[0] in it.context
        else:
            assert name == "squad20"
            assert not title_starts(it.title, it.context)
            assert art.sentences[0] not in it.context


def test_squad20_leaves_out_about_a_third(tasks):
    for split in ("train", "dev", "test"):
        items = tasks["squad20"].split(split)
        n, share = len(items), sum(not it.answers for it in items) / len(items)
        assert n >= 300
        assert abs(share - 1 / 3) < 3 * math.sqrt(2 / 9 / n), (split, share)
    assert all(it.answers for it in tasks["squad11"].train)


def test_qnli_is_balanced_and_labels_come_from_the_articles(tasks, articles):
    task = tasks["qnli"]
    for split in ("train", "dev", "test"):
        labels = [it.label for it in task.split(split)]
        assert abs(sum(labels) - (len(labels) - sum(labels))) <= 1
    for split, it in _items(task):
        assert isinstance(it, PairItem)
        art = articles[split][it.title]
        assert it.a == art.description
        if it.label == 1:
            assert it.b == art.sentences[0]
        else:
            owners = [a for a in articles[split].values() if a.sentences[0] == it.b]
            assert owners and all(o.title != it.title and o.topic == art.topic for o in owners)


def test_qnli_overlap_negatives_share_more_words():
    def shared(it):
        return len(set(re.findall(r"\w+", it.a.lower())) & set(re.findall(r"\w+", it.b.lower())))

    plain, hard = qnli_task(max_items=200), qnli_task(max_items=200, negatives="overlap")
    neg = [sum(shared(it) for it in t.dev if it.label == 0) for t in (plain, hard)]
    assert neg[1] > neg[0]
    with pytest.raises(ValueError, match="negatives"):
        qnli_task(negatives="hardest")


def test_name_tags_on_worked_sentences():
    words = sentence_words("Isaac Newton was born in Woolsthorpe, England, and studied at Trinity College.")
    assert words[:6] == ["Isaac", "Newton", "was", "born", "in", "Woolsthorpe"]
    assert name_tags(words) == ["B-NAME", "I-NAME", "O", "O", "O", "B-NAME", "O", "B-NAME", "O", "O", "O", "O",
                                "B-NAME", "I-NAME", "O"]
    # The opener "The" stays O; "St. Louis" and "U.S." are one name each; a lone first word is O.
    assert name_tags(sentence_words("The city of St. Louis is in the U.S. state")) == \
        ["O", "O", "O", "B-NAME", "I-NAME", "I-NAME", "O", "O", "O", "B-NAME", "I-NAME", "I-NAME", "O", "O"]
    assert name_tags(["Newton", "was", "English"]) == ["O", "O", "B-NAME"]
    assert name_tags(['"', "The", "Sentinel", '"', "is", "a", "story"]) == ["O", "O", "B-NAME", "O", "O", "O", "O"]


def test_ner_items_are_the_sentences_tagged(tasks, articles):
    task = tasks["ner"]
    for split, it in _items(task):
        assert isinstance(it, TagItem) and set(it.tags) <= set(NAME_TAGS)
        assert it.tags == name_tags(it.words)
        assert "".join(it.words) in {"".join(s.split()) for s in articles[split][it.title].sentences}
    assert sum(t != "O" for it in task.train for t in it.tags) > 0.05 * sum(len(it.tags) for it in task.train)


def test_swag_true_ending_follows_and_distractors_come_from_the_topic(tasks, articles):
    task = tasks["swag"]
    positions = []
    for split, it in _items(task):
        assert isinstance(it, ChoiceItem) and len(it.endings) == 4 == len(set(it.endings))
        art = articles[split][it.title]
        p = art.sentences.index(it.context)
        assert it.endings[it.label] == art.sentences[p + 1] and it.sources[it.label] == it.title
        for k, (ending, source) in enumerate(zip(it.endings, it.sources)):
            if k != it.label:
                other = articles[split][source]  # from the same split
                assert source != it.title and other.topic == art.topic
                assert ending in other.sentences[1:]  # never a lead sentence
        positions.append(it.label)
    counts = torch.bincount(torch.tensor(positions), minlength=4).double() / len(positions)
    assert (counts - 0.25).abs().max() < 0.03


def _item_texts(name, it):
    """The item's article text (descriptions such as "Species of fish" are shared by many articles)."""
    if name in ("squad11", "squad20"):
        return [it.context]
    if name == "qnli":
        return [it.b]
    if name == "ner":
        return [" ".join(it.words)]
    return [it.context, *it.endings]


def test_no_leakage_into_pretraining_or_training(tasks):
    """No dev/test item comes from an article pre-training or training saw. A handful of sentences
    occur verbatim in two different articles of the corpus ("The team with the most points at the end
    of the game wins."); those are the only held-out sentences found in pre-training's documents."""
    _, pretrain_docs, _ = _load_splits("wiki-vital")  # what chapter 09's pre-training reads
    pretrain_sentences = {s for d in pretrain_docs for s in d}
    corpus = load_corpus("wiki-vital")
    pretrain_titles = set(corpus["train"]["title"])
    held_out = [a for s in ("dev", "test") for a in task_articles()[s]]
    assert {a.title for a in held_out}.isdisjoint(pretrain_titles)
    shared = {s for a in held_out for s in a.sentences} & pretrain_sentences
    assert len(shared) <= 0.005 * sum(len(a.sentences) for a in held_out)
    for name, task in tasks.items():
        train_titles = {it.title for it in task.train}
        train_texts = {t for it in task.train for t in _item_texts(name, it)}
        assert {it.title for it in task.dev}.isdisjoint({it.title for it in task.test})
        for split in ("dev", "test"):
            for it in task.split(split):
                assert it.title not in pretrain_titles and it.title not in train_titles
                for source in getattr(it, "sources", []):
                    assert source not in pretrain_titles and source not in train_titles
                texts = _item_texts(name, it)
                assert not set(texts) & train_texts
                if name in ("swag", "qnli"):
                    assert set(texts) & pretrain_sentences <= shared


def test_tasks_are_seeded_and_capped():
    a, b, c = (squad_task("2.0", seed=s, max_items=50) for s in (0, 0, 1))
    assert a.train == b.train and a.test == b.test
    assert a.train != c.train
    for name in TASKS:
        task = build_task(name, max_items=20)
        assert all(0 < n <= 20 for n in task.sizes().values()), (name, task.sizes())
    with pytest.raises(ValueError, match="unknown task"):
        build_task("squad30")
    with pytest.raises(ValueError, match="max_items"):
        build_task("ner", max_items=0)


def test_squad_json_round_trip_and_bad_answer(tmp_path, tasks):
    items = tasks["squad20"].dev[:30]
    path = write_squad_json(items, tmp_path / "dev.json")
    assert read_squad_json(path) == items
    v11 = write_squad_json(tasks["squad11"].dev[:5], tmp_path / "v11.json")
    assert '"version": "v1.1"' in v11.read_text() and "is_impossible" not in v11.read_text()
    bad = SpanItem("q1", "who?", "Alice met Bob.", [{"text": "Bob", "answer_start": 0}], "Bob")
    write_squad_json([bad], tmp_path / "bad.json")
    with pytest.raises(ValueError, match="'q1'.*not in its context"):
        read_squad_json(tmp_path / "bad.json")
    (tmp_path / "notsquad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="'data'"):
        read_squad_json(tmp_path / "notsquad.json")


def test_conll_round_trip(tmp_path, tasks):
    items = tasks["ner"].dev[:20]
    back = read_conll(write_conll(items, tmp_path / "dev.conll"))
    assert [(b.words, b.tags) for b in back] == [(it.words, it.tags) for it in items]
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        write_conll([TagItem("x", ["a", "b"], ["O"])], tmp_path / "bad.conll")


@pytest.fixture(scope="module")
def hf_tokenizer():
    tok = BertTokenizerFast(vocab=str(bert_uncased_vocab_path()), do_lower_case=True)
    assert len(tok) == 30522  # the whole vocab.txt (transformers 5 ignores vocab_file=)
    return tok


def test_first_subtoken_labels_match_word_ids(hf_tokenizer):
    words = [["Isaac", "Newton", "studied", "at", "Woolsthorpe", "-", "by", "-", "Colsterworth", "."],
             ["Ytterbium", "is", "a", "lanthanide"]]
    tags = [name_tags(w) for w in words]
    ids, mask, types, labels, word_index = align_first_subtoken(hf_tokenizer, words, tags, NAME_TAGS, 24)
    enc = hf_tokenizer(words, is_split_into_words=True, truncation=True, max_length=24, padding="max_length")
    assert ids.tolist() == enc["input_ids"] and mask.tolist() == enc["attention_mask"]
    assert not types.any()
    assert len(hf_tokenizer.tokenize("Woolsthorpe")) > 1 and len(hf_tokenizer.tokenize("Ytterbium")) > 1
    for b in range(2):  # the reference: a loop over transformers' word_ids
        previous = None
        for t, w in enumerate(enc.word_ids(b)):
            want = -100 if w is None or w == previous else NAME_TAGS.index(tags[b][w])
            assert labels[b, t] == want and word_index[b, t] == (-1 if w is None else w)
            previous = w
    assert (labels != -100).sum(1).tolist() == [len(w) for w in words]  # one label per word


def test_word_tags_read_the_first_subtoken(hf_tokenizer):
    words = [["Woolsthorpe", "is", "in", "England"], ["Ytterbium"] * 12]
    *_, labels, word_index = align_first_subtoken(hf_tokenizer, words, [name_tags(w) for w in words], NAME_TAGS, 10)
    predicted = labels.clamp(min=0)  # gold ids on first pieces, 0 elsewhere
    predicted[word_index < 0] = 2  # specials and padding never count
    tags = word_tags(predicted, word_index, [len(w) for w in words], NAME_TAGS)
    assert tags[0] == name_tags(words[0])
    kept = int(word_index[1].max()) + 1  # the words that fit in 10 tokens; the rest are "O"
    assert 0 < kept < 12 and tags[1] == name_tags(words[1])[:kept] + ["O"] * (12 - kept)
    later = (word_index >= 0) & (labels == -100)  # later pieces: what they predict is ignored
    assert later.any()
    predicted[later] = 1
    assert word_tags(predicted, word_index, [len(w) for w in words], NAME_TAGS) == tags


def test_first_subtoken_truncation_tokenizers_and_errors(hf_tokenizer):
    words = [["Isaac", "Newton"] * 20]
    out = align_first_subtoken(hf_tokenizer, words, [name_tags(words[0])], NAME_TAGS, 16)
    assert out[0].shape == (1, 16) and (out[3] != -100).sum() < 40  # truncated words get no label
    ours = WordPieceTokenizer.from_vocab(bert_uncased_vocab_path())
    again = align_first_subtoken(ours, words, [name_tags(words[0])], {t: i for i, t in enumerate(NAME_TAGS)}, 16)
    assert all(torch.equal(x, y) for x, y in zip(out, again))
    unlabeled = align_first_subtoken(hf_tokenizer, words, None, NAME_TAGS, 16)[3]
    assert (unlabeled == -100).all()
    with pytest.raises(ValueError, match="missing from label_ids"):
        align_first_subtoken(hf_tokenizer, [["Paris"]], [["B-LOC"]], NAME_TAGS, 8)
    with pytest.raises(ValueError, match="1 words but 2 tags"):
        align_first_subtoken(hf_tokenizer, [["Paris"]], [["O", "O"]], NAME_TAGS, 8)


def test_pair_and_choice_encoders(hf_tokenizer):
    pairs = [PairItem("p0", "French city", "Paris is the capital of France.", 1),
             PairItem("p1", "a planet", "Ytterbium is a lanthanide.", 0)]
    enc, labels = encode_pairs(hf_tokenizer, pairs, 20)
    ref = hf_tokenizer(["French city", "a planet"], [p.b for p in pairs], padding="max_length", max_length=20,
                       truncation=True)
    assert enc.input_ids.tolist() == ref["input_ids"] and enc.token_type_ids.tolist() == ref["token_type_ids"]
    assert labels.tolist() == [1, 0]
    items = [ChoiceItem("c0", "Paris is a city.", ["It is in France.", "Ytterbium is a metal.", "A cat.", "B."], 0),
             ChoiceItem("c1", "Mars is red.", ["W.", "X.", "It has two moons.", "Z."], 2)]
    inputs, labels = encode_choices(hf_tokenizer, items, 16)
    assert inputs["input_ids"].shape == (2, 4, 16) and labels.tolist() == [0, 2]
    for n, it in enumerate(items):
        row, _ = encode_pairs(hf_tokenizer, [PairItem("", it.context, e, 0) for e in it.endings], 16)
        assert torch.equal(inputs["input_ids"][n], row.input_ids)
        assert torch.equal(inputs["token_type_ids"][n], row.token_type_ids)
    with pytest.raises(ValueError, match="endings"):
        encode_choices(hf_tokenizer, [items[0], ChoiceItem("c2", "x", ["a", "b"], 0)], 16)


# ----------------------------------------------------------------------------- the harder constructions


@pytest.fixture(scope="module")
def hard():
    return {"qnli": qnli_task(negatives="overlap"), "swag": swag_task(distractors="overlap"),
            "squad11": squad_task("1.1", companions="overlap", k=3), "ner": ner_task(max_per_article=2)}


def test_hard_qnli_is_balanced_leak_free_and_beats_the_word_rule(hard, articles):
    from bertrepro.finetune.analogs import content_words
    from bertrepro.finetune.baselines import pair_overlap

    task = hard["qnli"]
    for split in ("train", "dev", "test"):
        labels = [it.label for it in task.split(split)]
        assert abs(2 * sum(labels) - len(labels)) <= 1  # the classes differ by at most one
        titles = {a.topic for a in articles[split].values()}
        for it in task.split(split):
            art = articles[split][it.title]  # every item from its own split's articles
            if it.label == 1:
                assert it.b in art.sentences[:2]
            else:  # a sentence of another article of the same topic, never the described article's own
                owners = [a for a in articles[split].values() if it.b in a.sentences]
                assert owners and all(o.title != it.title and o.topic == art.topic for o in owners)
        assert titles
    # the negatives share more of the description's content words than random ones do
    plain = qnli_task()
    shared = [sum(len(content_words(it.a) & content_words(it.b)) for it in t.test if it.label == 0)
              for t in (plain, task)]
    assert shared[1] > 1.5 * shared[0]
    labels = torch.tensor([it.label for it in task.test])
    assert float((pair_overlap(task.train, task.test) == labels).double().mean()) <= 0.70


def test_hard_swag_matches_the_true_endings_overlap(hard, articles):
    from bertrepro.finetune.analogs import content_words
    from bertrepro.finetune.baselines import choice_overlap

    task = hard["swag"]
    gaps, positions = [], []
    for split, it in _items(task):
        art = articles[split][it.title]
        assert it.endings[it.label] == art.sentences[art.sentences.index(it.context) + 1]
        for k, (ending, source) in enumerate(zip(it.endings, it.sources)):
            if k != it.label:
                other = articles[split][source]
                assert source != it.title and other.topic == art.topic and ending in other.sentences[1:]
        ctx = content_words(it.context)
        true = len(ctx & content_words(it.endings[it.label]))
        gaps += [len(ctx & content_words(e)) - true for k, e in enumerate(it.endings) if k != it.label]
        positions.append(it.label)
    gaps = torch.tensor(gaps, dtype=torch.float64)
    assert gaps.abs().mean() < 0.5 and (gaps >= 0).double().mean() > 0.7  # as close as the true ending, or closer
    counts = torch.bincount(torch.tensor(positions), minlength=4).double() / len(positions)
    assert (counts - 0.25).abs().max() < 0.03  # the true ending's position is balanced
    labels = torch.tensor([it.label for it in task.test])
    assert float((choice_overlap(task.test) == labels).double().mean()) <= 0.40
    other = swag_task(pool="other", max_items=200)
    for split, it in _items(other):
        topics = {articles[split][s].topic for k, s in enumerate(it.sources) if k != it.label}
        assert articles[split][it.title].topic not in topics


def test_hard_squad_companions_share_the_questions_words(hard):
    from bertrepro.finetune.analogs import content_words

    plain = squad_task("1.1", k=3)

    def mean_shared(task):
        vals = [len(content_words(it.question) & content_words(s)) for it in task.test
                for s in split_sentences(it.context) if not it.answers or it.answers[0]["text"] not in s]
        return sum(vals) / len(vals)

    assert mean_shared(hard["squad11"]) > mean_shared(plain)
    for it in hard["squad11"].test:
        assert len(it.answers) == 1 and it.context[it.answers[0]["answer_start"]:].startswith(it.answers[0]["text"])


def test_ner_keeps_at_most_two_sentences_an_article(hard):
    from collections import Counter

    for split in ("train", "dev", "test"):
        per_article = Counter(it.title for it in hard["ner"].split(split))
        assert max(per_article.values()) <= 2
    with pytest.raises(ValueError, match="max_per_article"):
        ner_task(max_per_article=0)
