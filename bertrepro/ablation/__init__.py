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

Where each piece lives: the settings, runs and cached measurements in
:mod:`~bertrepro.ablation.runs`; the cloze test in :mod:`~bertrepro.ablation.cloze`; the tables,
claims and plots in :mod:`~bertrepro.ablation.tables`; the statistics in :mod:`bertrepro.stats`.
"""
from ..labels import ARM_LABELS
from ..model import LeftToRightBertModel, left_to_right
from ..pretrain import masked_lm_nll
from ..stats import claim_sentence, ordering_claim, paired_difference
from .appendix import (PAPER_TABLE8_ROWS, arm_table, crossover, crossover_claim, curve_rows, plot_crossover,
                       table8_claims, table8_summary)
from .cloze import (ARM_CLOZE_MODE, CLOZE_MODES, MIN_NSP_BALANCED, MIN_OVER_BASELINE, MIN_Z, ClozeItems, ClozeScores,
                    cloze_inputs, cloze_scores, gate_note, learning_check, make_cloze_items, word_token_mask)
from .runs import (SETTINGS, AblationSettings, TrainedRun, ablation_dir, differing_fields, equal_flop_ltr_steps,
                   load_run, mix_name, planned_runs, pretrain_config, run_ablation, settings_for, snapshot_dirs,
                   train_or_load)
from .tables import (OBJECTIVE_ARMS, PAPER_ROWS, PAPER_TABLE5_COLUMNS, PAPER_TABLE6_COLUMNS, finetune_rows, gate_claim,
                     gated_sentence, paper_difference, plot_table5, plot_table6, probe_rows, run_name, table5_claims,
                     table5_summary, table6_claims, table6_name, table6_summary, topic_encoder)

__all__ = [
    "OBJECTIVE_ARMS", "ARM_LABELS", "PAPER_ROWS", "PAPER_TABLE5_COLUMNS", "PAPER_TABLE6_COLUMNS", "CLOZE_MODES",
    "ARM_CLOZE_MODE", "AblationSettings", "SETTINGS", "settings_for", "pretrain_config", "differing_fields", "run_name",
    "planned_runs", "ablation_dir", "TrainedRun", "train_or_load", "load_run", "equal_flop_ltr_steps", "mix_name",
    "snapshot_dirs", "table6_name",
    "ClozeItems", "make_cloze_items", "cloze_inputs", "ClozeScores", "cloze_scores", "word_token_mask",
    "MIN_OVER_BASELINE", "MIN_Z", "MIN_NSP_BALANCED", "learning_check", "gate_note", "gate_claim", "gated_sentence",
    "masked_lm_nll", "LeftToRightBertModel", "left_to_right", "topic_encoder",
    "probe_rows", "finetune_rows", "paired_difference", "ordering_claim", "claim_sentence",
    "paper_difference", "run_ablation", "table5_claims", "table6_claims", "table5_summary", "table6_summary",
    "plot_table5", "plot_table6", "PAPER_TABLE8_ROWS", "arm_table", "curve_rows", "crossover", "crossover_claim",
    "table8_summary", "table8_claims", "plot_crossover",
]
