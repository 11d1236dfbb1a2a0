r"""Ablations at small scale: pre-training objectives (BERT §5.1, Table 5) and model size (§5.2, Table 6).

Table 5 analog: three models with the same architecture, batch, sequence length and number of
optimizer steps, differing only in the pre-training objective:

* ``mlm_nsp`` -- BERT: masked LM + next-sentence prediction;
* ``mlm`` -- "No NSP": masked LM only;
* ``ltr`` -- "LTR & No NSP": a left-to-right language model (causal attention mask, every next
  token predicted), no NSP.

They are compared on a held-out *cloze* test (one whole word removed from a window of held-out
text, with context on both sides; see :func:`cloze_scores`) and on the book's topic task
(:mod:`bertrepro.finetune`): a linear probe on frozen features and fine-tuning with few labels.
As in the paper, the left-only constraint of the LTR model also holds when it is probed and
fine-tuned (:class:`LeftToRightBertModel`).

Table 6 analog: a grid of (L, H, A) models trained with MLM + NSP for the same number of steps,
compared on held-out masked-LM perplexity and linear-probe accuracy.

Every run's settings live in :data:`SETTINGS` (one entry per profile); results are cached as JSON
under ``bertrepro.profiles.cache_dir("ablation", profile, f"seed{seed}")`` and rebuilt when absent
or when the settings change. Ordering claims ("A beats B as in the paper") are decided by
:func:`ordering_claim` from the measured numbers and their standard errors, never written by hand.

Shape legend: N items (cloze windows / test articles), T sequence length, H hidden size, V vocabulary.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from .model import BertForPreTraining, BertModel, BertModelOutput
from .profiles import PROFILES

__all__ = [
    "OBJECTIVE_ARMS", "ARM_LABELS", "PAPER_ROWS", "PAPER_TABLE5_COLUMNS", "PAPER_TABLE6_COLUMNS", "CLOZE_MODES",
    "ARM_CLOZE_MODE",
    "AblationSettings", "SETTINGS", "settings_for", "pretrain_config", "differing_fields", "run_name",
    "planned_runs", "ablation_dir", "TrainedRun", "train_or_load", "load_run",
    "ClozeItems", "make_cloze_items", "cloze_inputs", "ClozeScores", "cloze_scores", "word_token_mask",
    "masked_lm_nll", "LeftToRightBertModel", "left_to_right", "topic_encoder",
    "probe_rows", "finetune_rows", "paired_difference", "ordering_claim", "claim_sentence",
    "paper_difference", "run_ablation", "table5_claims", "table6_claims", "table5_summary", "table6_summary",
    "plot_table5", "plot_table6",
]

OBJECTIVE_ARMS = ("mlm_nsp", "mlm", "ltr")
ARM_LABELS = {"mlm_nsp": "MLM + NSP (BERT)", "mlm": "MLM only (No NSP)", "ltr": "LTR LM (No NSP)"}
PAPER_ROWS = {"mlm_nsp": "BERT-base", "mlm": "No NSP", "ltr": "LTR & No NSP"}  # rows of report's table5
PAPER_TABLE5_COLUMNS = ("MNLI-m", "QNLI", "MRPC", "SST-2")  # the classification columns of Table 5
PAPER_TABLE6_COLUMNS = ("MNLI-m", "MRPC", "SST-2")

# How each model fills a cloze blank:
#   bidirectional -- the word is replaced by [MASK]; the model reads both sides and predicts at its position;
#   left_only     -- a bidirectional model given only the left context: [CLS] left [MASK] [SEP] (a control);
#   left_to_right -- a causal model predicts the word from the position before it (the left context only).
CLOZE_MODES = ("bidirectional", "left_only", "left_to_right")
ARM_CLOZE_MODE = {"mlm_nsp": "bidirectional", "mlm": "bidirectional", "ltr": "left_to_right"}


# ---------------------------------------------------------------------------------------------
# Settings per profile
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AblationSettings:
    """What chapter 11 runs at one profile. Every pre-training run uses the same compute budget."""

    profile: str  # smoke | cpu | gpu: the PretrainConfig preset the runs start from
    steps: int  # optimizer steps of EVERY pre-training run (the schedule ends there)
    warmup_steps: int  # linear warm-up of every run
    arm_shape: tuple[int, int, int]  # (L, H, A) of the three Table 5 arms
    sizes: tuple[tuple[int, int, int], ...]  # the Table 6 grid, smallest first; includes arm_shape (shared run)
    pretrain_overrides: tuple[tuple[str, Any], ...] = ()  # PretrainConfig fields changed for every run
    cloze_items: int = 2000  # held-out cloze items (one blank each)
    cloze_context: int = 4  # at least this many word pieces on EACH side of a blank
    probe_sizes: tuple[int | str, ...] = (10, "all")  # labeled articles per topic ("all": the whole pool)
    probe_seeds: int = 3  # training-set draws per probe size ("all" has one)
    finetune_sizes: tuple[int, ...] = (10,)  # the small-data end of the data-efficiency curve
    finetune_seeds: int = 2
    learning_rates: tuple[float, ...] = (3e-4, 1e-3)  # fine-tuning grid, chosen on dev with the first seed

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; valid profiles are {', '.join(PROFILES)}")
        if not (isinstance(self.steps, int) and self.steps > 0 and 0 <= self.warmup_steps < self.steps):
            raise ValueError(f"need steps > 0 and 0 <= warmup_steps < steps, got steps={self.steps!r}, "
                             f"warmup_steps={self.warmup_steps!r}")
        for shape in (self.arm_shape, *self.sizes):
            L, H, A = shape
            if min(L, H, A) < 1 or H % A:
                raise ValueError(f"shape L/H/A = {L}/{H}/{A} is invalid: all must be positive and A must divide H")
        if self.arm_shape not in self.sizes:
            raise ValueError(f"the size grid {self.sizes} must contain the Table 5 shape {self.arm_shape} "
                             f"(that run is shared between the two tables)")
        if len(set(self.sizes)) != len(self.sizes) or len(self.sizes) < 2:
            raise ValueError(f"the size grid needs at least two distinct shapes, got {self.sizes}")
        names = {f.name for f in dataclasses.fields(_pretrain_config_cls())}
        fixed = {"objective", "num_hidden_layers", "hidden_size", "num_attention_heads", "total_steps",
                 "warmup_steps", "max_steps", "seed", "profile"}
        for k, _ in self.pretrain_overrides:
            if k not in names or k in fixed:
                raise ValueError(f"pretrain_overrides may not set {k!r}: it must be a PretrainConfig field other "
                                 f"than {sorted(fixed)}")
        if self.cloze_items < 1 or self.cloze_context < 1:
            raise ValueError(f"need cloze_items >= 1 and cloze_context >= 1, got {self.cloze_items}, {self.cloze_context}")
        if self.probe_seeds < 1 or self.finetune_seeds < 1 or not self.learning_rates:
            raise ValueError("need probe_seeds >= 1, finetune_seeds >= 1 and at least one learning rate")
        if not self.probe_sizes or not self.finetune_sizes:
            raise ValueError("need at least one probe size and one fine-tuning size")

    @property
    def budget(self):
        """The fine-tuning budget of this profile (task split, sequence length, probe penalties)."""
        from .finetune import BUDGETS

        return BUDGETS[self.profile]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pretrain_overrides"] = dict(self.pretrain_overrides)
        return d


def _pretrain_config_cls():
    from .pretrain import PretrainConfig

    return PretrainConfig


SETTINGS: dict[str, AblationSettings] = {
    # seconds: the smoke preset (L=2, H=32, batch 8, 32 tokens), 10 steps per run, four runs
    "smoke": AblationSettings(
        profile="smoke", steps=10, warmup_steps=1, arm_shape=(2, 32, 2), sizes=((1, 16, 2), (2, 32, 2)),
        cloze_items=64, cloze_context=2, probe_sizes=(1, "all"), probe_seeds=2, finetune_sizes=(2,),
        finetune_seeds=2, learning_rates=(1e-3,)),
    # 2 cores, about 6 minutes: the cpu preset's model (BERT-Tiny shape, 64 tokens, batch 32, lr 1e-3)
    # for 1,000 steps per run instead of chapter 09's 6,000. Measured on 2 idle cores: about 22 steps/s
    # for MLM (+NSP), 9 for LTR (its head predicts every token), 9 for 2/256/4.
    "cpu": AblationSettings(
        profile="cpu", steps=1000, warmup_steps=100, arm_shape=(2, 128, 2), sizes=((1, 64, 2), (2, 128, 2), (2, 256, 4)),
        cloze_items=2000, cloze_context=4, probe_sizes=(10, "all"), probe_seeds=3, finetune_sizes=(10,),
        finetune_seeds=2, learning_rates=(3e-4, 1e-3)),
    # one GPU: BERT-base-shaped arms (12/768/12, 128 tokens, batch 256, the paper's optimizer) for 3,000
    # steps each (already ~120 passes over the 0.8M-token train split; more would mostly memorize it), and four rows
    # of the paper's Table 6 grid (the 12/768/12 run is shared). Measured on one H100 (bf16): 12.8 steps/s
    # for MLM (+NSP), 9.3 for LTR, 37 for 3/768/12, 23 for 6/768/*: about 20 minutes of pre-training.
    "gpu": AblationSettings(
        profile="gpu", steps=3000, warmup_steps=300, arm_shape=(12, 768, 12),
        sizes=((3, 768, 12), (6, 768, 3), (6, 768, 12), (12, 768, 12)),
        cloze_items=5000, cloze_context=5, probe_sizes=(10, "all"), probe_seeds=5, finetune_sizes=(10,),
        finetune_seeds=3, learning_rates=(5e-5, 4e-5, 3e-5, 2e-5)),
}


def settings_for(profile: str) -> AblationSettings:
    if profile not in SETTINGS:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(SETTINGS)}")
    return SETTINGS[profile]


def pretrain_config(settings: AblationSettings, objective: str, shape: Sequence[int] | None = None, seed: int = 0,
                    device: str | None = None):
    """The :class:`~bertrepro.pretrain.PretrainConfig` of one run: the profile's preset, the shared
    overrides, the run's objective and shape, and the ablation's step budget."""
    from .pretrain import OBJECTIVES, PretrainConfig

    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
    L, H, A = settings.arm_shape if shape is None else tuple(shape)
    return PretrainConfig.for_profile(
        settings.profile, **dict(settings.pretrain_overrides), objective=objective, num_hidden_layers=L,
        hidden_size=H, num_attention_heads=A, intermediate_size=4 * H, total_steps=settings.steps,
        warmup_steps=settings.warmup_steps, max_steps=None, checkpoint_every=settings.steps, eval_every=0,
        seed=seed, device=device)


def differing_fields(a, b) -> set[str]:
    """Names of the PretrainConfig fields where ``a`` and ``b`` differ."""
    da, db = a.to_dict(), b.to_dict()
    return {k for k in da if da[k] != db[k]}


def run_name(objective: str, shape: Sequence[int]) -> str:
    L, H, A = shape
    return f"{objective}-L{L}-H{H}-A{A}"


def planned_runs(settings: AblationSettings, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Every distinct pre-training run: the three Table 5 arms, then the rest of the size grid."""
    runs = {run_name(o, settings.arm_shape): pretrain_config(settings, o, None, seed, device) for o in OBJECTIVE_ARMS}
    for shape in settings.sizes:
        runs.setdefault(run_name("mlm_nsp", shape), pretrain_config(settings, "mlm_nsp", shape, seed, device))
    return runs


