"""Run profiles shared by every chapter and command line.

A profile sets the scale of a run:

* ``smoke`` -- tiny sizes; every chapter runs in seconds (used by the tests).
* ``cpu``   -- meaningful small-scale results; the whole book within 25 minutes on 2 cores.
* ``gpu``   -- paper-scale sizes where they fit one GPU.

The default is ``gpu`` when CUDA is available, else ``cpu``. This module is the one place that
holds per-profile numbers: :data:`PRETRAIN` (chapter 09's pre-training presets),
:data:`FINETUNE` (chapter 10's budgets) and :data:`ABLATION` (chapter 11's runs). It also holds
the one device rule (:func:`resolve_device`): CUDA for the ``gpu`` profile when available, the CPU
otherwise, so a ``cpu`` or ``smoke`` run gives the same numbers on any machine.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from .io import cache_dir  # re-exported: chapters call profiles.cache_dir

__all__ = ["PROFILES", "OFFLINE_ENV", "SETUP_PARAMETERS", "Run", "default_profile", "check_profile", "resolve_profile", "resolve_device",
           "setup", "pick", "set_offline", "cache_dir", "unknown_injected_parameters", "PRETRAIN", "FINETUNE", "ABLATION",
           "PAPER_LEARNING_RATES", "PAPER_BATCH_SIZE", "PAPER_EPOCHS", "PAPER_WARMUP_PROPORTION", "FIGURE4"]

PROFILES = ("smoke", "cpu", "gpu")

# Without these, transformers/datasets retry a missing network for 20-50 s before failing.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def set_offline(environ: dict | None = None) -> dict:
    """Set the Hugging Face offline switches in ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    for k, v in OFFLINE_ENV.items():
        env.setdefault(k, v)
    return env


def default_profile() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def check_profile(profile: Any) -> str:
    """Return ``profile`` when it names a profile; otherwise raise the one "unknown profile" error."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are {', '.join(PROFILES)}")
    return profile


def resolve_profile(profile: str | None) -> str:
    """Return ``profile`` (or the default when None), raising on an unknown name."""
    if profile is None or profile == "":
        return default_profile()
    return check_profile(profile)


def resolve_device(device: str | torch.device | None, profile: str | None) -> torch.device:
    """The device of a run: ``device`` when given; else CUDA for the ``gpu`` profile, CUDA when available
    for no profile (the paper's recipe), and the CPU for ``cpu`` and ``smoke``.

    Raises ``ValueError`` when CUDA is asked for and not available, the ``gpu`` profile included: a
    GPU machine with a broken driver stops at once instead of training BERT-base on its CPU. Pass
    ``device="cpu"`` to run the gpu profile's settings on the CPU on purpose.
    """
    if device is None or device == "":
        if profile == "gpu" and not torch.cuda.is_available():
            raise ValueError("the gpu profile needs CUDA, but torch.cuda.is_available() is False (no GPU, or a "
                             "broken driver: check nvidia-smi); use --profile cpu, or pass --device cpu "
                             "(device='cpu') to run the gpu profile on the CPU on purpose")
        device = "cuda" if (profile in ("gpu", None) and torch.cuda.is_available()) else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def pick(profile: str, choices: Mapping[str, Any]) -> Any:
    """Select the value for ``profile`` from a ``{"smoke": ..., "cpu": ..., "gpu": ...}`` mapping."""
    missing = [p for p in PROFILES if p not in choices]
    extra = [p for p in choices if p not in PROFILES]
    if missing or extra:
        raise ValueError(f"profile table must have exactly the keys {PROFILES}; missing {missing}, unknown {extra}")
    return choices[resolve_profile(profile)]


@dataclass(frozen=True)
class Run:
    """The resolved settings of one chapter run."""

    profile: str
    seed: int
    device: torch.device

    def pick(self, **choices: Any) -> Any:
        """``run.pick(smoke=..., cpu=..., gpu=...)`` -> the value for this run's profile."""
        return pick(self.profile, choices)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the run's seed (plus ``offset``)."""
        return torch.Generator().manual_seed(self.seed + offset)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


SETUP_PARAMETERS = ("profile", "seed", "device")
_INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects after the parameters cell


def _assigned_names(source: str) -> list[str] | None:
    """The names a cell assigns at top level (``x = ...``, ``x: T = ...``); None if it does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def unknown_injected_parameters(inputs: list[str]) -> tuple[list[str], list[str]]:
    """``(unknown, valid)`` parameter names from a kernel's input history (IPython's ``In``).

    papermill runs the chapter's ``parameters`` cell, then a cell it injects (starting
    ``# Parameters``) that assigns each ``-p name value``, so a misspelt name would only define an
    unused variable. Valid names are those the parameters cell assigns plus :data:`SETUP_PARAMETERS`.
    Returns two empty lists when no injected cell was run.
    """
    for i in range(len(inputs) - 1, -1, -1):
        if isinstance(inputs[i], str) and inputs[i].lstrip().startswith(_INJECTED_HEADER):
            injected = _assigned_names(inputs[i]) or []
            declared = (_assigned_names(inputs[i - 1]) or []) if i > 0 and isinstance(inputs[i - 1], str) else []
            valid = sorted(set(declared) | set(SETUP_PARAMETERS))
            return sorted(set(injected) - set(valid)), valid
    return [], sorted(SETUP_PARAMETERS)


def _kernel_inputs() -> list[str]:
    """The input history of the IPython kernel running this code; empty outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    ip = get_ipython()
    if ip is None:
        return []
    return list(ip.user_ns.get("In", []))


