"""LoRA fine-tuning throughput and memory: ours against HF transformers + PEFT with the same
settings, in one process.

    python benchmarks/lora_sft.py                      # CPU: the `small` preset, fp32
    python benchmarks/lora_sft.py --shape baichuan-7b  # GPU: Baichuan-7B shape, bf16 frozen base

Both: LoRA r=8, alpha=16, no dropout, on the attention and MLP projections (ours: W_pack, o_proj,
gate/up/down; HF Llama: q/k/v/o, gate/up/down, which is the same weights split), frozen base in
the compute dtype, AdamW on the adapters, batch x seq random tokens, loss on every position.
Ours computes the loss in chunks inside the model and compiles each block on CUDA; HF is run
eager (the usual PEFT setup). Prints tokens/s, peak memory and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from baichuan.config import preset
from baichuan.model import build, lm_loss
from baichuan.train.lora import add_lora
from baichuan.train.parallel import parallelize

HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def timed(step, steps, warmup, device) -> tuple[float, float | None]:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return (time.perf_counter() - t) / steps, peak


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
    seq, bs = args.seq_len or (2048 if gpu else 256), args.batch_size or (4 if gpu else 8)
    steps, warmup = args.steps or (10 if gpu else 3), 3 if gpu else 1
    dtype = torch.bfloat16 if gpu else torch.float32
    amp = lambda: torch.autocast(device.type, dtype=dtype, enabled=gpu)  # noqa: E731
    x = torch.randint(3, cfg.vocab_size, (bs, seq + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]
    tokens = bs * seq
    rows = []

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         num_key_value_heads=cfg.num_heads, max_position_embeddings=max(cfg.max_len, seq),
                         tie_word_embeddings=False)
    hf = LlamaForCausalLM(hf_cfg).to(device=device, dtype=dtype)
    hf = get_peft_model(hf, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=HF_TARGETS))
    opt = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-4, fused=gpu or None)

    def hf_step():
        with amp():
            loss = lm_loss(hf(input_ids=inputs).logits, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    dt, peak = timed(hf_step, steps, warmup, device)
    rows.append({"name": "hf + peft (eager)", "tokens_per_s": tokens / dt, "peak_gb": peak})
    print(rows[-1])
    del hf, opt
    if gpu:
        torch.cuda.empty_cache()

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
    dt, peak = timed(our_step, steps, warmup, device)
    rows.append({"name": "baichuan LoRA", "tokens_per_s": tokens / dt, "peak_gb": peak})
    print(rows[-1])

    print(f"\n{device} | {cfg.describe()} | batch {bs} x {seq} | LoRA r=8 on the 7 projections")
    print("| implementation | tokens/s | peak GB | ours / this |\n|---|---:|---:|---:|")
    for r in rows:
        mem = f"{r['peak_gb']:.1f}" if r["peak_gb"] else "-"
        print(f"| {r['name']} | {r['tokens_per_s']:,.0f} | {mem} | {rows[-1]['tokens_per_s'] / r['tokens_per_s']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
