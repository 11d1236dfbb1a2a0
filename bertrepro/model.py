"""The BERT encoder and its pre-training heads (BERT §3, §3.1, Figure 2; Appendix A).

One class per box of the paper. Module and parameter names are the keys of the released
checkpoints (as in transformers' ``modeling_bert.py``), so a real state_dict loads as it is.

Shape legend: B batch, T sequence length, H hidden size, V vocabulary size, N chosen MLM positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention, key_padding_mask
from .config import BertConfig

__all__ = [
    "IGNORE_INDEX", "IS_NEXT", "NOT_NEXT",
    "BertEmbeddings", "BertSelfOutput", "BertAttention", "BertIntermediate", "BertOutput", "BertLayer",
    "BertEncoder", "BertPooler", "BertModel", "BertModelOutput", "BertPredictionHeadTransform",
    "BertLMPredictionHead", "BertPreTrainingHeads", "BertForPreTraining", "BertForPreTrainingOutput",
    "BertForSequenceClassification", "SequenceClassifierOutput", "LeftToRightBertModel", "left_to_right",
    "init_weights", "truncated_normal_", "activation",
]

IGNORE_INDEX = -100  # label of positions that are not predicted (cross_entropy's ignore_index)
IS_NEXT, NOT_NEXT = 0, 1  # NSP labels: 1 means "B is a random sentence" (the original convention)


def activation(name: str):
    if name == "gelu":  # exact, with erf (Hugging Face's "gelu")
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):  # the original TF code's tanh approximation
        return nn.GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}")


class BertEmbeddings(nn.Module):
    """Input representation (§3 "Input/Output Representations", Figure 2): token + segment + learned position, then LayerNorm, dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence length {T} exceeds max_position_embeddings={self.position_embeddings.num_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        x = (self.word_embeddings(input_ids)
             + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(positions)[None])  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class BertSelfOutput(nn.Module):
    """W^O, then Add & Norm: LayerNorm(x + dropout(W^O ctx)) -- BERT is post-LN."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(input_tensor + self.dropout(self.dense(hidden_states)))


class BertAttention(nn.Module):
    """Multi-head self-attention followed by its Add & Norm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                       dropout=config.attention_probs_dropout_prob, output_projection=False)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, is_causal=False):
        ctx, weights = self.self(hidden_states, attention_mask, output_attentions, is_causal)
        return self.output(ctx, hidden_states), weights


class BertIntermediate(nn.Module):
    """The feed-forward network's first layer and GELU: H -> 4H."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(nn.Module):
    """The feed-forward network's second layer (4H -> H), then Add & Norm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(input_tensor + self.dropout(self.dense(hidden_states)))


class BertLayer(nn.Module):
    """One Transformer block: attention -> add & norm -> GELU FFN -> add & norm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, is_causal=False):
        attn, weights = self.attention(hidden_states, attention_mask, output_attentions, is_causal)
        return self.output(self.intermediate(attn), attn), weights


class BertEncoder(nn.Module):
    """A stack of L identical blocks. BERT has an encoder only: no decoder, no shifted outputs."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, is_causal=False,
                output_hidden_states=False):
        all_weights, all_states = [], [hidden_states]
        for block in self.layer:
            hidden_states, weights = block(hidden_states, attention_mask, output_attentions, is_causal)
            all_weights.append(weights)
            all_states.append(hidden_states)
        return (hidden_states, (tuple(all_weights) if output_attentions else None),
                (tuple(all_states) if output_hidden_states else None))


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence-level vector C used by NSP and classification (§3, Figure 1)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, H)


@torch.no_grad()
def truncated_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """N(0, std²) truncated at ±2 std, drawn as TensorFlow does: redraw the values that fall outside.

    Same distribution as ``nn.init.trunc_normal_`` (which inverts the CDF with erfinv), many times faster.
    """
    t.normal_(0.0, std)
    if t.is_meta:  # shapes only: nothing to redraw
        return t
    flat = t.view(-1)
    idx = (flat.abs() > 2 * std).nonzero().squeeze(1)  # ~4.6 % of the entries
    while idx.numel():
        redraw = torch.empty(idx.numel(), dtype=t.dtype, device=t.device).normal_(0.0, std)
        flat[idx] = redraw
        idx = idx[redraw.abs() > 2 * std]
    return t


@torch.no_grad()
def init_weights(module: nn.Module, initializer_range: float) -> None:
    """The original initialiser: truncated normal (±2σ) weights, zero biases, identity LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            truncated_normal_(m.weight, initializer_range)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            m.weight.fill_(1.0)
            m.bias.zero_()


@dataclass
class BertModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None  # (B, H)
    attentions: tuple[torch.Tensor, ...] | None = None  # L x (B, nh, T, T)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (L + 1) x (B, T, H): embeddings, then each layer


class BertModel(nn.Module):
    """Embeddings -> encoder -> pooler."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        init_weights(self, config.initializer_range)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        is_causal: bool = False,
        output_hidden_states: bool = False,
    ) -> BertModelOutput:
        """input_ids, token_type_ids, attention_mask: (B, T); attention_mask 1 = token, 0 = padding.

        ``is_causal`` turns the encoder into a left-to-right model (the "LTR" ablation of §5.1).
        ``output_hidden_states`` also returns the embedding output and every layer's output (the
        feature-based approach of §5.3 reads them), as transformers' ``hidden_states``.
        """
        mask = key_padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, T)
        h = self.embeddings(input_ids, token_type_ids)
        h, attentions, states = self.encoder(h, mask, output_attentions, is_causal, output_hidden_states)
        pooled = self.pooler(h) if self.pooler is not None else None
        return BertModelOutput(h, pooled, attentions, states)