def setup(profile: str | None = None, seed: int = 0, device: str | None = None, **unknown: Any) -> Run:
    """Validate a chapter's parameters, seed every RNG and return the resolved :class:`Run`.

    Raises ``ValueError`` for an unknown profile or parameter, listing the valid ones: one passed
    here, or one papermill injected into the chapter (``-p profil smoke``), which would otherwise only
    define an unused variable while the chapter ran at the default profile.
    """
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)}; valid parameters are {', '.join(SETUP_PARAMETERS)}"
        )
    injected, valid = unknown_injected_parameters(_kernel_inputs())
    if injected:
        raise ValueError(
            f"unknown parameter(s) {injected} given to this chapter (papermill -p); "
            f"valid parameters are {', '.join(valid)}"
        )
    prof = resolve_profile(profile)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int (0, 1, 2, ...), got {seed!r}")
    dev = resolve_device(device, prof)
    seed_everything(seed)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_offline()
    return Run(profile=prof, seed=seed, device=dev)


# ---------------------------------------------------------------------------------------------
# The table: every profile's numbers
# ---------------------------------------------------------------------------------------------

# The paper's fine-tuning recipe (§4.1, Appendix A.3): the learning rate is chosen on dev from this grid.
PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)
PAPER_BATCH_SIZE = 32
PAPER_EPOCHS = 3
PAPER_WARMUP_PROPORTION = 0.1

