"""Resuming: what a checkpoint records beside the weights (data position, step guard, the
config's fingerprint) and the checks that refuse to resume into another run.

The files themselves are written and read by state.py; this is the policy around them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch.distributed as dist

from baichuan.config import ModelConfig
from baichuan.errors import BaichuanError
from baichuan.train import state as train_state
from baichuan.train.metrics import print0
from baichuan.train.settings import TrainConfig
from baichuan.train.setup import Run


def resume(cfg: TrainConfig, run: Run) -> tuple[int, dict, Path | None]:
    """(step, step guard, the checkpoint resumed from or None): the model, optimizer, RNG and data
    position restored from --resume's checkpoint, or a fresh start. `--resume never` first removes
    an earlier run's checkpoints from --out."""
    ckpt_root = Path(cfg.out) / "checkpoints"
    resume_from = train_state.latest(ckpt_root) if cfg.resume == "auto" else \
        (None if cfg.resume == "never" else Path(cfg.resume))
    stale = train_state.checkpoints(ckpt_root) if cfg.resume == "never" and not cfg.export_only else []
    if stale:  # a fresh run here: an earlier run's checkpoints would be resumed, exported or kept in its place
        if run.rank == 0:
            for path in stale:
                shutil.rmtree(path)
        if dist.is_initialized():
            dist.barrier()
        print0(f"--resume never: removed {len(stale)} checkpoint(s) of an earlier run in {ckpt_root}")
    if resume_from is None:
        # the loop's guard: recent losses (spike detection), consecutive skips, every skipped step
        return 0, {"recent": [], "skips": 0, "skipped_steps": []}, None
    check_resumable(cfg, run, resume_from)
    meta = train_state.load(resume_from, run.model, run.optimizer, frozen=cfg.lora is not None)
    run.objective.load_state_dict(meta["loader"])
    print0(f"resumed from {resume_from} at step {meta['step']}"
           + (f" (was {meta['world_size']} ranks, now {run.world}: resharded)" if meta["world_size"] != run.world else ""))
    return meta["step"], meta["guard"], resume_from


def check_resumable(cfg: TrainConfig, run: Run, path: Path) -> None:
    """Refuse a checkpoint of another model, data order or global batch, naming what changed."""
    meta = train_state.read_meta(path)
    if meta["fingerprint"] != fingerprint(cfg, run.mc):
        now, saved = fingerprint_fields(cfg, run.mc), meta["fingerprint_fields"]
        saved = {**saved, **saved.get("model", {})} if isinstance(saved, dict) else {}
        now = {**now, **now["model"]}
        changed = [f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in now if k != "model" and saved.get(k) != now[k]]
        raise BaichuanError(f"{path}: the checkpoint is from another model or training config "
                            f"({'; '.join(changed) or 'fields differ'}); use --resume never or another --out")
    if meta["global_batch"] != cfg.global_batch(run.world) and not cfg.export_only:  # exporting reads no data
        raise BaichuanError(f"{path}: saved with global batch {meta['global_batch']} "
                            f"({meta['world_size']} ranks); now {cfg.global_batch(run.world)} ({run.world} ranks). "
                            f"Keep batch_size * ranks * grad_accum the same to reshard")


def save_checkpoint(cfg: TrainConfig, run: Run, step: int, guard: dict) -> None:
    meta = {"loader": run.objective.state_dict(), "guard": guard, "world_size": run.world,
            "global_batch": cfg.global_batch(run.world), "fingerprint": fingerprint(cfg, run.mc),
            "fingerprint_fields": fingerprint_fields(cfg, run.mc), "config": dataclasses.asdict(cfg)}
    train_state.save(Path(cfg.out) / "checkpoints", step, run.model, run.optimizer, meta, cfg.keep, frozen=cfg.lora is not None)


def fingerprint_fields(cfg: TrainConfig, mc: ModelConfig) -> dict:
    """What must not change across a resume: the model shape and what defines the data order."""
    return {"model": {k: v for k, v in dataclasses.asdict(mc).items() if k != "name"}, "task": cfg.task,
            "lora": cfg.lora, "quantize_base": cfg.quantize_base,
            "seq_len": cfg.seq_len, "seed": cfg.seed, "data": str(Path(cfg.data).resolve())}


def fingerprint(cfg: TrainConfig, mc: ModelConfig) -> str:
    return hashlib.sha256(json.dumps(fingerprint_fields(cfg, mc), sort_keys=True).encode()).hexdigest()[:16]
