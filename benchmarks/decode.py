"""Batch-1 decode speed: our engine against HF transformers `generate` on the same shape, in one
process, plus the memory-bandwidth roof.

    python benchmarks/decode.py                       # CPU: the `small` preset, fp32
    python benchmarks/decode.py --shape baichuan-7b   # GPU: Baichuan-7B shape, bf16 (+ --quant int8/int4)

Random weights, greedy decoding of `--new` tokens after a `--prompt`-token prompt; tokens/s counts
decode steps only (the prefill is timed separately). The roof is weight bytes / bandwidth, with
the bandwidth measured here by a large device copy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from baichuan.config import preset
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams
from baichuan.model import build


def bandwidth(device) -> float:
    """Bytes/s of a large copy (read + write), the decode roof's denominator."""
    n = (512 if device.type == "cuda" else 64) * 1024 ** 2
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    for _ in range(2):
        b.copy_(a)
    sync(device)
    t = time.perf_counter()
    reps = 10
    for _ in range(reps):
        b.copy_(a)
    sync(device)
    return 2 * n * reps / (time.perf_counter() - t)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(model, prompt, new, device) -> dict:
    engine = Engine(model, max_batch=1, max_len=len(prompt) + new + 1)
    params = SamplingParams(max_new_tokens=new, eos_token_ids=(-1,))
    list(engine.generate(prompt, SamplingParams(max_new_tokens=4, eos_token_ids=(-1,))))  # warm-up
    sync(device)
    times = []
    t = time.perf_counter()
    for _ in engine.generate(prompt, params):
        sync(device)
        times.append(time.perf_counter())
    decode = (times[-1] - times[0]) / (len(times) - 1)
    return {"name": "baichuan engine", "prefill_ms": (times[0] - t) * 1e3, "tokens_per_s": 1 / decode}


def hf(cfg, state, prompt, new, device, dtype) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                         max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.rms_norm_eps,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(hf_cfg).to(device=device, dtype=dtype).eval()
    H = cfg.hidden_size
    sd = {}
    for k, v in state.items():
        if k.endswith("W_pack.weight"):
            base = k[:-len("W_pack.weight")]
            sd[base + "q_proj.weight"], sd[base + "k_proj.weight"], sd[base + "v_proj.weight"] = v[:H], v[H:2 * H], v[2 * H:]
        else:
            sd[k] = v
    model.load_state_dict(sd, strict=False)
    ids = torch.tensor([prompt], device=device)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, **kw)
        sync(device)
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=1, **kw)
        sync(device)
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, **kw)
        sync(device)
        total = time.perf_counter() - t
    steps = out.shape[1] - len(prompt) - 1
    return {"name": "hf generate", "prefill_ms": prefill * 1e3, "tokens_per_s": steps / (total - prefill),
            "first_tokens": out[0, len(prompt):len(prompt) + 8].tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default=None, help="a preset name (default: baichuan-7b on CUDA, small on CPU)")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--quant", choices=["none", "int8", "int4"], default="none")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--out", default="out/bench/decode.json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = preset(args.shape or ("baichuan-7b" if device.type == "cuda" else "small"))
    torch.manual_seed(0)
    model = build(cfg, device=device, dtype=dtype).eval()
    prompt = torch.randint(3, cfg.vocab_size, (args.prompt,)).tolist()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    if not args.skip_hf and args.quant == "none":
        rows.append(hf(cfg, model.state_dict(), prompt, args.new, device, dtype))
        print(rows[-1])
    if args.quant != "none":
        from baichuan.quant import quantize, use_kernels
        group = next(g for g in (128, 64, 32) if cfg.hidden_size % g == 0 and cfg.intermediate_size % g == 0)
        quantize(model, args.quant, group_size=group)
        if dtype == torch.bfloat16:
            use_kernels(model)
        weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    mine = ours(model, prompt, args.new, device)
    rows.append(mine)
    bw = bandwidth(device)
    roof = bw / weight_bytes
    print(f"\n{device} | {cfg.describe()} | {str(dtype).removeprefix('torch.')} {args.quant} | "
          f"{weight_bytes / 1e9:.2f} GB of weights | copy bandwidth {bw / 1e9:.0f} GB/s -> roof {roof:.1f} tok/s")
    print("| implementation | tokens/s | prefill ms | of roof | ours / this |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['tokens_per_s']:.1f} | {r['prefill_ms']:.1f} | {r['tokens_per_s'] / roof:.0%} "
              f"| {mine['tokens_per_s'] / r['tokens_per_s']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "quant": args.quant,
                                          "weight_bytes": weight_bytes, "bandwidth": bw, "roof_tokens_per_s": roof,
                                          "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
