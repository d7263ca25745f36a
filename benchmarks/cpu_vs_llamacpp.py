"""CPU inference against llama.cpp, the program people run models with on a CPU: the same model
both ways (ours from its directory, llama.cpp from our GGUF export of it), the same threads.

    python benchmarks/cpu_vs_llamacpp.py                         # 168M and 1B shapes, every precision
    python benchmarks/cpu_vs_llamacpp.py --shapes 168m --precisions fp32,int8
    python benchmarks/cpu_vs_llamacpp.py --shapes 7b --precisions int4   # 20 GB of disk, 14 GB of RAM to make

Per shape (random weights, the Baichuan-1 64k tokenizer from BAICHUAN_ASSETS for the export) and
precision (ours / llama.cpp: fp32 / F32, bf16 / F16, int8 / Q8_0, int4 g32 / Q4_0, and int8 / int4
with our LM head quantized too: `--precisions ...,int8+head,int4+head`), each side runs
in a fresh process (so its peak RSS is its own) and reports: batch-1 decode tok/s (128 new tokens
after a 64-token prompt, greedy), prefill tok/s of a 512-token prompt, time to the first token of
that prompt (each the best of 3 rounds: this kind of shared VM varies by 10-30% between rounds),
peak RSS and weight bytes. The bandwidth roof is weight bytes / the copy bandwidth
measured at the start of the run. Ours runs as `baichuan chat/generate/serve` would: the engine,
compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPEAT = 3  # measurements per worker; the best counts
SHAPES = {  # Baichuan-7B's layout, scaled down but for 7b (RoPE, FFN ~2.7x hidden, 64k vocab)
    "168m": dict(hidden_size=512, intermediate_size=1408, num_layers=32, num_heads=8),
    "1b": dict(hidden_size=2048, intermediate_size=5504, num_layers=16, num_heads=16),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32),  # Baichuan-7B itself
}
BF16_SOURCE = {"7b"}  # its fp32 source would take 28 GB of RAM and disk: the fp32 row then reads bf16 values
# ours -> the GGUF llama.cpp runs. "+head": our LM head quantized too (`quantize --lm-head`), as
# llama.cpp's Q8_0 (Q8_0 head) and Q4_0 (Q6_K head) files have theirs; plain int8/int4 keep a bf16
# head, as Baichuan's releases do.
PRECISIONS = {"fp32": "f32", "bf16": "f16", "int8": "q8_0", "int4": "q4_0", "int8+head": "q8_0", "int4+head": "q4_0"}


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def prompts(vocab: int, prompt: int, prefill: int) -> tuple[list[int], list[int]]:
    import torch
    g = torch.Generator().manual_seed(0)
    return (torch.randint(3, vocab, (prompt,), generator=g).tolist(),
            torch.randint(3, vocab, (prefill,), generator=g).tolist())


def worker_ours(model_dir: str, precision: str, threads: int, prompt: int, new: int, prefill: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from baichuan.checkpoint import load_pretrained
    from baichuan.infer.engine import Engine
    from baichuan.infer.sampling import SamplingParams
    started = time.perf_counter()
    # as a user would load each: the fp32 directory (in bf16 for bf16), or its int8/int4 copy (which
    # computes in bf16 with torch's kernels)
    model = load_pretrained(model_dir, dtype=torch.bfloat16 if precision == "bf16" else None)
    weight_bytes = (sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors")) if "int" in precision
                    else sum(p.numel() * p.element_size() for p in model.parameters()))  # int4 kernels keep buffers
    short, long = prompts(model.cfg.vocab_size, prompt, prefill)
    engine = Engine(model, max_batch=1, max_len=max(prefill, prompt + new) + 2, compile=True)
    engine.warm_up(greedy_only=True)
    greedy = dict(eos_token_ids=(-1,))
    list(engine.generate(short, SamplingParams(max_new_tokens=8, **greedy)))
    ready = time.perf_counter() - started
    ttft, decode = float("inf"), float("inf")
    for _ in range(REPEAT):  # the best of a few: a shared VM's neighbours slow some rounds down
        t = time.perf_counter()
        next(iter(engine.generate(long, SamplingParams(max_new_tokens=1, **greedy))))
        ttft = min(ttft, time.perf_counter() - t)
        times = []
        for _ in engine.generate(short, SamplingParams(max_new_tokens=new, **greedy)):
            times.append(time.perf_counter())
        decode = min(decode, (times[-1] - times[1]) / (len(times) - 2))  # the first two tokens: one step
    return {"decode_tps": 1 / decode, "prefill_tps": prefill / ttft, "ttft_ms": ttft * 1e3,
            "weight_bytes": weight_bytes, "peak_rss_mb": peak_rss_mb(), "ready_s": ready}


def worker_llama(gguf: str, threads: int, prompt: int, new: int, prefill: int) -> dict:
    import llama_cpp
    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=max(prefill, prompt + new) + 2, n_batch=prefill, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    short, long = prompts(llm.n_vocab(), prompt, prefill)
    for tok in llm.generate(short, top_k=1, temp=0.0):  # warm-up
        break
    llm.reset()
    ready = time.perf_counter() - started
    ttft, decode = float("inf"), float("inf")
    for _ in range(REPEAT):
        t = time.perf_counter()
        for tok in llm.generate(long, top_k=1, temp=0.0, reset=True):
            break
        ttft = min(ttft, time.perf_counter() - t)
        times = []
        for tok in llm.generate(short, top_k=1, temp=0.0, reset=True):
            times.append(time.perf_counter())
            if len(times) == new:
                break
        decode = min(decode, (times[-1] - times[0]) / (len(times) - 1))
    return {"decode_tps": 1 / decode, "prefill_tps": prefill / ttft, "ttft_ms": ttft * 1e3,
            "weight_bytes": Path(gguf).stat().st_size, "peak_rss_mb": peak_rss_mb(), "ready_s": ready}


def bandwidth() -> float:
    """Bytes/s of a large copy (read + write) with torch on all threads, the best of 5 rounds (a
    shared VM's neighbours slow some rounds down)."""
    import torch
    a = torch.empty(256 * 1024 ** 2, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(4):
            b.copy_(a)
        best = max(best, 2 * a.numel() * 4 / (time.perf_counter() - t))
    return best


def prepare(shape: str, out: Path, precisions: list[str]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Per precision, the model directory we load (random weights: fp32, and int8/int4 copies) and
    the GGUF llama.cpp loads, made once."""
    import torch
    from baichuan.checkpoint import save_pretrained
    from baichuan.config import preset
    from baichuan.gguf.export import export_gguf
    from baichuan.model import build
    from baichuan.tokenizer import Tokenizer
    assets = Path(os.environ.get("BAICHUAN_ASSETS", REPO.parent / "shared" / "baichuan-assets"))
    model_dir = out / shape / "model"
    if not (model_dir / "config.json").exists():
        tok = Tokenizer.load(assets / "baichuan1" / "tokenizer.model")
        torch.manual_seed(0)
        model = build(preset("baichuan-7b", vocab_size=64000, max_len=2048, **SHAPES[shape]),
                      dtype=torch.bfloat16 if shape in BF16_SOURCE else torch.float32)
        save_pretrained(model, model_dir, tokenizer=tok)
        del model
    dirs = {"fp32": model_dir, "bf16": model_dir}
    for precision in ("int8", "int4", "int8+head", "int4+head"):
        if precision in precisions:
            dirs[precision] = out / shape / f"model-{precision.replace('+', '-')}"
            if not (dirs[precision] / "config.json").exists():
                from baichuan.quant import quantize_dir
                quantize_dir(model_dir, dirs[precision], precision.removesuffix("+head"), group_size=32,
                             dtype=torch.bfloat16, lm_head=precision.endswith("+head"))
    ggufs = {}
    for precision in precisions:
        path = out / shape / f"model-{PRECISIONS[precision]}.gguf"
        if not path.exists():  # (one file serves int8 and int8+head, int4 and int4+head)
            export_gguf(model_dir, path, PRECISIONS[precision], progress=False)
        ggufs[precision] = path
    return dirs, ggufs


def run_worker(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="168m,1b")
    ap.add_argument("--precisions", default="fp32,bf16,int8,int4")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--out", default="out/bench-cpu")
    ap.add_argument("--worker", choices=["ours", "llama"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    args = ap.parse_args()
    common = (args.threads, args.prompt, args.new, args.prefill)
    if args.worker == "ours":
        print(json.dumps(worker_ours(args.path, args.precision, *common)))
        return
    if args.worker == "llama":
        print(json.dumps(worker_llama(args.path, *common)))
        return
    out, rows = Path(args.out), []
    bw = bandwidth()
    print(f"copy bandwidth {bw / 1e9:.1f} GB/s, {args.threads} threads", flush=True)
    flags = ["--threads", str(args.threads), "--prompt", str(args.prompt), "--new", str(args.new),
             "--prefill", str(args.prefill)]
    for shape in args.shapes.split(","):
        precisions = args.precisions.split(",")
        dirs, ggufs = prepare(shape, out, precisions)
        for precision in precisions:
            ours = run_worker(["--worker", "ours", "--path", str(dirs[precision]), "--precision", precision, *flags])
            peer = run_worker(["--worker", "llama", "--path", str(ggufs[precision]), *flags])
            row = {"shape": shape, "precision": precision, "gguf": PRECISIONS[precision], "ours": ours, "llama.cpp": peer}
            for side in ("ours", "llama.cpp"):
                row[side]["roof_share"] = row[side]["decode_tps"] * row[side]["weight_bytes"] / bw
            rows.append(row)
            print(f"{shape:5s} {precision:5s}/{PRECISIONS[precision]:5s} decode {ours['decode_tps']:7.1f} vs "
                  f"{peer['decode_tps']:7.1f} tok/s ({ours['decode_tps'] / peer['decode_tps']:.2f}x) | prefill "
                  f"{ours['prefill_tps']:7.1f} vs {peer['prefill_tps']:7.1f} ({ours['prefill_tps'] / peer['prefill_tps']:.2f}x)"
                  f" | TTFT {ours['ttft_ms']:.0f} vs {peer['ttft_ms']:.0f} ms | RSS {ours['peak_rss_mb']:.0f} vs "
                  f"{peer['peak_rss_mb']:.0f} MB | roof {ours['roof_share']:.0%} vs {peer['roof_share']:.0%} | "
                  f"ready {ours['ready_s']:.0f} vs {peer['ready_s']:.0f} s", flush=True)
            (out / "results.json").write_text(json.dumps({"bandwidth": bw, "threads": args.threads, "rows": rows},
                                                         indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
