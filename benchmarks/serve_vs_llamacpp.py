"""Serving on a CPU against llama.cpp's own multi-slot server: `baichuan serve` and `llama-server`
on the same model (ours from its directory, llama.cpp from our GGUF export of it), the same
threads, 8 and 16 concurrent streams, in one run.

    python benchmarks/serve_vs_llamacpp.py --llama-server /tmp/llama-build/bin/llama-server
    python benchmarks/serve_vs_llamacpp.py --shape 1b --precision bf16 --streams 8,16 --new 64

`llama-server` is built from the llama.cpp source that llama-cpp-python vendors (its sdist):
    cmake -S vendor/llama.cpp -B build -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF \\
          -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON && cmake --build build --target llama-server -j

Each server runs as its own process with as many slots (rows) as the most streams; each stream
sends a `--prompt`-token text prompt of its own (no prompt repeats, so neither side's prompt
cache helps) and streams `--new` tokens with EOS forbidden, all streams at once. Reported per side: total generated tokens/s over the wall time, p50/p99 time to first
token, and the server's peak RSS, ours also against its weight bytes plus KV cache bytes (the
issue's bound: at most 1.3x). Random weights (models from cpu_vs_llamacpp.py's `prepare`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_vs_llamacpp import PRECISIONS, REPO, SHAPES, prepare  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 900) -> float:
    import httpx
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return time.perf_counter() - t
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not start in time")


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


async def streams(url: str, prompts: list[str], new: int, extra: dict) -> dict:
    """A streaming completion of each prompt, all at once: total tokens/s, p50/p99 TTFT (ms)."""
    import httpx

    async def one(client, prompt):
        body = {"prompt": prompt, "max_tokens": new, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}, **extra}
        t, first, tokens, usage = time.perf_counter(), None, 0, None
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    usage = event["usage"]["completion_tokens"]
                if event.get("choices") and event["choices"][0].get("text"):
                    first = first or time.perf_counter()
                    tokens += 1
        return first - t, usage or tokens

    async with httpx.AsyncClient(timeout=3600, headers={"Authorization": "Bearer bench"}) as client:
        t = time.perf_counter()
        results = await asyncio.gather(*[one(client, p) for p in prompts])
        wall = time.perf_counter() - t
    ttfts = [r[0] * 1e3 for r in results]
    return {"tok_s": sum(r[1] for r in results) / wall, "tokens": sum(r[1] for r in results),
            "ttft_p50_ms": percentile(ttfts, 50), "ttft_p99_ms": percentile(ttfts, 99)}


def run_side(cmd: list[str], url: str, counts: list[int], prompts, new: int, extra: dict, env=None) -> dict:
    """Start a server, warm it up, run each count of streams; `prompts(n, round)` gives n prompts,
    none seen before (so no side reuses a cached prompt)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        ready = wait_ready(url, proc)
        asyncio.run(streams(url, prompts(min(counts), 0), 8, extra))  # warm-up: first touch, compile caches
        out = {"ready_s": ready}
        for k, n in enumerate(counts, 1):
            out[n] = asyncio.run(streams(url, prompts(n, k), new, extra))
        out["peak_rss_mb"] = peak_rss_mb(proc.pid)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER", "llama-server"))
    ap.add_argument("--shape", default="168m", choices=sorted(SHAPES))
    ap.add_argument("--precision", default="bf16", choices=sorted(PRECISIONS))
    ap.add_argument("--streams", default="8,16")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens (about)")
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction,
                    help="serve ours with --compile (every batch size) or --no-compile (eager); default: serve's")
    ap.add_argument("--out", default="out/bench-cpu")
    args = ap.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    dirs, ggufs = prepare(args.shape, Path(args.out), [args.precision])
    from baichuan.config import load_config
    from baichuan.tokenizer import Tokenizer
    cfg = load_config(dirs[args.precision])
    tok = Tokenizer.load(dirs[args.precision])
    import random
    words = "春眠 不觉 晓 处处 闻 啼鸟 夜来 风雨 声 花落 知 多少 the quick brown fox jumps over lazy dog".split()

    def prompts(n: int, round_: int) -> list[str]:  # different text per stream and round, about --prompt tokens
        rng = random.Random(round_)
        return [tok.decode(tok.encode(f"{round_}-{i}: " + " ".join(rng.choices(words, k=4 * args.prompt)))
                           [:args.prompt]) for i in range(n)]
    ctx = max(len(tok.encode(p)) for p in prompts(max(counts), 0)) + args.new + 16
    rows = max(counts)
    port = free_port()
    ours_cmd = [sys.executable, "-m", "baichuan.cli", "serve", str(dirs[args.precision]), "--port", str(port),
                "--max-batch", str(rows), "--max-len", str(ctx), "--api-key", "bench", "--prefix-cache-mb", "0"]
    if args.precision == "bf16":
        ours_cmd += ["--dtype", "bfloat16"]
    if args.compile is not None:
        ours_cmd.append("--compile" if args.compile else "--no-compile")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ours = run_side(ours_cmd, f"http://127.0.0.1:{port}", counts, prompts, args.new,
                    {"logit_bias": {str(i): -100 for i in tok.stop_ids}}, env)
    port = free_port()
    llama_cmd = [args.llama_server, "-m", str(ggufs[args.precision]), "--port", str(port), "-np", str(rows),
                 "-c", str(rows * ctx), "-t", str(args.threads), "--api-key", "bench", "--no-webui"]
    peer = run_side(llama_cmd, f"http://127.0.0.1:{port}", counts, prompts, args.new, {"ignore_eos": True})
    per_param = {"fp32": 4, "bf16": 2}.get(args.precision)
    weights = sum(f.stat().st_size for f in Path(dirs[args.precision]).glob("*.safetensors"))
    if per_param:  # the directory is fp32: bf16 holds half
        weights = weights * per_param // 4
    kv = 2 * cfg.num_layers * rows * ctx * cfg.hidden_size * (per_param or 2)
    bound_mb = (weights + kv) / 2 ** 20
    print(f"{args.shape} {args.precision} ({PRECISIONS[args.precision]} for llama.cpp), {args.threads} threads, "
          f"{args.prompt}-token prompts (each its own), {args.new} new tokens each; ready {ours['ready_s']:.0f} s vs "
          f"{peer['ready_s']:.0f} s")
    for n in counts:
        a, b = ours[n], peer[n]
        print(f"{n:3d} streams: {a['tok_s']:7.1f} vs {b['tok_s']:7.1f} tok/s ({a['tok_s'] / b['tok_s']:.2f}x) | TTFT "
              f"p50 {a['ttft_p50_ms']:.0f} vs {b['ttft_p50_ms']:.0f} ms, p99 {a['ttft_p99_ms']:.0f} vs "
              f"{b['ttft_p99_ms']:.0f} ms")
    print(f"peak RSS: ours {ours['peak_rss_mb']:.0f} MB = {ours['peak_rss_mb'] / bound_mb:.2f}x its weights + KV "
          f"cache ({bound_mb:.0f} MB); llama-server {peer['peak_rss_mb']:.0f} MB")
    path = Path(args.out) / f"serve-{args.shape}-{args.precision}.json"
    path.write_text(json.dumps({"ours": ours, "llama.cpp": peer, "weights_plus_kv_mb": bound_mb}, indent=1))


if __name__ == "__main__":
    main()
