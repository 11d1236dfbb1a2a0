"""The Figure 4 heads in the transformers ecosystem: save them loadable by transformers, and check the answers agree.

:func:`save_hf_head` writes a directory that ``transformers``' matching class and ``BertTokenizerFast``
load with ``from_pretrained``; :func:`to_hf_head` gives that transformers model in memory.

The agreement checks run the saved directory through transformers alone and count how often its
answers equal ours:

- **Spans.** transformers 5 removed ``pipeline("question-answering")``. :func:`hf_span_answers` does
  its work with transformers' own parts: ``BertTokenizerFast`` cuts the windows (its overflow, where
  ``stride`` is the *overlap* between windows, so run_squad.py's ``doc_stride`` step becomes an
  overlap of ``passage room - doc_stride`` tokens), ``BertForQuestionAnswering`` loaded from disk gives
  the logits, the tokenizer's offsets give the text. The span rule (max-context starts, the best raw
  score across windows, the null score) is :mod:`bertrepro.spans`'s, as run_squad.py's. The old
  pipeline instead compared windows by per-window softmax probabilities and ignored the max-context
  rule, so on passages of several windows it could pick another span. Its settings map onto ours as
  ``max_seq_len`` = ``max_seq_length``, ``max_answer_len`` = ``max_answer_length``, ``doc_stride`` =
  the overlap above (not the step), ``handle_impossible_answer`` ~ ``null_threshold`` (it compared the
  null probability with the best span's, our tau = 0 on one window), and its ``max_question_len``
  truncated long questions, which we refuse instead.
- **Tags.** ``pipeline("token-classification", aggregation_strategy="first")`` labels each word by its
  first sub-token, as our tagger does; its entity groups are compared with ours word by word.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import save
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..heads import BertForMultipleChoice, BertForQuestionAnswering, BertForTokenClassification
from ..io import atomic_write_bytes, atomic_write_text
from ..model import BertForSequenceClassification
from ..spans import best_spans, max_context_scores, null_scores
from .metrics import bio_spans

__all__ = ["HF_CLASSES", "hf_config", "to_hf_head", "save_hf_head", "hf_span_answers", "pipeline_agreement",
           "hf_tag_entities", "tag_pipeline_agreement"]

HF_CLASSES = {
    BertForQuestionAnswering: "BertForQuestionAnswering",
    BertForTokenClassification: "BertForTokenClassification",
    BertForMultipleChoice: "BertForMultipleChoice",
    BertForSequenceClassification: "BertForSequenceClassification",
}


def _class_name(model: nn.Module) -> str:
    if type(model) not in HF_CLASSES:
        raise TypeError(f"{type(model).__name__} is not a task head; expected one of "
                        f"{sorted(c.__name__ for c in HF_CLASSES)}")
    return HF_CLASSES[type(model)]


def hf_config(model: nn.Module, id2label: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The ``config.json`` contents of a head: the encoder's settings, the architecture and the labels."""
    name = _class_name(model)
    cfg = {**model.config.to_dict(), "architectures": [name], "model_type": "bert"}
    num_labels = getattr(model, "num_labels", 2)
    if id2label is not None:
        if sorted(int(k) for k in id2label) != list(range(num_labels)):
            raise ValueError(f"id2label must name labels 0..{num_labels - 1}, got keys {sorted(id2label)}")
        cfg["id2label"] = {str(k): v for k, v in id2label.items()}
        cfg["label2id"] = {v: int(k) for k, v in id2label.items()}
    elif name in ("BertForTokenClassification", "BertForSequenceClassification"):
        cfg["id2label"] = {str(k): f"LABEL_{k}" for k in range(num_labels)}
        cfg["label2id"] = {f"LABEL_{k}": k for k in range(num_labels)}
    if hasattr(model, "dropout"):
        cfg["classifier_dropout"] = model.dropout.p
    return cfg


def to_hf_head(model: nn.Module, attn_implementation: str = "eager", id2label: Mapping[int, str] | None = None):
    """The transformers model of the same class with this head's weights (eval mode)."""
    import transformers  # lazily: slow to import, and only these answers need it

    hf_cfg = transformers.BertConfig(**{k: v for k, v in hf_config(model, id2label).items() if k != "architectures"})
    hf_cfg._attn_implementation = attn_implementation
    hf = getattr(transformers, _class_name(model))(hf_cfg).eval()
    load_state_dict_strict(hf, dict(model.state_dict()), type(model).__name__)
    return hf


