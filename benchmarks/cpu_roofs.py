"""What bounds a batch-1 decode step's weight reads on this CPU, per weight type, in one run.

    python benchmarks/cpu_roofs.py                   # 1B-shaped matrices (5504 x 2048), about 512 MB each kind
    python benchmarks/cpu_roofs.py --mb 256 --no-template

A decode step at batch 1 multiplies one row by every weight matrix, so it can go no faster than
the weights stream from memory. Each kind of weight is timed over enough distinct matrices that
none stays in cache (`--mb` per kind), each way the best of 5 rounds, GB/s of weight bytes read:

- **copy**: `torch` copying the fp32 weights (read + write counted), the bandwidth number
  `cpu_vs_llamacpp.py` reports its roof share against;
- **sum**: an inductor-compiled reduction that only reads each weight and adds it up (bf16 and
  int8 converted to fp32 first, int4 unpacked from its nibbles): the fastest any generated loop
  over that type can read it here, with nothing else to do;
- **engine**: the product as the engine computes it at batch 1: fp32 and bf16 as
  `cpu.decode_backend` rewrites it (`few_rows_linear`, compiled by inductor), int8 through `torch._weight_int8pack_mm`, int4 through
  `torch._weight_int4pack_mm_for_cpu` (`quant/linear.py`);
- **dynamic** (int8): `torch.ops.quantized.linear_dynamic` (fbgemm): the activation row is
  quantized to 8 bits and multiplied with integer dot products (VNNI), as llama.cpp's Q8_0 does;
  not used by the engine, as one scale for a whole row of activations loses the outlier features
  LLMs have (llama.cpp quantizes them per block of 32 or 256);
- **template**: inductor's own CPU GEMM template for weight-only int8/int4 (`max_autotune` with
  `freezing`), which the engine does not use: freezing makes every compiled graph keep its own
  re-laid copy of the weights, and autotuning adds tens of seconds per shape to a compile.

The ratio of each line to the fp32 `sum` says how far the conversion work (not memory) holds a
type back on this CPU.
"""

from __future__ import annotations

import argparse
import time

import torch

from baichuan.infer.cpu import few_rows_linear
from baichuan.quant.linear import quantize_int4, unpack_int4

OUT, IN = 5504, 2048  # the 1B shape's gate/up projection
GROUP = 32


def best_gbs(fn, args_list, nbytes: int, rounds: int = 5) -> float:
    """GB/s over one pass through every argument set, the best of `rounds` after one warm pass."""
    with torch.inference_mode():
        for args in args_list[:2]:
            fn(*args)
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for args in args_list:
                fn(*args)
            best = min(best, time.perf_counter() - t)
    return nbytes * len(args_list) / best / 1e9


