"""Data parallelism under ``torchrun``: joining the process group, cutting the global batch, seeding.

Every rank builds the same examples, draws the masks of the *global* batch with the same
generator and keeps its own contiguous slice of it (:func:`split_batch`), so a run on W processes
computes the gradient a single process computes for the same global batch (up to float
summation order).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["RendezvousError", "BatchSplit", "split_batch", "DistInfo", "env_int", "init_distributed", "derive_seed", "seed_rank_streams"]


class RendezvousError(RuntimeError):
    """A process could not join the process group (no master, a wrong address, a timeout)."""



@dataclass(frozen=True)
class BatchSplit:
    """``micro_batch_size × world_size × accumulation_steps == global_batch_size``."""

    global_batch_size: int
    world_size: int
    micro_batch_size: int
    accumulation_steps: int

    @property
    def per_rank(self) -> int:
        return self.micro_batch_size * self.accumulation_steps

    def rows(self, rank: int, micro_step: int) -> slice:
        """Rows of the global batch that ``rank`` uses in ``micro_step``: rank r owns the r-th
        contiguous block of ``per_rank`` rows, cut into ``accumulation_steps`` micro-batches."""
        start = rank * self.per_rank + micro_step * self.micro_batch_size
        return slice(start, start + self.micro_batch_size)


def split_batch(global_batch_size: int, world_size: int, max_micro_batch_size: int | None = None) -> BatchSplit:
    """Cut a global batch into per-rank micro-batches: ``micro × world × accumulation = global``.

    Every rank gets ``global / world`` sequences per step; when that exceeds ``max_micro_batch_size``
    (memory), it is processed in the fewest equal micro-batches that fit, and their gradients are
    accumulated. The world size must divide the global batch; no accumulation can fix that.

    Raises:
        ValueError: a non-positive size, or a world size that does not divide the global batch
            (the message names both and the ways out).
    """
    for name, v in (("global_batch_size", global_batch_size), ("world_size", world_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if max_micro_batch_size is not None and (not isinstance(max_micro_batch_size, int) or max_micro_batch_size <= 0):
        raise ValueError(f"max_micro_batch_size must be None or a positive int, got {max_micro_batch_size!r}")
    if global_batch_size % world_size:
        divisors = [d for d in range(1, global_batch_size + 1) if global_batch_size % d == 0 and d <= 64]
        lower = global_batch_size - global_batch_size % world_size
        raise ValueError(
            f"global batch size {global_batch_size} cannot be split over world size {world_size}: "
            f"per-rank micro-batch x world size x accumulation steps must equal the global batch, so the "
            f"world size must divide it. Run on a world size that divides {global_batch_size} "
            f"(e.g. {divisors}) or choose --batch-size as a multiple of {world_size} "
            f"(e.g. {lower or world_size} or {lower + world_size})."
        )
    per_rank = global_batch_size // world_size
    cap = per_rank if max_micro_batch_size is None else max_micro_batch_size
    accum = next(a for a in range(1, per_rank + 1) if per_rank % a == 0 and per_rank // a <= cap)
    return BatchSplit(global_batch_size, world_size, per_rank // accum, accum)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.backend is not None


def env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (torchrun sets it)") from None


def init_distributed(device_type: str, timeout_s: float = 60.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in RANK / WORLD_SIZE / LOCAL_RANK.

    No such variables (or WORLD_SIZE=1): a single process, nothing to join. NCCL on CUDA, gloo on
    CPU. ``timeout_s`` (env ``BERTREPRO_DIST_TIMEOUT`` wins) bounds the rendezvous and every
    collective, so a missing peer is an error, not a hang.
    """
    rank, world, local = env_int("RANK"), env_int("WORLD_SIZE"), env_int("LOCAL_RANK")
    if world is None and rank is None:
        return DistInfo()
    if world is None or rank is None:
        raise ValueError(f"RANK and WORLD_SIZE must be set together (got RANK={rank}, WORLD_SIZE={world}); "
                         f"launch with torchrun, which sets both")
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    if world == 1:
        return DistInfo()
    env_timeout = os.environ.get("BERTREPRO_DIST_TIMEOUT")
    if env_timeout:
        timeout_s = float(env_timeout)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set for a {world}-process run; launch with torchrun "
                         f"(or set MASTER_ADDR and MASTER_PORT to the rank-0 host and a free port)")
    backend = "nccl" if device_type == "cuda" else "gloo"
    local = rank if local is None else local
    if backend == "nccl":
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as e:  # DistStoreError, RuntimeError, TimeoutError ... depending on the failure
        raise RendezvousError(
            f"rank {rank} of {world} could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}) within {timeout_s:g} s: {e}. "
            f"Start all ranks together with torchrun --nproc_per_node N (and --nnodes/--rdzv-endpoint for "
            f"several machines), check the address and port of rank 0, or raise the wait with "
            f"--dist-timeout-s / BERTREPRO_DIST_TIMEOUT."
        ) from e
    return DistInfo(rank, world, local, backend)


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from ``seed`` and labels: independent streams that do not depend on call order."""
    h = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def seed_rank_streams(seed: int, step: int, rank: int) -> None:
    """Dropout (torch CPU/CUDA), python and numpy streams of one rank, from (seed, step, rank)."""
    s = derive_seed(seed, "rank-streams", step, rank)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)
