"""Setting a run up on this rank: the checks that fail before any work, the model (fp32 master
weights, placed on the device or sharded by FSDP2), the task's objective and the optimizer.

All the checks come first, so a bad flag or a model that cannot fit is one line, not a crash
minutes later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from baichuan.config import ModelConfig, preset
from baichuan.data.shards import TokenShards, open_shards
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, build
from baichuan.runtime import model_dtype
from baichuan.train.metrics import peak_flops
from baichuan.train.optim import build_optimizer
from baichuan.train.parallel import init_distributed, parallelize
from baichuan.train.settings import TrainConfig
from baichuan.train.task_data import data_vocab, make_objective


@dataclasses.dataclass
class Run:
    """What `setup` built for one run on this rank; the loop, resume and export read it."""
    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype                  # compute dtype (the master weights are fp32)
    compiled: bool
    mc: ModelConfig
    model: Baichuan
    amp: Callable                       # a fresh autocast context for each forward
    objective: object                   # objectives.LMObjective or DPOObjective
    optimizer: torch.optim.Optimizer
    val: dict[str, TokenShards]
    data_line: str                      # what the objective trains on, for the header
    memory_need: float                  # bytes per rank, estimated
    memory_have: float
    tokens_per_step: int
    flops_per_token: float
    peak: float | None                  # the device's peak FLOP/s, when known (for MFU)


def setup(cfg: TrainConfig) -> Run:
    rank, world, device = init_distributed()
    if cfg.init_from and not (Path(cfg.init_from) / "config.json").is_file():
        raise BaichuanError(f"--init-from {cfg.init_from}: not a model directory (no config.json)")
    val = {name: open_shards(path) for name, path in cfg.val_data.items()}
    mc = model_config(cfg, data_vocab(cfg))
    if cfg.seq_len > mc.max_len:  # the exported config would promise less context than was trained
        raise BaichuanError(f"--seq-len {cfg.seq_len} is longer than the model's context ({mc.max_len}); "
                            f"lower it, or raise the context with --model '{{\"max_len\": {cfg.seq_len}}}'")
    dtype = model_dtype(device, cfg.dtype)
    need, have = check_memory(mc, cfg, world, dtype, device)

    compiled = cfg.compile and device.type == "cuda"
    model, amp = place_model(mc, cfg, rank, world, device, dtype, compiled)
    objective, seq_tokens, data_line = make_objective(cfg, mc, model, rank, world, device, amp)
    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, tuple(cfg.betas))
    return Run(rank=rank, world=world, device=device, dtype=dtype, compiled=compiled, mc=mc, model=model, amp=amp,
               objective=objective, optimizer=optimizer, val=val, data_line=data_line,
               memory_need=need, memory_have=have, tokens_per_step=cfg.global_batch(world) * seq_tokens,
               flops_per_token=mc.flops_per_token(cfg.seq_len), peak=peak_flops(device))


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    if cfg.init_from:
        from baichuan.config import load_config
        mc = load_config(cfg.init_from)
    else:
        mc = preset(cfg.preset, vocab_size=vocab_size)
    mc = mc.replace(**cfg.model)
    if cfg.z_loss_weight is not None:
        mc = mc.replace(z_loss_weight=cfg.z_loss_weight)
    if mc.vocab_size < vocab_size:
        raise BaichuanError(f"model vocab_size {mc.vocab_size} < the token shards' vocab_size {vocab_size}")
    return mc


# ------------------------------------------------------------------------------------ memory

def memory_estimate(mc: ModelConfig, cfg: TrainConfig, world: int, bytes_act: int) -> float:
    """Bytes per rank: fp32 weights + grads + AdamW m, v (16 B/param, sharded by FSDP), activations
    (~34*s*b*h per layer in 16-bit, Korthikanti et al. 2022; 2*s*b*h with checkpointing) and the
    logits of one loss chunk of up to 4,096 positions (16-bit, an fp32 copy, an fp32 gradient).
    The model splits the loss into 4,096-position chunks only above 2^28 logits (positions x vocab)
    per micro-batch; below that all of them exist at once (under 1 GiB in fp32), which this counts
    short when a micro-batch has more than 4,096 positions."""
    params = mc.num_params() * 16 / world
    sbh = cfg.seq_len * cfg.batch_size * mc.hidden_size
    per_layer = (2 if cfg.activation_checkpointing else 34) * sbh * bytes_act / 2
    logits = min(cfg.seq_len * cfg.batch_size, 4096) * mc.vocab_size * (bytes_act + 4 + 4)
    return params + mc.num_layers * per_layer + logits


def available_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def check_memory(mc: ModelConfig, cfg: TrainConfig, world: int, dtype: torch.dtype,
                 device: torch.device) -> tuple[float, float]:
    """(bytes needed per rank, bytes the device has); refuses a run that would not fit."""
    need, have = memory_estimate(mc, cfg, world, dtype.itemsize), available_memory(device)
    if need > 0.9 * have:
        raise BaichuanError(
            f"{mc.describe()} with batch {cfg.batch_size} x {cfg.seq_len} needs about {need / 1e9:.1f} GB per "
            f"rank; {device} has {have / 1e9:.1f} GB. Lower batch_size or seq_len, turn on "
            f"activation_checkpointing, or add GPUs (FSDP shards the 16 B/param of weights and AdamW state)")
    return need, have


# ------------------------------------------------------------------------------------- model

def initial_model(mc: ModelConfig, cfg: TrainConfig) -> Baichuan:
    """The starting model on the CPU in fp32, seeded or loaded, with its quantized base and adapters
    as configured: identical on every rank and for every world size, which is what lets 2 ranks
    reproduce 1 rank's losses."""
    torch.manual_seed(cfg.seed)
    model = build(mc, device="cpu", init=not cfg.init_from)
    if cfg.init_from:
        from baichuan.checkpoint import load_weights
        load_weights(model, cfg.init_from)
    if cfg.quantize_base:
        from baichuan.quant import quantize
        mode, _, group = cfg.quantize_base.partition(":")
        try:
            quantize(model, mode, **({"group_size": int(group)} if group else {}))
        except BaichuanError as e:
            raise BaichuanError(f"--quantize-base {cfg.quantize_base}: {e}; choose a group size as "
                                f"--quantize-base {mode}:GROUP") from None
    if cfg.lora is not None:
        from baichuan.train.lora import add_lora
        torch.manual_seed(cfg.seed)
        add_lora(model, **cfg.lora)
    return model.train()