# Pre-training presets: PretrainConfig fields per profile (bertrepro.pretrain.PretrainConfig.for_profile).
# * smoke: a 2-layer, 32-wide model on 200 articles for 20 steps: seconds, for tests.
# * cpu: BERT-Tiny's shape (L=2, H=128, A=2) at 64 tokens, batch 32, an 8k WordPiece vocabulary
#   trained on the train split, 6,000 steps (about 4-5 minutes on 2 cores; a step count, not a time
#   limit, so seeded runs are deterministic). Departures, each measured at 3,000 steps: lr 1e-3
#   (5e-4 learned more slowly; 2e-3 and 4e-3 left NSP at chance longer), 10 % warm-up, no dropout
#   (dropout 0.1 costs 30 % of the steps/s and ends lower on both tasks in equal time, as does H=256).
# * gpu: BERT-base with the paper's optimiser (lr 1e-4, batch 256, 128 tokens, dropout 0.1) and the
#   released 30,522-piece uncased vocabulary; 4k steps with 400 warm-up instead of 1M/10k (the bundled
#   corpus is about 1.2M tokens, so 4k steps are about 100 passes). One H100: 10.6 steps/s eager,
#   13-14 with --compile, 5-7 minutes a run.
PRETRAIN: dict[str, dict[str, Any]] = {
    "smoke": dict(max_documents=200, eval_documents=40, vocab_size=600, max_seq_length=32,
                  max_predictions_per_seq=5, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                  batch_size=8, learning_rate=1e-3, warmup_steps=2, total_steps=20, log_every=5,
                  checkpoint_every=4, keep_checkpoints=5, eval_batch_size=32, dropout=0.1),
    "cpu": dict(vocab_size=8000, max_seq_length=64, max_predictions_per_seq=10, num_hidden_layers=2,
                hidden_size=128, num_attention_heads=2, batch_size=32, learning_rate=1e-3,
                warmup_steps=600, total_steps=6000, log_every=50, checkpoint_every=1000,
                keep_checkpoints=6, eval_batch_size=128, dropout=0.0, num_threads=2),
    "gpu": dict(vocab="bert-base-uncased", vocab_size=30522, max_seq_length=128,
                max_predictions_per_seq=20, num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                batch_size=256, learning_rate=1e-4, warmup_steps=400, total_steps=4_000,
                log_every=100, eval_every=1_000, checkpoint_every=800, keep_checkpoints=5, eval_batch_size=256,
                dropout=0.1),
}

# Fine-tuning budgets: bertrepro.finetune.Budget fields per profile (chapter 10). The learning-rate
# grids are per arm and chosen on dev; the small models (random weights, or chapter 09's few thousand
# steps) need larger rates than the paper's grid, which the gpu profile uses. The cpu profile
# fine-tunes MiniLM (22M parameters) at one size with 2 seeds (its seed-to-seed spread is small).
_SMALL_MODEL_LEARNING_RATES = {"smoke": (1e-3,), "cpu": (1e-3, 3e-3), "gpu": PAPER_LEARNING_RATES}
FINETUNE: dict[str, dict[str, Any]] = {
    "smoke": dict(max_seq_length=32, dev_per_class=2, max_per_class=4, probe_sizes=(1, 2, "all"), probe_seeds=2,
                  l2_grid=(1e-2, 1e-1), finetune_sizes={"random": (2,), "pretrained": (2,), "minilm": (2,)},
                  finetune_seeds={"random": 2, "pretrained": 2, "minilm": 2},
                  learning_rates={a: _SMALL_MODEL_LEARNING_RATES["smoke"]
                                  for a in ("random", "pretrained", "minilm", "minilm-random")},
                  batch_size=8, epochs=1, min_steps=2),
    "cpu": dict(max_seq_length=64, dev_per_class=8, max_per_class=None, probe_sizes=(1, 3, 10, 30, "all"),
                probe_seeds=5, l2_grid=(1e-3, 1e-2, 1e-1, 1.0),
                finetune_sizes={"random": (10, "all"), "pretrained": (10, "all"), "minilm": (10,)},
                finetune_seeds={"random": 3, "pretrained": 3, "minilm": 2},
                learning_rates={"random": _SMALL_MODEL_LEARNING_RATES["cpu"],
                                "pretrained": _SMALL_MODEL_LEARNING_RATES["cpu"], "minilm": (1e-4, 3e-4),
                                "minilm-random": _SMALL_MODEL_LEARNING_RATES["cpu"]},
                batch_size=PAPER_BATCH_SIZE, epochs=PAPER_EPOCHS, min_steps=30),
    "gpu": dict(max_seq_length=128, dev_per_class=8, max_per_class=None, probe_sizes=(1, 3, 10, 30, "all"),
                probe_seeds=10, l2_grid=(1e-3, 1e-2, 1e-1, 1.0),
                finetune_sizes={a: (3, 10, 30, "all") for a in ("random", "pretrained", "minilm")},
                finetune_seeds={a: 5 for a in ("random", "pretrained", "minilm")},
                learning_rates={a: PAPER_LEARNING_RATES for a in ("random", "pretrained", "minilm", "minilm-random")},
                batch_size=PAPER_BATCH_SIZE, epochs=PAPER_EPOCHS, min_steps=30),
}

