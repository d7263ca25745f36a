"""Complete, atomic, resumable training state.

A checkpoint is a folder `step_00001000/`:
    model + optimizer     torch.distributed.checkpoint (DCP) files, sharded per rank and
                          reshardable to another world size on load
    rng_rank{r}.pt        each rank's torch RNG states (weights_only-loadable tensors and ints)
    meta.json             step, data-loader state (global position), config, world size, time
It is written as `.step_00001000.partial/` and renamed when every rank has finished, so a crash
leaves either a complete checkpoint or none; the last `keep` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from baichuan.errors import BaichuanError


def _barrier():
    if dist.is_initialized():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def checkpoints(root: Path) -> list[Path]:
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")
                  and (p / "meta.json").exists())


def latest(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def _state(model, optimizer, options: StateDictOptions, frozen: bool):
    """The model's and optimizer's state dicts; with `frozen`, the model's holds the trainable
    parameters only: the base comes from init_from, and QLoRA's int4 base weights are buffers,
    which `ignore_frozen_params` keeps (gigabytes per checkpoint on a 7B model)."""
    model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
    if frozen:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        kept = {k: v for k, v in model_sd.items() if k in trainable}
        if len(kept) == len(trainable):  # names as expected (else keep everything: bigger, still exact)
            model_sd = kept
    return model_sd, optim_sd


def save(root: Path, step: int, model, optimizer, meta: dict, keep: int = 3, frozen: bool = False) -> Path:
    """`frozen=True` keeps only the trainable parameters (LoRA: the base comes from init_from)."""
    root = Path(root)
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.partial"
    rank = _rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = _state(model, optimizer, StateDictOptions(ignore_frozen_params=frozen), frozen)
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng_rank{rank}.pt")
    _barrier()
    if rank == 0:
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def read_meta(path: Path) -> dict:
    file = Path(path) / "meta.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BaichuanError(f"{file}: unreadable checkpoint metadata ({e})") from None


def load(path: Path, model, optimizer, frozen: bool = False) -> dict:
    """Restore model, optimizer and this rank's RNG from `path`; returns meta.json."""
    path = Path(path)
    meta = read_meta(path)
    options = StateDictOptions(ignore_frozen_params=frozen, strict=not frozen)
    model_sd, optim_sd = _state(model, optimizer, options, frozen)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*single process.*")
            dcp.load(state, checkpoint_id=str(path))
    except (Exception, dcp.api.CheckpointException) as e:  # noqa: BLE001 - per-rank errors, wrapped (a BaseException)
        raise BaichuanError(f"{path}: cannot restore the training state ({str(e).splitlines()[0][:300]}); "
                            "delete this folder to resume from the checkpoint before it") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=options)
    rng_file = path / f"rng_rank{_rank()}.pt"
    if rng_file.exists():  # absent after a change of world size: ranks then keep their fresh seeds
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return meta
