"""Pre-training checkpoints: a directory per step, written to a temporary name and renamed; ``latest`` points to it.

A checkpoint holds everything a resumed run needs to continue bit-identically: weights, optimizer
moments, the schedule, the data position and every random-number generator's state
(:func:`rng_state` captures torch, CUDA, python and numpy streams of one process).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..checkpoints import CheckpointError, load_pretrained, save_pretrained
from ..io import atomic_write_text, fault_point, fsync_dir, sha256_file
from ..model import BertForPreTraining
from .config import PretrainConfig

__all__ = ["CHECKPOINT_FORMAT", "TrainState", "rng_state", "set_rng_state", "latest_checkpoint", "save_checkpoint",
           "load_checkpoint", "remove_stale_temporaries"]


CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """Everything a resumed run needs to continue bit-identically."""

    step: int  # optimizer updates done
    config: PretrainConfig
    model: BertForPreTraining
    optimizer: dict[str, Any]  # torch optimizer state_dict
    scheduler: dict[str, Any]  # LambdaLR state_dict
    data: dict[str, int]  # BatchStream.state_dict(): epoch, index, permutation seed
    masking_rng: torch.Tensor  # state of the masking generator (the same on every rank)
    rank_rng: list[dict[str, Any]]  # per rank: torch / cuda (ByteTensors), python, numpy states
    vocab_sha256: str
    world_size: int = 1


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _py_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _np_state_to_json(state: tuple) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a safetensors file (the one writer the checkpoint uses for optimizer and RNG tensors)."""
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} cannot be read ({e}); the checkpoint is corrupt") from e


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The directory ``output_dir/checkpoints/latest`` points to, or None when there is none.

    Without the ``latest`` pointer (deleted by hand), the newest published ``step-NNNNNNNN``
    folder is the latest checkpoint: a folder is published by a rename only once it is complete.
    """
    root = Path(output_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        steps = sorted(d for d in root.glob("step-*") if d.is_dir() and (d / "trainer_state.json").is_file())
        return steps[-1] if steps else None
    name = pointer.read_text().strip()
    if not name or "/" in name or name.startswith("."):
        raise CheckpointError(f"{pointer} holds {name!r}, not a checkpoint directory name; the checkpoint is corrupt")
    return root / name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(output_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left: ``checkpoints/.tmp-step-...-PID`` folders of interrupted saves and
    ``.NAME.PID.*.tmp`` files of interrupted atomic writes, when their PID is dead; those of live
    processes stay. Returns the paths removed."""
    output_dir = Path(output_dir)
    root = output_dir / "checkpoints"
    found = [(p, p.name.rsplit("-", 1)[-1]) for p in (root.glob(".tmp-*") if root.is_dir() else ())]
    for d in (output_dir, root, output_dir / "model"):
        if d.is_dir():
            found += [(p, p.name.split(".")[-3]) for p in d.glob(".*.tmp") if p.name.count(".") >= 4]
    removed = []
    for path, pid in sorted(found):
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _fsync_files(directory: Path) -> None:
    """Flush every file of ``directory`` and the directory itself to disk (before the rename that publishes it)."""
    for f in directory.iterdir():
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(directory)