def ablation_dir(profile: str, seed: int) -> Path:
    from .profiles import cache_dir

    return Path(cache_dir("ablation", profile, f"seed{seed}"))


# ---------------------------------------------------------------------------------------------
# Training (or loading) the runs
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainedRun:
    name: str
    config: Any  # PretrainConfig
    model: BertForPreTraining  # eval mode
    evaluation: dict[str, Any]  # pretrain's held-out evaluation at the last step
    train_seconds: float | None  # None when loaded from the cache
    model_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list, repr=False)


_RUN_ONLY = ("device", "num_threads", "log_every", "eval_batch_size", "keep_checkpoints", "peak_tflops",
             "dist_timeout_s", "micro_batch_size", "compile", "precision")


def _same_run(saved: Mapping[str, Any], config) -> bool:
    want = config.to_dict()
    return all(saved.get(k) == v for k, v in want.items() if k not in _RUN_ONLY)


def train_or_load(name: str, config, out_dir: str | Path, progress: bool = True) -> TrainedRun:
    """The run's model from ``out_dir/model`` when complete and made with ``config``; otherwise
    pre-train it (resuming an interrupted run of the same configuration, restarting a stale one)."""
    from .checkpoints import load_pretrained
    from .pretrain import latest_checkpoint, pretrain, read_metrics

    out_dir = Path(out_dir)
    saved = out_dir / "config.json"
    if saved.is_file() and not _same_run(json.loads(saved.read_text()), config):
        print(f"{name}: the cached run in {out_dir} was made with other settings; training it again")
        shutil.rmtree(out_dir)
    model_dir = out_dir / "model"
    evals = read_metrics(out_dir / "eval.jsonl")
    complete = all((model_dir / f).is_file() for f in ("config.json", "model.safetensors", "vocab.txt"))
    if complete and evals and evals[-1].get("step") == config.total_steps:
        model = load_pretrained(model_dir, target="BertForPreTraining").to(config.device or "cpu").eval()
        return TrainedRun(name, config, model, evals[-1], None, model_dir, read_metrics(out_dir / "metrics.jsonl"))
    result = pretrain(config, out_dir, resume=latest_checkpoint(out_dir) is not None, progress=progress)
    return TrainedRun(name, result.config, result.model.eval(), result.evaluation, result.train_time_s, model_dir,
                      result.metrics)