def place_model(mc: ModelConfig, cfg: TrainConfig, rank: int, world: int, device: torch.device,
                dtype: torch.dtype, compiled: bool) -> tuple[Baichuan, Callable]:
    """(the model on `device`, a function giving the autocast context for its forwards). Several
    ranks: built on meta, sharded by FSDP2 (which casts the params to `dtype` itself), and filled
    from rank 0's initial model, so no rank holds two full copies. One rank: autocast to `dtype`."""
    if world > 1:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )
        if cfg.quantize_base:
            raise BaichuanError("QLoRA (quantize_base) runs on one GPU; use plain LoRA across several")
        full = initial_model(mc, cfg).state_dict() if rank == 0 else {}
        with torch.device("meta"):
            model = Baichuan(mc)
        if cfg.lora is not None:
            from baichuan.train.lora import add_lora
            add_lora(model, **cfg.lora)
        parallelize(model, world_size=world, compile=compiled, activation_checkpointing=cfg.activation_checkpointing,
                    param_dtype=dtype if dtype != torch.float32 else None)
        model.to_empty(device=device)
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        del full
        return model, lambda: torch.autocast(device.type, enabled=False)  # FSDP casts the params
    model = initial_model(mc, cfg).to(device)
    if cfg.lora is not None and dtype != torch.float32:  # a frozen base needs no fp32 master copy
        for p in model.parameters():
            if not p.requires_grad and p.is_floating_point():
                p.data = p.data.to(dtype)
    parallelize(model, world_size=1, compile=compiled, activation_checkpointing=cfg.activation_checkpointing)
    return model, lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
