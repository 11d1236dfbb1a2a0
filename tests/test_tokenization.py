"""WordPiece tokenization against transformers' fast BERT tokenizer with the same vocab.txt.

transformers 5's ``BertTokenizerFast(vocab_file=...)`` ignores the file and builds a 5-piece
vocabulary; ``vocab=<path>`` loads it. Every oracle below asserts its size first.
"""
import random
import unicodedata

import pytest
import torch
from transformers import BertTokenizerFast

from bertrepro.data import load_corpus
from bertrepro.tokenization import (
    SPECIAL_TOKENS, WordPieceTokenizer, bert_uncased_vocab_path, load_vocab, train_wordpiece, truncate_seq_pair,
)


def _oracle(path) -> BertTokenizerFast:
    hf = BertTokenizerFast(vocab=str(path), do_lower_case=True)
    n_lines = sum(1 for _ in open(path, encoding="utf-8"))
    assert len(hf) == n_lines, f"transformers built {len(hf)} pieces from a {n_lines}-line vocab.txt"
    return hf


@pytest.fixture(scope="module")
def vocab_path():
    return bert_uncased_vocab_path()


@pytest.fixture(scope="module")
def ours(vocab_path):
    return WordPieceTokenizer.from_vocab(vocab_path)


@pytest.fixture(scope="module")
def hf(vocab_path):
    return _oracle(vocab_path)


@pytest.fixture(scope="module")
def test_sentences():
    docs = load_corpus()["test"]["sentences"]
    sents = [s for d in docs for s in d]
    return random.Random(0).sample(sents, 400)


ADVERSARIAL = [
    "café naïve Ångström façade résumé CAFÉ", "Ǆ ǅ ǆ İstanbul straße ﬁne Σίσυφος", "e\u0301 \u0301\u0301 x",
    "Hello, world! (test) [x] {y} <z> a-b a_b a/b a\\b \"q\" 'q' `q` ~ ^ $ % & * + = | @ #",
    "¿Qué? ¡Sí! «guillemets» „quotes“ — en–dash …", "3.14 1,000 10^9 1e-5 $5.00 50% 2001: 24/7",
    "我今天去面试", "東京タワー 한국어 ภาษาไทย हिन्दी العربية", "I ❤️ NY 😀👍🏽 🇫🇷 ☃",
    "a\x00b\x01c\x7fd\u200be\ufeff f\ufffdg", "tab\tnew\nline\rcr \x0b\x0c \x1c\x1d\x1e\x1f x\x85y",
    "\u00a0nbsp\u2009thin\u3000ideo\u2028ls\u2029ps", "a" * 100, "a" * 101, "supercalifragilistic" * 6 + " ok",
    "x" * 150 + " ok", "Hello世界! naïve café—3.14 mixed", "the [MASK] is [UNK] [CLS]x[SEP] a[MASK]b [mask] [PAD]",
    "", "   ", "\n\t", "\ue000private \U0010fffd", "Ⅻ ⑤ ² ½ ＡＢＣ ｈｅｌｌｏ", "don't won't o'clock rock'n'roll",
    "https://example.com/a?b=c&d=e user@mail.org", "ΟΔΥΣΣΕΥΣ ΑΣ",
]