# ---------------------------------------------------------------------------------------------
# The cloze test
# ---------------------------------------------------------------------------------------------

@dataclass
class ClozeItems:
    """Held-out windows ``[CLS] w_1 ... w_n [SEP] [PAD]...`` with one blank each.

    input_ids, attention_mask: (N, T) long, the ORIGINAL text (no [MASK]); position: (N,) the blank's
    index; target: (N,) the blank's id, ``input_ids[i, position[i]]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index) -> "ClozeItems":
        return ClozeItems(self.input_ids[index], self.attention_mask[index], self.position[index], self.target[index])


def word_token_mask(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(V,) bools: pieces that are alphabetic word starts, and ``##`` continuation pieces."""
    pieces = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    word = torch.tensor([p.isalpha() for p in pieces])  # no "##", no punctuation, digits or [SPECIAL]
    continuation = torch.tensor([p.startswith("##") for p in pieces])
    return word, continuation


def make_cloze_items(documents: Sequence[Sequence[Sequence[int]]], tokenizer: Any, max_seq_length: int,
                     num_items: int, min_context: int, seed: int) -> ClozeItems:
    """Cut held-out documents into windows and choose blanks, reproducibly from ``seed``.

    Each document's sentences are concatenated and cut into windows of ``max_seq_length - 2`` pieces,
    wrapped as ``[CLS] ... [SEP]``. A blank is a whole word that is a single alphabetic piece (the
    next piece does not start with ``##``) with at least ``min_context`` pieces on each side inside
    the window. Several blanks may come from one window (each item has exactly one); items are
    drawn without replacement and shuffled, up to ``num_items``.
    """
    if max_seq_length < 2 * min_context + 3:
        raise ValueError(f"max_seq_length={max_seq_length} cannot hold a blank with {min_context} pieces on each side")
    width = max_seq_length - 2
    rows: list[list[int]] = []
    for doc in documents:
        flat = [t for sentence in doc for t in sentence]
        windows = (flat[s: s + width] for s in range(0, len(flat), width))
        rows += [w for w in windows if len(w) >= 2 * min_context + 1]
    if not rows:
        raise ValueError(f"no held-out window has {2 * min_context + 1} pieces; use more documents or a smaller "
                         f"min_context")
    lengths = torch.tensor([len(r) + 2 for r in rows])  # with [CLS] and [SEP]
    N, T = len(rows), max_seq_length
    input_ids = torch.full((N, T), tokenizer.pad_token_id, dtype=torch.long)
    n_text = lengths - 2  # (N,) pieces of text per window
    row = torch.repeat_interleave(torch.arange(N), n_text)
    col = torch.arange(int(n_text.sum())) - torch.repeat_interleave(n_text.cumsum(0) - n_text, n_text) + 1  # after [CLS]
    input_ids[row, col] = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    input_ids[:, 0] = tokenizer.cls_token_id
    input_ids[torch.arange(N), lengths - 1] = tokenizer.sep_token_id
    pos = torch.arange(T)[None, :]  # (1, T)
    attention_mask = (pos < lengths[:, None]).long()
    word, continuation = word_token_mask(tokenizer)
    next_ids = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], 1)  # (N, T)
    eligible = (word[input_ids] & ~continuation[next_ids]
                & (pos >= 1 + min_context) & (pos <= lengths[:, None] - 2 - min_context))  # (N, T)
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(N, T, generator=g).masked_fill(~eligible, -1.0)
    per_row = max(1, math.ceil(num_items / max(int(eligible.any(1).sum()), 1)))
    top = keys.topk(min(per_row, T), dim=1)
    r, k = torch.nonzero(top.values >= 0, as_tuple=True)
    if r.numel() == 0:
        raise ValueError("no eligible blank in the held-out windows (whole single-piece words with context on "
                         "both sides); use more documents or a smaller min_context")
    position = top.indices[r, k]
    order = torch.randperm(r.numel(), generator=g)[:num_items]
    r, position = r[order], position[order]
    return ClozeItems(input_ids[r], attention_mask[r], position, input_ids[r, position])


