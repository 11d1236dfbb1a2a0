r"""Fine-tuning BERT on a sentence-level task (BERT §4.1, Appendix A.3; google-research/bert ``run_classifier.py``).

Where each piece lives:

* :mod:`~bertrepro.finetune.classifier` -- the paper's recipe: a linear layer on the pooled ``[CLS]``
  vector, every weight trained (:func:`fine_tune`), the dev-set choice of the learning rate
  (:func:`tune_on_dev`);
* :mod:`~bertrepro.finetune.probe` -- the cheaper counterpart, a linear probe on frozen features
  (the feature-based approach of §5.3, with a linear classifier instead of a BiLSTM);
* :mod:`~bertrepro.finetune.tasks` -- encoded inputs, GLUE loaders (online only), the book's offline
  topic task (11 topics of Wikipedia articles pre-training never trained on), the arms;
* :mod:`~bertrepro.finetune.curves` -- chapter 10's data-efficiency curves and their budgets;
* :mod:`~bertrepro.finetune.analog_runs` -- the Figure 4 heads (pairs, spans, tags, choices) fine-tuned
  on the book's offline analogs through the same loop, scored with the official metrics;
* :mod:`~bertrepro.finetune.cli` -- ``python -m bertrepro.finetune`` (:mod:`~bertrepro.finetune.analog_cli`
  for the Figure 4 tasks).

Deviations from the reference code, each also noted where it happens:

* torch's ``AdamW`` applies bias correction; BERT's ``AdamWeightDecayOptimizer`` did not.
* ``min_steps``: with a handful of labels, 3 epochs are a handful of steps; the small-data end of the
  book's curve trains for at least ``min_steps`` (Mosbach et al., 2021, recommend training longer on
  small data sets). The default, 0, is the paper's recipe.
* The ``smoke`` and ``cpu`` budgets (:data:`bertrepro.profiles.FINETUNE`) choose the learning rate
  from larger values than the paper's grid: small models, random weights and few steps need them
  (chosen on dev, like the paper's). The ``gpu`` budget uses the paper's grid.
* Dropout while fine-tuning is 0.1 (``FinetuneConfig.dropout``) whatever the pre-trained model used.
"""
from .classifier import (FinetuneConfig, FinetuneResult, classifier_from_encoder, fine_tune, predict, tune_on_dev)
from .cli import build_parser, main
from .curves import (BUDGETS, Budget, compare, find_point, finetune_curve, finetune_points, plot_curves, probe_curve,
                     summarize, training_indices)
from .probe import POOLINGS, LinearProbe, accuracy, extract_features, select_by_dev, train_probe
from .tasks import (ARMS, GLUE_DATASET, GLUE_OFFLINE_DEFAULT, GLUE_TASKS, TASK_SEED, Arm, Encoded, GlueTask, TopicTask,
                    encode_texts, load_arm, load_glue, stratified_subsample, topic_task)

__all__ = [
    "FinetuneConfig", "FinetuneResult", "Encoded", "encode_texts", "stratified_subsample", "POOLINGS",
    "extract_features", "LinearProbe", "train_probe", "accuracy", "select_by_dev",
    "classifier_from_encoder", "fine_tune", "predict", "tune_on_dev",
    "GlueTask", "GLUE_TASKS", "GLUE_DATASET", "GLUE_OFFLINE_DEFAULT", "load_glue",
    "TASK_SEED", "TopicTask", "topic_task", "ARMS", "Arm", "load_arm",
    "Budget", "BUDGETS", "training_indices", "probe_curve", "finetune_points", "finetune_curve",
    "summarize", "find_point", "compare", "plot_curves", "build_parser", "main",
]
