"""Fine-tuning tasks and the encoders to fine-tune: encoded inputs, GLUE (online only), the book's
offline topic task, and the arms of chapter 10's comparison.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checkpoints import load_pretrained, minilm_dir
from ..config import BertConfig
from ..data import TOPICS, load_corpus, load_hub_dataset, topic_labels
from ..labels import ARM_LABELS
from ..model import BertModel
from ..tokenization import WordPieceTokenizer

__all__ = ["Encoded", "encode_texts", "stratified_subsample", "GlueTask", "GLUE_TASKS", "GLUE_DATASET",
           "GLUE_OFFLINE_DEFAULT", "load_glue", "TASK_SEED", "TopicTask", "topic_task", "ARMS", "Arm",
           "load_arm"]


@dataclass
class Encoded:
    """Token ids of a set of (single or paired) texts, padded to a common length T.

    input_ids, token_type_ids, attention_mask: (N, T) int64; attention_mask 1 = token, 0 = [PAD].
    """

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {t.shape for t in (self.input_ids, self.token_type_ids, self.attention_mask)}
        if len(shapes) != 1 or self.input_ids.dim() != 2:
            raise ValueError(
                "input_ids, token_type_ids and attention_mask must share one (N, T) shape, got "
                f"{tuple(self.input_ids.shape)}, {tuple(self.token_type_ids.shape)}, {tuple(self.attention_mask.shape)}"
            )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, index: torch.Tensor | slice) -> "Encoded":
        """Rows ``index``, trimmed to the longest of them (padding beyond it changes nothing)."""
        mask = self.attention_mask[index]
        T = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
        return Encoded(self.input_ids[index][:, :T], self.token_type_ids[index][:, :T], mask[:, :T])

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(self.input_ids.to(device), self.token_type_ids.to(device), self.attention_mask.to(device))

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)  # (N,)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_seq_length: int,
                 texts_b: Sequence[str] | None = None) -> Encoded:
    """Tokenize ``texts`` (and second segments ``texts_b``) as ``[CLS] A [SEP] (B [SEP])``, padded to ``max_seq_length``.

    ``tokenizer`` is a :class:`bertrepro.tokenization.WordPieceTokenizer` (every arm of the book uses
    one) or a ``transformers`` tokenizer. Longer inputs are truncated: a single text keeps its first
    ``max_seq_length - 2`` pieces; a pair is trimmed longest-first, as ``truncate_seq_pair``.
    """
    if isinstance(texts, str) or (texts_b is not None and isinstance(texts_b, str)):
        raise TypeError("texts and texts_b must be sequences of strings, not one string")
    texts = list(texts)
    if texts_b is not None and len(texts_b) != len(texts):
        raise ValueError(f"texts ({len(texts)}) and texts_b ({len(texts_b)}) must have the same length")
    if not texts:
        raise ValueError("no texts to encode")
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "cls_token_id"):  # bertrepro's WordPieceTokenizer
        enc = tokenizer.encode_batch(texts, list(texts_b) if texts_b is not None else None,
                                     max_length=max_seq_length, padding="max_length", truncation=True)
    elif callable(tokenizer) and hasattr(tokenizer, "model_max_length"):  # a transformers tokenizer
        enc = tokenizer(texts, list(texts_b) if texts_b is not None else None, padding="max_length",
                        truncation="longest_first", max_length=max_seq_length, return_tensors="pt",
                        return_token_type_ids=True, return_attention_mask=True)
    else:
        raise TypeError(f"unsupported tokenizer {type(tokenizer).__name__}; pass a bertrepro WordPieceTokenizer "
                        "or a transformers tokenizer")
    return Encoded(enc["input_ids"].long(), enc["token_type_ids"].long(), enc["attention_mask"].long())


def stratified_subsample(labels: torch.Tensor, per_class: int, generator: torch.Generator,
                         cap: bool = False) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class present in ``labels`` (sorted).

    With the same generator state, the draws are nested: the 10-per-class sample contains the
    3-per-class one. ``cap=True`` takes every example of a class that has fewer than ``per_class``;
    otherwise such a class is an error.

    Args:
        labels: (N,) int64 class ids.
        per_class: examples to draw from each class (>= 1).
        generator: a CPU ``torch.Generator``; the draw depends only on its state.
    Returns:
        (n,) int64 sorted indices into ``labels``.
    """
    if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    labels = labels.cpu().long()
    classes, counts = torch.unique(labels, return_counts=True)
    if not cap and (counts < per_class).any():
        short = {int(c): int(n) for c, n in zip(classes, counts) if n < per_class}
        raise ValueError(
            f"per_class={per_class} but some classes have fewer examples {short} (class: count); "
            "lower per_class or pass cap=True to take all of them"
        )
    perm = torch.randperm(len(labels), generator=generator)  # a random order of all examples
    order = perm[torch.sort(labels[perm], stable=True).indices]  # grouped by class, random within a class
    sorted_labels = labels[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)  # first position of each class
    rank = torch.arange(len(labels)) - starts  # rank of each example within its class
    return torch.sort(order[rank < per_class]).values