def cloze_inputs(items: ClozeItems, mode: str, mask_token_id: int, sep_token_id: int,
                 pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the model reads for each item, and the position whose output predicts the blank.

    Returns ``input_ids`` (N, T), ``attention_mask`` (N, T) and ``read`` (N,):

    * ``bidirectional``: the blank replaced by ``[MASK]``; read at the blank.
    * ``left_only``: ``[CLS] w_1 .. w_{t-1} [MASK] [SEP]``, the right context removed; read at the blank.
    * ``left_to_right``: the same input as ``bidirectional``; a causal model reads it left to right and
      predicts the blank at position t from position t - 1, whose output depends on ``[CLS] w_1 .. w_{t-1}``
      only (the [MASK] at t and everything after it are invisible to it).
    """
    if mode not in CLOZE_MODES:
        raise ValueError(f"unknown cloze mode {mode!r}; valid modes are {', '.join(CLOZE_MODES)}")
    N, T = items.input_ids.shape
    pos = torch.arange(T)[None, :]  # (1, T)
    t = items.position[:, None]  # (N, 1)
    ids = items.input_ids.masked_fill(pos == t, mask_token_id)
    mask = items.attention_mask
    read = items.position
    if mode == "left_only":
        ids = torch.where(pos == t + 1, torch.full_like(ids, sep_token_id), ids).masked_fill(pos > t + 1, pad_token_id)
        mask = (pos <= t + 1).long()
    elif mode == "left_to_right":
        read = items.position - 1
    return ids, mask, read


@dataclass
class ClozeScores:
    log_prob: torch.Tensor  # (N,) float64: log p(target) from the model
    prediction: torch.Tensor  # (N,) long: the arg-max piece

    def correct(self, target: torch.Tensor) -> torch.Tensor:
        return self.prediction == target

    def accuracy(self, target: torch.Tensor) -> float:
        return float(self.correct(target).double().mean())


@torch.no_grad()
def cloze_scores(model: BertForPreTraining, items: ClozeItems, mode: str, tokenizer: Any, batch_size: int = 256,
                 device: torch.device | str = "cpu", candidates: torch.Tensor | None = None) -> ClozeScores:
    """Fill every blank of ``items`` with ``model`` read in ``mode`` (see :func:`cloze_inputs`).

    The logits at the read position go through the model's own MLM head (transform + tied decoder),
    the same head either objective trained. Token types are all 0 (one segment).

    Args:
        candidates: (V,) bools; when given, the prediction is the most probable candidate piece (the
            book passes the whole-word pieces of :func:`word_token_mask`: a blank is known to hold a
            word, so a model is not marked wrong for its punctuation prior). ``log_prob`` always comes
            from the full softmax over the vocabulary.
    """
    if candidates is not None and candidates.shape != (tokenizer.vocab_size,):
        raise ValueError(f"candidates must be a ({tokenizer.vocab_size},) bool mask, got shape {tuple(candidates.shape)}")
    ids, mask, read = cloze_inputs(items, mode, tokenizer.mask_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    causal = mode == "left_to_right"
    was_training = model.training
    model.eval().to(device)
    log_probs, preds = [], []
    try:
        for s in range(0, len(items), batch_size):
            sl = slice(s, s + batch_size)
            x, m = ids[sl].to(device), mask[sl].to(device)
            with _autocast(device):
                h = model.bert(x, torch.zeros_like(x), m, is_causal=causal).last_hidden_state  # (b, T, H)
                rows = h[torch.arange(x.shape[0], device=device), read[sl].to(device)]  # (b, H)
                logits = model.cls.predictions(rows).float()  # (b, V)
            lp = logits.log_softmax(-1)
            log_probs.append(lp.gather(1, items.target[sl].to(device)[:, None])[:, 0].double().cpu())
            if candidates is not None:
                logits = logits.masked_fill(~candidates.to(device), float("-inf"))
            preds.append(logits.argmax(-1).cpu())
    finally:
        model.train(was_training)
    return ClozeScores(torch.cat(log_probs), torch.cat(preds))


def _autocast(device: torch.device | str):
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ---------------------------------------------------------------------------------------------
# Held-out masked-LM perplexity, per predicted token
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def masked_lm_nll(model: BertForPreTraining, examples, data, config, batch_size: int = 128,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(N,) negative log-likelihoods (nats) of every masked held-out token.

    The examples and masks are those of :func:`bertrepro.pretrain.evaluate` (drawn with
    :data:`~bertrepro.pretrain.EVAL_SEED`), so ``exp(mean)`` is its ``mlm_perplexity``; keeping the
    tokens apart lets two models be compared on the same positions, with a paired standard error.
    """
    from .pretrain import EVAL_SEED, make_batch

    cfg = dataclasses.replace(config, objective="mlm_nsp")
    batch = make_batch(examples, data, cfg, torch.Generator().manual_seed(EVAL_SEED))
    was_training = model.training
    model.eval().to(device)
    out = []
    try:
        for s in range(0, len(examples), batch_size):
            mb = {k: v[s: s + batch_size].to(device) for k, v in batch.items()}
            with _autocast(device):
                o = model(mb["input_ids"], mb["token_type_ids"], mb["attention_mask"], labels=mb["labels"])
            targets = mb["labels"][o.mlm_positions]
            out.append(F.cross_entropy(o.prediction_logits.float(), targets, reduction="none").double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# The LTR model at probing and fine-tuning time
# ---------------------------------------------------------------------------------------------

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


def topic_encoder(model: BertForPreTraining, objective: str) -> BertModel:
    """The encoder a run contributes to the topic task: causal for the LTR objective."""
    return left_to_right(model.bert) if objective == "ltr" else model.bert


# ---------------------------------------------------------------------------------------------
# The topic task: linear probe and fine-tuning, keeping every test prediction
# ---------------------------------------------------------------------------------------------

def probe_rows(features: Mapping[str, Mapping[str, torch.Tensor]], task, sizes: Sequence[int | str], seeds: int,
               l2_grid: Sequence[float], progress: bool = True) -> list[dict[str, Any]]:
    """:func:`bertrepro.finetune.probe_curve`'s rows, each with the correctness of every test article
    (``correct``, a list of bools) for paired comparisons between runs.

    The chosen probe of each row is fitted again (L-BFGS from zero weights is deterministic, so it
    is the same probe) to read its test predictions; its accuracy must equal the row's.
    """
    from .finetune import probe_curve, train_probe, training_indices

    y = {s: task.split(s)["labels"] for s in ("pool", "test")}
    rows = probe_curve(features, task, sizes, seeds, l2_grid, progress=progress)
    for row in rows:
        f = features[row["arm"]]
        idx = training_indices(y["pool"], row["size"], row["seed"])
        mean, std = f["pool"].mean(0), f["pool"].std(0, unbiased=False)
        probe = train_probe(f["pool"][idx], y["pool"][idx], task.num_labels, l2=row["choice"], mean=mean, std=std)
        with torch.no_grad():
            correct = probe(f["test"]).argmax(-1) == y["test"]
        if abs(float(correct.double().mean()) - row["accuracy"]) > 1e-6:
            raise RuntimeError(f"the refitted probe of {row['arm']} (size {row['size']}, seed {row['seed']}) scores "
                               f"{float(correct.double().mean())}, probe_curve reported {row['accuracy']}")
        row["correct"] = correct.tolist()
    return rows


def finetune_rows(encoders: Mapping[str, BertModel], encoded: Mapping[str, Any], task, sizes: Sequence[int | str],
                  seeds: int, learning_rates: Sequence[float], config, device: torch.device | str = "cpu",
                  progress: bool = True) -> list[dict[str, Any]]:
    """Fine-tune every encoder at every size and seed, as :func:`bertrepro.finetune.finetune_curve`
    (learning rate chosen on dev with the first seed, then reused), keeping test correctness.

    A :class:`LeftToRightBertModel` encoder stays causal inside the classifier (its sentence vector
    is the last token's); ``encoded`` holds the shared ``pool``/``dev``/``test`` encodings.
    """
    from .progress import bar as tqdm

    from .finetune import accuracy, classifier_from_encoder, fine_tune, predict, select_by_dev, training_indices

    y = {s: task.split(s)["labels"] for s in ("pool", "dev", "test")}
    rows = []
    bar = tqdm(total=len(encoders) * len(sizes) * (len(learning_rates) + seeds - 1), desc="fine-tuning",
               disable=not progress, leave=False)
    for name, encoder in encoders.items():
        causal = isinstance(encoder, LeftToRightBertModel)
        for size in sizes:
            chosen = None
            for seed in range(seeds):
                idx = training_indices(y["pool"], size, seed)
                results = {}

                def dev_acc(lr):
                    model = classifier_from_encoder(encoder, task.num_labels, seed=seed, dropout=config.dropout,
                                                    classifier_dropout=config.classifier_dropout)
                    if causal:
                        model.bert = left_to_right(model.bert)
                    results[lr] = fine_tune(model, encoded["pool"][idx], y["pool"][idx], config.replace(learning_rate=lr),
                                            seed=seed, device=device, progress=False)
                    bar.update(1)
                    return accuracy(predict(model, encoded["dev"], config.eval_batch_size, device), y["dev"])

                lr, scores = select_by_dev(learning_rates if chosen is None else (chosen,), dev_acc)
                chosen = lr
                best = results[lr]
                correct = predict(best.model, encoded["test"], config.eval_batch_size, device).argmax(-1) == y["test"]
                rows.append({"arm": name, "regime": "finetune", "size": size, "n_train": len(idx), "seed": seed,
                             "choice": lr, "dev_accuracy": scores[lr], "steps": best.steps,
                             "accuracy": float(correct.double().mean()), "correct": correct.tolist()})
                del results
    bar.close()
    return rows


# ---------------------------------------------------------------------------------------------
# Statistics and ordering claims
# ---------------------------------------------------------------------------------------------

def paired_difference(a: Sequence[Sequence[float]] | torch.Tensor,
                      b: Sequence[Sequence[float]] | torch.Tensor) -> dict[str, float]:
    r"""Mean of ``a - b`` over items and its standard error, for paired (seeds x items) scores.

    ``a[s][i]`` and ``b[s][i]`` score the same item ``i`` under the same training draw ``s`` (a
    single row for one seed). Two sources of error add up:

    * the draw of training sets (seeds): :math:`\mathrm{SE}_s^2 = \mathrm{Var}_s(D_s)/S` of the per-seed
      mean differences :math:`D_s` (0 with one seed);
    * the draw of test items, shared by every seed so it does not average out:
      :math:`\mathrm{SE}_i^2 = \overline{\mathrm{Var}_i(d_{s,i})}/n` (a paired, McNemar-style term).

    Returns ``difference``, ``se`` = :math:`\sqrt{\mathrm{SE}_s^2 + \mathrm{SE}_i^2}`, ``se_seeds``,
    ``se_items``, ``seeds`` and ``items``.
    """
    A = torch.as_tensor(a, dtype=torch.float64)
    B = torch.as_tensor(b, dtype=torch.float64)
    if A.dim() == 1:
        A, B = A[None], B[None]
    if A.shape != B.shape or A.dim() != 2 or A.numel() == 0:
        raise ValueError(f"paired scores need equal (seeds, items) shapes, got {tuple(A.shape)} and {tuple(B.shape)}")
    d = A - B  # (S, n)
    S, n = d.shape
    per_seed = d.mean(1)  # (S,)
    se_seeds = float(per_seed.std() / math.sqrt(S)) if S > 1 else 0.0
    se_items = float(math.sqrt(d.var(1, unbiased=True).mean() / n)) if n > 1 else 0.0
    return {"difference": float(per_seed.mean()), "se": math.hypot(se_seeds, se_items), "se_seeds": se_seeds,
            "se_items": se_items, "seeds": S, "items": n}


def ordering_claim(key: str, claim: str, measured: Sequence[Mapping[str, float]], paper: float | None,
                   unit: str, overall: Mapping[str, float] | None = None, sigmas: float = 2.0) -> dict[str, Any]:
    """Decide one ordering claim from measured paired differences, each oriented so that the
    paper's direction is positive.

    ``measured`` holds one :func:`paired_difference` per step of the claim (one for "A beats B", one
    per adjacent pair for "larger is better at every step"); ``overall`` (default: the single step)
    is the end-to-end difference reported as the claim's value. Verdicts:

    * every step positive by more than ``sigmas`` standard errors: ``"reproduced"`` -> status
      "qualitatively reproduced";
    * some step negative by more than ``sigmas`` standard errors: ``"reversed"``;
    * otherwise ``"within noise"`` (the data cannot tell); both give "not reproduced at this scale".
    """
    if not measured:
        raise ValueError(f"claim {key!r} has no measured differences")
    if overall is None:
        if len(measured) != 1:
            raise ValueError(f"claim {key!r} has {len(measured)} steps; pass overall= (the end-to-end difference)")
        overall = measured[0]
    if all(m["difference"] > sigmas * m["se"] and m["difference"] > 0 for m in measured):
        verdict = "reproduced"
    elif any(m["difference"] < -sigmas * m["se"] and m["difference"] < 0 for m in measured):
        verdict = "reversed"
    else:
        verdict = "within noise"
    return {"key": key, "claim": claim, "steps": [dict(m) for m in measured], "value": overall["difference"],
            "se": overall["se"], "paper": paper, "unit": unit, "sigmas": sigmas, "verdict": verdict,
            "status": "qualitatively reproduced" if verdict == "reproduced" else "not reproduced at this scale"}


def claim_sentence(c: Mapping[str, Any]) -> str:
    """One sentence stating a claim, what was measured and the verdict (generated from the numbers)."""
    v, se = c["value"], c["se"]
    paper = "" if c["paper"] is None else f" (paper: {c['paper']:+.2f} {c['unit']})"
    steps = ""
    if len(c["steps"]) > 1:
        steps = " Steps: " + ", ".join(f"{m['difference']:+.2f} ± {m['se']:.2f}" for m in c["steps"]) + "."
    if c["verdict"] == "reproduced":
        verdict = f"the paper's ordering holds by more than {c['sigmas']:g} standard errors"
    elif c["verdict"] == "reversed":
        verdict = (f"the opposite of the paper's ordering, by more than {c['sigmas']:g} standard errors"
                   + ("" if len(c["steps"]) == 1 else " at some step"))
    else:
        if v == 0 and len(c["steps"]) == 1:
            verdict = "no difference at all: the data cannot tell"
        else:
            direction = "the paper's direction" if v > 0 else ("no difference" if v == 0 else "the opposite direction")
            verdict = (f"{direction}, but {'some step is' if len(c['steps']) > 1 else 'it is'} within "
                       f"{c['sigmas']:g} standard errors: the data cannot tell")
    return (f"**{c['claim']}**: measured {v:+.2f} ± {se:.2f} {c['unit']}{paper}; {verdict} → "
            f"*{c['status']}*.{steps}")


def paper_difference(table: str, row_a: str, row_b: str, columns: Sequence[str]) -> float:
    """The paper's mean difference ``row_a - row_b`` over ``columns`` of one of its tables."""
    from .report import paper_value

    return sum(paper_value(table, row_a, c) - paper_value(table, row_b, c) for c in columns) / len(columns)


# ---------------------------------------------------------------------------------------------
# The whole ablation, cached
# ---------------------------------------------------------------------------------------------

def _settings_key(settings: AblationSettings, seed: int, device: str) -> str:
    blob = json.dumps({"settings": settings.to_dict(), "seed": seed, "device": torch.device(device).type, "format": 2},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_ablation(settings: AblationSettings, seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
                 rebuild: bool = False) -> dict[str, Any]:
    """Train (or load) every run, then measure cloze, perplexity, probe and fine-tuning results.

    The results go to ``ablation_dir(profile, seed)/results.json`` (atomically) and are returned from
    there on the next call with the same settings, seed and device type. The trained models stay in
    ``runs/<name>/model`` beside it (see :func:`load_run`).
    """
    from .checkpoints import atomic_write_text

    device = str(device)
    root = ablation_dir(settings.profile, seed)
    path = root / "results.json"
    key = _settings_key(settings, seed, device)
    if path.is_file() and not rebuild:
        cached = json.loads(path.read_text())
        if cached.get("settings_key") == key:
            cached["cached"] = True
            return cached
    t0 = time.perf_counter()
    runs = {name: train_or_load(name, cfg, root / "runs" / name, progress)
            for name, cfg in planned_runs(settings, seed, device).items()}
    t_train = time.perf_counter() - t0
    results = _measure(runs, settings, seed, device, progress)
    results.update(settings_key=key, settings=settings.to_dict(), seed=seed, device=torch.device(device).type,
                   seconds={"pretraining": t_train, "evaluation": time.perf_counter() - t0 - t_train})
    atomic_write_text(path, json.dumps(results))
    results["cached"] = False
    return results


def load_run(settings: AblationSettings, name: str, seed: int = 0, device: str | None = None,
             progress: bool = True) -> TrainedRun:
    """One run's model (trained again if its directory was removed)."""
    runs = planned_runs(settings, seed, device)
    if name not in runs:
        raise ValueError(f"unknown run {name!r}; the runs are {list(runs)}")
    return train_or_load(name, runs[name], ablation_dir(settings.profile, seed) / "runs" / name, progress)


def _measure(runs: Mapping[str, TrainedRun], settings: AblationSettings, seed: int, device: str,
             progress: bool) -> dict[str, Any]:
    from .finetune import FinetuneConfig, encode_texts, extract_features, topic_task
    from .params import count_parameters
    from .pretrain import EVAL_SEED, prepare_data, validation_examples

    first = next(iter(runs.values()))
    data = prepare_data(first.config)
    vocab = Path(data.vocab_path).read_text()
    for r in runs.values():
        if (r.model_dir / "vocab.txt").read_text() != vocab:
            raise ValueError(f"run {r.name} was trained with another vocabulary than {data.vocab_path}; "
                             f"delete {r.model_dir.parent} and run again")
    tok = data.tokenizer
    out: dict[str, Any] = {"runs": {}}
    for name, r in runs.items():
        out["runs"][name] = {"objective": r.config.objective,
                             "shape": [r.config.num_hidden_layers, r.config.hidden_size, r.config.num_attention_heads],
                             "parameters": count_parameters(r.model.config), "steps": r.config.total_steps,
                             "batch_size": r.config.batch_size, "max_seq_length": r.config.max_seq_length,
                             "train_seconds": r.train_seconds, "evaluation": r.evaluation}

    # -- cloze --
    arms = {o: runs[run_name(o, settings.arm_shape)] for o in OBJECTIVE_ARMS}
    T = first.config.max_seq_length
    items = make_cloze_items(data.validation_documents, tok, T, settings.cloze_items, settings.cloze_context, EVAL_SEED)
    word, _ = word_token_mask(tok)
    counts = data.token_counts.masked_fill(~word, 0)
    frequent = int(counts.argmax())
    cloze = {"items": len(items), "windows_length": T, "min_context": settings.cloze_context,
             "baseline": {"token": tok.convert_ids_to_tokens([frequent])[0],
                          "correct": (items.target == frequent).tolist()},
             "scores": {}}
    for o, r in arms.items():
        modes = [ARM_CLOZE_MODE[o]] + (["left_only"] if o != "ltr" else [])
        for mode in modes:
            s = cloze_scores(r.model, items, mode, tok, device=device, candidates=word)
            cloze["scores"][f"{o}:{mode}"] = {"correct": s.correct(items.target).tolist(), "log_prob": s.log_prob.tolist()}
    out["cloze"] = cloze

    # -- held-out masked-LM perplexity, per token --
    examples = validation_examples(data, first.config)
    out["mlm"] = {}
    for name, r in runs.items():
        if r.config.objective == "ltr":
            continue
        nll = masked_lm_nll(r.model, examples, data, r.config, device=device)
        out["mlm"][name] = {"nll": nll.tolist(), "perplexity": math.exp(float(nll.mean())),
                            "pretrain_perplexity": r.evaluation.get("mlm_perplexity")}

    # -- topic task --
    b = settings.budget
    task = topic_task(dev_per_class=b.dev_per_class, max_per_class=b.max_per_class)
    encoded = {s: encode_texts(tok, task.split(s)["texts"], b.max_seq_length) for s in ("pool", "dev", "test")}
    encoders = {name: topic_encoder(r.model, r.config.objective) for name, r in runs.items()}
    features = {name: {s: extract_features(enc, encoded[s], ("mean",), device=device, progress=False)["mean"]
                       for s in ("pool", "dev", "test")} for name, enc in encoders.items()}
    probe = probe_rows(features, task, settings.probe_sizes, settings.probe_seeds, b.l2_grid, progress)
    ft_config = FinetuneConfig(batch_size=b.batch_size, epochs=b.epochs, min_steps=b.min_steps,
                               max_seq_length=b.max_seq_length)
    arm_encoders = {run_name(o, settings.arm_shape): encoders[run_name(o, settings.arm_shape)] for o in OBJECTIVE_ARMS}
    finetune = finetune_rows(arm_encoders, encoded, task, settings.finetune_sizes, settings.finetune_seeds,
                             settings.learning_rates, ft_config, device, progress)
    out["topic"] = {"labels": list(task.label_names), "counts": task.counts(), "pooling": "mean",
                    "rows": probe + finetune}
    return out


# ---------------------------------------------------------------------------------------------
# Reading the results: tables and claims
# ---------------------------------------------------------------------------------------------

def _rows(results: Mapping[str, Any], name: str, regime: str, size) -> list[Mapping[str, Any]]:
    rows = [r for r in results["topic"]["rows"] if r["arm"] == name and r["regime"] == regime and r["size"] == size]
    if not rows:
        raise ValueError(f"no {regime} result for run {name!r} at size {size!r}")
    return sorted(rows, key=lambda r: r["seed"])


def _correct(results, name, regime, size) -> list[list[float]]:
    return [[float(c) for c in r["correct"]] for r in _rows(results, name, regime, size)]


def _mean_se(matrix: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean accuracy over (seeds x items) and its standard error (seed spread + binomial item term)."""
    A = torch.as_tensor(matrix, dtype=torch.float64)
    S, n = A.shape
    se_s = float(A.mean(1).std() / math.sqrt(S)) if S > 1 else 0.0
    se_i = float(math.sqrt(A.var(1, unbiased=True).mean() / n)) if n > 1 else 0.0
    return float(A.mean()), math.hypot(se_s, se_i)


def table5_summary(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """One row per arm: cloze accuracy (and the left-only control), probe and fine-tuning accuracy,
    each a (mean, standard error) pair in [0, 1]."""
    rows = []
    for o in OBJECTIVE_ARMS:
        name = run_name(o, settings.arm_shape)
        row = {"objective": o, "label": ARM_LABELS[o], "paper_row": PAPER_ROWS[o], "run": name}
        row["cloze"] = _mean_se([results["cloze"]["scores"][f"{o}:{ARM_CLOZE_MODE[o]}"]["correct"]])
        left = results["cloze"]["scores"].get(f"{o}:left_only") or results["cloze"]["scores"][f"{o}:left_to_right"]
        row["cloze_left_context"] = _mean_se([left["correct"]])
        row["cloze_nll"] = -float(torch.tensor(results["cloze"]["scores"][f"{o}:{ARM_CLOZE_MODE[o]}"]["log_prob"]).mean())
        for size in settings.probe_sizes:
            row[f"probe@{size}"] = _mean_se(_correct(results, name, "probe", size))
        for size in settings.finetune_sizes:
            row[f"finetune@{size}"] = _mean_se(_correct(results, name, "finetune", size))
        rows.append(row)
    return rows


def table6_summary(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """One row per size (smallest first): parameters, held-out MLM perplexity, probe accuracy."""
    rows = []
    for shape in settings.sizes:
        name = run_name("mlm_nsp", shape)
        row = {"shape": "/".join(map(str, shape)), "run": name, "parameters": results["runs"][name]["parameters"],
               "perplexity": results["mlm"][name]["perplexity"],
               "pretrain_perplexity": results["mlm"][name]["pretrain_perplexity"]}
        nll = torch.tensor(results["mlm"][name]["nll"], dtype=torch.float64)
        row["perplexity_se"] = row["perplexity"] * float(nll.std() / math.sqrt(nll.numel()))  # delta method
        for size in settings.probe_sizes:
            row[f"probe@{size}"] = _mean_se(_correct(results, name, "probe", size))
        rows.append(row)
    return rows


def _claim_size(settings: AblationSettings) -> int | str:
    """The probe size the claims use: all labels when measured, else the largest size."""
    return "all" if "all" in settings.probe_sizes else max(settings.probe_sizes)


def _points(d: Mapping[str, float]) -> dict[str, float]:
    """A :func:`paired_difference` of fractions in percentage points."""
    return {**d, **{k: 100 * d[k] for k in ("difference", "se", "se_seeds", "se_items")}}


def _topic_difference(results, a: str, b: str, regime: str, size) -> dict[str, float]:
    return _points(paired_difference(_correct(results, a, regime, size), _correct(results, b, regime, size)))


def table5_claims(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """The §5.1 orderings, decided from the measurements (differences in accuracy points).

    Bidirectionality is judged as the paper isolates it, No NSP against LTR & No NSP (neither has
    NSP); the value of NSP as BERT against No NSP. The paper's number is its mean difference over
    the classification columns of Table 5 (MNLI-m, QNLI, MRPC, SST-2).
    """
    arm = {o: run_name(o, settings.arm_shape) for o in OBJECTIVE_ARMS}
    cz = results["cloze"]["scores"]
    bi = paper_difference("table5", PAPER_ROWS["mlm"], PAPER_ROWS["ltr"], PAPER_TABLE5_COLUMNS)
    nsp = paper_difference("table5", PAPER_ROWS["mlm_nsp"], PAPER_ROWS["mlm"], PAPER_TABLE5_COLUMNS)
    p, f = _claim_size(settings), settings.finetune_sizes[0]
    cloze = _points(paired_difference([cz["mlm:bidirectional"]["correct"]], [cz["ltr:left_to_right"]["correct"]]))
    return [
        ordering_claim("table5.cloze.bidirectional_minus_ltr",
                       "A bidirectional MLM fills held-out blanks better than a left-to-right LM", [cloze], None, "points"),
        ordering_claim("table5.probe.bidirectional_minus_ltr",
                       f"No NSP beats LTR & No NSP (linear probe, {p} labels per topic)",
                       [_topic_difference(results, arm["mlm"], arm["ltr"], "probe", p)], bi, "points"),
        ordering_claim("table5.finetune.bidirectional_minus_ltr",
                       f"No NSP beats LTR & No NSP (fine-tuned, {f} labels per topic)",
                       [_topic_difference(results, arm["mlm"], arm["ltr"], "finetune", f)], bi, "points"),
        ordering_claim("table5.probe.nsp_minus_no_nsp",
                       f"NSP helps: BERT beats No NSP (linear probe, {p} labels per topic)",
                       [_topic_difference(results, arm["mlm_nsp"], arm["mlm"], "probe", p)], nsp, "points"),
        ordering_claim("table5.finetune.nsp_minus_no_nsp",
                       f"NSP helps: BERT beats No NSP (fine-tuned, {f} labels per topic)",
                       [_topic_difference(results, arm["mlm_nsp"], arm["mlm"], "finetune", f)], nsp, "points"),
    ]


def _perplexity_difference(results, a: str, b: str) -> dict[str, float]:
    """ppl(a) - ppl(b) on the same masked tokens; its standard error keeps the z-score of the paired
    test on the mean log-likelihoods (the two are monotone in each other)."""
    nll_a = torch.tensor(results["mlm"][a]["nll"], dtype=torch.float64)
    nll_b = torch.tensor(results["mlm"][b]["nll"], dtype=torch.float64)
    d = paired_difference(nll_a, nll_b)  # nats per token
    ppl_a, ppl_b = math.exp(float(nll_a.mean())), math.exp(float(nll_b.mean()))
    slope = (ppl_a - ppl_b) / d["difference"] if abs(d["difference"]) > 1e-12 else ppl_a  # exp at a point between
    return {**d, "difference": ppl_a - ppl_b, "se": d["se"] * slope, "nll_difference": d["difference"], "nll_se": d["se"]}


def table6_claims(results: Mapping[str, Any], settings: AblationSettings) -> list[dict[str, Any]]:
    """The §5.2 orderings: every step up the size grid lowers perplexity and raises probe accuracy.

    The value is the end-to-end difference (smallest vs largest); the paper's, that of its first and
    last rows (3/768/12 and 24/1024/16; accuracy: mean over MNLI-m, MRPC, SST-2).
    """
    from .report import PAPER_TABLES

    names = [run_name("mlm_nsp", s) for s in settings.sizes]
    paper_rows = [r for r, _ in PAPER_TABLES["table6"].rows]
    paper_ppl = paper_difference("table6", paper_rows[0], paper_rows[-1], ("LM ppl",))
    paper_acc = paper_difference("table6", paper_rows[-1], paper_rows[0], PAPER_TABLE6_COLUMNS)
    p = _claim_size(settings)
    pairs = list(zip(names, names[1:]))
    return [
        ordering_claim("table6.ppl.smallest_minus_largest", "Held-out MLM perplexity falls at every step up the size grid",
                       [_perplexity_difference(results, s, b) for s, b in pairs], paper_ppl, "perplexity",
                       overall=_perplexity_difference(results, names[0], names[-1])),
        ordering_claim("table6.probe.largest_minus_smallest",
                       f"Probe accuracy rises at every step up the size grid ({p} labels per topic)",
                       [_topic_difference(results, b, s, "probe", p) for s, b in pairs], paper_acc, "points",
                       overall=_topic_difference(results, names[-1], names[0], "probe", p)),
    ]


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def plot_table5(summary: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]], ax=None, sigmas: float = 2.0):
    """Grouped bars: one group per metric (label, key), one bar per arm, ± ``sigmas`` standard errors."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    colors = {"mlm_nsp": "tab:blue", "mlm": "tab:orange", "ltr": "tab:gray"}
    width = 0.8 / len(summary)
    for j, row in enumerate(summary):
        xs = [i + (j - (len(summary) - 1) / 2) * width for i in range(len(metrics))]
        means = [100 * row[k][0] for _, k in metrics]
        errs = [100 * sigmas * row[k][1] for _, k in metrics]
        ax.bar(xs, means, width, yerr=errs, capsize=3, color=colors[row["objective"]], label=row["label"])
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m for m, _ in metrics], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Table 5 analog: equal compute, different objectives (error bars ±{sigmas:g} SE)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_table6(summary: Sequence[Mapping[str, Any]], probe_key: str, paper=None, axes=None, sigmas: float = 2.0):
    """Perplexity and probe accuracy against parameters (log scale), ± ``sigmas`` standard errors.

    ``paper``: optional (parameters, perplexity) pairs of the paper's rows for the left panel.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    n = [r["parameters"] for r in summary]
    ax = axes[0]
    ax.errorbar(n, [r["perplexity"] for r in summary], yerr=[sigmas * r["perplexity_se"] for r in summary],
                marker="o", capsize=3, label="ours (held-out MLM)")
    for r in summary:
        ax.annotate(r["shape"], (r["parameters"], r["perplexity"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    if paper:
        ax2 = ax.twinx()
        ax2.plot([p for p, _ in paper], [v for _, v in paper], "s--", color="tab:red", label="paper, Table 6 (right axis)")
        ax2.set_ylabel("paper LM ppl", color="tab:red", fontsize=8)
        ax2.set_xscale("log")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_xscale("log")
    ax.set_xlabel("parameters (BertModel)")
    ax.set_ylabel("held-out MLM perplexity")
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, fontsize=7, loc="lower center")
    ax = axes[1]
    ax.errorbar(n, [100 * r[probe_key][0] for r in summary], yerr=[100 * sigmas * r[probe_key][1] for r in summary],
                marker="o", capsize=3, color="tab:green")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (BertModel)")
    ax.set_ylabel("probe test accuracy (%)")
    ax.grid(alpha=0.3)
    return axes
