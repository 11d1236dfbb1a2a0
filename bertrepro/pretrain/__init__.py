r"""Pre-training BERT with the masked LM and next-sentence prediction (BERT §3.1, Appendix A.2).

The reference code is google-research/bert: ``create_pretraining_data.py`` (pairs and masking),
``run_pretraining.py`` (loss, gathered MLM head, evaluation) and ``optimization.py`` (Adam with
decoupled weight decay, linear warm-up and decay). One call does the whole job::

    from bertrepro.pretrain import PretrainConfig, pretrain
    result = pretrain(PretrainConfig.for_profile("cpu"), "runs/cpu")
    result.model, result.vocab_path, result.metrics, result.evaluation

and so does the command line (:mod:`bertrepro.pretrain.cli`): ``python -m bertrepro.pretrain``.

Where each piece lives:

* :mod:`~bertrepro.pretrain.config` -- :class:`PretrainConfig` (presets in :data:`bertrepro.profiles.PRETRAIN`);
* :mod:`~bertrepro.pretrain.data` -- corpus, vocabulary, NSP pairs, dynamic masks, the batch stream;
* :mod:`~bertrepro.pretrain.loop` -- :func:`pretrain`: set-up, the loop, finish;
* :mod:`~bertrepro.pretrain.state` -- checkpoints (bit-identical resume);
* :mod:`~bertrepro.pretrain.evaluate` -- held-out metrics on fixed masks, ``fill_mask``;
* :mod:`~bertrepro.pretrain.runs` -- the cached runs the chapters share (:func:`pretrained_model`);
* shared with fine-tuning: :mod:`bertrepro.train` (optimizer, schedules, mixed precision, data
  parallelism, FLOPs).

Departures from the original, each said where it is made: torch's AdamW bias-corrects its moments;
masking is dynamic; the sequence length stays at one value (the paper trains 90 % of the steps at
128 tokens and the last 10 % at 512); the ``cpu`` and ``gpu`` profiles shorten the schedule.

Shape legend: B batch (sequences), T sequence length, V vocabulary size, N predicted positions.
"""
from .cli import build_parser, config_from_args, main
from .config import EVAL_SEED, OBJECTIVES, PretrainConfig, differences
from .data import (BatchStream, Examples, PretrainData, epoch_examples, ltr_labels, make_batch, mean_predictions,
                   prepare_data, validation_examples)
from .evaluate import evaluate, fill_mask, masked_lm_nll, nsp_length_baseline
from .loop import PretrainResult, build_optimizer, build_scheduler, pretrain, read_metrics
from .runs import load_or_train, pretrained_dir, pretrained_model, run_inputs
from .state import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint

__all__ = [
    "OBJECTIVES", "EVAL_SEED", "PretrainConfig", "differences", "PretrainResult", "pretrain", "main", "build_parser",
    "config_from_args", "build_optimizer", "build_scheduler", "PretrainData", "Examples", "BatchStream",
    "prepare_data", "epoch_examples", "validation_examples", "make_batch", "mean_predictions", "ltr_labels",
    "TrainState", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "evaluate", "masked_lm_nll",
    "nsp_length_baseline", "fill_mask", "read_metrics", "pretrained_dir", "pretrained_model", "run_inputs",
    "load_or_train",
]
