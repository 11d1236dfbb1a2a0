r"""The task heads of Figure 4 (BERT §4.1-§4.4, §5.3): answer spans, token tags and multiple choice.

Each head is one linear layer on the encoder's final hidden vectors; all weights are fine-tuned.
Module names equal transformers' ``BertForQuestionAnswering``, ``BertForTokenClassification`` and
``BertForMultipleChoice``, so a state_dict copies both ways. Pair classification (Figure 4a) is
:class:`bertrepro.model.BertForSequenceClassification` with ``[CLS] A [SEP] B [SEP]`` inputs.

- **Span** (§4.2): a start vector :math:`S` and an end vector :math:`E` (the two rows of
  ``qa_outputs``); the start logit of token :math:`i` is :math:`S \cdot T_i`, the end logit
  :math:`E \cdot T_i`. The paper's objective is "the sum of the log-likelihoods of the correct start
  and end positions"; ``run_squad.py`` and transformers divide that sum by 2 (the mean of the two
  cross-entropies), which only rescales the gradient, and we do the same so losses match.
- **Tags** (§5.3): a classifier over the tag set on every :math:`T_i`; positions labelled -100
  (special tokens and later sub-tokens of a word) get no loss.
- **Multiple choice** (§4.4): each of the K sequences ``[CLS] A [SEP] B_k [SEP]`` gives a pooled
  :math:`C_k`; the score is :math:`V \cdot C_k`, softmax over the K choices.

Shape legend: B batch, K choices, T sequence length, H hidden size, C number of labels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import BertConfig
from .model import (IGNORE_INDEX, BertForSequenceClassification, BertModel, LeftToRightBertModel, init_weights,
                    left_to_right)

__all__ = ["QuestionAnsweringOutput", "TokenClassifierOutput", "MultipleChoiceOutput", "BertForQuestionAnswering",
           "BertForTokenClassification", "BertForMultipleChoice", "HEAD_KINDS", "head_from_encoder"]


@dataclass
class QuestionAnsweringOutput:
    start_logits: torch.Tensor  # (B, T)
    end_logits: torch.Tensor  # (B, T)
    loss: torch.Tensor | None = None  # (CE_start + CE_end) / 2


@dataclass
class TokenClassifierOutput:
    logits: torch.Tensor  # (B, T, C)
    loss: torch.Tensor | None = None  # mean cross-entropy over positions whose label is not -100


@dataclass
class MultipleChoiceOutput:
    logits: torch.Tensor  # (B, K)
    loss: torch.Tensor | None = None


class BertForQuestionAnswering(nn.Module):
    """Span extraction (§4.2): start and end logits per token from one H x 2 linear layer."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)  # the span head reads T_i, never C
        self.qa_outputs = nn.Linear(config.hidden_size, 2)  # row 0 = S, row 1 = E
        init_weights(self.qa_outputs, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, start_positions=None,
                end_positions=None) -> QuestionAnsweringOutput:
        h = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state  # (B, T, H)
        start_logits, end_logits = self.qa_outputs(h).unbind(-1)  # (B, T) each
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        if start_positions is not None:
            T = start_logits.shape[1]  # positions outside [0, T) are clamped to T and ignored, as transformers does
            start = start_positions.reshape(-1).clamp(0, T)
            end = end_positions.reshape(-1).clamp(0, T)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=T)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=T)) / 2
        return QuestionAnsweringOutput(start_logits, end_logits, loss)


class BertForTokenClassification(nn.Module):
    """Tagging (§5.3): a C-way classifier on every final hidden vector T_i."""

    def __init__(self, config: BertConfig, num_labels: int, classifier_dropout: float | None = None) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> TokenClassifierOutput:
        h = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state  # (B, T, H)
        logits = self.classifier(self.dropout(h))  # (B, T, C)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, self.num_labels), labels.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return TokenClassifierOutput(logits, loss)


class BertForMultipleChoice(nn.Module):
    """Multiple choice (§4.4): a score V·C_k for each of K sequences, softmax over the K."""

    def __init__(self, config: BertConfig, classifier_dropout: float | None = None) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)  # the vector V
        init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> MultipleChoiceOutput:
        """input_ids, token_type_ids, attention_mask: (B, K, T); labels (B,) index of the right choice."""
        if input_ids.dim() != 3:
            raise ValueError(f"multiple choice expects input_ids of shape (B, K, T), got {tuple(input_ids.shape)}")
        B, K, T = input_ids.shape
        flat = [x.reshape(B * K, T) if x is not None else None for x in (input_ids, token_type_ids, attention_mask)]
        pooled = self.bert(*flat).pooler_output  # (B*K, H)
        logits = self.classifier(self.dropout(pooled)).reshape(B, K)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return MultipleChoiceOutput(logits, loss)


HEAD_KINDS = ("pair", "span", "tag", "choice")


def _build(kind: str, config: BertConfig, num_labels: int, classifier_dropout: float | None) -> nn.Module:
    if kind == "pair":
        return BertForSequenceClassification(config, num_labels, classifier_dropout=classifier_dropout)
    if kind == "span":
        return BertForQuestionAnswering(config)
    if kind == "tag":
        return BertForTokenClassification(config, num_labels, classifier_dropout=classifier_dropout)
    return BertForMultipleChoice(config, classifier_dropout=classifier_dropout)


def head_from_encoder(kind: str, encoder: BertModel, num_labels: int = 2, seed: int = 0, dropout: float | None = None,
                      classifier_dropout: float | None = None) -> nn.Module:
    """A fresh head of ``kind`` (one of :data:`HEAD_KINDS`) holding a copy of ``encoder``'s weights.

    ``"pair"`` -> :class:`~bertrepro.model.BertForSequenceClassification` (``num_labels`` classes),
    ``"span"`` -> :class:`BertForQuestionAnswering`, ``"tag"`` -> :class:`BertForTokenClassification`
    (``num_labels`` tags), ``"choice"`` -> :class:`BertForMultipleChoice`. The task layer is
    initialized from ``seed`` with the model's truncated normal; the encoder is copied, never
    modified (the span and tag heads leave out its pooler, which they do not use). ``dropout``
    replaces the encoder's hidden and attention dropout (None keeps them). A left-to-right encoder
    stays causal inside the head (§5.1).
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {HEAD_KINDS}")
    if not isinstance(encoder, BertModel):
        raise TypeError(f"encoder must be a bertrepro BertModel, got {type(encoder).__name__}")
    if kind in ("pair", "choice") and encoder.pooler is None:
        raise ValueError(f"the encoder has no pooler; the {kind!r} head puts its layer on the pooled [CLS] vector C")
    config = encoder.config
    if dropout is not None:
        config = dataclasses.replace(config, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    device = next(encoder.parameters()).device
    # Built on the meta device: initializing an encoder that is overwritten at once costs seconds at MiniLM's size.
    with torch.device("meta"):
        model = _build(kind, config, num_labels, classifier_dropout)
    model = model.to_empty(device=device)
    state = encoder.state_dict()
    if model.bert.pooler is None:
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    model.bert.load_state_dict(state, strict=True)  # copies: the encoder is left untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, child in model.named_children():
            if name != "bert":
                init_weights(child, config.initializer_range)
    if isinstance(encoder, LeftToRightBertModel):
        model.bert = left_to_right(model.bert)
    return model
