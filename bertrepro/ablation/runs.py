"""Chapter 11's runs: the settings of each profile, the pre-training runs they plan, training (or
loading) them, and measuring every result once, cached as JSON.

Every run's settings live in :data:`bertrepro.profiles.ABLATION` (one entry per profile); results
are cached under ``bertrepro.profiles.cache_dir("ablation", profile, f"seed{seed}")`` and rebuilt
when absent or when the settings change. To add an experiment: plan its runs in
:func:`planned_runs`, measure it in a ``_measure_*`` function called by :func:`_measure`, and
read it in :mod:`bertrepro.ablation.tables`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..finetune import BUDGETS, Budget, FinetuneConfig, encode_texts, extract_features, topic_task
from ..io import atomic_write_text, cache_dir
from ..model import BertForPreTraining
from ..params import count_parameters
from ..pretrain import (EVAL_SEED, OBJECTIVES, PretrainConfig, PretrainData, load_or_train, masked_lm_nll, prepare_data,
                        validation_examples)
from ..profiles import ABLATION, PROFILES, check_profile
from .cloze import ARM_CLOZE_MODE, cloze_scores, make_cloze_items, word_token_mask
from .tables import OBJECTIVE_ARMS, finetune_rows, probe_rows, run_name, topic_encoder

__all__ = ["AblationSettings", "SETTINGS", "settings_for", "pretrain_config", "differing_fields", "run_name",
           "planned_runs", "ablation_dir", "TrainedRun", "train_or_load", "run_ablation", "load_run"]









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
    learning_rates: tuple[float, ...] = (1e-3, 3e-3)  # fine-tuning grid, chosen on dev with the first seed

    def __post_init__(self) -> None:
        check_profile(self.profile)
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
        names = {f.name for f in dataclasses.fields(PretrainConfig)}
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
    def budget(self) -> Budget:
        """The fine-tuning budget of this profile (task split, sequence length, probe penalties)."""
        return BUDGETS[self.profile]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pretrain_overrides"] = dict(self.pretrain_overrides)
        return d

SETTINGS: dict[str, AblationSettings] = {p: AblationSettings(profile=p, **ABLATION[p]) for p in PROFILES}


def settings_for(profile: str) -> AblationSettings:
    """The settings of ``profile`` (:data:`bertrepro.profiles.ABLATION`)."""
    return SETTINGS[check_profile(profile)]


def pretrain_config(settings: AblationSettings, objective: str, shape: Sequence[int] | None = None, seed: int = 0,
                    device: str | None = None):
    """The :class:`~bertrepro.pretrain.PretrainConfig` of one run: the profile's preset, the shared
    overrides, the run's objective and shape, and the ablation's step budget."""
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


def planned_runs(settings: AblationSettings, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Every distinct pre-training run: the three Table 5 arms, then the rest of the size grid."""
    runs = {run_name(o, settings.arm_shape): pretrain_config(settings, o, None, seed, device) for o in OBJECTIVE_ARMS}
    for shape in settings.sizes:
        runs.setdefault(run_name("mlm_nsp", shape), pretrain_config(settings, "mlm_nsp", shape, seed, device))
    return runs


def ablation_dir(profile: str, seed: int) -> Path:
    """``<cache>/ablation/<profile>/seed<seed>``: the results and the runs' models."""
    return Path(cache_dir("ablation", profile, f"seed{seed}"))


@dataclass
class TrainedRun:
    name: str
    config: Any  # PretrainConfig
    model: BertForPreTraining  # eval mode
    evaluation: dict[str, Any]  # pretrain's held-out evaluation at the last step
    train_seconds: float | None  # None when loaded from the cache
    model_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list, repr=False)


def train_or_load(name: str, config: PretrainConfig, out_dir: str | Path, progress: bool = True) -> TrainedRun:
    """The run's model from ``out_dir/model`` when complete and made with ``config``; otherwise
    pre-train it (resuming an interrupted run of the same configuration, restarting a stale one).
    The lookup is :func:`bertrepro.pretrain.load_or_train`, the one chapter 09's model uses."""
    r = load_or_train(config, out_dir, progress=progress, with_data=False)
    return TrainedRun(name, r.config, r.model.eval(), r.evaluation, r.train_time_s if r.steps_run else None,
                      r.model_dir, r.metrics)


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


def _runs_summary(runs: Mapping[str, TrainedRun]) -> dict[str, Any]:
    return {name: {"objective": r.config.objective,
                   "shape": [r.config.num_hidden_layers, r.config.hidden_size, r.config.num_attention_heads],
                   "parameters": count_parameters(r.model.config), "steps": r.config.total_steps,
                   "batch_size": r.config.batch_size, "max_seq_length": r.config.max_seq_length,
                   "train_seconds": r.train_seconds, "evaluation": r.evaluation} for name, r in runs.items()}


