"""Everything applied to a model from outside model.py for training, in torchtitan's order:
activation checkpointing -> torch.compile per block (and the loss) -> FSDP2 (`fully_shard`) per
block, then root.

Both wrappers keep parameter names, so state dicts stay in the released tensor names.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.checkpoint import checkpoint

from baichuan.model import Baichuan
from baichuan.runtime import default_device


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device) from torchrun's environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if default_device() == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _checkpointed(block: torch.nn.Module) -> None:
    inner = block.forward

    def forward(*args):
        return checkpoint(inner, *args, use_reentrant=False)

    block.forward = forward


def parallelize(model: Baichuan, *, world_size: int, compile: bool = False, activation_checkpointing: bool = False,
                param_dtype: torch.dtype | None = None) -> Baichuan:
    """Apply AC, compile and (when world_size > 1) FSDP2 with a mixed-precision policy that keeps
    fp32 master weights and computes in `param_dtype` (bf16 on GPUs), reducing gradients in fp32."""
    for block in model.model.layers:
        if activation_checkpointing:
            _checkpointed(block)
        if compile:
            block.compile()
    if compile:
        # the LM head and cross-entropy of a loss chunk as one graph: the bf16 logits are read once
        # by fused kernels, not cast to an fp32 copy and read again by each eager op (torchtitan
        # compiles its loss too)
        model.chunk_loss = torch.compile(model.chunk_loss)
    if world_size > 1:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
        kw = {"mp_policy": mp} if mp else {}
        for block in model.model.layers:
            fully_shard(block, **kw)
        fully_shard(model, **kw)
    return model
