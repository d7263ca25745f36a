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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from baichuan.config import ModelConfig, preset
from baichuan.data.loader import TokenLoader, iter_eval_batches
from baichuan.data.shards import TokenShards, open_shards
from baichuan.data.writers import sha256_file
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, build
from baichuan.train import state as train_state
from baichuan.train.metrics import MetricsLog, peak_flops, plot_losses
from baichuan.train.optim import build_optimizer, lr_at
from baichuan.train.parallel import init_distributed, parallelize
from baichuan.train.settings import TrainConfig, add_args, config_from_args  # noqa: F401 (re-exported)


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


# ------------------------------------------------------------------------------- estimates

def memory_estimate(mc: ModelConfig, cfg: TrainConfig, world: int, bytes_act: int) -> float:
    """Bytes per rank: fp32 weights + grads + AdamW m, v (16 B/param, sharded by FSDP), activations
    (~34*s*b*h per layer in 16-bit, Korthikanti et al. 2022; 2*s*b*h with checkpointing) and the
    logits of one loss chunk (the model computes the loss 4,096 positions at a time)."""
    params = mc.num_params() * 16 / world
    sbh = cfg.seq_len * cfg.batch_size * mc.hidden_size
    per_layer = (2 if cfg.activation_checkpointing else 34) * sbh * bytes_act / 2
    logits = min(cfg.seq_len * cfg.batch_size, 4096) * mc.vocab_size * (bytes_act + 4 + 4)
    return params + mc.num_layers * per_layer + logits


