"""The pre-training run's settings, kept apart from the model's :class:`~bertrepro.config.BertConfig`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from ..config import BertConfig
from ..masking import check_mix
from ..profiles import PRETRAIN, check_profile
from ..train.optim import PRECISIONS

__all__ = ["OBJECTIVES", "EVAL_SEED", "PretrainConfig", "differences"]

OBJECTIVES = ("mlm_nsp", "mlm", "ltr")
# Held-out examples and their masks come from this fixed seed (the original's random_seed), not from
# the training seed, so every model is scored on the same pairs and the same masked positions.
EVAL_SEED = 12345


@dataclass
class PretrainConfig:
    """Training and profile settings, kept apart from the model's :class:`BertConfig`.

    Build one with :meth:`for_profile` and override fields by keyword. The architecture fields
    (``num_hidden_layers`` ... ``vocab``) are saved in every checkpoint and forced on resume.
    """

    profile: str | None = None  # the preset the values came from (smoke | cpu | gpu); None: the paper's recipe below
    # -- data --
    corpus: str = "wiki-vital"  # a name for bertrepro.data.load_corpus; only its train split is trained on
    max_documents: int | None = None  # keep the first N train documents (None: all)
    eval_documents: int | None = None  # keep the first N validation documents (None: all)
    vocab: str = "train"  # "train": WordPiece trained on the train split; "bert-base-uncased": the released vocab
    vocab_size: int = 8000  # target size of a trained WordPiece vocabulary
    max_seq_length: int = 128  # tokens of one example, [CLS] A [SEP] B [SEP] included
    short_seq_prob: float = 0.1  # probability of a shorter target length (create_pretraining_data.py)
    mlm_probability: float = 0.15  # fraction of positions chosen for the masked LM (§3.1)
    max_predictions_per_seq: int = 20  # cap on chosen positions per sequence (the original's default)
    # The second phase (Appendix A.2): "the rest 10% of the steps of sequence of 512 to learn the
    # positional embeddings". The last long_phase_fraction of total_steps train on long_seq_length tokens
    # with long_max_predictions_per_seq; 0 (or a length not longer than max_seq_length) means one phase.
    long_phase_fraction: float = 0.1
    long_seq_length: int = 512
    long_max_predictions_per_seq: int = 80  # about 0.15 x 512, rounded up as 20 is for 128
    mask_fraction: float = 0.8  # of the chosen positions: replaced by [MASK] (Appendix C.2, "MASK")
    same_fraction: float = 0.1  # left unchanged ("SAME")
    random_fraction: float = 0.1  # replaced by a random token ("RND"); the three add up to 1
    objective: str = "mlm_nsp"  # mlm_nsp (BERT) | mlm (No NSP) | ltr (left-to-right LM, no NSP); §5.1
    # -- model --
    num_hidden_layers: int = 12  # L
    hidden_size: int = 768  # H
    num_attention_heads: int = 12  # A
    intermediate_size: int | None = None  # feed-forward size; None means 4H
    dropout: float = 0.1  # hidden and attention dropout
    # -- optimisation --
    batch_size: int = 256  # GLOBAL batch: sequences per optimizer step, summed over all ranks
    micro_batch_size: int | None = None  # largest per-rank forward batch; accumulation makes up the rest
    learning_rate: float = 1e-4  # peak learning rate
    warmup_steps: int = 10_000  # linear warm-up from 0
    total_steps: int = 1_000_000  # length of the schedule: the learning rate reaches 0 here
    max_steps: int | None = None  # where this run stops (None: total_steps); never changes the schedule
    weight_decay: float = 0.01  # decoupled, on tensors with dim >= 2 only
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6  # BERT's value (torch's default is 1e-8)
    max_grad_norm: float = 1.0  # clip the global gradient norm
    # -- run --
    seed: int = 0
    device: str | None = None  # None: bertrepro.profiles.resolve_device (CUDA for gpu/no profile when available)
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the encoder
    num_threads: int | None = None  # torch.set_num_threads on CPU (None: leave torch's default)
    log_every: int = 50  # steps between metrics lines (the only steps that synchronise)
    eval_every: int = 0  # steps between held-out evaluations (0: only at the end)
    eval_batch_size: int = 64
    checkpoint_every: int = 1000  # steps between checkpoints; one is also written where the run stops
    keep_checkpoints: int = 2  # how many step directories to keep (2: a damaged newest one leaves a good one)
    peak_tflops: float | None = None  # accelerator peak for MFU; None: measured with a bf16 matmul on CUDA, no MFU elsewhere
    dist_timeout_s: float = 60.0  # process-group rendezvous/collective timeout (env BERTREPRO_DIST_TIMEOUT)

    # Fields that may differ between a checkpoint and the run resuming it.
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "max_steps", "device", "precision", "compile", "num_threads", "log_every", "eval_every",
        "eval_batch_size", "checkpoint_every", "keep_checkpoints", "peak_tflops", "dist_timeout_s",
        "micro_batch_size")
    # Fields that define the model; resume forces them.
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab", "vocab_size",
        "max_seq_length")

    def __post_init__(self) -> None:
        if self.profile is not None:
            check_profile(self.profile)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
        if self.vocab not in ("train", "bert-base-uncased"):
            raise ValueError(f"vocab must be 'train' or 'bert-base-uncased', got {self.vocab!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        positive = ("vocab_size", "max_seq_length", "max_predictions_per_seq", "num_hidden_layers", "hidden_size",
                    "num_attention_heads", "batch_size", "total_steps", "log_every", "eval_batch_size",
                    "checkpoint_every", "keep_checkpoints")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"PretrainConfig.{name} must be a positive int, got {v!r}")
        for name in ("max_documents", "eval_documents", "intermediate_size", "micro_batch_size", "max_steps",
                     "num_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"PretrainConfig.{name} must be None or a positive int, got {v!r}")
        if self.max_steps is not None and self.max_steps > self.total_steps:
            raise ValueError(
                f"max_steps ({self.max_steps}) is past the end of the schedule (total_steps={self.total_steps}); "
                f"raise total_steps to train longer (max_steps only says where a run stops)")
        if not isinstance(self.warmup_steps, int) or not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(f"warmup_steps must be an int in [0, total_steps={self.total_steps}), got {self.warmup_steps!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an int >= 0, got {self.eval_every!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for name in ("dropout", "short_seq_prob"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        check_mix(self.mask_fraction, self.same_fraction, self.random_fraction)
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.max_seq_length > 512:
            raise ValueError(f"max_seq_length {self.max_seq_length} exceeds BERT's 512 positions")
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length {self.max_seq_length} is too short for [CLS] A [SEP] B [SEP]")
        self._check_long_phase()
        for name in ("learning_rate", "adam_epsilon", "max_grad_norm", "dist_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.weight_decay < 1:
            raise ValueError(f"weight_decay must be in [0, 1), got {self.weight_decay!r}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ValueError(f"peak_tflops must be > 0, got {self.peak_tflops!r}")

    def _check_long_phase(self) -> None:
        if not isinstance(self.long_phase_fraction, (int, float)) or not 0.0 <= self.long_phase_fraction < 1.0:
            raise ValueError(f"long_phase_fraction must be in [0, 1), got {self.long_phase_fraction!r}")
        for name in ("long_seq_length", "long_max_predictions_per_seq"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"PretrainConfig.{name} must be a positive int, got {v!r}")
        if self.long_seq_length > 512:
            raise ValueError(f"long_seq_length {self.long_seq_length} exceeds BERT's 512 positions")
        if self.long_phase_fraction > 0 and self.long_seq_length < self.max_seq_length:
            raise ValueError(f"long_seq_length ({self.long_seq_length}) is shorter than max_seq_length "
                             f"({self.max_seq_length}); the second phase trains on longer sequences, or set "
                             f"long_phase_fraction=0 for one phase")

    # -- presets --
    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> "PretrainConfig":
        """The preset for ``profile`` (:data:`bertrepro.profiles.PRETRAIN`, where each preset's
        departures from the paper are explained), with ``overrides`` applied."""
        check_profile(profile)
        kwargs = {**PRETRAIN[profile], **overrides, "profile": profile}
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**kwargs)

    # -- derived --
    @property
    def stop_step(self) -> int:
        return self.total_steps if self.max_steps is None else self.max_steps

    @property
    def long_phase_start(self) -> int:
        """The step where the second phase begins (``total_steps`` when there is none).

        Steps ``0 .. long_phase_start - 1`` train on ``max_seq_length`` tokens, the rest on
        ``long_seq_length``. The boundary depends on the schedule, never on ``max_steps``.
        """
        if self.long_phase_fraction <= 0 or self.long_seq_length <= self.max_seq_length:
            return self.total_steps
        return self.total_steps - round(self.long_phase_fraction * self.total_steps)

    def phase_at(self, step: int) -> int:
        """0 for the first phase, 1 for the second: the phase of the update after ``step`` steps done."""
        return int(step >= self.long_phase_start)

    def phase_config(self, phase: int) -> "PretrainConfig":
        """The settings the data of ``phase`` is made with: phase 1 has the long sequence length and
        prediction cap (everything else, the seed and the objective included, unchanged)."""
        if phase not in (0, 1):
            raise ValueError(f"phase must be 0 or 1, got {phase!r}")
        if phase == 0:
            return self
        return dataclasses.replace(self, max_seq_length=self.long_seq_length,
                                   max_predictions_per_seq=self.long_max_predictions_per_seq)

    def phase_steps(self) -> tuple[int, int]:
        """(steps of the first phase, steps of the second) up to the stop step."""
        start = min(self.long_phase_start, self.stop_step)
        return start, self.stop_step - start

    def bert_config(self, vocab_size: int, pad_token_id: int = 0) -> BertConfig:
        """The model's architecture; ``vocab_size`` is the real size of the vocabulary file."""
        return BertConfig(
            vocab_size=vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size or 4 * self.hidden_size,
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            pad_token_id=pad_token_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PretrainConfig":
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown PretrainConfig field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**d)


def differences(a: Mapping[str, Any], b: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """The settings where two configurations (as dicts, e.g. :meth:`PretrainConfig.to_dict` or a saved
    ``config.json``) differ, ``{field: (a's value, b's value)}`` in field order, skipping ``ignore``;
    a field missing from one side counts as None there. The one comparison of resume, the run cache
    and the ablation's equal-compute checks."""
    skip = set(ignore)
    keys = [k for k in dict.fromkeys([*a, *b]) if k not in skip]
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}

