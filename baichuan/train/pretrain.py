"""Pretraining: the same loop on a laptop CPU, one GPU, or many nodes.

    baichuan train --data out/data/tokens --preset small --steps 2000          # CPU or one GPU
    torchrun --nproc_per_node=8 -m baichuan.train --data ... --preset 1b       # one node, FSDP2
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-endpoint=HEAD:29500 -m baichuan.train ...

Precision: fp32 master weights everywhere; compute in bf16 on GPUs that support it (autocast on
one GPU, FSDP2's mixed-precision policy across several), fp32 on CPU. A run writes under --out:
    checkpoints/step_*/   complete resumable state (state.py); `--resume auto` picks the latest
    metrics.jsonl         one record per logged step and per validation
    loss.png              the loss curve, with the unigram baseline
    model/                the final model as an HF-style Baichuan directory

`train` reads top-down; each phase is a module of its own:
    settings.py   TrainConfig, each flag's help in its field metadata
    setup.py      the checks, the model on this rank, the optimizer; task_data.py: data, tokenizer, objective
    resume.py     restore a checkpoint, or start fresh
    loop.py       the optimizer steps, with the step guard, logging, validation and checkpoints
    export.py     the final model (and LoRA adapter)
    metrics.py    what a run prints and records
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch.distributed as dist

from baichuan.errors import BaichuanError
from baichuan.train.export import export
from baichuan.train.loop import run_loop
from baichuan.train.metrics import plot_losses, start_records, unigram_baseline
from baichuan.train.resume import resume
from baichuan.train.settings import TrainConfig, add_args, config_from_args
from baichuan.train.setup import setup

# what cli.py, speedrun.py, adapt.py and the tests import from here
__all__ = ["TrainConfig", "config_from_args", "main", "train", "unigram_baseline"]


def train(cfg: TrainConfig) -> dict:
    run = setup(cfg)                       # fails early on a bad flag or a model that cannot fit
    step, guard, resumed_from = resume(cfg, run)
    out = Path(cfg.out)
    if cfg.export_only:
        if resumed_from is None:
            raise BaichuanError(f"{out / 'checkpoints'}: no checkpoint to export")
        return {"steps": step, **export(cfg, run)}

    log, baseline = start_records(cfg, run, step)
    t_start = time.time()
    result = run_loop(cfg, run, step, guard, log)
    result.update(baseline=baseline, skipped_steps=guard["skipped_steps"], seconds=time.time() - t_start)
    if run.rank == 0:
        plot_losses(log.records(), out / "loss.png", baseline)
    if cfg.export:
        result.update(export(cfg, run))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="baichuan.train", description="pretrain a Baichuan model")
    add_args(p)
    cfg = config_from_args(p.parse_args(argv))
    try:
        train(cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
