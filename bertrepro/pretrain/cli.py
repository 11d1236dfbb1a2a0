"""The command line of :mod:`bertrepro.pretrain`, unchanged on one process or under ``torchrun``::

    python -m bertrepro.pretrain --profile smoke --output-dir runs/smoke
    python -m bertrepro.pretrain --profile cpu --output-dir runs/cpu --max-steps 1000
    python -m bertrepro.pretrain --profile cpu --output-dir runs/cpu --resume
    python -m bertrepro.pretrain --profile cpu --output-dir runs/no_nsp --objective mlm
    torchrun --nproc_per_node 2 -m bertrepro.pretrain --profile cpu --output-dir runs/ddp
    torchrun --nproc_per_node gpu -m bertrepro.pretrain --profile gpu --output-dir runs/gpu --compile
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

from ..arguments import add_dataclass_arguments, dataclass_overrides
from ..profiles import PROFILES, resolve_profile
from ..train.optim import PRECISIONS
from .config import OBJECTIVES, PretrainConfig
from .loop import PretrainResult, pretrain

__all__ = ["build_parser", "config_from_args", "main"]

_CHOICES = {"objective": OBJECTIVES, "precision": PRECISIONS, "vocab": ("train", "bert-base-uncased")}


def build_parser() -> argparse.ArgumentParser:
    """``--profile`` and ``--output-dir``, one ``--field-name`` option per :class:`PretrainConfig`
    field (overriding the profile's preset), ``--resume`` and ``--cache-dir``."""
    parser = argparse.ArgumentParser(
        prog="python -m bertrepro.pretrain", description="Pre-training BERT with the masked LM and next-sentence "
        "prediction (BERT §3.1, Appendix A.2).", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="preset: smoke | cpu | gpu (default: gpu with CUDA, else cpu)")
    parser.add_argument("--output-dir", required=True, help="where metrics, checkpoints and the model go")
    parser.add_argument("--resume", action="store_true", help="continue from the output dir's latest checkpoint")
    parser.add_argument("--cache-dir", default=None, help="vocabulary cache (default $BERTREPRO_CACHE_DIR or ./.bertrepro_cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dataclass_arguments(parser, PretrainConfig, exclude=("profile",), choices=_CHOICES)
    return parser


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The profile's preset with the options given on the command line."""
    names = [n for n in PretrainConfig().to_dict() if n != "profile"]
    return PretrainConfig.for_profile(resolve_profile(args.profile), **dataclass_overrides(args, names))


def main(argv: Sequence[str] | None = None) -> PretrainResult:
    """The command line; returns the :class:`PretrainResult` (so tests can call it)."""
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    result = pretrain(config, args.output_dir, resume=args.resume, cache_dir=args.cache_dir,
                      progress=not args.no_progress)
    if result.evaluation and (int(os.environ.get("RANK", "0")) == 0):
        print("held-out evaluation: " + json.dumps(result.evaluation), flush=True)
    return result