# Ablation runs: bertrepro.ablation.AblationSettings fields per profile (chapter 11). The MLM + NSP
# arm IS chapter 09's run (its kept checkpoints are the snapshots of the crossover curve); the MLM
# arm repeats its schedule without NSP (equal steps and equal FLOPs); the LTR arm's schedule has the
# FLOPs of chapter 09's run (bertrepro.train.flops, counted predictions) and stops at ltr_fraction of
# it. Table 6 (MLM + NSP) and Table 8 (MLM, four MASK/SAME/RND mixes) use smaller shapes.
# Idle-time estimates = FLOPs / rate (2 idle cores: ~150 GFLOP/s for this model family, measured;
# one H100 in bf16: the steps/s measured for chapter 09's shapes):
# * smoke: the smoke preset; seconds.
# * cpu: MLM arm 6,000 x 6.88 GFLOP = 41.3 TFLOP (~275 s), LTR 658 of 2,629 steps x 15.7 GFLOP =
#   10.3 TFLOP (~70 s), Table 6 + Table 8 (six runs of 1,000 steps at 1-2/64, where the FLOP rate
#   is ~0.7x) 6.9 TFLOP (~65 s), evaluation of 17 snapshots + 9 models and fine-tuning ~150-200 s:
#   ~560-610 s idle (an estimate from FLOPs; CI machines differ by up to 1.5x). At this budget
#   the 1-2/64 runs do not pass their learning checks (measured: 2/64 needs > 5,000 steps), so
#   Tables 6 and 8 are reported as inconclusive at cpu (gpu: larger runs, not measured).
# * gpu: MLM arm 4,000 steps (~360 s at 11 steps/s), LTR a quarter of its equal-FLOP schedule
#   (~820 of ~3,270 steps, ~90 s), Table 6 at 3/768 and 6/768 x 800 steps (~55 s), Table 8 at
#   4/256/4 x 1,000 steps (~50 s), evaluation ~60 s: ~10 minutes on one H100 (an estimate from
#   chapter 09's measured rates; not measured for this chapter).
_MIXES = ((0.8, 0.1, 0.1), (1.0, 0.0, 0.0), (0.8, 0.0, 0.2), (0.0, 0.0, 1.0))  # Table 8's MASK/SAME/RND rows
ABLATION: dict[str, dict[str, Any]] = {
    "smoke": dict(arm_shape=(2, 32, 2), ltr_fraction=0.5, ltr_snapshots=3, mlm_max_steps=None,
                  sizes=((1, 16, 2), (2, 16, 2)), table6_steps=10, table8_shape=(1, 16, 2), table8_mixes=_MIXES,
                  table8_steps=10, cloze_items=64, cloze_context=2, probe_sizes=(1, "all"), probe_seeds=2,
                  finetune_sizes=(2,), finetune_seeds=2, learning_rates=_SMALL_MODEL_LEARNING_RATES["smoke"]),
    "cpu": dict(arm_shape=(2, 128, 2), ltr_fraction=0.25, ltr_snapshots=5, mlm_max_steps=None,
                sizes=((1, 64, 2), (2, 64, 2)), table6_steps=1000, table8_shape=(1, 64, 2), table8_mixes=_MIXES,
                table8_steps=1000, cloze_items=2000, cloze_context=4, probe_sizes=(10, "all"), probe_seeds=3,
                finetune_sizes=(10,), finetune_seeds=2, learning_rates=_SMALL_MODEL_LEARNING_RATES["cpu"]),
    "gpu": dict(arm_shape=(12, 768, 12), ltr_fraction=0.25, ltr_snapshots=5, mlm_max_steps=None,
                sizes=((3, 768, 12), (6, 768, 12)), table6_steps=800, table8_shape=(4, 256, 4),
                table8_mixes=_MIXES, table8_steps=1000, cloze_items=5000, cloze_context=5, probe_sizes=(10, "all"),
                probe_seeds=5, finetune_sizes=(10,), finetune_seeds=3,
                learning_rates=_SMALL_MODEL_LEARNING_RATES["gpu"]),
}

