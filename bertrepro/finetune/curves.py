"""Chapter 10's data-efficiency curves: accuracy against labeled articles for every arm, as a linear
probe and fully fine-tuned, with the budgets of each profile (:data:`bertrepro.profiles.FINETUNE`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..labels import ARM_LABELS
from ..model import BertModel
from ..profiles import FINETUNE, PROFILES
from ..progress import bar as tqdm
from ..stats import difference_test, mean_std
from .classifier import FinetuneConfig, predict, tune_on_dev
from .probe import accuracy, select_by_dev, train_probe
from .tasks import ARMS, TASK_SEED, Arm, Encoded, TopicTask, stratified_subsample

__all__ = ["Budget", "BUDGETS", "training_indices", "probe_curve", "finetune_points", "finetune_curve", "summarize",
           "find_point", "compare", "plot_curves"]


@dataclass(frozen=True)
class Budget:
    """What chapter 10 runs at one profile."""

    max_seq_length: int  # tokens per article
    dev_per_class: int  # dev articles per topic
    max_per_class: int | None  # cap on pool and test articles per topic (smoke only)
    probe_sizes: tuple[int | str, ...]  # labeled articles per topic; "all" = the whole pool
    probe_seeds: int  # training-set draws per size
    l2_grid: tuple[float, ...]  # probe penalties, chosen on dev
    finetune_sizes: Mapping[str, tuple[int | str, ...]]  # per arm
    finetune_seeds: Mapping[str, int]  # per arm
    learning_rates: Mapping[str, tuple[float, ...]]  # per arm, chosen on dev with the first seed
    batch_size: int
    epochs: float
    min_steps: int

BUDGETS: dict[str, Budget] = {p: Budget(**FINETUNE[p]) for p in PROFILES}


def training_indices(labels: torch.Tensor, size: int | str, seed: int) -> torch.Tensor:
    """The training articles of one curve point: ``size`` per topic (all of a smaller topic), or ``"all"``.

    Draws with the same ``seed`` are nested across sizes, and every arm gets the same articles.
    """
    if size == "all":
        return torch.arange(len(labels))
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(f"size must be a number of articles per class or 'all', got {size!r}")
    return stratified_subsample(labels, size, torch.Generator().manual_seed(TASK_SEED + seed), cap=True)


def probe_curve(features: Mapping[str, Mapping[str, torch.Tensor]], task: TopicTask, sizes: Sequence[int | str],
                seeds: int, l2_grid: Sequence[float], progress: bool = True) -> list[dict[str, Any]]:
    """Linear-probe accuracy for every arm, size and seed.

    ``features[arm]`` holds ``"pool"``, ``"dev"`` and ``"test"`` (N, H) features. As for fine-tuning,
    the L2 penalty is chosen on dev with the first seed and reused for the others; ``"all"`` is one
    point (every seed would draw the same articles, and the probe is deterministic). Returns one row
    per (arm, size, seed) with ``accuracy`` on the test set.
    """
    y = {s: task.split(s)["labels"] for s in ("pool", "dev", "test")}
    rows = []
    jobs = [(a, size, seed) for a in features for size in sizes for seed in range(1 if size == "all" else seeds)]
    chosen: dict[tuple, float] = {}
    for arm, size, seed in tqdm(jobs, desc="linear probes", disable=not progress, leave=False):
        f = features[arm]
        idx = training_indices(y["pool"], size, seed)
        mean, std = f["pool"].mean(0), f["pool"].std(0, unbiased=False)  # unlabeled pool statistics
        fit = {}

        def dev_acc(l2):
            fit[l2] = train_probe(f["pool"][idx], y["pool"][idx], task.num_labels, l2=l2, mean=mean, std=std)
            return accuracy(fit[l2](f["dev"]), y["dev"])

        l2, scores = select_by_dev([chosen[arm, size]] if (arm, size) in chosen else l2_grid, dev_acc)
        chosen[arm, size] = l2
        rows.append({"arm": arm, "regime": "probe", "size": size, "n_train": len(idx), "seed": seed, "choice": l2,
                     "dev_accuracy": scores[l2], "n_test": len(y["test"]),
                     "accuracy": accuracy(fit[l2](f["test"]), y["test"])})
    return rows


def finetune_points(encoders: Mapping[str, BertModel], encoded: Callable[[str], Mapping[str, Encoded]],
                    task: TopicTask, sizes: Callable[[str], Sequence[int | str]], seeds: Callable[[str], int],
                    learning_rates: Callable[[str], Sequence[float]], config: FinetuneConfig,
                    device: torch.device | str = "cpu", progress: bool = True) -> Iterator[dict[str, Any]]:
    """Fine-tune every encoder at every size and seed; yield each point with its test logits.

    The learning rate is chosen on dev from ``learning_rates(name)`` with the first seed and reused
    for the others (the paper chooses it once per task, §4.1). ``encoded(name)`` holds the
    ``"pool"``, ``"dev"`` and ``"test"`` encodings. Each point: ``name``, ``size``, ``seed``,
    ``n_train``, ``choice`` (the learning rate), ``scores`` (dev accuracy per rate), ``result``
    (:class:`FinetuneResult`) and ``test_logits`` (N, num_labels).
    """
    y = {s: task.split(s)["labels"] for s in ("pool", "dev", "test")}
    bad = {a: seeds(a) for a in encoders if not isinstance(seeds(a), int) or seeds(a) < 1}
    if bad:
        raise ValueError(f"every arm needs at least one seed, got {bad}")
    jobs = [(a, size) for a in encoders for size in sizes(a)]
    bar = tqdm(total=sum(len(learning_rates(a)) + seeds(a) - 1 for a, _ in jobs), desc="fine-tuning",
               disable=not progress, leave=False)
    for name, size in jobs:
        enc, chosen = encoded(name), None
        for seed in range(seeds(name)):
            idx = training_indices(y["pool"], size, seed)
            grid = learning_rates(name) if chosen is None else (chosen,)
            chosen, scores, best = tune_on_dev(encoders[name], task.num_labels, (enc["pool"][idx], y["pool"][idx]),
                                               (enc["dev"], y["dev"]), grid, config, seed=seed, device=device,
                                               on_fit=lambda: bar.update(1))
            yield {"name": name, "size": size, "seed": seed, "n_train": len(idx), "choice": chosen, "scores": scores,
                   "result": best, "test_logits": predict(best.model, enc["test"], config.eval_batch_size, device)}
    bar.close()


def finetune_curve(arms: Mapping[str, Arm], encoded: Mapping[str, Mapping[str, Encoded]], task: TopicTask,
                   sizes: Mapping[str, Sequence[int | str]], seeds: int | Mapping[str, int],
                   learning_rates: Mapping[str, Sequence[float]],
                   config: FinetuneConfig, device: torch.device | str = "cpu", progress: bool = True) -> list[dict[str, Any]]:
    """Fine-tuning accuracy for every arm, size and seed (:func:`finetune_points`).

    ``encoded[arm]`` holds the arm's ``"pool"``, ``"dev"`` and ``"test"`` encodings; ``seeds`` is one
    count or one per arm; ``learning_rates[arm]`` the grid chosen from on dev with the first seed.
    """
    y_test = task.split("test")["labels"]
    points = finetune_points({a: arms[a].encoder for a in arms}, encoded.__getitem__, task,
                             lambda a: sizes.get(a, ()), lambda a: seeds if isinstance(seeds, int) else seeds[a],
                             learning_rates.__getitem__, config, device, progress)
    return [{"arm": p["name"], "regime": "finetune", "size": p["size"], "n_train": p["n_train"], "seed": p["seed"],
             "choice": p["choice"], "dev_accuracy": p["scores"][p["choice"]], "dev_scores": p["scores"],
             "steps": p["result"].steps, "seconds": p["result"].seconds, "final_loss": p["result"].losses[-1],
             "n_test": len(y_test), "accuracy": accuracy(p["test_logits"], y_test)} for p in points]


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, regime, size): mean and std of the accuracy over seeds."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["regime"], r["size"]), []).append(r)
    out = []
    for (arm, regime, size), rs in groups.items():
        m, s = mean_std([r["accuracy"] for r in rs])
        out.append({"arm": arm, "regime": regime, "size": size, "n_train": round(sum(r["n_train"] for r in rs) / len(rs)),
                    "mean": m, "std": s, "seeds": len(rs), "n_test": min(r.get("n_test", 1) for r in rs)})
    return out


def find_point(summary: Sequence[Mapping[str, Any]], arm: str, regime: str, size: int | str) -> Mapping[str, Any]:
    """The summary row of one (arm, regime, size)."""
    for r in summary:
        if r["arm"] == arm and r["regime"] == regime and r["size"] == size:
            return r
    raise ValueError(f"no {regime} result for arm {arm!r} at size {size!r}; measured: "
                     f"{sorted({(r['arm'], r['regime'], str(r['size'])) for r in summary})}")


def compare(summary: Sequence[Mapping[str, Any]], arm: str, baseline: str, regime: str, size: int | str,
            sigmas: float = 2.0) -> dict[str, Any]:
    """Does ``arm`` beat ``baseline`` at one point of the curve? (:func:`difference_test`)"""
    a, b = find_point(summary, arm, regime, size), find_point(summary, baseline, regime, size)
    t = difference_test(a, b, sigmas)
    return {"arm": arm, "baseline": baseline, "regime": regime, "size": size, "difference": t["difference"],
            "standard_error": t["standard_error"], "helps": t["ahead"], "arm_mean": a["mean"], "arm_std": a["std"],
            "baseline_mean": b["mean"], "baseline_std": b["std"], "seeds": min(a["seeds"], b["seeds"]),
            "n_test": t["n_test"]}


def plot_curves(summary: Sequence[Mapping[str, Any]], ax=None, title: str | None = None):
    """Accuracy against labeled articles, mean ± std over seeds, one line per arm and regime."""
    import matplotlib.pyplot as plt  # lazily: plotting is optional, and pyplot is slow to import

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"random": "tab:gray", "pretrained": "tab:blue", "minilm": "tab:green", "minilm-random": "tab:olive"}
    for (arm, regime) in sorted({(r["arm"], r["regime"]) for r in summary}, key=lambda k: (k[1], ARMS.index(k[0]))):
        pts = sorted((r for r in summary if r["arm"] == arm and r["regime"] == regime), key=lambda r: r["n_train"])
        ax.errorbar([p["n_train"] for p in pts], [p["mean"] for p in pts], yerr=[p["std"] for p in pts],
                    color=colors[arm], linestyle="-" if regime == "finetune" else "--",
                    marker="o" if regime == "finetune" else "s", capsize=3, markersize=4,
                    label=f"{ARM_LABELS[arm]}, {'fine-tuned' if regime == 'finetune' else 'linear probe'}")
    ax.set_xscale("log")
    ax.set_xlabel("labeled training articles")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return ax