@dataclass(frozen=True)
class GlueTask:
    name: str
    text_a: str  # column of the first segment
    text_b: str | None  # column of the second segment (None: single sentences)
    num_labels: int
    dev_split: str  # the split the paper's dev numbers come from


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("sst2", "sentence", None, 2, "validation"),
    "mrpc": GlueTask("mrpc", "sentence1", "sentence2", 2, "validation"),
    "mnli": GlueTask("mnli", "premise", "hypothesis", 3, "validation_matched"),
}


GLUE_DATASET = "nyu-mll/glue"


GLUE_OFFLINE_DEFAULT = "the topic task (python -m bertrepro.finetune --task topics)"


def load_glue(name: str, max_examples: int | None = None) -> dict[str, dict[str, Any]]:
    """GLUE task ``name`` (sst2, mrpc, mnli) from the Hugging Face Hub: ``{"train": ..., "dev": ...}``.

    Each split is ``{"texts_a": [...], "texts_b": [...] or None, "labels": (N,) int64}``; ``max_examples``
    keeps the first N of each split. GLUE's test labels are hidden (the paper's Table 1 comes from the
    GLUE server), so compare with the dev numbers of the paper's Tables 5 and 6.

    Raises:
        ValueError: an unknown task.
        bertrepro.data.NetworkRequiredError: within seconds, naming the offline default, when the
            offline switches are on (the book's default) and no cached copy exists, or the Hub is
            unreachable. Go online with ``python -m bertrepro.book --online`` (``make book ONLINE=1``)
            or ``python -m bertrepro.finetune --task sst2 --online``.
    """
    if name not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; available: {', '.join(GLUE_TASKS)}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1, got {max_examples}")
    task = GLUE_TASKS[name]
    ds = load_hub_dataset(GLUE_DATASET, name, default=GLUE_OFFLINE_DEFAULT)
    out = {}
    for split, key in (("train", "train"), ("dev", task.dev_split)):
        rows = ds[key] if max_examples is None else ds[key].select(range(min(max_examples, len(ds[key]))))
        out[split] = {"texts_a": list(rows[task.text_a]),
                      "texts_b": list(rows[task.text_b]) if task.text_b else None,
                      "labels": torch.tensor(rows["label"], dtype=torch.long)}
    return out


TASK_SEED = 12345  # the dev/test division and the training draws do not depend on a chapter's seed alone


@dataclass
class TopicTask:
    """11-way topic classification of Wikipedia articles that pre-training never trained on.

    ``pool``: the labeled articles the training sets are drawn from (the corpus's validation split);
    ``dev``: a few articles per topic from the corpus's test split, for choosing hyper-parameters;
    ``test``: the rest of the test split, used only to report accuracy.
    Each split is ``{"texts": [...], "labels": (N,) int64}`` with labels indexing ``label_names``.
    """

    label_names: tuple[str, ...]
    pool: dict[str, Any]
    dev: dict[str, Any]
    test: dict[str, Any]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> dict[str, Any]:
        if name not in ("pool", "dev", "test"):
            raise ValueError(f"unknown split {name!r}; the task has pool, dev and test")
        return getattr(self, name)

    def counts(self) -> dict[str, list[int]]:
        """Articles per topic in each split (in ``label_names`` order)."""
        return {s: torch.bincount(self.split(s)["labels"], minlength=self.num_labels).tolist()
                for s in ("pool", "dev", "test")}


