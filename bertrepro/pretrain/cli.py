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

from ..arguments import add_dataclass_arguments, dataclass_overrides, exit_code
from ..checkpoints import CheckpointError
from ..data import CORPORA
from ..profiles import PROFILES, resolve_profile
from ..train.distributed import RendezvousError
from ..train.optim import PRECISIONS
from .config import OBJECTIVES, PretrainConfig
from .guard import DivergedError, RunLockedError
from .loop import PretrainResult, pretrain
from .state import latest_checkpoint

__all__ = ["build_parser", "config_from_args", "run", "main"]

_PROG = "python -m bertrepro.pretrain"
_CHOICES = {"objective": OBJECTIVES, "precision": PRECISIONS, "vocab": ("train", "bert-base-uncased")}
_HELPS = {"corpus": "one of " + ", ".join(CORPORA) + " (wiki-vital is embedded; the WikiText ones need the network)"}


def build_parser() -> argparse.ArgumentParser:
    """``--profile`` and ``--output-dir``, one ``--field-name`` option per :class:`PretrainConfig`
    field (overriding the profile's preset), ``--resume``, ``--overwrite``, ``--cache-dir`` and ``--debug``."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Pre-training BERT with the masked LM and next-sentence "
        "prediction (BERT §3.1, Appendix A.2). Corpora: " + ", ".join(CORPORA) + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="preset: smoke | cpu | gpu (default: with --resume the checkpoint's, else gpu with "
                             "CUDA, else cpu); gpu without CUDA is an error unless --device cpu")
    parser.add_argument("--output-dir", required=True, help="where metrics, checkpoints and the model go")
    parser.add_argument("--resume", action="store_true", help="continue from the output dir's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an earlier run in the output dir and start again (otherwise refused)")
    parser.add_argument("--cache-dir", default=None, help="vocabulary cache (default $BERTREPRO_CACHE_DIR or ./.bertrepro_cache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    add_dataclass_arguments(parser, PretrainConfig, exclude=("profile",), choices=_CHOICES, helps=_HELPS)
    return parser


def _checkpoint_profile(output_dir: str) -> str | None:
    """The profile of the run saved in ``output_dir`` (its latest checkpoint), or None when there is none."""
    ckpt = latest_checkpoint(output_dir) if output_dir else None
    try:
        return json.loads((ckpt / "trainer_state.json").read_text())["pretrain_config"]["profile"]
    except (OSError, TypeError, KeyError, ValueError):
        return None


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The profile's preset with the options given on the command line (``--resume`` without
    ``--profile``: the checkpoint's profile)."""
    names = [n for n in PretrainConfig().to_dict() if n != "profile"]
    profile = args.profile
    if profile is None and getattr(args, "resume", False):
        profile = _checkpoint_profile(args.output_dir)
    return PretrainConfig.for_profile(resolve_profile(profile), **dataclass_overrides(args, names))


def run(argv: Sequence[str] | None = None) -> PretrainResult:
    """Parse ``argv`` and pre-train; returns the :class:`PretrainResult` and raises on an error."""
    return _run(build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> PretrainResult:
    config = config_from_args(args)
    result = pretrain(config, args.output_dir, resume=args.resume, cache_dir=args.cache_dir,
                      progress=not args.no_progress, overwrite=args.overwrite)
    if result.evaluation and (int(os.environ.get("RANK", "0")) == 0):
        print("held-out evaluation: " + json.dumps(result.evaluation), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status: 0 done, 2 bad input (one line on stderr; the
    traceback with ``--debug``), 1 a run that diverged or could not join its process group (one
    line), or a crash (a traceback)."""
    args = build_parser().parse_args(argv)
    return exit_code(lambda: _run(args), _PROG, debug=args.debug, inputs=(RunLockedError, CheckpointError),
                     failures=(DivergedError, RendezvousError), interrupted=lambda: _interrupted(args))


def _interrupted(args: argparse.Namespace) -> str:
    """What a Ctrl-C leaves: every checkpoint saved before it (each written whole), to resume from."""
    try:
        ckpt = latest_checkpoint(args.output_dir) if args.output_dir else None
    except (OSError, ValueError):
        ckpt = None
    if ckpt is None:
        return f"pre-training stopped before its first checkpoint; nothing of this run in {args.output_dir} to resume"
    return (f"pre-training stopped; the checkpoints saved in {args.output_dir} are kept, the latest {ckpt.name}: "
            f"continue with the same command and --resume")
