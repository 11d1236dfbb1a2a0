"""Run profiles shared by every chapter and command line.

A profile sets the scale of a run:

* ``smoke`` -- tiny sizes; every chapter runs in seconds (used by the tests).
* ``cpu``   -- meaningful small-scale results; the whole book within 25 minutes on 2 cores.
* ``gpu``   -- paper-scale sizes where they fit one GPU.

The default is ``gpu`` when CUDA is available, else ``cpu``. This module is the one place that
holds per-profile numbers: :data:`PRETRAIN` (chapter 09's pre-training presets),
:data:`FINETUNE` (chapter 10's budgets) and :data:`ABLATION` (chapter 12's runs). It also holds
the one device rule (:func:`resolve_device`): CUDA for the ``gpu`` profile when available, the CPU
otherwise, so a ``cpu`` or ``smoke`` run gives the same numbers on any machine. A chapter's set-up
(:func:`bertrepro.chapters.setup`) resolves its profile and device here.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from .dryrun import cut_counts, is_dry_run

__all__ = ["PROFILES", "OFFLINE_ENV", "default_profile", "check_profile", "resolve_profile", "resolve_device", "pick",
           "set_offline", "PRETRAIN", "FINETUNE", "ABLATION", "PAPER_LEARNING_RATES", "PAPER_BATCH_SIZE",
           "PAPER_EPOCHS", "PAPER_WARMUP_PROPORTION", "ANALOGS", "PLAN", "PLAN_RATE_PROFILE"]

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


# ---------------------------------------------------------------------------------------------
# The table: every profile's numbers
# ---------------------------------------------------------------------------------------------

# The paper's fine-tuning recipe (§4.1, Appendix A.3): the learning rate is chosen on dev from this grid.
PAPER_LEARNING_RATES = (5e-5, 4e-5, 3e-5, 2e-5)
PAPER_BATCH_SIZE = 32
PAPER_EPOCHS = 3
PAPER_WARMUP_PROPORTION = 0.1

# Pre-training presets: PretrainConfig fields per profile (bertrepro.pretrain.config.PretrainConfig.for_profile).
# * smoke: a 2-layer, 32-wide model on 200 articles for 20 steps, for tests.
# * cpu: BERT-Tiny's shape (L=2, H=128, A=2) at 64 tokens, batch 32, an 8k WordPiece vocabulary
#   trained on the train split, 6,000 steps (a step count, not a time limit, so seeded runs are
#   deterministic). Departures, each chosen on runs of 3,000 steps: lr 1e-3 (5e-4 learned more
#   slowly; 2e-3 and 4e-3 left NSP at chance longer), 10 % warm-up, no dropout (dropout 0.1 ended
#   lower on both tasks in equal time, as did H=256). The last 10 % of the steps train on 128 tokens
#   (20 predictions), the paper's second phase (Appendix A.2) at a quarter of its length: the span
#   tasks' 128-token windows then read position embeddings that were trained.
# * gpu: BERT-base with the paper's optimiser (lr 1e-4, batch 256, 128 tokens, dropout 0.1) and the
#   released 30,522-piece uncased vocabulary; 1.8k steps with 180 warm-up instead of 1M/10k (the bundled
#   corpus is about 1.2M tokens, so 1.8k steps are about 45 passes); the last 10 % at 384 tokens, the
#   longest window a later chapter reads (the paper: 512; 384 costs 27 s of the plan where 512 costs 39 s).
PRETRAIN: dict[str, dict[str, Any]] = {
    "smoke": dict(max_documents=200, eval_documents=40, vocab_size=600, max_seq_length=32,
                  max_predictions_per_seq=5, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                  batch_size=8, learning_rate=1e-3, warmup_steps=2, total_steps=20, log_every=5,
                  checkpoint_every=4, keep_checkpoints=5, eval_batch_size=32, dropout=0.1,
                  long_phase_fraction=0.1, long_seq_length=64, long_max_predictions_per_seq=10),
    "cpu": dict(vocab_size=8000, max_seq_length=64, max_predictions_per_seq=10, num_hidden_layers=2,
                hidden_size=128, num_attention_heads=2, batch_size=32, learning_rate=1e-3,
                warmup_steps=600, total_steps=6000, log_every=50, checkpoint_every=1000,
                keep_checkpoints=6, eval_batch_size=128, dropout=0.0, num_threads=2,
                long_phase_fraction=0.1, long_seq_length=128, long_max_predictions_per_seq=20),
    # gpu cut to fit the 10-minute plan (bertrepro.plan): 1.8k steps (was 4k; ~45 passes over the corpus,
    # a less-trained model for chapters 10-13 to fine-tune), warm-up 180, a checkpoint every 400 steps.
    "gpu": dict(vocab="bert-base-uncased", vocab_size=30522, max_seq_length=128,
                max_predictions_per_seq=20, num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                batch_size=256, learning_rate=1e-4, warmup_steps=180, total_steps=1_800,
                log_every=100, eval_every=500, checkpoint_every=400, keep_checkpoints=5, eval_batch_size=256,
                dropout=0.1, long_phase_fraction=0.1, long_seq_length=384, long_max_predictions_per_seq=60),
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

# Ablation runs: bertrepro.ablation.runs.AblationSettings fields per profile (chapter 12). The MLM + NSP
# arm IS chapter 09's run, at its shape (its kept checkpoints are the snapshots of the crossover
# curve). Table 5 compares the three arms at equal counted FLOPs (bertrepro.train.flops): chapter 09's
# run read at its kept checkpoint matched_step, the MLM arm (its schedule without NSP) stopped there,
# and the LTR arm (a schedule with the FLOPs of chapter 09's whole run) stopped at the step with the
# same FLOPs. Table 6 (MLM + NSP) and Table 8 (MLM, four MASK/SAME/RND mixes) use smaller shapes.
# * cpu: matched_step 2,000 of 6,000 (the MLM and LTR arms cost a third of chapter 09's run each);
#   sizes and table8_mixes are empty: Tables 6 and 8 are decided at the gpu profile only, because
#   their 1-2 layer, 64-wide runs stayed on the unigram plateau (perplexity ~881, NSP at chance) in
#   1,000 steps, and chapter 09's larger model needs more than that to leave it (the chapter shows its curve).
_MIXES = ((0.8, 0.1, 0.1), (1.0, 0.0, 0.0), (0.8, 0.0, 0.2), (0.0, 0.0, 1.0))  # Table 8's MASK/SAME/RND rows
ABLATION: dict[str, dict[str, Any]] = {
    "smoke": dict(matched_step=8, snapshots=3,
                  sizes=((1, 16, 2), (2, 16, 2)), table6_steps=10, table8_shape=(1, 16, 2), table8_mixes=_MIXES,
                  table8_steps=10, cloze_items=64, cloze_context=2, probe_sizes=(1, "all"), probe_seeds=2,
                  finetune_sizes=(2,), finetune_seeds=2, learning_rates=_SMALL_MODEL_LEARNING_RATES["smoke"]),
    "cpu": dict(matched_step=2000, snapshots=5,
                sizes=(), table6_steps=1000, table8_shape=(1, 64, 2), table8_mixes=(),
                table8_steps=1000, cloze_items=2000, cloze_context=4, probe_sizes=(10, "all"), probe_seeds=3,
                finetune_sizes=(10,), finetune_seeds=2, learning_rates=_SMALL_MODEL_LEARNING_RATES["cpu"]),
    # gpu cut to fit the 10-minute plan: Table 5 at step 400 of 2,000 (a fifth of chapter 09's FLOPs:
    # the arms are compared early in training), Table 6 runs of 400 steps (was 800: less separation),
    # Table 8 runs of 500 steps (was 1,000: the mixes' differences, a point or less in the paper, shrink).
    "gpu": dict(matched_step=400, snapshots=5,
                sizes=((3, 768, 12), (6, 768, 12)), table6_steps=400, table8_shape=(4, 256, 4),
                table8_mixes=_MIXES, table8_steps=500, cloze_items=5000, cloze_context=5, probe_sizes=(10, "all"),
                probe_seeds=5, finetune_sizes=(10,), finetune_seeds=3,
                learning_rates=_SMALL_MODEL_LEARNING_RATES["gpu"]),
}

# The analog tasks of Figure 4: bertrepro.finetune.analog_runs.AnalogBudget fields per profile and task
# (the chapter "Spans, tags and choices"). max_train / max_eval cap the items of the training split
# and of each of dev and test (None: all); the span tasks cut passages into max_seq_length windows
# every doc_stride tokens (run_squad.py's flags), the other tasks truncate to max_seq_length.
# task_options are the builders' harder constructions (negatives, distractors and companions chosen
# by word overlap; at most two sentences an NER article), so that no word rule solves a task.
# * smoke: a few items, one epoch, one learning rate, MiniLM feature-based only: seconds.
# * cpu: every training and test item for the small arms (a step of chapter 09's model costs
#   milliseconds), fine-tuned for as many epochs as dev keeps improving (patience 2), one learning
#   rate per task (measured on runs of every item: 1e-4 won on dev for QNLI, 1e-3 for NER, SWAG and
#   SQuAD; 3e-3 never won); SQuAD passages of 3 sentences fit one 128-token window. MiniLM (22M
#   parameters, a step about fifty of chapter 09's) is feature-based only at cpu, on the first 400
#   training items, 200 dev items and a fixed subset of 400 test items; its fine-tuning runs at gpu.
#   The feature-based heads try Table 7's six layer choices on NER, and the last layer and the
#   weighted sum of all on the other tasks (training a span head on every token of every window
#   costs about a second an epoch on 2 cores); NER compares the MLP head with a linear one (Table 7's
#   BiLSTM, several times slower, runs at gpu).
_F4_SPAN = dict(max_query_length=64, max_answer_length=30)
_F4_SMALL = {"smoke": (1e-3,), "cpu": (1e-3,)}
_F4_HARD = {"qnli": dict(negatives="overlap"), "squad11": dict(companions="overlap", k=3),
            "squad20": dict(companions="overlap", k=3), "ner": dict(max_per_article=2),
            "swag": dict(distractors="overlap")}


def _f4_lrs(small: tuple[float, ...], minilm: tuple[float, ...]) -> dict[str, tuple[float, ...]]:
    return {"random": small, "pretrained": small, "minilm": minilm}


_F4_SMOKE = dict(max_train=16, max_eval=12, minilm_train=8, minilm_eval=12, minilm_finetune=False,
                 max_seq_length=96, doc_stride=32,
                 max_query_length=64, max_answer_length=10, epochs=1, batch_size=8, min_steps=2,
                 learning_rates=_f4_lrs(_F4_SMALL["smoke"], (1e-4,)), feature_epochs=2, feature_patience=1,
                 feature_min_epochs=1)
_F4_CPU = dict(max_train=None, max_eval=None, minilm_train=400, minilm_dev=200, minilm_eval=400,
               minilm_finetune=False, feature_choices=("last", "sum_all"), feature_heads=("mlp", "linear"),
               feature_epochs=20, feature_min_epochs=6, feature_patience=3,
               max_seq_length=128, doc_stride=64, max_query_length=64, max_answer_length=16, epochs=4,
               batch_size=32, min_steps=0, patience=2, learning_rates=_f4_lrs(_F4_SMALL["cpu"], (5e-5,)))
# a span head reads every token of every window: fewer epochs (about a second each on 2 cores)
_F4_CPU_SPAN_FEATURES = dict(feature_epochs=12, feature_min_epochs=4, feature_patience=2)
# gpu: the paper's epochs and batch; one learning rate (5e-5, the grid's first) to fit the 10-minute plan.
_F4_GPU = dict(max_train=None, max_eval=None, minilm_train=None, minilm_eval=None, max_seq_length=128, doc_stride=64,
               epochs=PAPER_EPOCHS, batch_size=PAPER_BATCH_SIZE, min_steps=0,
               learning_rates=_f4_lrs((5e-5,), (5e-5,)),
               **_F4_SPAN)
ANALOGS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {t: dict(_F4_SMOKE, task_options=_F4_HARD[t]) for t in ("qnli", "squad11", "squad20", "ner", "swag")},
    "cpu": {"qnli": dict(_F4_CPU, max_seq_length=64, epochs=8, patience=3,
                         learning_rates=_f4_lrs((1e-4,), (5e-5,)), task_options=_F4_HARD["qnli"]),
            "squad11": dict(_F4_CPU, task_options=_F4_HARD["squad11"], **_F4_CPU_SPAN_FEATURES),
            "squad20": dict(_F4_CPU, task_options=_F4_HARD["squad20"], **_F4_CPU_SPAN_FEATURES),
            "ner": dict(_F4_CPU, max_seq_length=64, epochs=5, feature_choices=None, task_options=_F4_HARD["ner"]),
            "swag": dict(_F4_CPU, max_seq_length=64, max_train=800, epochs=3, batch_size=16,
                         task_options=_F4_HARD["swag"])},
    "gpu": {"qnli": dict(_F4_GPU, task_options=_F4_HARD["qnli"]),
            "squad11": dict(_F4_GPU, max_seq_length=384, doc_stride=128, learning_rates=_f4_lrs((5e-5,), (5e-5,)),
                            task_options=_F4_HARD["squad11"]),
            "squad20": dict(_F4_GPU, max_seq_length=384, doc_stride=128, epochs=2, batch_size=48,
                            learning_rates=_f4_lrs((5e-5,), (5e-5,)), task_options=_F4_HARD["squad20"]),
            "ner": dict(_F4_GPU, task_options=_F4_HARD["ner"]),
            "swag": dict(_F4_GPU, max_seq_length=128, batch_size=16, learning_rates=_f4_lrs((2e-5,), (2e-5,)),
                         task_options=_F4_HARD["swag"])},
}

# The compute plan's per-profile numbers (bertrepro.plan): where its seconds are priced ("h100": FLOPs at
# 40 % of an H100's bf16 peak; "cpu": at chapter 09's measured cpu rate) and the fixed seconds of each
# chapter (kernel start, data, tokenizers, figures, checks that are not training) and of the HTML build.
# cpu: from the measured cpu build (chapters 01-08 and 13 took 119 s together, about 13 s each; chapter
# 09 494 s, of which its 6,000 steps at 12.5 steps/s are 480 s). Chapters 10-12's are their measured
# times less their planned runs (10: 267 - 149 s; 11: 209 - 140 s; 12: 1,029 s less 805 s of runs and
# ~90 s that the tiny Table 6/8 shapes ran over their FLOP rate, for 9 final models, scaled to the 3 it
# now evaluates at cpu). gpu: the same CPU-side work, more for BERT-base's loading and chapter 13.
PLAN_RATE_PROFILE = "cpu"  # the profile whose chapter 09 speed anchors the CPU rate (bertrepro.plan)
_PLAN_CPU_FIXED = {**{f"{c:02d}": 13.0 for c in range(1, 14)}, "09": 14.0, "10": 118.0, "11": 69.0, "12": 100.0,
                   "html": 60.0}
PLAN: dict[str, dict[str, Any]] = {
    # smoke: 8 s a chapter, but 11 (29-33 s measured) and 12 (104-106 s on a contended 2-core machine)
    "smoke": dict(device="cpu", fixed={**{f"{c:02d}": 8.0 for c in range(1, 14)}, "11": 30.0, "12": 95.0,
                                       "html": 30.0}),
    "cpu": dict(device="cpu", fixed=_PLAN_CPU_FIXED),
    "gpu": dict(device="h100", fixed={**_PLAN_CPU_FIXED, "09": 30.0, "10": 40.0, "11": 60.0, "12": 60.0,
                                      "13": 30.0}),
}

# A dry run (bertrepro.dryrun, the runner's --dry-run) executes the gpu profile on the CPU with its counts cut.
if is_dry_run():
    cut_counts(PRETRAIN["gpu"], FINETUNE["gpu"], ABLATION["gpu"], ANALOGS["gpu"])