def _select(split: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    """Rows ``idx`` of a task split."""
    return {"texts": [split["texts"][i] for i in idx.tolist()], "labels": split["labels"][idx]}


def topic_task(corpus: Any = "wiki-vital", dev_per_class: int = 8, max_per_class: int | None = None) -> TopicTask:
    """The topic task on the held-out splits of :func:`bertrepro.data.load_corpus`.

    Pre-training trains only on the corpus's ``train`` split, so no article of the task was trained
    on. Topics come from :func:`bertrepro.data.topic_labels` ("Uncategorized" left out, ids in
    :data:`bertrepro.data.TOPICS` order).

    Args:
        corpus: a corpus name for ``load_corpus`` or a mapping with ``validation`` and ``test`` splits.
        dev_per_class: articles per topic moved from the test split to the dev set.
        max_per_class: keep at most this many articles per topic in the pool and in the test set
            (the ``smoke`` profile; None keeps all).
    """
    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    missing = [s for s in ("validation", "test") if s not in corpus]
    if missing:
        raise ValueError(f"the corpus lacks split(s) {missing}; the task is built from its held-out validation and test splits")

    def pack(split):
        texts, labels = topic_labels(split)
        return {"texts": list(texts), "labels": torch.tensor(labels, dtype=torch.long)}

    pool, rest = pack(corpus["validation"]), pack(corpus["test"])
    dev_idx = stratified_subsample(rest["labels"], dev_per_class, torch.Generator().manual_seed(TASK_SEED))
    is_dev = torch.zeros(len(rest["labels"]), dtype=torch.bool)
    is_dev[dev_idx] = True
    dev, test = _select(rest, dev_idx), _select(rest, (~is_dev).nonzero().flatten())
    if max_per_class is not None:
        pool, test = (_select(s, stratified_subsample(s["labels"], max_per_class,
                                                      torch.Generator().manual_seed(TASK_SEED), cap=True))
                      for s in (pool, test))
    return TopicTask(tuple(TOPICS), pool, dev, test)


ARMS = ("random", "pretrained", "minilm", "minilm-random")  # labels: bertrepro.labels.ARM_LABELS


@dataclass
class Arm:
    """An encoder to fine-tune or probe, with the tokenizer of its vocabulary."""

    name: str
    encoder: BertModel
    tokenizer: Any
    description: str

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())


def _check_arm(name: str) -> str:
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; valid arms are {', '.join(ARMS)}")
    return name


def load_arm(name: str, pretrained_dir: str | os.PathLike | None = None, seed: int = 0) -> Arm:
    """Build arm ``name``.

    * ``"pretrained"``: the encoder of the model pre-trained in chapter 09, read from
      ``pretrained_dir`` (``config.json``, ``model.safetensors``, ``vocab.txt``: the ``model_dir`` of
      :func:`bertrepro.pretrain.pretrained_model`);
    * ``"random"``: the same architecture and vocabulary, randomly initialized from ``seed``;
    * ``"minilm"``: all-MiniLM-L6-v2 with its bert-base-uncased tokenizer;
    * ``"minilm-random"``: MiniLM's architecture and tokenizer, randomly initialized from ``seed``.
    """
    _check_arm(name)
    if name in ("minilm", "minilm-random"):
        path = minilm_dir()  # its vocab.txt is bert-base-uncased's; our tokenizer matches BertTokenizerFast on it
        tokenizer = WordPieceTokenizer.from_vocab(str(path / "vocab.txt"))
    else:
        if pretrained_dir is None:
            raise ValueError(f"arm {name!r} needs pretrained_dir, the chapter-09 model directory "
                             "(bertrepro.pretrain.pretrained_model(profile).model_dir)")
        path = Path(pretrained_dir)
        if not (path / "vocab.txt").is_file():
            raise ValueError(f"{str(path)!r} has no vocab.txt; pass the model/ directory that pretrain() writes")
        tokenizer = WordPieceTokenizer.from_vocab(str(path / "vocab.txt"))
    if name in ("random", "minilm-random"):  # the architecture only
        config = BertConfig.from_hf(json.loads((path / "config.json").read_text()))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = BertModel(config, add_pooling_layer=True)
    else:
        encoder = load_pretrained(path, target="BertModel")
    return Arm(name, encoder.eval(), tokenizer, ARM_LABELS[name])