class WoQ(torch.nn.Module):
    """Weight-only quantized products as buffers, so inductor's freezing can treat them as constants."""

    def __init__(self, kind: str, weights: list[torch.Tensor], scales: torch.Tensor):
        super().__init__()
        self.kind, self.scales, self.n = kind, scales, len(weights)
        for i, w in enumerate(weights):
            self.register_buffer(f"w{i}", w)

    def forward(self, x):
        ws = [getattr(self, f"w{i}") for i in range(self.n)]
        if self.kind == "int8":
            return [torch._weight_int8pack_mm(x, w, self.scales) for w in ws]
        return [torch._weight_int4pack_mm_for_cpu(x, w, GROUP, self.scales) for w in ws]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=512, help="weight megabytes per kind (beyond the cache)")
    ap.add_argument("--no-template", action="store_true", help="skip inductor's GEMM template (slow to compile)")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, IN, dtype=torch.bfloat16)
    compile_ = dict(dynamic=False)
    rows = []

    def report(kind: str, way: str, gbs: float) -> None:
        rows.append((kind, way, gbs))
        print(f"{kind:5s} {way:9s} {gbs:6.1f} GB/s", flush=True)

    def count(bytes_per_matrix: float) -> int:
        return max(2, int(args.mb * 2 ** 20 / bytes_per_matrix))

    # fp32 and bf16
    for dtype in (torch.float32, torch.bfloat16):
        kind = "fp32" if dtype == torch.float32 else "bf16"
        ws = [torch.randn(OUT, IN, dtype=dtype) for _ in range(count(OUT * IN * dtype.itemsize))]
        nbytes = OUT * IN * dtype.itemsize
        if dtype == torch.float32:
            dst = torch.empty_like(ws[0])
            report(kind, "copy", 2 * best_gbs(lambda w: dst.copy_(w), [(w,) for w in ws], nbytes))
        report(kind, "sum", best_gbs(torch.compile(lambda w: w.float().sum(1), **compile_), [(w,) for w in ws], nbytes))
        xd = x.to(dtype)
        report(kind, "engine", best_gbs(torch.compile(few_rows_linear, **compile_), [(xd, w) for w in ws], nbytes))
        del ws

    # int8: torch's per-channel kernel layout ([out, in] int8, bf16 scales)
    q8 = [torch.randint(-127, 128, (OUT, IN), dtype=torch.int8) for _ in range(count(OUT * IN))]
    s8 = torch.rand(OUT, dtype=torch.bfloat16)
    report("int8", "sum", best_gbs(torch.compile(lambda w: w.float().sum(1), **compile_), [(w,) for w in q8], OUT * IN))
    report("int8", "engine", best_gbs(torch._weight_int8pack_mm, [(x, w, s8) for w in q8], OUT * IN))
    xf = x.float()
    dynamic = []
    for q in q8:
        scales = torch.rand(OUT, dtype=torch.float64) / 100
        qw = torch._make_per_channel_quantized_tensor(q, scales, torch.zeros(OUT, dtype=torch.long), 0)
        dynamic.append(torch.ops.quantized.linear_prepack(qw, None))
    report("int8", "dynamic", best_gbs(lambda p: torch.ops.quantized.linear_dynamic(xf, p, False),
                                       [(p,) for p in dynamic], OUT * IN))
    del dynamic
    if not args.no_template:
        report("int8", "template", template_gbs("int8", q8, s8, x, OUT * IN))
    del q8

    # int4: groups of 32, in torch's CPU packed layout
    w = torch.randn(OUT, IN)
    q = quantize_int4(w, GROUP, symmetric=False)
    scales_zeros = torch.stack([q["scales"], q["zeros"]], -1).transpose(0, 1).contiguous()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unpack_int4(q["qweight"]).int(), 2)
    q4 = [packed.clone() for _ in range(count(OUT * IN / 2))]
    nibbles = [q["qweight"].clone() for _ in range(len(q4))]
    report("int4", "sum", best_gbs(torch.compile(lambda p: ((p & 15) + (p >> 4)).float().sum(1), **compile_),
                                   [(p,) for p in nibbles], OUT * IN // 2))
    report("int4", "engine", best_gbs(lambda x, p: torch._weight_int4pack_mm_for_cpu(x, p, GROUP, scales_zeros),
                                      [(x, p) for p in q4], OUT * IN // 2))
    if not args.no_template:
        report("int4", "template", template_gbs("int4", q4, scales_zeros, x, OUT * IN // 2))

    roof = next(g for k, way, g in rows if (k, way) == ("fp32", "sum"))
    print(f"\n{torch.get_num_threads()} threads, {OUT} x {IN} matrices, about {args.mb} MB of each kind\n")
    print("| weights | way | GB/s | vs fp32 sum |")
    print("|---|---|---:|---:|")
    for kind, way, gbs in rows:
        print(f"| {kind} | {way} | {gbs:.1f} | {gbs / roof:.2f} |")


def template_gbs(kind: str, weights: list[torch.Tensor], scales: torch.Tensor, x: torch.Tensor, nbytes: int) -> float:
    """Inductor's weight-only GEMM template over `weights`, as one frozen module (a compile per run)."""
    options = {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN", "freezing": True}
    module = torch.compile(WoQ(kind, weights, scales), dynamic=False, options=options)
    return best_gbs(module, [(x,)], nbytes * len(weights))

if __name__ == "__main__":
    main()