def test_published_examples(ours, hf):
    enc = ours.encode("my dog is hairy")
    assert enc["input_ids"] == [101, 2026, 3899, 2003, 15892, 102]
    assert enc["input_ids"] == hf("my dog is hairy")["input_ids"]
    pair = ours.encode("my dog is cute", "he likes playing")
    assert pair["input_ids"] == [101, 2026, 3899, 2003, 10140, 102, 2002, 7777, 2652, 102]
    assert pair["token_type_ids"] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    ref = hf("my dog is cute", "he likes playing")
    assert pair["input_ids"] == ref["input_ids"] and pair["token_type_ids"] == ref["token_type_ids"]
    assert pair["special_tokens_mask"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_special_ids_come_from_the_vocab(ours, tmp_path):
    assert (ours.pad_token_id, ours.unk_token_id, ours.cls_token_id, ours.sep_token_id, ours.mask_token_id) == \
        (0, 100, 101, 102, 103)
    small = tmp_path / "vocab.txt"
    small.write_text("\n".join([*SPECIAL_TOKENS, "a", "##b"]) + "\n")
    tok = WordPieceTokenizer.from_vocab(small)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert tok.tokenize("ab abb b") == ["a", "##b", "a", "##b", "##b", "[UNK]"]


def test_held_out_sentences_match_transformers(ours, hf, test_sentences):
    ids = [ours.token_ids(s) for s in test_sentences]
    ref = hf(test_sentences, add_special_tokens=False)["input_ids"]
    mismatched = [s for s, a, b in zip(test_sentences, ids, ref) if a != b]
    assert not mismatched, f"{len(mismatched)} of {len(test_sentences)} differ, e.g. {mismatched[:3]}"
    assert sum(map(len, ids)) > 5000


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_adversarial_matches_transformers(ours, hf, text):
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours.encode(text)["input_ids"] == hf(text)["input_ids"]


def test_behaviour_on_adversarial_cases(ours):
    assert ours.basic.tokenize("Ångström café naïve") == ["angstrom", "cafe", "naive"]
    assert ours.tokenize("café naïve") == ["cafe", "naive"]
    assert ours.tokenize("3.14 1,000") == ["3", ".", "14", "1", ",", "000"]
    assert ours.basic.tokenize("我今天去面试") == list("我今天去面试")  # every ideograph its own word
    assert ours.tokenize("a" * 101) == ["[UNK]"] and ours.tokenize("a" * 100) != ["[UNK]"]
    assert ours.tokenize("a\x00b\u200bc") == ours.tokenize("abc")  # controls vanish
    assert ours.tokenize("$^`") == ["$", "^", "`"]  # ASCII non-alphanumerics are punctuation
    assert ours.tokenize("the [MASK] sat") == ["the", "[MASK]", "sat"]


def test_pairs_match_transformers(ours, hf, test_sentences):
    pairs = list(zip(test_sentences[0::2], test_sentences[1::2]))[:100]
    for a, b in pairs:
        mine, ref = ours.encode(a, b), hf(a, b)
        assert mine["input_ids"] == ref["input_ids"] and mine["token_type_ids"] == ref["token_type_ids"]
    # Truncation agrees except on odd budgets with equal lengths, where the original trims B
    # and transformers trims A (module docstring).
    for a, b in pairs[:50]:
        for max_length in (16, 24, 33):
            mine = ours.encode(a, b, max_length=max_length)
            ref = hf(a, b, max_length=max_length, truncation="longest_first")
            la, lb = len(ours.token_ids(a)), len(ours.token_ids(b))
            budget = max_length - 3
            tie = la + lb > budget and min(la, lb) > budget // 2 and budget % 2 == 1
            if not tie:
                assert mine["input_ids"] == ref["input_ids"], (a, b, max_length)
            assert len(mine["input_ids"]) == min(max_length, la + lb + 3)


def test_equal_length_tie_trims_b_like_the_original(ours):
    enc = ours.encode("a b c d e", "f g h i j", max_length=10)  # 7 content tokens for 5 + 5
    assert enc["token_type_ids"].count(0) - 2 == 4 and enc["token_type_ids"].count(1) - 1 == 3


def test_unicode_sweep_matches_transformers(ours, hf):
    """Every character assigned in Unicode 3.2 whose category is unchanged since tokenizes identically.

    Later characters follow the Unicode tables of each library (Python's unicodedata vs the ones
    compiled into tokenizers) and may differ; see the tokenization module docstring.
    """
    chars = [chr(cp) for cp in range(0x80, 0x30000)
             if unicodedata.ucd_3_2_0.category(chr(cp)) not in ("Cn", "Co", "Cs")
             and unicodedata.ucd_3_2_0.category(chr(cp)) == unicodedata.category(chr(cp))]
    assert len(chars) > 90_000
    bad = []
    for i in range(0, len(chars), 512):
        chunk = chars[i: i + 512]
        text = " ".join(f"a{c}b" for c in chunk)
        if ours.tokenize(text) != hf.tokenize(text):
            bad += [c for c in chunk if ours.tokenize(f"a{c}b") != hf.tokenize(f"a{c}b")]
    assert not bad, [hex(ord(c)) for c in bad[:20]]


def test_known_cjk_range_difference(ours, hf):
    # U+2B820..U+2B91F are CJK ideographs; the original splits them, tokenizers starts at U+2B920.
    assert ours.basic.tokenize("a\U0002b820b") == ["a", "\U0002b820", "b"]
    assert ours.basic.tokenize("a\U0002b920b") == ["a", "\U0002b920", "b"]
    assert hf.tokenize("a\U0002b920b") == ["a", "[UNK]", "b"]


def test_fast_path_agrees_with_python_path(ours, test_sentences):
    docs = [test_sentences[i: i + 7] for i in range(0, len(test_sentences), 7)] + [ADVERSARIAL]
    fast = ours.encode_corpus(docs, backend="fast")
    slow = [[ours.token_ids(s) for s in d] for d in docs]
    assert fast == slow
    assert ours.encode_corpus(docs) == slow


def test_round_trip_and_errors(ours, tmp_path):
    ids = ours.token_ids("the quick brown fox")
    assert ours.convert_ids_to_tokens(ids) == ours.tokenize("the quick brown fox")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ours.convert_tokens_to_ids(["definitely-not-a-piece"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.convert_ids_to_tokens([len(ours)])
    with pytest.raises(ValueError, match="truncation"):
        ours.encode("a " * 50, max_length=10, truncation=False)
    bad = tmp_path / "v.txt"
    bad.write_text("[PAD]\n[UNK]\n")
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        WordPieceTokenizer.from_vocab(bad)
    dup = tmp_path / "d.txt"
    dup.write_text("a\na\n")
    with pytest.raises(ValueError, match="twice"):
        load_vocab(dup)
    with pytest.raises(FileNotFoundError):
        load_vocab(tmp_path / "missing.txt")


def test_encode_batch_pads_and_marks_specials(ours):
    out = ours.encode_batch(["my dog is hairy", "hi"], ["he likes playing", "there"])
    assert out["input_ids"].shape == (2, 10)
    assert out["input_ids"][0].tolist() == ours.encode("my dog is hairy", "he likes playing")["input_ids"]
    row1 = ours.encode("hi", "there")["input_ids"]
    assert out["input_ids"][1, : len(row1)].tolist() == row1
    assert (out["input_ids"][1, len(row1):] == ours.pad_token_id).all()
    assert out["attention_mask"].sum(1).tolist() == [10, len(row1)]
    torch.testing.assert_close(out["special_tokens_mask"], ours.special_tokens_mask(out["input_ids"]))
    fixed = ours.encode_batch(["hi"], max_length=8, padding="max_length")
    assert fixed["input_ids"].shape == (1, 8)


def test_word_start_mask(ours):
    ids = torch.tensor(ours.convert_tokens_to_ids(["[CLS]", "play", "##ing", "##s", "dog", "[SEP]"]))
    assert ours.word_start_mask(ids).tolist() == [True, True, False, False, True, True]


class _BackRng:
    """random.Random stand-in whose draws always say "trim the back"."""

    def random(self):
        return 0.9


def _reference_truncate(a, b, max_num_tokens, rng):
    """create_pretraining_data.py's loop, written out."""
    while len(a) + len(b) > max_num_tokens:
        trunc = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def test_truncate_seq_pair_matches_the_original_loop():
    gen = random.Random(0)
    for _ in range(500):
        la, lb, m = gen.randint(1, 40), gen.randint(1, 40), gen.randint(2, 60)
        a, b = list(range(la)), list(range(100, 100 + lb))
        ra, rb = list(a), list(b)
        counts = truncate_seq_pair(a, b, m)  # no rng: from the back
        _reference_truncate(ra, rb, m, _BackRng())
        assert (a, b) == (ra, rb)
        assert counts == (0, la - len(a), 0, lb - len(b))
        seed = gen.random()
        a, b, ra, rb = list(range(la)), list(range(100, 100 + lb)), list(range(la)), list(range(100, 100 + lb))
        af, ab, bf, bb = truncate_seq_pair(a, b, m, random.Random(seed))
        _reference_truncate(ra, rb, m, random.Random(seed))
        assert (a, b) == (ra, rb)
        assert a == list(range(af, la - ab)) and b == list(range(100 + bf, 100 + lb - bb))
        assert len(a) + len(b) <= m


def test_train_wordpiece_is_deterministic_and_loads(tmp_path):
    sents = [s for d in load_corpus(max_documents=300)["train"]["sentences"] for s in d]
    p1 = train_wordpiece(sents, 1000, tmp_path / "a" / "vocab.txt")
    p2 = train_wordpiece(iter(sents), 1000, tmp_path / "b" / "vocab.txt")
    assert p1.read_bytes() == p2.read_bytes()
    pieces = p1.read_text(encoding="utf-8").splitlines()
    assert tuple(pieces[:5]) == SPECIAL_TOKENS and len(pieces) == len(set(pieces)) and 500 < len(pieces) <= 1000
    ours = WordPieceTokenizer.from_vocab(p1)
    hf = _oracle(p1)
    ids = [ours.token_ids(s) for s in sents[:200]]
    assert ids == hf(sents[:200], add_special_tokens=False)["input_ids"]
    assert ours.encode("hello", "world")["input_ids"][0] == 2  # [CLS] is id 2 in a trained vocabulary
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece(sents, 5, tmp_path / "c" / "vocab.txt")
    with pytest.raises(ValueError, match="no text"):
        train_wordpiece([], 100, tmp_path / "d" / "vocab.txt")