def available_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def unigram_baseline(train: TokenShards, val: TokenShards, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of the validation tokens under the training unigram distribution
    (add-one smoothed): the loss a model that ignores context would get."""
    counts = np.ones(vocab_size, dtype=np.float64)
    for i in range(len(train.files)):
        counts += np.bincount(np.asarray(train.memmap(i)), minlength=vocab_size)[:vocab_size]
    logp = np.log(counts / counts.sum())
    total, n = 0.0, 0
    for i in range(len(val.files)):
        v = np.asarray(val.memmap(i))
        total -= logp[v].sum()
        n += v.size
    return total / max(n, 1)


# ---------------------------------------------------------------------------------- helpers

def print0(*args, **kw):
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, **kw, flush=True)


def _all_sum(x: float, device) -> float:
    if not dist.is_initialized():
        return x
    t = torch.tensor([x], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def compute_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if cfg.dtype not in ("bfloat16", "float32"):
        raise BaichuanError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {cfg.dtype!r}")
    return getattr(torch, cfg.dtype)


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


def tokenizer_path(cfg: TrainConfig) -> str | None:
    """--tokenizer, else the --init-from model's, else (pretraining) the one `baichuan data run`
    recorded making the shards with, so the exported model carries it."""
    if cfg.tokenizer or cfg.init_from or cfg.task != "pretrain":
        return cfg.tokenizer or cfg.init_from
    try:
        recorded = json.loads((Path(cfg.data).parent / "manifest.json").read_text(encoding="utf-8"))["config"]["tokenizer"]
        made_with = open_shards(cfg.data).manifest.get("tokenizer_sha256")
    except (OSError, ValueError, KeyError, TypeError, BaichuanError):
        return None
    # as recorded (absolute, or relative to where data ran): only if it is still the file the shards were made with
    return recorded if isinstance(recorded, str) and made_with and _sha256(recorded) == made_with else None


def _sha256(tokenizer: str) -> str | None:
    from baichuan.tokenizer import model_file
    file = model_file(tokenizer)
    return sha256_file(file) if file.is_file() else None


def check_shards_tokenizer(cfg: TrainConfig, shards) -> None:
    """Token ids mean nothing with another tokenizer: refuse a --tokenizer or --init-from model
    whose tokenizer.model is not the one the shards were made with (tokens.json records it). A
    tokenizer found through `tokenizer_path` matches by construction."""
    given, made_with = cfg.tokenizer or cfg.init_from, shards.manifest.get("tokenizer_sha256")
    used = _sha256(given) if given and made_with else None
    if used and used != made_with:
        raise BaichuanError(f"{given} (tokenizer sha256 {used[:12]}…) is not the tokenizer the shards in "
                            f"{shards.folder} were made with (sha256 {made_with[:12]}…); pass that one with --tokenizer")


def data_vocab(cfg: TrainConfig) -> int:
    if cfg.task == "pretrain":
        shards = open_shards(cfg.data)
        check_shards_tokenizer(cfg, shards)
        return shards.manifest["vocab_size"]
    if not tokenizer_path(cfg):
        raise BaichuanError(f"{cfg.task} needs a tokenizer: give --tokenizer or --init-from a model directory")
    from baichuan.tokenizer import Tokenizer
    return Tokenizer.load(tokenizer_path(cfg)).vocab_size


def make_objective(cfg: TrainConfig, mc: ModelConfig, model, rank: int, world: int, device, amp):
    """(objective, tokens per sequence, a line describing the data) for the task."""
    from baichuan.train.objectives import DPOObjective, LMObjective, PackedLoader
    if cfg.task == "pretrain":
        shards = open_shards(cfg.data)
        loader = TokenLoader(shards, cfg.seq_len, cfg.batch_size, rank, world, cfg.seed)
        total = shards.manifest["total_tokens"]
        return LMObjective(loader), cfg.seq_len, \
            f"{total:,} tokens in {len(shards.files)} shard(s)"
    from baichuan.tokenizer import Tokenizer
    from baichuan.train.chat_data import load_chats, load_pairs, pack
    tok = Tokenizer.load(tokenizer_path(cfg))
    if cfg.task == "sft":
        examples, report = load_chats(cfg.data, tok, cfg.seq_len + 1, cfg.on_long, cfg.on_error, tok.eos_id)
        arrays = pack(examples, cfg.seq_len, pad_id=mc.pad_token_id)
        loader = PackedLoader(arrays, cfg.batch_size, rank, world, cfg.seed)
        learned = int((arrays["labels"][:, 1:] != -100).sum())
        return LMObjective(loader), cfg.seq_len, \
            f"{report.summary()}; packed into {loader.total} rows of {cfg.seq_len + 1}, {learned:,} tokens learned" \
            f"{report.dropped_lines()}"
    arrays, report = load_pairs(cfg.data, tok, cfg.seq_len, cfg.on_long, cfg.on_error, tok.eos_id)
    objective = DPOObjective(model, arrays, cfg.batch_size, rank, world, cfg.seed, cfg.dpo_beta, device, amp)
    return objective, 2 * cfg.seq_len, f"{report.summary()}; reference log-probs computed once{report.dropped_lines()}"


def evaluate(model, val: dict[str, TokenShards], cfg: TrainConfig, amp) -> dict:
    model.eval()
    out = {}
    with torch.no_grad():
        for name, shards in val.items():
            losses = []
            for x, y in iter_eval_batches(shards, cfg.seq_len, cfg.batch_size, cfg.eval_batches):
                with amp():
                    losses.append(model(x.to(_device(model)), targets=y.to(_device(model))).item())
            loss = float(np.mean(losses)) if losses else float("nan")
            m = shards.manifest
            bpb = loss / math.log(2) * m["total_tokens"] / m["total_bytes"] if m.get("total_bytes") else None
            out[name] = {"loss": loss, "bpb": bpb}
    model.train()
    return out


def _device(model) -> torch.device:
    return next(model.parameters()).device


# -------------------------------------------------------------------------------------- run

def train(cfg: TrainConfig) -> dict:
    rank, world, device = init_distributed()
    out = Path(cfg.out)
    if cfg.init_from and not (Path(cfg.init_from) / "config.json").is_file():
        raise BaichuanError(f"--init-from {cfg.init_from}: not a model directory (no config.json)")
    val = {name: open_shards(path) for name, path in cfg.val_data.items()}
    mc = model_config(cfg, data_vocab(cfg))
    if cfg.seq_len > mc.max_len:  # the exported config would promise less context than was trained
        raise BaichuanError(f"--seq-len {cfg.seq_len} is longer than the model's context ({mc.max_len}); "
                            f"lower it, or raise the context with --model '{{\"max_len\": {cfg.seq_len}}}'")
    dtype = compute_dtype(cfg, device)
    need, have = memory_estimate(mc, cfg, world, dtype.itemsize), available_memory(device)
    if need > 0.9 * have:
        raise BaichuanError(
            f"{mc.describe()} with batch {cfg.batch_size} x {cfg.seq_len} needs about {need / 1e9:.1f} GB per "
            f"rank; {device} has {have / 1e9:.1f} GB. Lower batch_size or seq_len, turn on "
            f"activation_checkpointing, or add GPUs (FSDP shards the 16 B/param of weights and AdamW state)")

    # model: fp32 master weights, identical start on every rank
    compile_ = cfg.compile and device.type == "cuda"
    if world > 1:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        if cfg.quantize_base:
            raise BaichuanError("QLoRA (quantize_base) runs on one GPU; use plain LoRA across several")
        full = initial_model(mc, cfg).state_dict() if rank == 0 else {}
        with torch.device("meta"):
            model = Baichuan(mc)
        if cfg.lora is not None:
            from baichuan.train.lora import add_lora
            add_lora(model, **cfg.lora)
        parallelize(model, world_size=world, compile=compile_, activation_checkpointing=cfg.activation_checkpointing,
                    param_dtype=dtype if dtype != torch.float32 else None)
        model.to_empty(device=device)
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        del full
        amp_ctx = lambda: torch.autocast(device.type, enabled=False)  # noqa: E731 - FSDP casts the params
    else:
        model = initial_model(mc, cfg).to(device)
        if cfg.lora is not None and dtype != torch.float32:  # a frozen base needs no fp32 master copy
            for p in model.parameters():
                if not p.requires_grad and p.is_floating_point():
                    p.data = p.data.to(dtype)
        parallelize(model, world_size=1, compile=compile_, activation_checkpointing=cfg.activation_checkpointing)
        amp_ctx = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)  # noqa: E731
    objective, seq_tokens, data_line = make_objective(cfg, mc, model, rank, world, device, amp_ctx)
    model.train()
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, tuple(cfg.betas))
    frozen = cfg.lora is not None  # adapters only: checkpoints hold the trainable weights, not the base

    # resume
    step, guard = 0, {"recent": [], "skips": 0, "skipped_steps": []}
    ckpt_root = out / "checkpoints"
    resume_from = train_state.latest(ckpt_root) if cfg.resume == "auto" else \
        (None if cfg.resume == "never" else Path(cfg.resume))
    fingerprint = _fingerprint(cfg, mc)
    stale = train_state.checkpoints(ckpt_root) if cfg.resume == "never" and not cfg.export_only else []
    if stale:  # a fresh run here: an earlier run's checkpoints would be resumed, exported or kept in its place
        if rank == 0:
            for path in stale:
                shutil.rmtree(path)
        if dist.is_initialized():
            dist.barrier()
        print0(f"--resume never: removed {len(stale)} checkpoint(s) of an earlier run in {ckpt_root}")
    if resume_from is not None:
        meta = train_state.read_meta(resume_from)
        if meta["fingerprint"] != fingerprint:
            now, saved = _fingerprint_fields(cfg, mc), meta["fingerprint_fields"]
            saved = {**saved, **saved.get("model", {})} if isinstance(saved, dict) else {}
            now = {**now, **now["model"]}
            changed = [f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in now if k != "model" and saved.get(k) != now[k]]
            raise BaichuanError(f"{resume_from}: the checkpoint is from another model or training config "
                                f"({'; '.join(changed) or 'fields differ'}); use --resume never or another --out")
        if meta["global_batch"] != cfg.global_batch(world) and not cfg.export_only:  # exporting reads no data
            raise BaichuanError(f"{resume_from}: saved with global batch {meta['global_batch']} "
                                f"({meta['world_size']} ranks); now {cfg.global_batch(world)} ({world} ranks). "
                                f"Keep batch_size * ranks * grad_accum the same to reshard")
        meta = train_state.load(resume_from, model, optimizer, frozen=frozen)
        objective.load_state_dict(meta["loader"])
        step, guard = meta["step"], meta["guard"]
        print0(f"resumed from {resume_from} at step {step}"
               + (f" (was {meta['world_size']} ranks, now {world}: resharded)" if meta["world_size"] != world else ""))
    if cfg.export_only:
        if resume_from is None:
            raise BaichuanError(f"{ckpt_root}: no checkpoint to export")
        return {"steps": step, **export(model, mc, cfg, rank)}

    tokens_per_step = cfg.global_batch(world) * seq_tokens
    flops_per_token = mc.flops_per_token(cfg.seq_len)
    peak = peak_flops(device)
    log = MetricsLog(out / "metrics.jsonl", enabled=rank == 0)
    log.drop_after(step)
    baseline = None
    if val and cfg.task == "pretrain":
        baseline = unigram_baseline(open_shards(cfg.data), next(iter(val.values())), mc.vocab_size)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(_saved_config(cfg), indent=1) + "\n")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print0(f"task      {cfg.task}" + (f" with LoRA {cfg.lora}" if cfg.lora is not None else "")
           + (f" over a {cfg.quantize_base} base" if cfg.quantize_base else "") + "\n"
           f"model     {mc.describe()}\n"
           f"          {mc.num_params(embeddings=False) / 1e6:,.1f}M non-embedding params, {trainable / 1e6:,.2f}M "
           f"trainable, {flops_per_token / 1e9:.3f} GFLOP/token at seq {cfg.seq_len}\n"
           f"data      {data_line}\n"
           f"batch     {cfg.batch_size} seq x {world} rank(s) x {cfg.grad_accum} accum = {cfg.global_batch(world)} seq "
           f"= {tokens_per_step:,} tokens/step, {cfg.steps} steps\n"
           f"compute   {device.type} x {world}, {str(dtype).removeprefix('torch.')} compute, fp32 master weights, "
           f"compile {compile_}, activation checkpointing {cfg.activation_checkpointing}\n"
           f"memory    ~{need / 1e9:.2f} GB/rank estimated of {have / 1e9:.1f} GB"
           + (f"\nbaseline  unigram validation loss {baseline:.4f}" if baseline is not None else "")
           + ("" if peak else "\nMFU       not shown: no peak FLOP/s known for this device"))

    t_start, t_last, step0, result, loss_val = time.time(), time.time(), step, {}, None
    while step < cfg.steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule, cfg.min_lr_ratio)
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss_sum, extra = 0.0, {}
        # each micro-batch's mean loss weighs by its share of the global batch's labelled tokens (all
        # ranks): packed chats learn a varying number, and a mean of means would depend on how the
        # global batch is split into ranks and accumulation steps. Gradients are averaged over ranks.
        batches = [objective.next_batch() for _ in range(cfg.grad_accum)]
        weights = [objective.weight(b) for b in batches]
        total = max(_all_sum(sum(weights), device), 1)
        for batch, w in zip(batches, weights):
            with amp_ctx():
                loss, metrics = objective.loss(model, batch, device)
            (loss * (w * world / total)).backward()
            loss_sum += loss.item() * w
            for k, v in metrics.items():
                extra[k] = extra.get(k, 0.0) + v / cfg.grad_accum
        loss_val = _all_sum(loss_sum, device) / total
        gnorm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        gnorm = float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)
        skip_reason = _guard(loss_val, gnorm, step, cfg, guard)
        if skip_reason:
            optimizer.zero_grad(set_to_none=True)
            guard["skips"] += 1
            guard["skipped_steps"].append(step)
            print0(f"step {step + 1}: skipped ({skip_reason})")
            if guard["skips"] > cfg.max_skips:
                raise BaichuanError(f"training stopped at step {step + 1}: {guard['skips']} consecutive steps "
                                    f"skipped, last because {skip_reason}; lower lr or check the data")
        else:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            guard["skips"] = 0
            guard["recent"] = (guard["recent"] + [loss_val])[-100:]
        step += 1

        if step % cfg.log_every == 0 or step == cfg.steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.time()
            n_steps = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            dt = (now - t_last) / n_steps
            t_last = now
            tps = tokens_per_step / dt
            mfu = tps * flops_per_token / (world * peak) if peak else None
            eta = (cfg.steps - step) * (now - t_start) / max(1, step - step0)
            shown = "".join(f" | {k.replace('_', ' ')} {v:.3f}" for k, v in extra.items())
            print0(f"step {step:>6}/{cfg.steps} | loss {loss_val:.4f}{shown} | lr {lr:.2e} | gnorm {gnorm:.3f} | "
                   f"{tps:,.0f} tok/s" + (f" | MFU {mfu * 100:.1f}%" if mfu else "") + f" | ETA {_duration(eta)}")
            log.write(kind="train", step=step, loss=loss_val, lr=lr, grad_norm=gnorm, tokens_per_s=tps, mfu=mfu,
                      tokens=step * tokens_per_step, time=now - t_start, **extra)
        if val and (step % cfg.eval_every == 0 or step == cfg.steps):
            ev = evaluate(model, val, cfg, amp_ctx)
            print0("eval      " + " | ".join(f"{k} loss {v['loss']:.4f}" + (f" bpb {v['bpb']:.3f}" if v["bpb"] else "")
                                             for k, v in ev.items()))
            val_loss = float(np.mean([v["loss"] for v in ev.values()]))
            log.write(kind="val", step=step, val_loss=val_loss, **{f"{k}_{m}": v[m] for k, v in ev.items() for m in v})
            result["val"] = ev
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            meta = {"loader": objective.state_dict(), "guard": guard, "world_size": world,
                    "global_batch": cfg.global_batch(world), "fingerprint": fingerprint,
                    "fingerprint_fields": _fingerprint_fields(cfg, mc), "config": dataclasses.asdict(cfg)}
            train_state.save(ckpt_root, step, model, optimizer, meta, cfg.keep, frozen=frozen)

    if val and "val" not in result:  # resumed at or past the last step: nothing trained, still evaluated
        print0(f"checkpoint at step {step} already reaches --steps {cfg.steps}: nothing to train")
        result["val"] = evaluate(model, val, cfg, amp_ctx)
    result.update(steps=step, final_loss=loss_val if cfg.steps > step0 else None, baseline=baseline,
                  skipped_steps=guard["skipped_steps"], seconds=time.time() - t_start)
    if rank == 0:
        plot_losses(log.records(), out / "loss.png", baseline)
    if cfg.export:
        result.update(export(model, mc, cfg, rank))
    return result


def _guard(loss: float, gnorm: float, step: int, cfg: TrainConfig, guard: dict) -> str | None:
    """Why this step must not be applied, or None. NaN/inf always; a spike once there is history."""
    if not math.isfinite(loss) or not math.isfinite(gnorm):
        return f"loss {loss} / grad norm {gnorm} is not finite"
    recent = guard["recent"]
    if len(recent) >= 20 and step >= cfg.warmup:
        mean, std = float(np.mean(recent)), float(np.std(recent)) + 1e-3
        if loss > mean + cfg.spike_sigma * std:
            return f"loss spike {loss:.4f} > mean {mean:.4f} + {cfg.spike_sigma} x std {std:.4f}"
    return None


def _fingerprint_fields(cfg: TrainConfig, mc: ModelConfig) -> dict:
    """What must not change across a resume: the model shape and what defines the data order."""
    return {"model": {k: v for k, v in dataclasses.asdict(mc).items() if k != "name"}, "task": cfg.task,
            "lora": cfg.lora, "quantize_base": cfg.quantize_base,
            "seq_len": cfg.seq_len, "seed": cfg.seed, "data": str(Path(cfg.data).resolve())}


def _fingerprint(cfg: TrainConfig, mc: ModelConfig) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(_fingerprint_fields(cfg, mc), sort_keys=True).encode()).hexdigest()[:16]


def export(model, mc: ModelConfig, cfg: TrainConfig, rank: int) -> dict:
    """Write out/model as an HF-style Baichuan directory (rank 0 gathers the full weights); with
    LoRA, also out/adapter (PEFT layout) and the model with the adapter merged in (for QLoRA, into
    the unquantized base weights)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from baichuan.checkpoint import save_pretrained
    out = Path(cfg.out)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    paths = {"model_dir": str(out / "model")}
    if rank == 0:
        tok = None
        if tokenizer_path(cfg):
            from baichuan.tokenizer import Tokenizer
            tok = Tokenizer.load(tokenizer_path(cfg))
        if cfg.lora is not None:
            from baichuan.train.lora import merge_lora, save_adapter
            # the trained adapters on the unquantized base (for QLoRA the int4 base is not merged into)
            model_out = initial_model(mc, dataclasses.replace(cfg, quantize_base=None))
            trained = full if not cfg.quantize_base else {k: v for k, v in full.items() if ".lora_" in k}
            model_out.load_state_dict(trained, strict=not cfg.quantize_base)
            paths["adapter_dir"] = str(save_adapter(model_out, out / "adapter",
                                                          base_model=str(Path(cfg.init_from).resolve())))
            merge_lora(model_out)
        else:
            model_out = build(mc, device="cpu", init=False)
            model_out.load_state_dict(full)
        save_pretrained(model_out.train(), out / "model", tokenizer=tok)
        print0(f"exported  {out / 'model'}" + (f" and {out / 'adapter'}" if cfg.lora is not None else ""))
    if dist.is_initialized():
        dist.barrier()
    return paths


# ---------------------------------------------------------------------------------- command

def _saved_config(cfg: TrainConfig) -> dict:
    """config.json of a run, with absolute paths: `--export-only` may read it from anywhere."""
    d = dataclasses.asdict(cfg)
    for k in ("data", "out", "init_from", "tokenizer"):
        if d.get(k):
            d[k] = str(Path(d[k]).resolve())
    d["val_data"] = {n: str(Path(p).resolve()) for n, p in (d.get("val_data") or {}).items()}
    return d


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="baichuan.train", description="pretrain a Baichuan model")
    add_args(p)
    cfg = config_from_args(p.parse_args(argv))
    try:
        train(cfg)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
