"""The gpu book's code run on the CPU: ``python -m bertrepro.book --dry-run`` (``make book PROFILE=gpu
DRY_RUN=1``).

A dry run executes every chapter at the ``gpu`` profile on the CPU. It keeps the gpu profile's model
shapes, vocabulary, sequence lengths, windows, precision setting and ``compile`` flag, and cuts only
the counts (:func:`cut_counts`): batches of 2, a few steps per run, a few items per evaluation. The
runner sets :data:`DRY_RUN_ENV` for the chapters' kernels; :mod:`bertrepro.profiles` applies the cut
to its gpu entries when it is imported with that variable set. The book goes to its own folder
(:data:`DRY_RUN_OUTPUT`), with its own cache and scorecard, never the real ones.

Checked on a GPU only (a CPU cannot exercise them): bf16 autocast (the CPU runs fp32), CUDA kernels
and memory (BERT-base at batch 256 x 128 tokens), ``--compile`` on CUDA, and the seconds of the plan.
"""
from __future__ import annotations

import os
from typing import Any, MutableMapping

__all__ = ["DRY_RUN_ENV", "DRY_RUN_OUTPUT", "is_dry_run", "cut_counts"]

DRY_RUN_ENV = "BERTREPRO_DRY_RUN"
DRY_RUN_OUTPUT = "book/_build_dry"  # relative to the repository root


def is_dry_run(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether this process runs the gpu profile's counts cut for the CPU (``BERTREPRO_DRY_RUN=1``)."""
    return (os.environ if environ is None else environ).get(DRY_RUN_ENV) == "1"


def _first(rates: Any) -> Any:
    return {k: v[:1] for k, v in rates.items()} if isinstance(rates, dict) else tuple(rates)[:1]


def cut_counts(pretrain: dict[str, Any], finetune: dict[str, Any], ablation: dict[str, Any],
               analogs: dict[str, dict[str, Any]]) -> None:
    """Cut the counts of one profile's entries in place, keeping every shape, vocabulary, length and flag.

    Pre-training: batch 2, 4 steps with a checkpoint every 2, the last 2 in the second phase (so its
    long sequences run too), 100 articles (20 held out). Fine-tuning: 2 labels per topic, one seed, one
    learning rate, batch 2, one epoch of at least 2 steps. Ablation: Table 5 at step 2, runs of 2
    steps, 8 cloze items. The analog tasks: 4 items per split, batch 2, one epoch, one feature epoch.
    """
    pretrain.update(batch_size=2, total_steps=4, warmup_steps=1, checkpoint_every=2, keep_checkpoints=5,
                    long_phase_fraction=0.5,
                    log_every=1, eval_every=0, max_documents=100, eval_documents=20, eval_batch_size=8)
    arms = list(finetune["finetune_sizes"])
    finetune.update(dev_per_class=1, max_per_class=2, probe_sizes=(1, "all"), probe_seeds=1, l2_grid=(1e-2,),
                    finetune_sizes={a: (1,) for a in arms}, finetune_seeds={a: 1 for a in arms},
                    learning_rates=_first(finetune["learning_rates"]), batch_size=2, epochs=1, min_steps=2)
    ablation.update(matched_step=2, snapshots=2, table6_steps=2, table8_steps=2, cloze_items=8, probe_sizes=(1, "all"),
                    probe_seeds=1, finetune_sizes=(1,), finetune_seeds=1,
                    learning_rates=_first(ablation["learning_rates"]))
    for task in analogs.values():
        task.update(max_train=4, minilm_train=4, max_eval=4, minilm_eval=4, minilm_dev=4, batch_size=2, epochs=1,
                    min_steps=2, patience=0, feature_epochs=1, feature_min_epochs=1,
                    learning_rates=_first(task["learning_rates"]))
