"""The weight products of one decode step on a CPU, by layout and rows: what the choices in
baichuan/infer/cpu.py rest on, and how to check them on your own CPU.

    python benchmarks/cpu_products.py                          # small and 100m, fp32
    python benchmarks/cpu_products.py --shape 100m --dtype bfloat16 --rows 1,4,16,32

For a preset, the products of one decode step (five per layer and the LM head) at each row
count, timed three ways in one process: MKL with the weights as stored ([out, in], row-major),
MKL with them column-major (the eager engine's layout), and compiled with the engine's CPU
backend (`decode_backend`, row-major). Prints ms per step, GB/s of weights read, and the
backend's ratio to the better MKL layout. `benchmarks/decode.py` times the whole step.
"""

from __future__ import annotations

import argparse
import time

import torch

from baichuan.config import preset
from baichuan.infer.cpu import FEW_ROWS, decode_backend


def products(x: torch.Tensor, xf: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.nn.functional.linear(xf if w.shape[1] == xf.shape[1] else x, w) for w in weights]


def step_ms(fn, *args, reps: int) -> float:
    for _ in range(3):
        fn(*args)
    t = time.perf_counter()
    for _ in range(reps):
        fn(*args)
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="small,100m", help="comma-separated presets")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--rows", default=f"1,2,8,{FEW_ROWS},{2 * FEW_ROWS}")
    ap.add_argument("--layers", type=int, default=None, help="layers to time (default: the preset's, at most 8)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"cpu, {torch.get_num_threads()} threads | {args.dtype} | FEW_ROWS={FEW_ROWS}")
    print("| shape | rows | weights MB | MKL row-major ms | MKL column-major ms | backend ms | backend GB/s | backend vs best MKL |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.shape.split(","):
        cfg = preset(name)
        h, f = cfg.hidden_size, cfg.intermediate_size
        layers = args.layers or min(cfg.num_layers, 8)
        shapes = [(3 * h, h), (h, h), (f, h), (f, h), (h, f)] * layers + [(cfg.vocab_size, h)]
        torch.manual_seed(0)
        rows_major = [torch.randn(o, i, dtype=dtype) for o, i in shapes]
        cols_major = [w.t().contiguous().t() for w in rows_major]
        mb = sum(w.numel() * w.element_size() for w in rows_major) / 1e6
        reps = max(3, int(2000 / mb))
        for rows in (int(r) for r in args.rows.split(",")):
            x, xf = torch.randn(rows, h, dtype=dtype), torch.randn(rows, f, dtype=dtype)
            torch._dynamo.reset()
            compiled = torch.compile(products, dynamic=False, backend=decode_backend)
            with torch.inference_mode():
                row = step_ms(products, x, xf, rows_major, reps=reps)
                col = step_ms(products, x, xf, cols_major, reps=reps)
                ours = step_ms(compiled, x, xf, rows_major, reps=reps)
            print(f"| {name} | {rows} | {mb:.1f} | {row:.2f} | {col:.2f} | {ours:.2f} | {mb / ours:.1f} | "
                  f"{min(row, col) / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
