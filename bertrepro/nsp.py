r"""Next-sentence-prediction pairs, BERT §3.1 "Task #2: Next Sentence Prediction (NSP)" and App. A.1.

    "when choosing the sentences A and B for each pre-training example, 50% of the time B is the
    actual next sentence that follows A (labeled as IsNext), and 50% of the time it is a random
    sentence from the corpus (labeled as NotNext)."

The reference is ``create_instances_from_document`` in google-research/bert
``create_pretraining_data.py``. A document's sentences are gathered into a chunk until the chunk
reaches a target length (``max_seq_length - 3``, or with probability ``short_seq_prob`` a random
shorter one, so the model also sees short inputs). A random number of the chunk's first sentences
becomes A. With probability 1/2 B is the rest of the chunk (IsNext); otherwise B is text from a
random *other* document, starting at a random sentence, and the chunk's unused sentences go back
to be used by the next chunk. Finally :func:`~bertrepro.tokenization.truncate_seq_pair` trims the
longer segment, from the front or the back at random, until the pair fits.

**The 50/50 problem, and ``balanced``.** In the original a chunk of one sentence cannot be split
into A and B, so it *always* gets a random B. Wikipedia documents are long and this hardly
matters; the embedded corpus's articles average 3.6 sentences and a whole article often fits one
chunk, so about two pairs in three come out NotNext (measured in tests/test_nsp.py). The paper
defines a "sentence" as "an arbitrary span of contiguous text, rather than an actual linguistic
sentence" (§3), so with ``balanced=True`` (our default) a one-sentence chunk that draws IsNext is
cut at a token boundary -- preferably not inside a word -- into A and B. Labels are then 50/50
again. ``balanced=False`` reproduces the original, random draw for random draw.

**Lengths give the original's label away, and ``balanced`` fixes that too.** The original fills a
random B up to the chunk's target length, while a true B ends where its chunk (often its whole
article) ends. On short articles NotNext pairs are therefore longer, and a classifier that sees
only the lengths of A and B -- no words -- beats chance (:func:`length_baseline`: 53 % balanced
accuracy at 64 tokens, 56 % at 128, on the embedded corpus). Cutting lone sentences for IsNext
alone makes it worse: their Bs are short, and lengths then predicted 64 % of labels at 64 tokens.
A model can learn that shortcut instead of whether B follows A. Balanced mode builds the true B first, then, for NotNext, replaces it by a window of
exactly the same number of tokens from another document; like a true B, the window ends where a
sentence ends and does not start inside a word. The lengths of A and B then have the same
distribution under both labels (a two-sample test in tests/test_nsp.py) and the length-only
baseline is at chance. Only the text itself tells IsNext from NotNext.

The same rule tilts the original even on long documents: the short target length is drawn once
per document, and when it is below a typical sentence's length every chunk of that document is a
single sentence, hence NotNext. On synthetic documents of 150-250 sentences this alone moves the
share from about 50 % to about 53 % (tests/test_nsp.py).

One deliberate departure in both modes: the original tries 10 times to draw a document other
than A's and then uses whatever it drew, so with few documents a "random" B can come from A's
own document (a bug several tutorials shipped). After 10 failed tries we draw uniformly among the
other documents instead; A's document is never used for NotNext.

Labels follow the original and ``transformers``: ``IS_NEXT = 0``, ``NOT_NEXT = 1`` ("B is random").

Shape legend: N instances, T = ``max_seq_length``.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .model import IS_NEXT, NOT_NEXT
from .tokenization import truncate_seq_pair

__all__ = ["Instance", "create_instances_from_document", "create_instances",
           "pack_instances", "create_pretraining_examples", "length_baseline"]


@dataclass
class Instance:
    """One sentence pair before packing.

    Offsets are positions in the *flattened* document (its sentences' tokens concatenated), after
    truncation: ``tokens_a == flat(documents[a_doc])[a_span[0]:a_span[1]]`` and likewise for B.
    ``a_sentences``/``b_sentences`` are the half-open ranges of sentence indices the segments
    were drawn from (before truncation; a split sentence appears in both).
    """

    tokens_a: list
    tokens_b: list
    is_random_next: bool
    a_doc: int
    a_span: tuple[int, int]
    a_sentences: tuple[int, int]
    b_doc: int
    b_span: tuple[int, int]
    b_sentences: tuple[int, int]
    num_truncated: int  # tokens removed by truncate_seq_pair (both segments)

    @property
    def label(self) -> int:
        """``NOT_NEXT`` (1) when B is random, ``IS_NEXT`` (0) when B follows A."""
        return NOT_NEXT if self.is_random_next else IS_NEXT


def _offsets(document: Sequence[Sequence[Any]]) -> list[int]:
    """Start of every sentence in the flattened document, plus its total length."""
    out = [0]
    for s in document:
        out.append(out[-1] + len(s))
    return out


def _split_point(sentence: Sequence[Any], rng: random.Random, continuation: Any) -> int:
    """A random cut 1..len-1 of a one-sentence chunk, avoiding word-internal cuts when possible."""
    n = len(sentence)
    if continuation is not None:
        cuts = [j for j in range(1, n) if sentence[j] not in continuation]
        if cuts:
            return cuts[rng.randint(0, len(cuts) - 1)]
    return rng.randint(1, n - 1)


def _other_document(all_documents: Sequence, document_index: int, rng: random.Random) -> int:
    """The original's 10 tries for a different document, then a uniform draw among the others."""
    n = len(all_documents)
    for _ in range(10):
        j = rng.randint(0, n - 1)
        if j != document_index:
            return j
    j = rng.randint(0, n - 2)  # 10 misses (likely only with very few documents): never A's document
    return j + 1 if j >= document_index else j


def _rest_of_chunk(chunk: Sequence[Sequence[Any]], a_end: int, chunk_start: int, doc_offsets: Sequence[int],
                   document_index: int) -> tuple[list, int, int, tuple[int, int]]:
    """The true B of a chunk of two or more sentences: its sentences after A.

    Returns:
        ``(tokens, b_doc, start offset in the flattened document, (first, last + 1) sentence)``.
    """
    tokens = [t for sentence in chunk[a_end:] for t in sentence]
    return tokens, document_index, doc_offsets[chunk_start + a_end], (chunk_start + a_end, chunk_start + len(chunk))


def _random_window(all_documents: Sequence, offsets: Sequence[Sequence[int]] | None, document_index: int,
                   length: int, rng: random.Random, continuation: Any) -> tuple[int, int, tuple[int, int], list]:
    """A NotNext B for balanced mode: ``length`` tokens of another document that end a sentence.

    Like a true B, the window ends where a sentence of its document ends, and it does not start
    inside a word (when ``continuation`` is given). Up to 10 documents other than A's are tried for
    such a window; if none has one, the last one tried gives its longest run of whole sentences
    from its start (shorter than ``length`` only on corpora of very short documents).

    Returns:
        ``(b_doc, start offset in the flattened document, (first, last + 1) sentence, tokens)``.
    """
    for _ in range(10):
        b_doc = _other_document(all_documents, document_index, rng)
        document = all_documents[b_doc]
        doc_offsets = offsets[b_doc] if offsets is not None else _offsets(document)
        ends = [k for k in range(1, len(doc_offsets)) if doc_offsets[k] >= length]
        if continuation is not None:
            flat_at = _token_at(document, doc_offsets)
            ends = [k for k in ends if flat_at(doc_offsets[k] - length) not in continuation]
        if ends:
            end = ends[rng.randint(0, len(ends) - 1)]
            start = doc_offsets[end] - length
            first = bisect.bisect_right(doc_offsets, start) - 1
            tokens: list = []
            for k in range(first, end):
                tokens.extend(document[k])
            tokens = tokens[start - doc_offsets[first]:]
            return b_doc, start, (first, end), tokens
    tokens = []
    end = 0
    for k, sentence in enumerate(document):  # whole sentences from the start, at least one
        if k and len(tokens) + len(sentence) > length:
            break
        tokens.extend(sentence)
        end = k + 1
    return b_doc, 0, (0, end), tokens


def _token_at(document: Sequence[Sequence[Any]], doc_offsets: Sequence[int]):
    """``flat(document)[t]`` without flattening the document."""
    def at(t: int) -> Any:
        k = bisect.bisect_right(doc_offsets, t) - 1
        return document[k][t - doc_offsets[k]]
    return at


def create_instances_from_document(all_documents: Sequence[Sequence[Sequence[Any]]], document_index: int,
                                   max_seq_length: int, short_seq_prob: float, rng: random.Random, *,
                                   balanced: bool = True, continuation: Any = None,
                                   offsets: Sequence[Sequence[int]] | None = None) -> list[Instance]:
    """All sentence pairs of one document, as ``create_instances_from_document`` in the original.

    Args:
        all_documents: documents -> sentences -> tokens (ids or strings); every document and
            every sentence non-empty, at least two documents.
        document_index: the document to pair up.
        max_seq_length: the packed length; A and B share ``max_seq_length - 3`` tokens.
        short_seq_prob: probability of a random shorter target length in [2, max_seq_length - 3].
        rng: the only source of randomness.
        balanced: cut one-sentence chunks for IsNext and give a random B the true B's length (see
            the module docstring); False: the original.
        continuation: optional container of tokens that continue a word (``##`` pieces); the
            balanced cut avoids landing before one of them when it can.
        offsets: precomputed sentence offsets per document (:func:`create_instances` passes them).

    Returns:
        the instances in document order.
    """
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    doc_offsets = offsets[document_index] if offsets is not None else _offsets(document)
    chunker = _Chunker(all_documents, document_index, doc_offsets, offsets, target_seq_length, max_seq_length, rng,
                       balanced, continuation)

    instances: list[Instance] = []
    current_chunk: list[Sequence[Any]] = []
    current_length = 0
    chunk_start = 0  # sentence index of current_chunk[0]
    i = 0
    while i < len(document):
        segment = document[i]
        if not current_chunk:
            chunk_start = i
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                instance, unused = chunker.pair(current_chunk, chunk_start)
                instances.append(instance)
                i -= unused  # a NotNext pair's unused sentences go back
            current_chunk = []
            current_length = 0
        i += 1
    return instances


@dataclass
class _Chunker:
    """Cuts the chunks of one document into A/B pairs, drawing from ``rng`` in the original's order."""

    all_documents: Sequence[Sequence[Sequence[Any]]]
    document_index: int
    doc_offsets: Sequence[int]
    offsets: Sequence[Sequence[int]] | None
    target_seq_length: int
    max_seq_length: int
    rng: random.Random
    balanced: bool
    continuation: Any

    def pair(self, chunk: list[Sequence[Any]], chunk_start: int) -> tuple[Instance, int]:
        """One instance from ``chunk``, and how many of its sentences a NotNext pair leaves unused."""
        rng = self.rng
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a: list = [t for sentence in chunk[:a_end] for t in sentence]
        a_start_tok = self.doc_offsets[chunk_start]
        a_sentences = (chunk_start, chunk_start + a_end)
        if not self.balanced:  # the original, draw for draw
            is_random_next, b = self._original_b(chunk, a_end, chunk_start, len(tokens_a))
        elif len(chunk) == 1 and len(tokens_a) < 2:
            # A one-token chunk cannot be cut: NotNext, filled as in the original (rare).
            is_random_next = True
            b = self._random(self.target_seq_length - len(tokens_a))
        else:
            is_random_next, b = self._balanced_b(chunk, a_end, chunk_start, tokens_a, a_start_tok, a_sentences)
        tokens_b, b_doc, b_start_tok, b_sentences = b
        instance = self._instance(tokens_a, tokens_b, is_random_next, a_start_tok, a_sentences, b_doc, b_start_tok,
                                  b_sentences)
        return instance, (len(chunk) - a_end if is_random_next else 0)

    def _random(self, length: int) -> tuple[list, int, int, tuple[int, int]]:
        b_doc, b_start_tok, b_sentences, tokens_b = _random_window(
            self.all_documents, self.offsets, self.document_index, length, self.rng, self.continuation)
        return tokens_b, b_doc, b_start_tok, b_sentences

    def _original_b(self, chunk, a_end: int, chunk_start: int, len_a: int) -> tuple[bool, tuple]:
        rng = self.rng
        is_random_next = len(chunk) == 1 or rng.random() < 0.5
        if not is_random_next:
            return False, _rest_of_chunk(chunk, a_end, chunk_start, self.doc_offsets, self.document_index)
        target_b_length = self.target_seq_length - len_a
        b_doc = _other_document(self.all_documents, self.document_index, rng)
        random_document = self.all_documents[b_doc]
        random_start = rng.randint(0, len(random_document) - 1)
        tokens_b: list = []
        j = random_start
        for j in range(random_start, len(random_document)):
            tokens_b.extend(random_document[j])
            if len(tokens_b) >= target_b_length:
                break
        b_start_tok = (self.offsets[b_doc] if self.offsets is not None else _offsets(random_document))[random_start]
        return True, (tokens_b, b_doc, b_start_tok, (random_start, j + 1))

    def _balanced_b(self, chunk, a_end: int, chunk_start: int, tokens_a: list, a_start_tok: int,
                    a_sentences: tuple[int, int]) -> tuple[bool, tuple]:
        """Draw the label, build the true B, and for NotNext replace it by a random window of the same
        length, so that lengths say nothing about the label. Cuts ``tokens_a`` in place for a lone sentence."""
        is_random_next = self.rng.random() < 0.5
        if len(chunk) == 1:  # cut the lone sentence into A | B
            cut = _split_point(tokens_a, self.rng, self.continuation)
            b = (tokens_a[cut:], self.document_index, a_start_tok + cut, a_sentences)
            del tokens_a[cut:]
        else:
            b = _rest_of_chunk(chunk, a_end, chunk_start, self.doc_offsets, self.document_index)
        if is_random_next:
            b = self._random(len(b[0]))
        return is_random_next, b

    def _instance(self, tokens_a: list, tokens_b: list, is_random_next: bool, a_start_tok: int,
                  a_sentences: tuple[int, int], b_doc: int, b_start_tok: int, b_sentences: tuple[int, int]) -> Instance:
        a_front, a_back, b_front, b_back = truncate_seq_pair(tokens_a, tokens_b, self.max_seq_length - 3, self.rng)
        if not tokens_a or not tokens_b:
            raise ValueError(f"document {self.document_index} produced an empty segment; every document and "
                             f"sentence must be non-empty and max_seq_length >= 5 (got {self.max_seq_length})")
        a0, b0 = a_start_tok + a_front, b_start_tok + b_front
        return Instance(
            tokens_a=tokens_a, tokens_b=tokens_b, is_random_next=is_random_next,
            a_doc=self.document_index, a_span=(a0, a0 + len(tokens_a)), a_sentences=a_sentences,
            b_doc=b_doc, b_span=(b0, b0 + len(tokens_b)), b_sentences=b_sentences,
            num_truncated=a_front + a_back + b_front + b_back)


def _validate(documents: Sequence[Sequence[Sequence[Any]]], max_seq_length: int, short_seq_prob: float) -> None:
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length={max_seq_length} must be >= 5 ([CLS] A [SEP] B [SEP] with A, B >= 1 token)")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    if len(documents) < 2:
        raise ValueError(f"NSP needs at least 2 non-empty documents, got {len(documents)}")


def create_instances(documents: Sequence[Sequence[Sequence[Any]]], max_seq_length: int, rng: random.Random, *,
                     dupe_factor: int = 1, short_seq_prob: float = 0.1, balanced: bool = True,
                     continuation: Any = None, shuffle: bool = True) -> list[Instance]:
    """Pairs from every document, ``dupe_factor`` times over, as ``create_training_instances``.

    Empty sentences and then empty documents are dropped first (the original never has them: a
    blank line ends a document). The original also shuffled the documents before pairing; we pair
    them in order, so that the document indices in the instances are the caller's after dropping
    empties, and shuffle the instances at the end when ``shuffle`` (the original did both).

    Raises:
        ValueError: fewer than two non-empty documents, ``max_seq_length`` < 5, ``dupe_factor`` < 1.
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    docs = [[s for s in d if len(s)] for d in documents]
    docs = [d for d in docs if d]
    _validate(docs, max_seq_length, short_seq_prob)
    offsets = [_offsets(d) for d in docs]
    instances: list[Instance] = []
    for _ in range(dupe_factor):
        for index in range(len(docs)):
            instances.extend(create_instances_from_document(
                docs, index, max_seq_length, short_seq_prob, rng, balanced=balanced, continuation=continuation,
                offsets=offsets))
    if shuffle:
        rng.shuffle(instances)
    return instances


def pack_instances(instances: Sequence[Instance], max_seq_length: int, *, cls_token_id: int, sep_token_id: int,
                   pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pack pairs into ``[CLS] A [SEP] B [SEP] [PAD]...`` tensors, vectorised (no per-token loop).

    Returns:
        ``input_ids`` (N, T) int64, ``token_type_ids`` (N, T) int64 (0 up to the first [SEP], 1 after),
        ``attention_mask`` (N, T) int64, ``special_tokens_mask`` (N, T) bool (True at [CLS], [SEP],
        [PAD]) and ``next_sentence_label`` (N,) int64 -- the fields, in order, of the pre-training
        examples.

    Raises:
        ValueError: a pair longer than ``max_seq_length - 3`` tokens or with non-integer tokens.
    """
    N, T = len(instances), max_seq_length
    la = np.fromiter((len(x.tokens_a) for x in instances), dtype=np.int64, count=N)  # (N,)
    lb = np.fromiter((len(x.tokens_b) for x in instances), dtype=np.int64, count=N)  # (N,)
    if N and int((la + lb).max()) > T - 3:
        worst = int((la + lb).argmax())
        raise ValueError(f"instance {worst} has {int(la[worst] + lb[worst])} tokens > max_seq_length - 3 = {T - 3}")
    flat_a: list = []
    flat_b: list = []
    for x in instances:
        flat_a.extend(x.tokens_a)
        flat_b.extend(x.tokens_b)
    try:  # numpy converts long Python lists several times faster than torch.tensor
        ta = np.array(flat_a, dtype=np.int64)
        tb = np.array(flat_b, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError("instances must hold integer token ids to be packed; convert tokens with the tokenizer "
                         "first") from e
    rows = np.arange(N)
    ids = np.full((N, T), pad_token_id, dtype=np.int64)
    ids[:, 0] = cls_token_id
    # A at columns 1..la, [SEP] at la+1, B at la+2..la+lb+1, [SEP] at la+lb+2.
    row_a = np.repeat(rows, la)  # (sum la,)
    ids[row_a, np.arange(ta.size) - np.repeat(np.cumsum(la) - la, la) + 1] = ta
    ids[rows, la + 1] = sep_token_id
    row_b = np.repeat(rows, lb)  # (sum lb,)
    ids[row_b, np.arange(tb.size) - np.repeat(np.cumsum(lb) - lb, lb) + (la + 2)[row_b]] = tb
    ids[rows, la + lb + 2] = sep_token_id
    input_ids = torch.from_numpy(ids)
    la_t, lb_t = torch.from_numpy(la), torch.from_numpy(lb)
    pos = torch.arange(T)[None, :]  # (1, T)
    length = (la_t + lb_t + 3)[:, None]  # (N, 1)
    attention_mask = (pos < length).long()
    token_type_ids = ((pos >= (la_t + 2)[:, None]) & (pos < length)).long()
    special = (pos == 0) | (pos == (la_t + 1)[:, None]) | (pos == length - 1) | (pos >= length)
    labels = torch.tensor([x.label for x in instances], dtype=torch.long)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "special_tokens_mask": special, "next_sentence_label": labels}


def create_pretraining_examples(documents: Sequence[Sequence[Any]], max_seq_length: int, rng: random.Random, *,
                                tokenizer: Any = None, cls_token_id: int | None = None,
                                sep_token_id: int | None = None, pad_token_id: int | None = None,
                                dupe_factor: int = 1, short_seq_prob: float = 0.1, balanced: bool = True,
                                shuffle: bool = True) -> dict[str, torch.Tensor]:
    """Documents -> packed NSP pairs, ready for :func:`bertrepro.masking.mask_tokens`.

    Args:
        documents: documents -> sentences, each sentence a list of token ids, or a string when
            ``tokenizer`` is given (it is then tokenized with ``tokenizer.encode_corpus``).
        max_seq_length: T, the packed length (128 in the paper's first 90 % of steps).
        rng: ``random.Random``; the only source of randomness.
        tokenizer: a :class:`~bertrepro.tokenization.WordPieceTokenizer`; supplies the special ids,
            tokenizes string sentences and tells the balanced cut which pieces continue a word.
        cls_token_id, sep_token_id, pad_token_id: needed when no ``tokenizer`` is given.
        dupe_factor, short_seq_prob, balanced, shuffle: as :func:`create_instances`.

    Returns:
        :func:`pack_instances`' dict of tensors.

    Raises:
        ValueError: special ids missing, or the corpus is unusable (see :func:`create_instances`).
    """
    continuation = None
    if tokenizer is not None:
        cls_token_id = tokenizer.cls_token_id if cls_token_id is None else cls_token_id
        sep_token_id = tokenizer.sep_token_id if sep_token_id is None else sep_token_id
        pad_token_id = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        starts = tokenizer.word_start_mask(torch.arange(tokenizer.vocab_size))  # False at "##" pieces
        continuation = frozenset((~starts).nonzero().flatten().tolist())
        if any(isinstance(s, str) for d in documents for s in d[:1]):
            documents = tokenizer.encode_corpus(documents)
    missing = [n for n, v in (("cls_token_id", cls_token_id), ("sep_token_id", sep_token_id),
                              ("pad_token_id", pad_token_id)) if v is None]
    if missing:
        raise ValueError(f"pass a tokenizer or the special ids {missing}")
    instances = create_instances(documents, max_seq_length, rng, dupe_factor=dupe_factor,
                                 short_seq_prob=short_seq_prob, balanced=balanced, continuation=continuation,
                                 shuffle=shuffle)
    return pack_instances(instances, max_seq_length, cls_token_id=cls_token_id, sep_token_id=sep_token_id,
                          pad_token_id=pad_token_id)


def length_baseline(train: Mapping[str, torch.Tensor], held_out: Mapping[str, torch.Tensor],
                    bucket: int = 4) -> dict[str, float]:
    """Balanced NSP accuracy of a classifier that sees only lengths, not words.

    It predicts the label under which the ``train`` pairs' (total length, length of B) cell, both
    in buckets of ``bucket`` tokens, is more frequent, each label's count divided by that label's
    number of pairs (the rule that maximises balanced accuracy, so an unbalanced corpus does not
    hide the cue behind its majority label). With the original rule on short articles a NotNext B
    is filled up to the target length from another document while an IsNext B ends with its
    article, so lengths alone predict the label well above chance; balanced mode gives a NotNext B
    the true B's length, and this baseline falls to chance.

    Args:
        train, held_out: packed pairs (:func:`pack_instances`' dict, or anything with its
            ``attention_mask``, ``token_type_ids`` and ``next_sentence_label``).

    Returns:
        ``nsp_length_baseline`` (balanced accuracy on ``held_out``: the mean of the two recalls)
        and the per-class recalls ``nsp_length_baseline_is_next`` / ``_not_next``.
    """
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1, got {bucket}")

    def keys(ex: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = ex["attention_mask"].sum(1)  # (N,)
        b = (ex["token_type_ids"] * ex["attention_mask"]).sum(1)  # (N,) B and its [SEP]
        return (total // bucket) * (max_len // bucket + 1) + b // bucket

    max_len = max(int(train["attention_mask"].shape[1]), int(held_out["attention_mask"].shape[1]))
    size = (max_len // bucket + 1) ** 2
    k_train = keys(train)
    y_train = train["next_sentence_label"]
    counts = torch.stack([torch.bincount(k_train[y_train == label], minlength=size)
                          for label in (IS_NEXT, NOT_NEXT)])  # (2, K)
    n = counts.sum(1, keepdim=True).clamp(min=1)  # (2, 1) pairs per label
    share = counts / n  # (2, K) P(cell | label)
    guess = torch.where(share[1] >= share[0], NOT_NEXT, IS_NEXT)  # (K,) ties and unseen: NotNext
    pred = guess[keys(held_out)]
    gold = held_out["next_sentence_label"]
    recall = [((pred == label) & (gold == label)).sum().item() / max(int((gold == label).sum()), 1)
              for label in (IS_NEXT, NOT_NEXT)]
    return {"nsp_length_baseline": sum(recall) / 2, "nsp_length_baseline_is_next": recall[0],
            "nsp_length_baseline_not_next": recall[1]}