class BertPredictionHeadTransform(nn.Module):
    """dense -> GELU -> LayerNorm, applied before the vocabulary projection."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """The masked-LM head: transform, then a projection onto the vocabulary (weights tied by the owner)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))  # an output-only bias per token
        self.decoder.bias = self.bias  # the checkpoint stores it under both names

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)  # IsNext / NotNext from C


@dataclass
class BertForPreTrainingOutput:
    loss: torch.Tensor | None  # mean MLM + mean NSP
    prediction_logits: torch.Tensor  # (B, T, V) without labels; (N, V) at the chosen positions with labels
    seq_relationship_logits: torch.Tensor  # (B, 2)
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    mlm_positions: torch.Tensor | None = None  # (B, T) boolean: where prediction_logits come from
    attentions: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM and next-sentence heads (§3.1).

    With ``labels``, the MLM logits are computed only at the chosen positions (gathered before the
    transform and the vocabulary projection, as the original ``run_pretraining.py`` does): about 15 %
    of the rows, instead of every position.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        init_weights(self.cls, config.initializer_range)
        self.cls.predictions.bias.data.zero_()
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tie input and output embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        output_attentions: bool = False,
        is_causal: bool = False,
        mlm_denominator: torch.Tensor | float | None = None,
    ) -> BertForPreTrainingOutput:
        """labels: (B, T) original ids at chosen positions, ``IGNORE_INDEX`` elsewhere.
        next_sentence_label: (B,) with ``IS_NEXT`` = 0 and ``NOT_NEXT`` = 1.
        mlm_denominator: divide the summed MLM loss by this (e.g. the global number of chosen
        positions across data-parallel ranks) instead of the local count.
        """
        out = self.bert(input_ids, token_type_ids, attention_mask, output_attentions, is_causal)
        h = out.last_hidden_state
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        positions = None
        mlm_loss = nsp_loss = loss = None
        if labels is not None:
            positions = labels != IGNORE_INDEX  # (B, T)
            logits = self.cls.predictions(h[positions])  # (N, V): only the chosen rows
            targets = labels[positions]  # (N,)
            total = F.cross_entropy(logits.float(), targets, reduction="sum")
            denom = positions.sum() if mlm_denominator is None else mlm_denominator
            mlm_loss = total / torch.clamp(torch.as_tensor(denom, device=total.device, dtype=total.dtype), min=1)
            loss = mlm_loss
        else:
            logits = self.cls.predictions(h)  # (B, T, V)
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
            loss = nsp_loss if loss is None else loss + nsp_loss
        return BertForPreTrainingOutput(loss, logits, nsp_logits, mlm_loss, nsp_loss, positions,
                                        out.attentions, h)


@dataclass
class SequenceClassifierOutput:
    """What :class:`BertForSequenceClassification` returns; unpacks as ``loss, logits``."""

    loss: torch.Tensor | None  # mean cross-entropy (None without labels)
    logits: torch.Tensor  # (B, num_labels)

    def __iter__(self):
        return iter((self.loss, self.logits))


class BertForSequenceClassification(nn.Module):
    """Fine-tuning (§4.1): a linear layer on the pooled [CLS] vector C, all weights trained."""

    def __init__(self, config: BertConfig, num_labels: int, classifier_dropout: float | None = None) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config)
        p = config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None) -> SequenceClassifierOutput:
        out = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss, logits)


class LeftToRightBertModel(BertModel):
    """A :class:`BertModel` that always attends left to right, for the LTR arm after pre-training.

    The paper keeps the left-only constraint at fine-tuning (§5.1: removing it "introduced a
    pre-train/fine-tune mismatch"). Under a causal mask the ``[CLS]`` vector sees only ``[CLS]``,
    so the sentence vector C (the pooler's input) is the last real token's, the only one that has
    read the whole input (as OpenAI GPT classifies from its last token).
    """

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_attentions=False,
                is_causal: bool = True) -> BertModelOutput:
        if not is_causal:
            raise ValueError("LeftToRightBertModel is causal by construction; is_causal=False is not supported")
        out = super().forward(input_ids, token_type_ids, attention_mask, output_attentions, is_causal=True)
        h = out.last_hidden_state  # (B, T, H)
        B, T = input_ids.shape
        last = (attention_mask.sum(1) - 1).clamp(min=0) if attention_mask is not None else \
            torch.full((B,), T - 1, device=h.device)  # (B,)
        pooled = self.pooler(h[torch.arange(B, device=h.device), last][:, None]) if self.pooler is not None else None
        return BertModelOutput(h, pooled, out.attentions)


def left_to_right(encoder: BertModel) -> LeftToRightBertModel:
    """A causal copy of ``encoder`` (same weights, same device and mode)."""
    with torch.random.fork_rng(devices=[]):
        causal = LeftToRightBertModel(encoder.config, add_pooling_layer=encoder.pooler is not None)
    causal.load_state_dict(encoder.state_dict(), strict=True)
    return causal.to(next(encoder.parameters()).device).train(encoder.training)
