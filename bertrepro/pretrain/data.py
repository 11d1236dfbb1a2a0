"""Pre-training data: corpus -> WordPiece vocabulary -> token ids -> NSP pairs -> masked batches.

Pairs come from :mod:`bertrepro.nsp` (``create_pretraining_data.py``), masks from
:mod:`bertrepro.masking`. Masking is *dynamic*: a fresh 15 % of positions is drawn every time a
sequence is used, from a ``torch.Generator`` whose state is checkpointed (the original masked each
sequence statically, ``dupe_factor=10`` times over); NSP pairs are re-drawn every epoch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..cache import artifact_inputs, cached_file
from ..data import corpus_documents, load_corpus, load_document_splits
from ..io import cache_dir as default_cache_dir
from ..masking import mask_tokens
from ..model import IGNORE_INDEX, IS_NEXT
from ..nsp import create_pretraining_examples
from ..tokenization import WordPieceTokenizer, bert_uncased_vocab_path, train_wordpiece
from ..train.distributed import derive_seed
from .config import EVAL_SEED, PretrainConfig

__all__ = ["CorpusLike", "Examples", "PretrainData", "prepare_data", "epoch_examples", "validation_examples",
           "ltr_labels", "make_batch", "mean_predictions", "BatchStream"]


@dataclass
class Examples:
    """Packed pre-training pairs ``[CLS] A [SEP] B [SEP] [PAD]...``; every tensor has N rows."""

    input_ids: torch.Tensor  # (N, T) long
    token_type_ids: torch.Tensor  # (N, T) long: 0 for [CLS] A [SEP], 1 for B [SEP]
    attention_mask: torch.Tensor  # (N, T) long: 1 token, 0 padding
    special_tokens_mask: torch.Tensor  # (N, T) bool: [CLS], [SEP], [PAD]; never masked
    next_sentence_label: torch.Tensor  # (N,) long: IS_NEXT = 0, NOT_NEXT = 1

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: torch.Tensor | slice) -> "Examples":
        return Examples(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass
class PretrainData:
    """Everything the training loop needs from the corpus, built once by :func:`prepare_data`."""

    vocab_path: Path  # the WordPiece vocabulary (one piece per line)
    tokenizer: Any  # bertrepro.tokenization.WordPieceTokenizer
    vocab_size: int
    pad_token_id: int
    cls_token_id: int
    sep_token_id: int
    mask_token_id: int
    train_documents: list[list[list[int]]]  # documents -> sentences -> token ids
    validation_documents: list[list[list[int]]]
    token_counts: torch.Tensor  # (V,) long: occurrences of each id in the train documents
    corpus_name: str


CorpusLike = Any  # a corpus name, a DatasetDict, or {"train": docs, "validation": docs}


# The code a trained vocabulary depends on: WordPiece itself, and bertrepro.data, whose sentence
# splitting and document loading (load_document_splits) make the text it is trained on.
VOCAB_CODE = ("bertrepro.tokenization", "bertrepro.data")
_documents, _load_splits = corpus_documents, load_document_splits  # the names this module used


def special_ids(tokenizer: Any) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id, "mask_token_id": tokenizer.mask_token_id}


def prepare_data(config: PretrainConfig, corpus: CorpusLike | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False) -> PretrainData:
    """Load the corpus, train (or load) the WordPiece vocabulary and tokenize every sentence.

    The vocabulary is trained on the train split only and cached under ``cache_dir`` (default
    :func:`bertrepro.io.cache_dir`), keyed by the corpus and the vocabulary size and
    fingerprinted with the tokenizer's code (:func:`bertrepro.cache.cached_file`); the validation
    split never influences it.

    Args:
        corpus: a name for :func:`bertrepro.data.load_corpus` (default ``config.corpus``), a
            ``DatasetDict``, or a mapping ``{"train": docs, "validation": docs}`` whose documents are
            lists of sentences (tests use a small synthetic corpus this way).
    """
    name, train_docs, valid_docs = _load_splits(config.corpus if corpus is None else corpus)
    if config.max_documents is not None:
        train_docs = train_docs[: config.max_documents]
    if config.eval_documents is not None:
        valid_docs = valid_docs[: config.eval_documents]
    if len(train_docs) < 2:
        raise ValueError(f"corpus {name!r} has {len(train_docs)} train document(s); NSP needs at least 2")
    if config.vocab == "bert-base-uncased":
        vocab_path = bert_uncased_vocab_path()
    else:
        if cache_dir is None:
            cache_dir = default_cache_dir("pretrain")
        key = hashlib.sha256(json.dumps([name, config.max_documents, config.vocab_size]).encode()).hexdigest()[:16]
        vocab_path = Path(cache_dir) / f"wordpiece-{key}" / "vocab.txt"
        inputs = artifact_inputs(VOCAB_CODE, {"vocab": {
            "corpus": name, "max_documents": config.max_documents, "vocab_size": config.vocab_size}},
            name if isinstance(corpus if corpus is not None else config.corpus, str) else None)
        cached_file(vocab_path, inputs,
                    lambda path: train_wordpiece((s for doc in train_docs for s in doc), config.vocab_size, path))
    tokenizer = WordPieceTokenizer.from_vocab(vocab_path)
    ids = special_ids(tokenizer)
    train = tokenizer.encode_corpus(train_docs, progress=progress)
    valid = tokenizer.encode_corpus(valid_docs, progress=progress)
    vocab_size = tokenizer.vocab_size
    flat = [t for d in train for s in d for t in s]
    counts = torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=vocab_size) if flat else \
        torch.zeros(vocab_size, dtype=torch.long)
    return PretrainData(vocab_path=Path(vocab_path), tokenizer=tokenizer, vocab_size=vocab_size, **ids,
                        train_documents=train, validation_documents=valid, token_counts=counts, corpus_name=name)


def _make_pairs(data: PretrainData, documents: list[list[list[int]]], config: PretrainConfig, rng: random.Random,
                contiguous: bool) -> Examples:
    """Balanced NSP pairs packed to tensors; ``contiguous`` keeps only the IsNext pairs (text that reads on)."""
    packed = create_pretraining_examples(documents, config.max_seq_length, rng, tokenizer=data.tokenizer,
                                         short_seq_prob=config.short_seq_prob, balanced=True)
    examples = Examples(**packed)
    if contiguous:
        examples = examples.select(examples.next_sentence_label == IS_NEXT)
    return examples


def _mask(examples: Examples, data: PretrainData, config: PretrainConfig,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return mask_tokens(examples.input_ids, examples.special_tokens_mask, vocab_size=data.vocab_size,
                       mask_token_id=data.mask_token_id, pad_token_id=data.pad_token_id,
                       mlm_probability=config.mlm_probability, max_predictions=config.max_predictions_per_seq,
                       generator=generator, attention_mask=examples.attention_mask,
                       mask_fraction=config.mask_fraction, same_fraction=config.same_fraction,
                       random_fraction=config.random_fraction)


def epoch_examples(data: PretrainData, config: PretrainConfig, epoch: int, phase: int = 0) -> Examples:
    """The training pairs of one epoch of ``phase``, re-drawn every epoch from ``(seed, epoch)``.

    The original wrote ``dupe_factor=10`` differently-paired copies of the corpus once; drawing a
    new pairing per epoch does the same without storing them, and a resumed run rebuilds the
    epoch it stopped in exactly. With ``objective`` "mlm" or "ltr" (no NSP) B is always the true
    continuation, so the model reads coherent text and the NSP label is unused. Phase 1 (the second
    phase, Appendix A.2) packs the same documents to ``long_seq_length`` tokens, from its own seeds.
    """
    parts = ("pairs", epoch) if phase == 0 else ("pairs", epoch, "long")
    rng = random.Random(derive_seed(config.seed, *parts))
    return _make_pairs(data, data.train_documents, config.phase_config(phase), rng,
                       contiguous=config.objective != "mlm_nsp")


def validation_examples(data: PretrainData, config: PretrainConfig) -> Examples:
    """Held-out balanced NSP pairs from the validation articles, drawn with :data:`EVAL_SEED`.

    The same pairs for every objective and every training seed, so models compare on equal terms.
    """
    if not data.validation_documents:
        raise ValueError("the corpus has no validation documents to evaluate on")
    return _make_pairs(data, data.validation_documents, config, random.Random(EVAL_SEED), contiguous=False)


def ltr_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token targets for a left-to-right LM: position t predicts token t+1 where t+1 is real.

    (B, T) -> (B, T) with ``IGNORE_INDEX`` at the last position and wherever the next token is padding.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    nxt = input_ids[:, 1:]  # (B, T-1)
    labels[:, :-1] = torch.where(attention_mask[:, 1:].bool(), nxt, torch.full_like(nxt, IGNORE_INDEX))
    return labels


def make_batch(examples: Examples, data: PretrainData, config: PretrainConfig,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Model inputs for ``examples``: masked for "mlm_nsp"/"mlm", next-token labels for "ltr"."""
    if config.objective == "ltr":
        input_ids, labels = examples.input_ids, ltr_labels(examples.input_ids, examples.attention_mask)
    else:
        input_ids, labels = _mask(examples, data, config, generator)
    return {"input_ids": input_ids, "token_type_ids": examples.token_type_ids,
            "attention_mask": examples.attention_mask, "labels": labels,
            "next_sentence_label": examples.next_sentence_label}


