"""Pieces the pre-training and fine-tuning loops share: the optimizer and its schedules, mixed
precision, evaluation mode, data parallelism, and FLOP accounting. Each loop stays an explicit
``for`` loop written where it is used (:mod:`bertrepro.pretrain.loop`, :mod:`bertrepro.finetune.classifier`).
"""
from .distributed import BatchSplit, DistInfo, derive_seed, init_distributed, seed_rank_streams, split_batch
from .flops import (count_step_flops, estimate_mfu, forward_flops, measure_peak_flops, mlm_head_flops, steps_for_flops,
                    train_step_flops)
from .optim import (WarmupLinearDecay, autocast, build_adamw, decay_parameter_names, eval_mode, learning_rate_at,
                    optimizer_step, param_groups)

__all__ = [
    "BatchSplit", "DistInfo", "derive_seed", "init_distributed", "seed_rank_streams", "split_batch",
    "count_step_flops", "estimate_mfu", "forward_flops", "measure_peak_flops", "mlm_head_flops", "steps_for_flops",
    "train_step_flops",
    "WarmupLinearDecay", "autocast", "build_adamw", "decay_parameter_names", "eval_mode", "learning_rate_at",
    "optimizer_step", "param_groups",
]