def _measure_cloze(runs: Mapping[str, TrainedRun], settings: AblationSettings, data: PretrainData,
                   device: str) -> dict[str, Any]:
    """Every Table 5 arm on the same held-out blanks, and the most-frequent-word baseline."""
    tok, T = data.tokenizer, next(iter(runs.values())).config.max_seq_length
    items = make_cloze_items(data.validation_documents, tok, T, settings.cloze_items, settings.cloze_context, EVAL_SEED)
    word, _ = word_token_mask(tok)
    frequent = int(data.token_counts.masked_fill(~word, 0).argmax())
    cloze = {"items": len(items), "windows_length": T, "min_context": settings.cloze_context,
             "baseline": {"token": tok.convert_ids_to_tokens([frequent])[0],
                          "correct": (items.target == frequent).tolist()},
             "scores": {}}
    for o in OBJECTIVE_ARMS:
        r = runs[run_name(o, settings.arm_shape)]
        for mode in [ARM_CLOZE_MODE[o]] + (["left_only"] if o != "ltr" else []):
            s = cloze_scores(r.model, items, mode, tok, device=device, candidates=word)
            cloze["scores"][f"{o}:{mode}"] = {"correct": s.correct(items.target).tolist(), "log_prob": s.log_prob.tolist()}
    return cloze


def _measure_mlm(runs: Mapping[str, TrainedRun], data: PretrainData, device: str) -> dict[str, Any]:
    """Held-out masked-LM perplexity of every masked run, per token (for paired comparisons)."""
    examples = validation_examples(data, next(iter(runs.values())).config)
    out = {}
    for name, r in runs.items():
        if r.config.objective == "ltr":
            continue
        nll = masked_lm_nll(r.model, examples, data, r.config, device=device)
        out[name] = {"nll": nll.tolist(), "perplexity": math.exp(float(nll.mean())),
                     "pretrain_perplexity": r.evaluation.get("mlm_perplexity")}
    return out


def _measure_topic(runs: Mapping[str, TrainedRun], settings: AblationSettings, data: PretrainData, device: str,
                   progress: bool) -> dict[str, Any]:
    """The topic task: a probe on every run's features, fine-tuning of the Table 5 arms."""
    b = settings.budget
    task = topic_task(dev_per_class=b.dev_per_class, max_per_class=b.max_per_class)
    encoded = {s: encode_texts(data.tokenizer, task.split(s)["texts"], b.max_seq_length) for s in ("pool", "dev", "test")}
    encoders = {name: topic_encoder(r.model, r.config.objective) for name, r in runs.items()}
    features = {name: {s: extract_features(enc, encoded[s], ("mean",), device=device, progress=False)["mean"]
                       for s in ("pool", "dev", "test")} for name, enc in encoders.items()}
    probe = probe_rows(features, task, settings.probe_sizes, settings.probe_seeds, b.l2_grid, progress)
    ft_config = FinetuneConfig(batch_size=b.batch_size, epochs=b.epochs, min_steps=b.min_steps,
                               max_seq_length=b.max_seq_length)
    arm_encoders = {run_name(o, settings.arm_shape): encoders[run_name(o, settings.arm_shape)] for o in OBJECTIVE_ARMS}
    finetune = finetune_rows(arm_encoders, encoded, task, settings.finetune_sizes, settings.finetune_seeds,
                             settings.learning_rates, ft_config, device, progress)
    return {"labels": list(task.label_names), "counts": task.counts(), "pooling": "mean", "rows": probe + finetune}


def _measure(runs: Mapping[str, TrainedRun], settings: AblationSettings, seed: int, device: str,
             progress: bool) -> dict[str, Any]:
    """Every measurement of the ablation; a new experiment adds a ``_measure_*`` part here."""
    data = prepare_data(next(iter(runs.values())).config)
    vocab = Path(data.vocab_path).read_text()
    for r in runs.values():
        if (r.model_dir / "vocab.txt").read_text() != vocab:
            raise ValueError(f"run {r.name} was trained with another vocabulary than {data.vocab_path}; "
                             f"delete {r.model_dir.parent} and run again")
    return {"runs": _runs_summary(runs), "cloze": _measure_cloze(runs, settings, data, device),
            "mlm": _measure_mlm(runs, data, device), "topic": _measure_topic(runs, settings, data, device, progress)}