def mean_predictions(data: PretrainData, config: PretrainConfig, epochs: int = 1, phase: int = 0) -> float:
    """Predicted positions per optimizer step, counted on the run's own batches (the ``predicted`` of
    :func:`bertrepro.train.flops.train_step_flops`).

    The first ``epochs`` epochs of ``config``'s data (:func:`epoch_examples`, masked or labelled by
    :func:`make_batch` exactly as the run does) are labelled and their non-ignored labels counted;
    the mean per sequence times the batch size is returned. ``phase`` 1 counts the second phase's batches.
    """
    total, sequences = 0, 0
    g = torch.Generator().manual_seed(config.seed)
    for epoch in range(epochs):
        batch = make_batch(epoch_examples(data, config, epoch, phase), data, config.phase_config(phase), g)
        total += int((batch["labels"] != IGNORE_INDEX).sum())
        sequences += batch["labels"].shape[0]
    if sequences == 0:
        raise ValueError("the run's data has no training examples")
    return total / sequences * config.batch_size


class BatchStream:
    """The global batches of one phase in order: a seeded permutation per epoch, position checkpointed.

    ``config`` is the run's; :attr:`phase_config` is what this phase's batches are made with.
    """

    def __init__(self, data: PretrainData, config: PretrainConfig, epoch: int = 0, index: int = 0,
                 phase: int = 0) -> None:
        self.data, self.run_config, self.phase = data, config, phase
        self.config = config.phase_config(phase)
        self.epoch, self.index = epoch, index
        self._load_epoch()

    def _load_epoch(self) -> None:
        self.examples = epoch_examples(self.data, self.run_config, self.epoch, self.phase)
        n, b = len(self.examples), self.config.batch_size
        if n < b:
            raise ValueError(f"only {n} pre-training examples, fewer than one global batch of {b}; use more "
                             f"documents (max_documents) or a smaller --batch-size")
        parts = ("permutation", self.epoch) if self.phase == 0 else ("permutation", self.epoch, "long")
        self.permutation_seed = derive_seed(self.config.seed, *parts)
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed(self.permutation_seed))

    def next(self) -> Examples:
        b = self.config.batch_size
        if self.index + b > len(self.examples):  # drop the ragged tail; the next epoch re-pairs anyway
            self.epoch, self.index = self.epoch + 1, 0
            self._load_epoch()
        rows = self.order[self.index: self.index + b]
        self.index += b
        return self.examples.select(rows)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "permutation_seed": self.permutation_seed,
                "examples_in_epoch": len(self.examples), "phase": self.phase}