def save_checkpoint(output_dir: str | os.PathLike, state: TrainState, keep: int = 2) -> Path:
    """Write ``state`` to ``output_dir/checkpoints/step-NNNNNNNN`` atomically.

    Files go into a temporary directory, which is renamed into place once complete; then the
    ``latest`` pointer is replaced atomically and older step directories beyond ``keep`` are
    removed. A crash at any point leaves ``latest`` naming a complete checkpoint: every file and the
    temporary directory are fsynced before the rename. A crash may leave the temporary directory;
    :func:`remove_stale_temporaries` removes it when the next run starts.

    Layout: ``config.json`` + ``model.safetensors`` (the Hugging Face layout; the architecture),
    ``optimizer.safetensors`` (moment tensors), ``rng.safetensors`` (torch/CUDA/masking generator
    states) and ``trainer_state.json`` (step, data position, schedule, optimizer groups, python and
    numpy RNG states, the PretrainConfig, and a SHA-256 of every file).
    """
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"  # lexicographic order of step-* names is step order
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        save_pretrained(state.model, tmp)
        opt = state.optimizer
        opt_tensors, opt_scalars = {}, {}
        for pid, entries in opt["state"].items():
            for k, v in entries.items():
                if torch.is_tensor(v):
                    opt_tensors[f"{pid}.{k}"] = v
                else:
                    opt_scalars[f"{pid}.{k}"] = v
        _write_tensors(tmp / "optimizer.safetensors", opt_tensors)
        fault_point("save")  # crash tests: a kill here leaves a half-written temporary folder
        rng_tensors = {"masking": state.masking_rng}
        rng_json = []
        for r, s in enumerate(state.rank_rng):
            rng_tensors[f"rank{r}.torch"] = s["torch"]
            if s.get("cuda") is not None:
                rng_tensors[f"rank{r}.cuda"] = s["cuda"]
            rng_json.append({"python": _py_state_to_json(s["python"]), "numpy": _np_state_to_json(s["numpy"])})
        _write_tensors(tmp / "rng.safetensors", rng_tensors)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        meta = {
            "format": CHECKPOINT_FORMAT, "step": state.step, "world_size": state.world_size,
            "pretrain_config": state.config.to_dict(), "data": state.data, "scheduler": state.scheduler,
            "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
            "rng": rng_json, "vocab_sha256": state.vocab_sha256, "files": files,
        }
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
        k = 0
        while final.exists():  # a re-save of the same step never touches the complete one
            k += 1
            final = root / f"step-{state.step:08d}-{k}"
        _fsync_files(tmp)
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", final.name)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> TrainState:
    """Read a checkpoint written by :func:`save_checkpoint`: an output directory (its latest
    checkpoint) or a ``step-*`` directory itself.

    Raises:
        CheckpointError: nothing to resume from, a missing file, a checksum that does not match
            (a corrupt or altered file), or unreadable contents. The message names the file.
    """
    path = Path(path)
    if (path / "trainer_state.json").is_file() or path.name.startswith("step-"):
        ckpt = path
    else:
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(f"no checkpoint to resume from in {str(path)!r} (no checkpoints/latest); "
                                  f"run without --resume to start a new run there")
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint directory {str(ckpt)!r} does not exist")
    meta_file = ckpt / "trainer_state.json"
    if not meta_file.is_file():
        raise CheckpointError(f"{str(ckpt)!r} is not a complete checkpoint: trainer_state.json is missing")
    try:
        meta = json.loads(meta_file.read_text())
        files = meta["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_file} is not a valid trainer state ({e}); the checkpoint is corrupt") from e
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{meta_file} has format {meta.get('format')!r}; this version reads {CHECKPOINT_FORMAT}")
    for name, digest in files.items():
        f = ckpt / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing; the checkpoint is incomplete")
        if sha256_file(f) != digest:
            raise CheckpointError(f"{f} does not match its SHA-256 in trainer_state.json; the checkpoint is corrupt")
    model = load_pretrained(ckpt, target="BertForPreTraining")
    opt_tensors = _read_tensors(ckpt / "optimizer.safetensors")
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(opt_tensors.items()) + list(meta["optimizer"]["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    rng_tensors = _read_tensors(ckpt / "rng.safetensors")
    rank_rng = []
    for r, s in enumerate(meta["rng"]):
        version, internal, gauss = s["python"]
        kind, keys, pos, has_gauss, cached = s["numpy"]
        rank_rng.append({
            "torch": rng_tensors[f"rank{r}.torch"], "cuda": rng_tensors.get(f"rank{r}.cuda"),
            "python": (version, tuple(internal), gauss),
            "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        })
    try:
        config = PretrainConfig.from_dict(meta["pretrain_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_file} holds an invalid PretrainConfig ({e})") from e
    return TrainState(
        step=int(meta["step"]), config=config, model=model,
        optimizer={"state": state, "param_groups": meta["optimizer"]["param_groups"]},
        scheduler=meta["scheduler"], data=meta["data"], masking_rng=rng_tensors["masking"], rank_rng=rank_rng,
        vocab_sha256=meta["vocab_sha256"], world_size=int(meta["world_size"]),
    )