def save_hf_head(model: nn.Module, path: str | os.PathLike, vocab_file: str | os.PathLike,
                 id2label: Mapping[int, str] | None = None, do_lower_case: bool = True) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``vocab.txt`` and ``tokenizer_config.json`` to ``path``.

    transformers' matching class (``BertForQuestionAnswering`` ...) and ``BertTokenizerFast`` load the
    directory with ``from_pretrained``. Every file is written atomically.

    Raises:
        ValueError: the vocabulary's size differs from the model's ``vocab_size``, or bad ``id2label``.
        TypeError: ``model`` is not one of the task heads.
    """

    path, vocab_file = Path(path), Path(vocab_file)
    cfg = hf_config(model, id2label)
    if not vocab_file.is_file():
        raise ValueError(f"vocabulary file {str(vocab_file)!r} does not exist")
    vocab = vocab_file.read_text(encoding="utf-8")
    n = len(vocab.splitlines())
    if n != model.config.vocab_size:
        raise ValueError(f"vocabulary mismatch: {vocab_file} has {n} pieces but the model has vocab_size="
                         f"{model.config.vocab_size}; save with the vocabulary the model was trained with")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path / "model.safetensors", save(state, metadata={"format": "pt"}))
    atomic_write_text(path / "vocab.txt", vocab)
    tok_cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case,
               "model_max_length": model.config.max_position_embeddings, "unk_token": "[UNK]", "sep_token": "[SEP]",
               "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
    atomic_write_text(path / "tokenizer_config.json", json.dumps(tok_cfg, indent=2))
    atomic_write_text(path / "config.json", json.dumps(cfg, indent=2))
    return path


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _load(model_dir, cls_name: str):
    import transformers  # lazily: slow to import, and only these answers need it

    tok = transformers.BertTokenizerFast.from_pretrained(str(model_dir))
    model = getattr(transformers, cls_name).from_pretrained(str(model_dir), attn_implementation="eager").eval()
    return tok, model


def _hf_item_answer(tok, model, item, max_seq_length: int, doc_stride: int, max_answer_length: int,
                    null_threshold: float | None) -> str:
    question, context = _field(item, "question"), _field(item, "context")
    room = max_seq_length - len(tok(question, add_special_tokens=False)["input_ids"]) - 3
    step = min(doc_stride, room)
    enc = tok(question, context, truncation="only_second", max_length=max_seq_length, stride=room - step,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding="longest", return_tensors="pt")
    W = enc["input_ids"].shape[0]
    passage = torch.tensor([[s == 1 for s in enc.sequence_ids(w)] for w in range(W)])  # (W, T)
    lengths = passage.sum(1)
    firsts = passage.float().argmax(1)
    spans = [(w * step, int(lengths[w])) for w in range(W)]  # window w holds passage tokens w*step ...
    n_tokens = len(tok(context, add_special_tokens=False)["input_ids"])
    if spans[-1][0] + spans[-1][1] != n_tokens:  # the tokenizer's windows are not run_squad.py's
        raise RuntimeError(f"the tokenizer's {W} windows cover {spans[-1][0] + spans[-1][1]} of {n_tokens} passage "
                           f"tokens; its overflow rule differs from run_squad.py's")
    owner = max_context_scores(spans, n_tokens).argmax(0)
    is_max = torch.zeros_like(passage)
    for w, (start, length) in enumerate(spans):
        is_max[w, firsts[w]:firsts[w] + length] = owner[start:start + length] == w
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    attention_mask=enc["attention_mask"])
    s, e, score = best_spans(out.start_logits, out.end_logits, is_max, max_answer_length, end_valid=passage)
    w = int(score.argmax())
    offsets = enc["offset_mapping"][w]
    text = context[int(offsets[s[w], 0]):int(offsets[e[w], 1])]
    if null_threshold is not None and float(score[w]) <= float(null_scores(out.start_logits, out.end_logits).min()) \
            + null_threshold:
        return ""
    return text


def hf_span_answers(model_dir: str | os.PathLike, items: Sequence[Any], max_seq_length: int = 384,
                    doc_stride: int = 128, max_answer_length: int = 30,
                    null_threshold: float | None = None) -> dict[str, str]:
    """item id -> answer text from a saved span model run by transformers alone (see the module docstring)."""
    tok, model = _load(model_dir, "BertForQuestionAnswering")
    return {str(_field(it, "id")): _hf_item_answer(tok, model, it, max_seq_length, doc_stride, max_answer_length,
                                                   null_threshold) for it in items}


def pipeline_agreement(model_dir: str | os.PathLike, items: Sequence[Any], predictions: Mapping[str, str],
                       **settings: Any) -> float:
    """Fraction of ``items`` whose transformers answer (:func:`hf_span_answers` with ``settings``:
    ``max_seq_length``, ``doc_stride``, ``max_answer_length``, ``null_threshold``) equals ``predictions[id]``."""
    if not items:
        raise ValueError("pipeline_agreement needs at least one item")
    missing = [str(_field(it, "id")) for it in items if str(_field(it, "id")) not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} items have no prediction, e.g. {missing[:3]}")
    theirs = hf_span_answers(model_dir, items, **settings)
    return sum(theirs[k] == predictions[k] for k in theirs) / len(theirs)


def hf_tag_entities(model_dir: str | os.PathLike, sentences: Sequence[Sequence[str]]) -> list[set]:
    """Per sentence, the entities (type, first word, last word) that ``pipeline("token-classification",
    aggregation_strategy="first")`` finds in the saved tagger; words are joined by single spaces."""
    import transformers  # lazily: slow to import, and only these answers need it

    tok, model = _load(model_dir, "BertForTokenClassification")
    pipe = transformers.pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy="first",
                                 device="cpu")
    if any(not words for words in sentences):
        raise ValueError("every sentence needs at least one word")
    results = pipe([list(words) for words in sentences], is_split_into_words=True)
    out = []
    for words, groups in zip(sentences, results):
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]  # char offsets of the words
        found = set()
        for g in groups:
            inside = [i for i, s in enumerate(starts) if g["start"] <= s < g["end"]]
            if inside:  # a group that starts no word (inside a word's later pieces) names no entity
                found.add((g["entity_group"], inside[0], inside[-1]))
        out.append(found)
    return out


def tag_pipeline_agreement(model_dir: str | os.PathLike, sentences: Sequence[Sequence[str]],
                           predictions: Sequence[Sequence[str]]) -> float:
    """Fraction of sentences whose pipeline entities equal the entities of our predicted BIO tags."""
    if len(sentences) != len(predictions) or not sentences:
        raise ValueError(f"{len(sentences)} sentences but {len(predictions)} predictions; need equal, non-zero")
    theirs = hf_tag_entities(model_dir, sentences)
    return sum(t == bio_spans(p) for t, p in zip(theirs, predictions)) / len(sentences)
