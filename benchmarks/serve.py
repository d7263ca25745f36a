"""Serving under load: N concurrent streaming clients against `baichuan serve`'s app, against HF
transformers batched `generate` on the same shape, in one process.

    python benchmarks/serve.py                                    # CPU: `small`, 16 streams x 64 tokens
    python benchmarks/serve.py --shape baichuan-7b --streams 64 --prompt 128 --new 256 --hf-batch 32   # GPU

The clients run in a second process, as real clients would. Each streams /v1/completions with a
random `--prompt`-token prompt (token ids) and `--new` tokens (no EOS). Reported: total generated
tokens/s over the wall time, and p50/p99 of time to first token and of the gap between tokens. HF
generates the same number of sequences in batches of `--hf-batch` (its tokens/s counts new tokens
over wall time, the way serving would). Random weights; ids are rendered as numbers, since
tokenization is not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from baichuan.config import GenerationConfig, preset
from baichuan.infer.engine import Engine
from baichuan.infer.server import ServerConfig, create_app
from baichuan.model import build
from common import hf_llama


class IdsAsText:
    """What the server needs of a tokenizer to stream: decode and an EOS id (none reachable here)."""
    eos_id = -1

    def decode(self, ids):
        return "".join(f"{i} " for i in ids)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float("nan")


async def run_clients(url, streams, prompt_len, new, vocab):
    import httpx

    async def one(ac, i):
        gen = torch.Generator().manual_seed(i)
        prompt = torch.randint(3, vocab, (prompt_len,), generator=gen).tolist()
        body = {"prompt": prompt, "max_tokens": new, "stream": True, "temperature": 0}
        t0 = time.perf_counter()
        stamps, n = [], 0
        async with ac.stream("POST", url + "/v1/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    text = json.loads(line[6:])["choices"][0]["text"]
                    k = text.count(" ")
                    if k:
                        stamps.append(time.perf_counter())
                        n += k
        return t0, stamps, n

    async with httpx.AsyncClient(timeout=3600, limits=httpx.Limits(max_connections=streams + 8)) as ac:
        return await asyncio.gather(*[one(ac, i) for i in range(streams)])


def load(url, streams, prompt_len, new, vocab):
    """The clients' side, run in its own process (so parsing their streams does not take the
    server's interpreter): (wall seconds, per-client results)."""
    t = time.perf_counter()
    results = asyncio.run(run_clients(url, streams, prompt_len, new, vocab))
    return time.perf_counter() - t, results


def ours(model, args) -> dict:
    import uvicorn
    engine = Engine(model, max_batch=args.streams, max_len=args.prompt + args.new + 8, compile=not args.eager)
    engine.warm_up(greedy_only=True)    # compiles (and records the CUDA graph) before the clock starts
    app = create_app(engine, IdsAsText(), GenerationConfig(do_sample=False, repetition_penalty=1.0),
                     ServerConfig(model_name="bench", max_queue=args.streams, max_new_tokens=args.new))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    engine.start()
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as clients:
        clients.submit(load, url, min(4, args.streams), 8, 4, model.cfg.vocab_size).result()  # warm-up
        wall, results = clients.submit(load, url, args.streams, args.prompt, args.new, model.cfg.vocab_size).result()
    server.should_exit = True
    engine.stop()
    ttft = [stamps[0] - t0 for t0, stamps, _ in results if stamps]
    gaps = [b - a for _, stamps, _ in results for a, b in zip(stamps, stamps[1:])]
    total = sum(n for *_, n in results)
    return {"name": "baichuan serve", "streams": args.streams, "tokens": total, "tokens_per_s": total / wall,
            "ttft_p50_ms": percentile(ttft, 50) * 1e3, "ttft_p99_ms": percentile(ttft, 99) * 1e3,
            "itl_p50_ms": percentile(gaps, 50) * 1e3, "itl_p99_ms": percentile(gaps, 99) * 1e3}


def hf(cfg, args, device, dtype) -> dict:
    model = hf_llama(cfg, device, dtype).eval()   # random weights: only the speed is compared
    ids = torch.randint(3, cfg.vocab_size, (args.hf_batch, args.prompt), device=device)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids[:, :8], max_new_tokens=4, **kw)
        batches = -(-args.streams // args.hf_batch)
        t = time.perf_counter()
        for _ in range(batches):
            model.generate(ids, max_new_tokens=args.new, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t
    total = batches * args.hf_batch * args.new
    return {"name": f"hf generate (batch {args.hf_batch})", "tokens": total, "tokens_per_s": total / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", help="preset (default: baichuan-7b on CUDA, small on CPU)")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--prompt", type=int)
    ap.add_argument("--new", type=int)
    ap.add_argument("--hf-batch", type=int)
    ap.add_argument("--eager", action="store_true", help="decode without torch.compile / CUDA graphs")
    ap.add_argument("--out", default="out/bench/serve.json")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    args.streams = args.streams or (64 if gpu else 16)
    args.prompt = args.prompt or (128 if gpu else 32)
    args.new = args.new or (256 if gpu else 64)
    args.hf_batch = args.hf_batch or (32 if gpu else 16)
    dtype = torch.bfloat16 if gpu else torch.float32
    cfg = preset(args.shape or ("baichuan-7b" if gpu else "small"))
    torch.manual_seed(0)
    model = build(cfg, device=device, dtype=dtype).eval()
    rows = [hf(cfg, args, device, dtype), ours(model, args)]
    print(f"{device} | {cfg.describe()} | {args.streams} streams x ({args.prompt} prompt + {args.new} new)")
    print("| implementation | tokens/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | ours / this |\n|---|---:|---:|---:|---:|")
    for r in rows:
        lat = (f"{r['ttft_p50_ms']:.0f} / {r['ttft_p99_ms']:.0f} | {r['itl_p50_ms']:.1f} / {r['itl_p99_ms']:.1f}"
               if "ttft_p50_ms" in r else "- | -")
        print(f"| {r['name']} | {r['tokens_per_s']:,.0f} | {lat} | {rows[-1]['tokens_per_s'] / r['tokens_per_s']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
