"""AdamW with decay / no-decay groups, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from baichuan.errors import BaichuanError


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices decay; norms (1-D) do not. Embeddings and the LM head are matrices and decay, as in
    Baichuan-7B's DeepSpeed config (one weight_decay for all parameters) minus the norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.1, betas=(0.9, 0.95),
                    eps: float = 1e-8) -> torch.optim.AdamW:
    """Baichuan-7B's AdamW settings (betas 0.9/0.95, eps 1e-8, wd 0.1); fused on CUDA."""
    on_cuda = any(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps,
                             fused=True if on_cuda else None)


def lr_at(step: int, max_lr: float, warmup: int, total: int, schedule: str = "cosine",
          min_lr_ratio: float = 0.1) -> float:
    """Linear warmup to max_lr over `warmup` steps, then cosine or linear decay to
    min_lr_ratio * max_lr at `total`; "constant" holds max_lr after warmup."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if schedule == "constant":
        return max_lr
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        mult = 0.5 * (1 + math.cos(math.pi * progress))
    elif schedule == "linear":
        mult = 1 - progress
    else:
        raise BaichuanError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")
    return max_lr * (min_lr_ratio + (1 - min_lr_ratio) * mult)
