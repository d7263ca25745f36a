"""The training loop: one optimizer step per global batch, with a guard that skips a step whose
loss or gradient is not finite or whose loss spikes; log lines, validation and checkpoints at
their intervals."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.distributed as dist

from baichuan.data.loader import iter_eval_batches
from baichuan.data.shards import TokenShards
from baichuan.errors import BaichuanError
from baichuan.train.metrics import MetricsLog, duration, print0
from baichuan.train.optim import lr_at
from baichuan.train.resume import save_checkpoint
from baichuan.train.settings import TrainConfig
from baichuan.train.setup import Run


@dataclasses.dataclass
class Stepped:
    """One optimizer step's numbers, for the log line."""
    lr: float
    loss: float
    grad_norm: float
    extra: dict            # the objective's own metrics (DPO's reward margin and accuracy)


@dataclasses.dataclass
class Clock:
    """Tokens/s are over the steps since the last log line, the ETA over the steps of this run."""
    start: float
    last: float
    first_step: int


def run_loop(cfg: TrainConfig, run: Run, step: int, guard: dict, log: MetricsLog) -> dict:
    """Train from `step` to --steps; {"val" (the last validation), "steps", "final_loss"}."""
    clock, result, stepped = Clock(time.time(), time.time(), step), {}, None
    while step < cfg.steps:
        stepped = optimizer_step(cfg, run, step, guard)
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            log_step(cfg, run, log, clock, step, stepped)
        if run.val and (step % cfg.eval_every == 0 or step == cfg.steps):
            result["val"] = validate(cfg, run, log, step)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(cfg, run, step, guard)
    if run.val and "val" not in result:  # resumed at or past the last step: nothing trained, still evaluated
        print0(f"checkpoint at step {step} already reaches --steps {cfg.steps}: nothing to train")
        result["val"] = evaluate(run.model, run.val, cfg, run.amp)
    result.update(steps=step, final_loss=stepped.loss if cfg.steps > clock.first_step else None)
    return result


def optimizer_step(cfg: TrainConfig, run: Run, step: int, guard: dict) -> Stepped:
    lr = lr_at(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule, cfg.min_lr_ratio)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    loss_sum, extra = 0.0, {}
    # each micro-batch's mean loss weighs by its share of the global batch's labelled tokens (all
    # ranks): packed chats learn a varying number, and a mean of means would depend on how the
    # global batch is split into ranks and accumulation steps. Gradients are averaged over ranks.
    batches = [run.objective.next_batch() for _ in range(cfg.grad_accum)]
    weights = [run.objective.weight(b) for b in batches]
    total = max(all_sum(sum(weights), run.device), 1)
    for batch, w in zip(batches, weights):
        with run.amp():
            loss, metrics = run.objective.loss(run.model, batch, run.device)
        (loss * (w * run.world / total)).backward()
        loss_sum += loss.item() * w
        for k, v in metrics.items():
            extra[k] = extra.get(k, 0.0) + v / cfg.grad_accum
    loss = all_sum(loss_sum, run.device) / total
    gnorm = torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad], cfg.grad_clip)
    gnorm = float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)
    reason = skip_reason(loss, gnorm, step, cfg, guard)
    if reason:
        run.optimizer.zero_grad(set_to_none=True)
        guard["skips"] += 1
        guard["skipped_steps"].append(step)
        print0(f"step {step + 1}: skipped ({reason})")
        if guard["skips"] > cfg.max_skips:
            raise BaichuanError(f"training stopped at step {step + 1}: {guard['skips']} consecutive steps "
                                f"skipped, last because {reason}; lower lr or check the data")
    else:
        run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        guard["skips"] = 0
        guard["recent"] = (guard["recent"] + [loss])[-100:]
    return Stepped(lr, loss, gnorm, extra)


def skip_reason(loss: float, gnorm: float, step: int, cfg: TrainConfig, guard: dict) -> str | None:
    """Why this step must not be applied, or None. NaN/inf always; a spike once there is history."""
    if not math.isfinite(loss) or not math.isfinite(gnorm):
        return f"loss {loss} / grad norm {gnorm} is not finite"
    recent = guard["recent"]
    if len(recent) >= 20 and step >= cfg.warmup:
        mean, std = float(np.mean(recent)), float(np.std(recent)) + 1e-3
        if loss > mean + cfg.spike_sigma * std:
            return f"loss spike {loss:.4f} > mean {mean:.4f} + {cfg.spike_sigma} x std {std:.4f}"
    return None


def all_sum(x: float, device) -> float:
    if not dist.is_initialized():
        return x
    t = torch.tensor([x], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def log_step(cfg: TrainConfig, run: Run, log: MetricsLog, clock: Clock, step: int, s: Stepped) -> None:
    if run.device.type == "cuda":  # kernels run ahead of Python: time them done
        torch.cuda.synchronize()
    now = time.time()
    n_steps = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
    dt = (now - clock.last) / n_steps
    clock.last = now
    tps = run.tokens_per_step / dt
    mfu = tps * run.flops_per_token / (run.world * run.peak) if run.peak else None
    eta = (cfg.steps - step) * (now - clock.start) / max(1, step - clock.first_step)
    shown = "".join(f" | {k.replace('_', ' ')} {v:.3f}" for k, v in s.extra.items())
    print0(f"step {step:>6}/{cfg.steps} | loss {s.loss:.4f}{shown} | lr {s.lr:.2e} | gnorm {s.grad_norm:.3f} | "
           f"{tps:,.0f} tok/s" + (f" | MFU {mfu * 100:.1f}%" if mfu else "") + f" | ETA {duration(eta)}")
    log.write(kind="train", step=step, loss=s.loss, lr=s.lr, grad_norm=s.grad_norm, tokens_per_s=tps, mfu=mfu,
              tokens=step * run.tokens_per_step, time=now - clock.start, **s.extra)


def validate(cfg: TrainConfig, run: Run, log: MetricsLog, step: int) -> dict:
    ev = evaluate(run.model, run.val, cfg, run.amp)
    print0("eval      " + " | ".join(f"{k} loss {v['loss']:.4f}" + (f" bpb {v['bpb']:.3f}" if v["bpb"] else "")
                                     for k, v in ev.items()))
    val_loss = float(np.mean([v["loss"] for v in ev.values()]))
    log.write(kind="val", step=step, val_loss=val_loss, **{f"{k}_{m}": v[m] for k, v in ev.items() for m in v})
    return ev


def evaluate(model, val: dict[str, TokenShards], cfg: TrainConfig, amp) -> dict:
    """Mean loss over --eval-batches of each validation set, and bits per byte where the shards
    record their text's bytes."""
    model.eval()
    device = next(model.parameters()).device
    out = {}
    with torch.no_grad():
        for name, shards in val.items():
            losses = []
            for x, y in iter_eval_batches(shards, cfg.seq_len, cfg.batch_size, cfg.eval_batches):
                with amp():
                    losses.append(model(x.to(device), targets=y.to(device)).item())
            loss = float(np.mean(losses)) if losses else float("nan")
            m = shards.manifest
            bpb = loss / math.log(2) * m["total_tokens"] / m["total_bytes"] if m.get("total_bytes") else None
            out[name] = {"loss": loss, "bpb": bpb}
    model.train()
    return out
