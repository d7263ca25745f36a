"""Training throughput: our model and training step against HF transformers' LlamaForCausalLM of
the same shape, in one process, same batch, same optimizer settings.

    python benchmarks/train_throughput.py                    # CPU: the `small` preset
    python benchmarks/train_throughput.py --shape 1.5b       # GPU: hidden 2048, 24 layers, vocab 64000

GPU runs use bf16 autocast with fp32 master weights, fused AdamW and SDPA for both; HF runs eager
and compiled (`torch.compile(model)`), ours compiled per block as `baichuan train --compile` does.
Printed: tokens/s, MFU (against the device's dense bf16 peak, 989 TFLOP/s on H100 SXM), peak
memory, and our ratio to each peer row. Random tokens; the first steps are warm-up and not timed.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from baichuan.config import preset
from baichuan.model import build, lm_loss
from baichuan.train.metrics import peak_flops
from baichuan.train.optim import build_optimizer
from baichuan.train.parallel import parallelize
from common import hf_llama, timed

SHAPES = {
    "small": dict(preset="small", seq_len=256, batch_size=16),
    "1.5b": dict(preset="1b", overrides=dict(hidden_size=2048, num_layers=24, num_heads=16, intermediate_size=5504,
                                             vocab_size=64000), seq_len=2048, batch_size=4),
}


def bench(name, model, step_fn, opt, device, tokens_per_step, flops_per_token, steps, warmup) -> dict:
    def one():
        step_fn().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    dt, peak_mem = timed(one, steps, warmup, device)
    tps = tokens_per_step / dt
    peak = peak_flops(device)
    return {"name": name, "tokens_per_s": tps, "step_ms": dt * 1e3,
            "mfu": tps * flops_per_token / peak if peak else None, "peak_mem_gb": peak_mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=list(SHAPES), default=None, help="default: 1.5b on CUDA, small on CPU")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--out", default="out/bench/train_throughput.json")
    ap.add_argument("--skip-hf-eager", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[args.shape or ("1.5b" if device.type == "cuda" else "small")]
    cfg = preset(shape["preset"], **shape.get("overrides", {}))
    seq, bs = shape["seq_len"], args.batch_size or shape["batch_size"]
    steps = args.steps or (20 if device.type == "cuda" else 5)
    warmup = 5 if device.type == "cuda" else 1
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    amp = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)  # noqa: E731
    tokens = bs * seq
    fpt = cfg.flops_per_token(seq)
    x = torch.randint(0, cfg.vocab_size, (bs, seq + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]
    print(f"{device} | {cfg.describe()} | batch {bs} x {seq} | {fpt / 1e9:.2f} GFLOP/token")
    rows = []

    def save():  # after every row: a run stopped by a time limit keeps what it measured
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "seq_len": seq,
                                              "batch_size": bs, "rows": rows}, indent=1) + "\n")

    variants = [("hf eager", False)] if not args.skip_hf_eager else []
    variants += [("hf compiled", True)] if device.type == "cuda" else []
    for name, compiled in variants:
        torch.manual_seed(0)
        model = hf_llama(cfg, device).train()   # fp32 master weights, bf16 autocast
        opt = build_optimizer(model, 3e-4)
        forward = torch.compile(model) if compiled else model

        def hf_step(forward=forward):
            with amp():
                logits = forward(input_ids=inputs).logits
            return lm_loss(logits, targets)
        rows.append(bench(name, model, hf_step, opt, device, tokens, fpt, steps, warmup))
        print(rows[-1])
        save()
        del model, opt, forward, hf_step  # hf_step's default argument holds the model too
        gc.collect()
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    torch.manual_seed(0)
    model = build(cfg, device=device).train()
    parallelize(model, world_size=1, compile=device.type == "cuda")
    opt = build_optimizer(model, 3e-4)

    def our_step():  # the training path: the model computes the loss in chunks (no full fp32 logits)
        with amp():
            return model(inputs, targets=targets)
    ours = bench("baichuan", model, our_step, opt, device, tokens, fpt, steps, warmup)
    rows.append(ours)
    print(ours)
    save()

    print("\n| implementation | tokens/s | MFU | peak GB | ours / this |\n|---|---:|---:|---:|---:|")
    for r in rows:
        mfu = f"{r['mfu'] * 100:.1f}%" if r["mfu"] else "-"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] else "-"
        print(f"| {r['name']} | {r['tokens_per_s']:,.0f} | {mfu} | {mem} | {ours['tokens_per_s'] / r['tokens_per_s']:.2f}x |")


if __name__ == "__main__":
    main()
