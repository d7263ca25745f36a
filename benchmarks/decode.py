"""Batch-1 decode speed: our engine against HF transformers `generate` on the same shape, in one
process, plus the memory-bandwidth roof.

    python benchmarks/decode.py                       # CPU: the `small` preset
    python benchmarks/decode.py --shape baichuan-7b   # GPU: Baichuan-7B shape (the default there)

Random weights, greedy decoding of `--new` tokens after a `--prompt`-token prompt; tokens/s counts
decode steps only (the prefill is timed separately). Runs, one process: HF `generate` (fp32 and
bf16 on CPU, bf16 on CUDA), then our engine eager and with the compiled decode step (CUDA graphs
on GPUs) in the base dtype, bf16, int8 and int4 (kernels where torch has them), and int8 with the
LM head quantized too ("+head", not in Baichuan's releases); ratios are to
the first HF row. The roof is weight bytes / bandwidth, with the bandwidth measured here by a
large device copy.
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
from common import hf_llama


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


def ours(model, prompt, new, device, compile: bool) -> dict:
    engine = Engine(model, max_batch=1, max_len=len(prompt) + new + 1, compile=compile)
    params = SamplingParams(max_new_tokens=new, eos_token_ids=(-1,))
    engine.warm_up(greedy_only=True)  # compiles, and records a CUDA graph for every span the run will reach
    for _ in range(2):
        list(engine.generate(prompt, SamplingParams(max_new_tokens=8, eos_token_ids=(-1,))))
    sync(device)
    times = []
    t = time.perf_counter()
    tokens = []
    for tok in engine.generate(prompt, params):
        sync(device)
        times.append(time.perf_counter())
        tokens.append(tok)
    # the first step prefills and decodes, so the first two tokens arrive together: time from the second
    decode = (times[-1] - times[1]) / (len(times) - 2)
    return {"prefill_ms": (times[0] - t - decode) * 1e3, "tokens_per_s": 1 / decode, "first_tokens": tokens[:8]}


def hf(cfg, state, prompt, new, device, dtype) -> dict:
    model = hf_llama(cfg, device, dtype, state={k: v.to(dtype) for k, v in state.items()}).eval()
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
    return {"prefill_ms": prefill * 1e3, "tokens_per_s": steps / (total - prefill),
            "first_tokens": out[0, len(prompt):len(prompt) + 8].tolist()}


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default=None, help="a preset name (default: baichuan-7b on CUDA, small on CPU)")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="only HF and our compiled step at the base dtype")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--out", default="out/bench/decode.json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    base = torch.bfloat16 if cuda else torch.float32
    cfg = preset(args.shape or ("baichuan-7b" if cuda else "small"))
    torch.manual_seed(0)
    state = build(cfg, device=device, dtype=base).state_dict()
    prompt = torch.randint(3, cfg.vocab_size, (args.prompt,)).tolist()
    group = next(g for g in (128, 64, 32) if cfg.hidden_size % g == 0 and cfg.intermediate_size % g == 0)

    # (name, dtype, quant, compiled): HF at the base dtype (and bf16 on CPU), ours eager and compiled
    hf_runs = [base] + ([] if cuda or args.quick else [torch.bfloat16])
    our_runs = [(base, "none", True)] if args.quick else [
        (base, "none", False), (base, "none", True), (torch.bfloat16, "none", True),
        (torch.bfloat16, "int8", True), (torch.bfloat16, "int4", True), (torch.bfloat16, "int8+head", True)]
    if cuda and not args.quick:
        our_runs.remove((base, "none", True))           # base is bf16 on CUDA: listed once
    rows, bw = [], bandwidth(device)

    def save():  # after every row, so a run stopped by a time limit keeps what it measured
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "bandwidth": bw,
                                              "prompt": args.prompt, "new": args.new, "rows": rows}, indent=1) + "\n")
    for dtype in ([] if args.skip_hf else hf_runs):
        r = hf(cfg, state, prompt, args.new, device, dtype)
        rows.append({"name": f"hf generate {dtype_name(dtype)}", "weight_bytes": None, **r})
        print(rows[-1])
        save()
    for dtype, quant, compiled in our_runs:
        model = build(cfg, device=device, dtype=dtype).eval()
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
        if quant != "none":
            from baichuan.quant import quantize, use_kernels
            quantize(model, quant.removesuffix("+head"), group_size=group, lm_head=quant.endswith("+head"))
        # counted before use_kernels, whose int4 layout lives in buffers outside the state dict
        weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        if quant != "none":
            use_kernels(model)
        r = ours(model, prompt, args.new, device, compiled)
        name = f"baichuan {dtype_name(dtype)}{'' if quant == 'none' else ' ' + quant}{' compiled' if compiled else ''}"
        rows.append({"name": name, "weight_bytes": weight_bytes, "roof_tokens_per_s": bw / weight_bytes, **r})
        print(rows[-1])
        save()
        del model
    ref = rows[0]["tokens_per_s"] if rows and rows[0]["name"].startswith("hf") else None
    print(f"\n{device} | {cfg.describe()} | copy bandwidth {bw / 1e9:.0f} GB/s | prompt {args.prompt}, "
          f"{args.new} new tokens, batch 1, greedy")
    print(f"| implementation | tokens/s | prefill ms | weights GB | of roof | vs {rows[0]['name'] if ref else '-'} |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        tps, wb = r["tokens_per_s"], r["weight_bytes"]
        weights = "" if wb is None else f"{wb / 1e9:.3f}"
        of_roof = "" if wb is None else f"{tps / r['roof_tokens_per_s']:.0%}"
        ratio = "" if ref is None else f"{tps / ref:.2f}x"
        print(f"| {r['name']} | {tps:.1f} | {r['prefill_ms']:.1f} | {weights} | {of_roof} | {ratio} |")


if __name__ == "__main__":
    main()
