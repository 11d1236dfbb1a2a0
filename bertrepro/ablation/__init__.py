r"""Ablations at small scale: objectives (BERT §5.1, Table 5), model size (§5.2, Table 6), Appendix C.

Table 5 analog: three models with the same architecture, batch, sequence length and number of
optimizer steps, differing only in the pre-training objective:

* ``mlm_nsp`` -- BERT: masked LM + next-sentence prediction;
* ``mlm`` -- "No NSP": masked LM only;
* ``ltr`` -- "LTR & No NSP": a left-to-right language model (causal attention mask, every next
  token predicted), no NSP.

They are compared on a held-out *cloze* test (:mod:`~bertrepro.ablation.cloze`) and on the book's
topic task (:mod:`bertrepro.finetune`): a linear probe on frozen features and fine-tuning with few
labels. As in the paper, the left-only constraint of the LTR model also holds when it is probed and
fine-tuned (:class:`~bertrepro.model.LeftToRightBertModel`).

Table 6 analog: a grid of (L, H, A) models trained with MLM + NSP for the same number of steps,
compared on held-out masked-LM perplexity and linear-probe accuracy.

The package in layers, each importing only those above it:

* :mod:`~bertrepro.ablation.runs` -- run names (built and read in one place), the settings of each
  profile, the planned pre-training runs, training or loading them with their snapshots;
* :mod:`~bertrepro.ablation.cloze` -- the cloze test and the learning check;
* :mod:`~bertrepro.ablation.measure` -- every measurement of the runs (cloze, curves, perplexity, topic task);
* :mod:`~bertrepro.ablation.experiment` -- :func:`run_ablation`: train, measure, cache the results;
* :mod:`~bertrepro.ablation.tables` and :mod:`~bertrepro.ablation.appendix` -- Tables 5, 6 and 8, the
  crossover of Appendix C.1 and the per-run table, read from the results only.

The statistics are in :mod:`bertrepro.stats`.
"""
from .appendix import (PAPER_TABLE8_ROWS, arm_table, crossover, crossover_claim, curve_rows, plot_crossover,
                       table8_claims, table8_summary)
from .cloze import (ARM_CLOZE_MODE, CLOZE_MODES, MIN_NSP_BALANCED, MIN_OVER_BASELINE, MIN_Z, ClozeItems, ClozeScores,
                    cloze_inputs, cloze_scores, gate_note, learning_check, make_cloze_items, word_token_mask)
from .experiment import learning_curve, results_inputs, run_ablation
from .measure import finetune_rows, measure, probe_rows, run_summary, topic_encoder
from .runs import (SETTINGS, AblationSettings, TrainedRun, ablation_dir, at_step, differing_fields, equal_flop_ltr_steps,
                   load_run, mix_label, mix_name, planned_runs, pretrain_config, run_dir, run_name, run_role,
                   settings_for, snapshot_dirs, table6_name, table8_name, train_or_load)
from .tables import (GPU_ONLY, PAPER_ROWS, PAPER_TABLE5_COLUMNS, PAPER_TABLE6_COLUMNS, claim_size, gate_claim,
                     gated_sentence, gpu_only_sentence, matched_flops, nsp_sentence, paper_difference,
                     plateau_exit, plateau_sentence, plot_learning_curve, plot_table5, plot_table6, table5_claims, table5_summary, table6_claims,
                     table6_summary, topic_correct)

__all__ = [
    # runs
    "run_name", "table6_name", "table8_name", "mix_name", "mix_label", "run_role", "AblationSettings", "SETTINGS",
    "settings_for", "pretrain_config", "differing_fields", "planned_runs", "ablation_dir", "TrainedRun", "run_dir",
    "train_or_load", "at_step", "load_run", "snapshot_dirs", "equal_flop_ltr_steps",
    # cloze
    "CLOZE_MODES", "ARM_CLOZE_MODE", "ClozeItems", "word_token_mask", "make_cloze_items", "cloze_inputs",
    "ClozeScores", "cloze_scores", "MIN_OVER_BASELINE", "MIN_Z", "MIN_NSP_BALANCED", "learning_check", "gate_note",
    # measure, experiment
    "topic_encoder", "probe_rows", "finetune_rows", "run_summary", "measure", "results_inputs", "learning_curve", "run_ablation",
    # tables, appendix
    "PAPER_ROWS", "PAPER_TABLE5_COLUMNS", "PAPER_TABLE6_COLUMNS", "topic_correct", "claim_size", "table5_summary",
    "table6_summary", "table5_claims", "table6_claims", "paper_difference", "plot_table5", "plot_table6",
    "gate_claim", "gated_sentence", "GPU_ONLY", "matched_flops", "nsp_sentence", "plateau_sentence", "plateau_exit",
    "gpu_only_sentence", "plot_learning_curve", "PAPER_TABLE8_ROWS", "arm_table", "curve_rows", "crossover", "crossover_claim",
    "table8_summary", "table8_claims", "plot_crossover",
]
