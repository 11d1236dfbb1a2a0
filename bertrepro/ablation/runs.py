"""Chapter 12's runs: their names, the settings of each profile, the pre-training runs they plan,
and training (or loading) them with their snapshots. The bottom layer of :mod:`bertrepro.ablation`.

Run names are built and read here only: a Table 5 arm is ``<objective>-L<L>-H<H>-A<A>``
(:func:`run_name`), a Table 6 run ``t6-`` and its shape (:func:`table6_name`), a Table 8 run ``t8-``
and its mix (:func:`table8_name`); :func:`run_role` reads the part of the paper back from a name.

Every run's settings live in :data:`bertrepro.profiles.ABLATION` (one entry per profile). The
MLM + NSP arm is chapter 09's run (:func:`bertrepro.pretrain.runs.pretrained_model`); its kept
checkpoints are the snapshots of the crossover curve. The experiment that trains and measures
them, and caches its results by fingerprint (:mod:`bertrepro.cache`), is :mod:`bertrepro.ablation.experiment`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..finetune.curves import BUDGETS, Budget
from ..io import cache_dir
from ..checkpoints import load_pretrained
from ..model import BertForPreTraining
from ..pretrain.config import OBJECTIVES, PretrainConfig, differences
from ..pretrain.data import PretrainData, mean_predictions, prepare_data, validation_examples
from ..pretrain.evaluate import evaluate
from ..pretrain.runs import load_or_train, pretrained_dir
from ..profiles import ABLATION, PRETRAIN, PROFILES, check_profile
from ..train.flops import steps_for_flops, train_step_flops

__all__ = ["run_name", "table6_name", "table8_name", "mix_name", "mix_label", "run_role", "AblationSettings",
           "SETTINGS", "settings_for", "pretrain_config", "differing_fields", "planned_runs", "ablation_dir",
           "TrainedRun", "run_dir", "train_or_load", "at_step", "load_run", "snapshot_dirs", "equal_flop_ltr_steps"]


def run_name(objective: str, shape: Sequence[int]) -> str:
    """The name of one Table 5 arm, e.g. ``mlm_nsp-L2-H128-A2``."""
    L, H, A = shape
    return f"{objective}-L{L}-H{H}-A{A}"


def table6_name(shape: Sequence[int]) -> str:
    """The name of one Table 6 run, e.g. ``t6-mlm_nsp-L1-H64-A2``."""
    return "t6-" + run_name("mlm_nsp", shape)


def mix_name(mix: Sequence[float]) -> str:
    """``(0.8, 0.1, 0.1)`` -> ``"80_10_10"`` (MASK_SAME_RND in percent, Table 8's rows)."""
    return "_".join(str(round(100 * p)) for p in mix)


def mix_label(mix: Sequence[float]) -> str:
    """``(0.8, 0.1, 0.1)`` -> ``"80/10/10"``, as Table 8 writes its rows."""
    return "/".join(str(round(100 * p)) for p in mix)


def table8_name(mix: Sequence[float]) -> str:
    """The name of one Table 8 run, e.g. ``t8-80_10_10``."""
    return "t8-" + mix_name(mix)


def run_role(name: str) -> str:
    """The part of the paper a run belongs to, read from its name: ``table5``, ``table6`` or ``table8``."""
    return "table6" if name.startswith("t6-") else "table8" if name.startswith("t8-") else "table5"


@dataclass(frozen=True)
class AblationSettings:
    """What chapter 12 runs at one profile (see :data:`bertrepro.profiles.ABLATION`)."""

    profile: str  # smoke | cpu | gpu: the PretrainConfig preset every run starts from
    matched_step: int  # Table 5 compares the arms at the FLOPs of chapter 09's run at this step (a kept checkpoint)
    snapshots: int  # kept checkpoints of the MLM and LTR arms (evenly spaced up to their stop)
    sizes: tuple[tuple[int, int, int], ...]  # the Table 6 grid (MLM + NSP), smallest first; () = gpu profile only
    table6_steps: int  # schedule of every Table 6 run (10 % warm-up)
    table8_shape: tuple[int, int, int]  # the Table 8 runs' shape (MLM, no NSP)
    table8_mixes: tuple[tuple[float, float, float], ...]  # MASK/SAME/RND rows, the first the reference; () = gpu only
    table8_steps: int
    cloze_items: int = 2000  # held-out cloze items (one blank each)
    cloze_context: int = 4  # at least this many word pieces on EACH side of a blank
    probe_sizes: tuple[int | str, ...] = (10, "all")  # labeled articles per topic ("all": the whole pool)
    probe_seeds: int = 3  # training-set draws per probe size ("all" has one)
    finetune_sizes: tuple[int, ...] = (10,)  # the small-data end of the data-efficiency curve
    finetune_seeds: int = 2
    learning_rates: tuple[float, ...] = (1e-3, 3e-3)  # fine-tuning grid, chosen on dev with the first seed

    def __post_init__(self) -> None:
        check_profile(self.profile)
        for shape in (self.arm_shape, self.table8_shape, *self.sizes):
            L, H, A = shape
            if min(L, H, A) < 1 or H % A:
                raise ValueError(f"shape L/H/A = {L}/{H}/{A} is invalid: all must be positive and A must divide H")
        if len(set(self.sizes)) != len(self.sizes) or len(self.sizes) == 1:
            raise ValueError(f"the size grid needs at least two distinct shapes (or none), got {self.sizes}")
        if self.snapshots < 2:
            raise ValueError(f"need snapshots >= 2, got {self.snapshots!r}")
        preset = PRETRAIN[self.profile]
        every, total = preset["checkpoint_every"], preset["total_steps"]
        kept = range(max(every, total - (preset["keep_checkpoints"] - 1) * every), total + 1, every)
        if not isinstance(self.matched_step, int) or self.matched_step not in kept:
            raise ValueError(f"matched_step must be a kept checkpoint step of chapter 09's run ({list(kept)}), "
                             f"got {self.matched_step!r}")
        for name in ("table6_steps", "table8_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 2:
                raise ValueError(f"{name} must be an int >= 2, got {getattr(self, name)!r}")
        if len(self.table8_mixes) == 1 or len({mix_name(m) for m in self.table8_mixes}) != len(self.table8_mixes):
            raise ValueError(f"Table 8 needs at least two distinct mixes (or none), got {self.table8_mixes}")
        if self.cloze_items < 1 or self.cloze_context < 1:
            raise ValueError(f"need cloze_items >= 1 and cloze_context >= 1, got {self.cloze_items}, {self.cloze_context}")
        if self.probe_seeds < 1 or self.finetune_seeds < 1 or not self.learning_rates:
            raise ValueError("need probe_seeds >= 1, finetune_seeds >= 1 and at least one learning rate")
        if not self.probe_sizes or not self.finetune_sizes:
            raise ValueError("need at least one probe size and one fine-tuning size")

    @property
    def arm_shape(self) -> tuple[int, int, int]:
        """(L, H, A) of the Table 5 arms: chapter 09's preset (the MLM + NSP arm is chapter 09's run)."""
        preset = PRETRAIN[self.profile]
        return preset["num_hidden_layers"], preset["hidden_size"], preset["num_attention_heads"]

    @property
    def table6(self) -> bool:
        """Whether this profile runs Table 6 (else its claims are decided at the gpu profile)."""
        return bool(self.sizes)

    @property
    def table8(self) -> bool:
        """Whether this profile runs Table 8 (else its claims are decided at the gpu profile)."""
        return bool(self.table8_mixes)

    @property
    def budget(self) -> Budget:
        """The fine-tuning budget of this profile (task split, sequence length, probe penalties)."""
        return BUDGETS[self.profile]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SETTINGS: dict[str, AblationSettings] = {p: AblationSettings(profile=p, **ABLATION[p]) for p in PROFILES}


def settings_for(profile: str) -> AblationSettings:
    """The settings of ``profile`` (:data:`bertrepro.profiles.ABLATION`)."""
    return SETTINGS[check_profile(profile)]


def _shape(config_shape: Sequence[int]) -> dict[str, int]:
    L, H, A = config_shape
    return dict(num_hidden_layers=L, hidden_size=H, num_attention_heads=A, intermediate_size=4 * H)


def _short(settings: AblationSettings, objective: str, shape: Sequence[int], steps: int, seed: int,
           device: str | None, **extra: Any) -> PretrainConfig:
    """A Table 6 / Table 8 run: the profile's preset at ``shape`` on a ``steps``-step schedule."""
    return PretrainConfig.for_profile(settings.profile, objective=objective, **_shape(shape), total_steps=steps,
                                      warmup_steps=max(1, steps // 10), max_steps=None, checkpoint_every=steps,
                                      keep_checkpoints=1, eval_every=0, seed=seed, device=device, **extra)


def equal_flop_ltr_steps(settings: AblationSettings, seed: int = 0) -> dict[str, float]:
    """The LTR schedule with the FLOPs of chapter 09's run, and the stop steps of equal FLOPs, from counted
    predicted positions.

    Returns ``mlm_predicted`` / ``ltr_predicted`` (positions per step, counted on epoch 0 of each
    run's own data), ``mlm_step_flops`` / ``ltr_step_flops`` (:func:`bertrepro.train.flops.train_step_flops`),
    ``mlm_long_step_flops`` / ``ltr_long_step_flops`` (a step of the second phase, Appendix A.2),
    ``ch09_flops`` and ``ltr_total_steps`` (the LTR schedule), ``matched_flops`` (chapter 09's run at
    ``settings.matched_step``), ``matched_step`` and ``ltr_stop_step`` (the LTR step closest to
    ``matched_flops``: Table 5's arms are compared there).
    """
    base = PretrainConfig.for_profile(settings.profile, seed=seed)
    ltr = dataclasses.replace(base, objective="ltr")
    data = prepare_data(base)
    bert = base.bert_config(data.vocab_size)
    out = {"mlm_predicted": mean_predictions(data, base), "ltr_predicted": mean_predictions(data, ltr)}
    B, T = base.batch_size, base.max_seq_length
    out["mlm_step_flops"] = train_step_flops(bert, B, T, out["mlm_predicted"])
    out["ltr_step_flops"] = train_step_flops(bert, B, T, out["ltr_predicted"])
    # the second phase (Appendix A.2): the last steps of chapter 09's run are longer, and so are the LTR
    # schedule's, which shares its phases (it stops long before its own second phase)
    p1, p2 = base.phase_steps()
    long_T = base.phase_config(1).max_seq_length
    out["mlm_long_step_flops"] = train_step_flops(bert, B, long_T, mean_predictions(data, base, phase=1)) \
        if p2 else out["mlm_step_flops"]
    out["ltr_long_step_flops"] = train_step_flops(bert, B, long_T, mean_predictions(data, ltr, phase=1)) \
        if p2 else out["ltr_step_flops"]
    out["ch09_flops"] = p1 * out["mlm_step_flops"] + p2 * out["mlm_long_step_flops"]
    share = p2 / base.total_steps
    ltr_mean_step = (1 - share) * out["ltr_step_flops"] + share * out["ltr_long_step_flops"]
    out["ltr_total_steps"] = steps_for_flops(out["ch09_flops"], ltr_mean_step)
    out["matched_step"] = settings.matched_step
    out["matched_flops"] = (min(settings.matched_step, p1) * out["mlm_step_flops"]
                            + max(0, settings.matched_step - p1) * out["mlm_long_step_flops"])
    out["ltr_stop_step"] = steps_for_flops(out["matched_flops"], out["ltr_step_flops"])
    return out


def pretrain_config(settings: AblationSettings, objective: str, seed: int = 0, device: str | None = None,
                    flops: Mapping[str, float] | None = None) -> PretrainConfig:
    """The configuration of one Table 5 arm.

    ``mlm_nsp`` is chapter 09's preset itself (Table 5 reads its kept checkpoint at
    ``settings.matched_step``); ``mlm`` differs in the objective and stops at ``matched_step``
    (equal steps and, NSP's head aside, equal FLOPs); ``ltr`` has the schedule with chapter 09's
    FLOPs and its warm-up share, and stops at the step closest to the FLOPs of ``matched_step``
    MLM steps. ``flops`` is :func:`equal_flop_ltr_steps`' output (computed when None). The MLM and
    LTR arms keep ``settings.snapshots`` evenly spaced checkpoints (the crossover curve).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid objectives are {', '.join(OBJECTIVES)}")
    base = PretrainConfig.for_profile(settings.profile, seed=seed, device=device)
    if objective == "mlm_nsp":
        return base
    if objective == "mlm":
        stop, total, warmup = settings.matched_step, base.total_steps, base.warmup_steps
    else:
        flops = flops or equal_flop_ltr_steps(settings, seed)
        total = int(flops["ltr_total_steps"])
        stop = min(total, max(1, int(flops["ltr_stop_step"])))  # equal FLOPs, and never past the schedule
        warmup = round(total * base.warmup_steps / base.total_steps)
    return dataclasses.replace(base, objective=objective, total_steps=total, warmup_steps=warmup,
                               max_steps=None if stop == total else stop,
                               checkpoint_every=max(1, math.ceil(stop / settings.snapshots)),
                               keep_checkpoints=settings.snapshots + 1)


def differing_fields(a: PretrainConfig, b: PretrainConfig) -> set[str]:
    """Names of the PretrainConfig fields where ``a`` and ``b`` differ (:func:`bertrepro.pretrain.config.differences`)."""
    return set(differences(a.to_dict(), b.to_dict()))


def planned_runs(settings: AblationSettings, seed: int = 0, device: str | None = None) -> dict[str, PretrainConfig]:
    """Every pre-training run: the three Table 5 arms, the Table 6 grid, the Table 8 mixes."""
    flops = equal_flop_ltr_steps(settings, seed)
    runs = {run_name(o, settings.arm_shape): pretrain_config(settings, o, seed, device, flops)
            for o in OBJECTIVES}
    for shape in settings.sizes:
        runs[table6_name(shape)] = _short(settings, "mlm_nsp", shape, settings.table6_steps, seed, device)
    for mix in settings.table8_mixes:
        m, s, r = mix
        runs[table8_name(mix)] = _short(settings, "mlm", settings.table8_shape, settings.table8_steps, seed,
                                             device, mask_fraction=m, same_fraction=s, random_fraction=r)
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
    step: int | None = None  # the model's step when read at a kept checkpoint (at_step); None: its last logged


    @property
    def output_dir(self) -> Path:
        return self.model_dir.parent


def run_dir(settings: AblationSettings, name: str, config: PretrainConfig, seed: int) -> Path:
    """Chapter 09's directory for the MLM + NSP arm (shared with chapters 09 and 10), else the ablation's."""
    if name == run_name("mlm_nsp", settings.arm_shape):
        return pretrained_dir(settings.profile, seed)
    return ablation_dir(settings.profile, seed) / "runs" / name


def train_or_load(name: str, config: PretrainConfig, out_dir: str | Path, progress: bool = True) -> TrainedRun:
    """The run's model from ``out_dir/model`` when complete and made with ``config``; otherwise
    pre-train it (resuming an interrupted run of the same configuration, restarting a stale one).
    Chapter 09's run is looked up exactly as :func:`bertrepro.pretrain.pretrained_model` does."""
    out_dir = Path(out_dir)
    ch09 = config.profile is not None and out_dir == pretrained_dir(config.profile, config.seed)
    r = load_or_train(config, out_dir, cache_dir=out_dir.parent.parent if ch09 else None, progress=progress,
                      with_data=False)
    return TrainedRun(name, r.config, r.model.eval(), r.evaluation, r.train_time_s if r.steps_run else None,
                      r.model_dir, r.metrics)


def snapshot_dirs(output_dir: str | Path) -> dict[int, Path]:
    """The run's kept checkpoints, ``{step: directory}`` in step order (its snapshots)."""
    root = Path(output_dir) / "checkpoints"
    dirs = sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []
    return {int(p.name.split("-")[1]): p for p in dirs}


def at_step(run: TrainedRun, step: int, data: PretrainData, device: str | None = None) -> TrainedRun:
    """``run`` read at its kept checkpoint ``step``: that model, a held-out evaluation of it (as
    pre-training evaluates at its end), and the log up to ``step``; the directory stays the run's, so
    its snapshots are all found. Table 5 reads chapter 09's run this way at ``matched_step``."""
    snaps = snapshot_dirs(run.output_dir)
    if step not in snaps:
        raise ValueError(f"run {run.name} kept no checkpoint at step {step} (kept: {sorted(snaps)}); delete "
                         f"{run.output_dir} to train it again with its checkpoints")
    device = device or str(next(run.model.parameters()).device)
    model = load_pretrained(snaps[step], target="BertForPreTraining").to(device).eval()
    config = dataclasses.replace(run.config, max_steps=step)
    evaluation = evaluate(model, validation_examples(data, config), data, config, device=device)
    metrics = [m for m in run.metrics if int(m["step"]) <= step]
    return TrainedRun(run.name, config, model, evaluation, run.train_seconds, run.model_dir, metrics, step)


def load_run(settings: AblationSettings, name: str, seed: int = 0, device: str | None = None,
             progress: bool = True) -> TrainedRun:
    """One run's model (trained again if its directory was removed)."""
    runs = planned_runs(settings, seed, device)
    if name not in runs:
        raise ValueError(f"unknown run {name!r}; the runs are {list(runs)}")
    return train_or_load(name, runs[name], run_dir(settings, name, runs[name], seed), progress)