# Figure 4 runs: bertrepro.finetune.figure4_train.Figure4Budget fields per profile and task (the
# chapter "Spans, tags and choices"). max_train / max_eval cap the items of the training split and of
# each of dev and test (None: all); the span tasks cut passages into max_seq_length windows every
# doc_stride tokens (run_squad.py's flags), the other tasks truncate to max_seq_length. Learning
# rates are per arm and chosen on dev, as in chapter 10.
# * smoke: a few items, one epoch, one learning rate: seconds.
# * cpu: the whole chapter (3 arms x 5 tasks, the learning rate chosen on dev) within about 4 minutes
#   on 2 cores: a few hundred training items, short windows (128 tokens, stride 64), the small models'
#   learning rates of chapter 10, batch 16 so that a few hundred items still make 60 steps; MiniLM
#   (22M parameters, ~50x the cost of a step of chapter 09's model) gets one learning rate and trains
#   on the first 96 training items (48 for the span tasks, whose passages take two windows, and for
#   SWAG, four sequences an item). Measured with chapter 09's step-1000 checkpoint standing in for its
#   final model (same shape, so the same cost) on 2 cores: 295 s (a loaded machine) for the 15
#   fine-tunings, baselines, NSP and agreement at 320/96 training and 120 dev/test items; 256 s (an
#   idle machine) at 256/64 and 100 for the span tasks. These sizes cut the evaluation and MiniLM's
#   training further to stay within 4 minutes.
_F4_SPAN = dict(max_query_length=64, max_answer_length=30)
_F4_SMALL = {"smoke": (1e-3,), "cpu": (1e-3, 3e-3)}


def _f4_lrs(small: tuple[float, ...], minilm: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    return {"random": small, "pretrained": small, "minilm": minilm}


_F4_SMOKE = dict(max_train=16, max_train_minilm=8, max_eval=12, max_seq_length=96, doc_stride=32,
                 max_query_length=64, max_answer_length=10, epochs=1, batch_size=8, min_steps=2,
                 learning_rates=_f4_lrs(_F4_SMALL["smoke"], (1e-4,)))
_F4_CPU = dict(max_train=320, max_train_minilm=96, max_eval=80, max_seq_length=128, doc_stride=64,
               max_query_length=64, max_answer_length=16, epochs=3, batch_size=16, min_steps=0,
               learning_rates=_f4_lrs(_F4_SMALL["cpu"], (2e-4,)))
_F4_GPU = dict(max_train=None, max_train_minilm=None, max_eval=None, max_seq_length=128, doc_stride=64,
               epochs=PAPER_EPOCHS, batch_size=PAPER_BATCH_SIZE, min_steps=0,
               learning_rates=_f4_lrs((5e-5, 3e-5, 2e-5), (5e-5, 3e-5, 2e-5)),
               **_F4_SPAN)
FIGURE4: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {t: dict(_F4_SMOKE) for t in ("qnli", "squad11", "squad20", "ner", "swag")},
    "cpu": {"qnli": dict(_F4_CPU, max_seq_length=64),
            "squad11": dict(_F4_CPU, max_train=256, max_train_minilm=48),
            "squad20": dict(_F4_CPU, max_train=256, max_train_minilm=48),
            "ner": dict(_F4_CPU, max_seq_length=64),
            "swag": dict(_F4_CPU, max_seq_length=64, max_train=160, max_train_minilm=48, max_eval=64)},
    "gpu": {"qnli": dict(_F4_GPU),
            "squad11": dict(_F4_GPU, max_seq_length=384, doc_stride=128, learning_rates=_f4_lrs((5e-5,), (5e-5,))),
            "squad20": dict(_F4_GPU, max_seq_length=384, doc_stride=128, epochs=2, batch_size=48,
                            learning_rates=_f4_lrs((5e-5,), (5e-5,))),
            "ner": dict(_F4_GPU),
            "swag": dict(_F4_GPU, max_seq_length=128, batch_size=16, learning_rates=_f4_lrs((2e-5,), (2e-5,)))},
}
