"""LoRA fine-tuning throughput and memory: ours against HF transformers + PEFT with the same
settings, in one process.

    python benchmarks/lora_sft.py                      # CPU: the `small` preset, fp32
    python benchmarks/lora_sft.py --shape baichuan-7b  # GPU: Baichuan-7B shape, bf16 frozen base

Both: LoRA r=8, alpha=16, no dropout, on the attention and MLP projections (ours: W_pack, o_proj,
gate/up/down; HF Llama: q/k/v/o, gate/up/down, which is the same weights split), frozen base in
the compute dtype, AdamW on the adapters, batch x seq random tokens, loss on every position.
Ours computes the loss in chunks inside the model and compiles each block on CUDA; HF is run
eager (the usual PEFT setup). Prints tokens/s, peak memory and the ratio. On CUDA the default
batch is 2 x 2048: HF + PEFT keeps ~230 KB of activations per token and layer, so 4 x 2048 at the
7B shape would need about 80 GB. Ours runs first; a row that runs out of memory is reported so.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from baichuan.config import preset
from baichuan.model import build, lm_loss
from baichuan.train.lora import add_lora
from baichuan.train.parallel import parallelize
from common import hf_llama, timed

HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", help="preset (default: baichuan-7b on CUDA, small on CPU)")
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--out", default="out/bench/lora_sft.json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    cfg = preset(args.shape or ("baichuan-7b" if gpu else "small"))
    seq, bs = args.seq_len or (2048 if gpu else 256), args.batch_size or (2 if gpu else 8)
    steps, warmup = args.steps or (10 if gpu else 3), 3 if gpu else 1
    dtype = torch.bfloat16 if gpu else torch.float32
    amp = lambda: torch.autocast(device.type, dtype=dtype, enabled=gpu)  # noqa: E731
    x = torch.randint(3, cfg.vocab_size, (bs, seq + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]
    tokens = bs * seq
    rows = []

    def our_run():
        torch.manual_seed(0)
        model = build(cfg, device=device, dtype=dtype)
        add_lora(model, r=8, alpha=16, dropout=0.0)
        parallelize(model, world_size=1, compile=gpu)
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=gpu or None)

        def our_step():
            with amp():
                loss = model(inputs, targets=targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return timed(our_step, steps, warmup, device)

    def hf_run():
        from peft import LoraConfig, get_peft_model
        hf = hf_llama(cfg, device, dtype, max_len=seq)
        hf = get_peft_model(hf, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=HF_TARGETS))
        opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-4, fused=gpu or None)

        def hf_step():
            with amp():
                loss = lm_loss(hf(input_ids=inputs).logits, targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return timed(hf_step, steps, warmup, device)

    # ours first: a peer that runs out of memory is recorded as such and cannot cost our row
    for name, run in (("baichuan LoRA", our_run), ("hf + peft (eager)", hf_run)):
        try:
            dt, peak = run()
            rows.append({"name": name, "tokens_per_s": tokens / dt, "peak_gb": peak})
        except torch.OutOfMemoryError as e:
            rows.append({"name": name, "tokens_per_s": None, "peak_gb": None, "error": f"out of memory: {e}"[:200]})
        print(rows[-1])
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()

    print(f"\n{device} | {cfg.describe()} | batch {bs} x {seq} | LoRA r=8 on the 7 projections")
    print("| implementation | tokens/s | peak GB | ours / this |\n|---|---:|---:|---:|")
    ours = rows[0]["tokens_per_s"]
    for r in rows:
        mem = f"{r['peak_gb']:.1f}" if r["peak_gb"] else "-"
        tps = r["tokens_per_s"]
        ratio = f"{ours / tps:.2f}x" if ours and tps else "-"
        print(f"| {r['name']} | {'out of memory' if tps is None else f'{tps:,.0f}'} | {mem} | {ratio} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
