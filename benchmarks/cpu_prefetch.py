"""The CPU decode kernels with and without their software prefetch, in one process.

    python benchmarks/cpu_prefetch.py [--shapes 168m,1b] [--kinds bf16,q8,q4] [--rounds 12]

Builds baichuan/kernels/_gemv.c twice with the C compiler (once with BAICHUAN_NO_PREFETCH), loads
both, and times one sweep over every weight product of a batch-1 decode step of the
`cpu_vs_llamacpp.py` shapes (the layers' five matrices and the LM head, random weights in each
kernel's layout), then every layer's attention over a bf16 KV cache of `--spans` slots,
alternating the builds round by round. Prints the median GB/s of bytes read each way and their
ratio. Needs a CPU with AVX-512 VNNI and BF16, gcc and OpenMP.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sysconfig
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from cpu_vs_llamacpp import SHAPES

SOURCE = Path(__file__).resolve().parents[1] / "baichuan" / "kernels" / "_gemv.c"
DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "q8": torch.int8, "q4": torch.uint8}


def build(tmp: Path, name: str, flags: list[str]):
    """The extension compiled with `flags`, loaded as a module of its own."""
    out = tmp / name / "_gemv.so"
    out.parent.mkdir()
    subprocess.run(["gcc", "-O3", "-fopenmp", "-std=c11", "-fPIC", "-shared", *flags,
                    f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(out)], check=True)
    spec = importlib.util.spec_from_file_location(f"{name}._gemv", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.set_threads(torch.get_num_threads())
    return module


def products(shape: str, kind: str) -> list[tuple]:
    """(weight, scales, in features) of each product of one decode step, in the kernel's layout."""
    s = SHAPES[shape]
    h, f = s["hidden_size"], s["intermediate_size"]
    shapes = [(3 * h, h), (h, h), (f, h), (f, h), (h, f)] * s["num_layers"] + [(64000, h)]
    out = []
    for n, k in shapes:
        if kind == "q4":  # 16-row tiles of nibbles, scales per group of 32
            out.append((torch.randint(0, 256, (n, k // 2), dtype=torch.uint8),
                        torch.ones(n // 16, k // 32, 16, dtype=torch.bfloat16), k))
        elif kind == "q8":
            out.append((torch.randint(-127, 128, (n, k), dtype=torch.int8), torch.ones(n), k))
        else:
            out.append((torch.randn(n, k).to(DTYPE[kind]), None, k))
    return out


def caches(shape: str, span: int) -> list[tuple]:
    """(keys, values, query) of each layer's decode attention over `span` cached bf16 slots."""
    s = SHAPES[shape]
    heads, dim = s["num_heads"], s["hidden_size"] // s["num_heads"]
    return [(torch.randn(1, heads, span, dim).bfloat16(), torch.randn(1, heads, span, dim).bfloat16(),
             torch.randn(1, heads, 1, dim).bfloat16()) for _ in range(s["num_layers"])]


def attend(module, layers: list[tuple], out: torch.Tensor) -> None:
    for k, v, q in layers:
        (_, H, S, D), no_mask = k.shape, (0, 0, 0)
        module.attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, out.data_ptr(), 1, H, H, 1, S, D, 1, 0,
                      *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *no_mask, D ** -0.5)


def sweep(module, kind: str, prods: list[tuple], xs: dict, ys: list) -> None:
    for (w, s, k), y in zip(prods, ys):
        x, n = xs[k].data_ptr(), w.shape[0]
        if kind == "q4":
            module.q4(x, w.data_ptr(), s.data_ptr(), 0, 32, y.data_ptr(), 1, n, k)
        elif kind == "q8":
            module.q8(x, w.data_ptr(), s.data_ptr(), y.data_ptr(), 1, n, k)
        else:
            getattr(module, kind)(x, w.data_ptr(), y.data_ptr(), 1, n, k)


def medians(builds: dict, rounds: int, run) -> dict[str, float]:
    """Median seconds of `run(module)` per build, the builds alternating round by round."""
    times = {name: [] for name in builds}
    for _ in range(rounds):
        for name, module in builds.items():
            t = time.perf_counter()
            run(module)
            times[name].append(time.perf_counter() - t)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def report(what: str, nbytes: int, seconds: dict[str, float]) -> None:
    rate = {name: nbytes / t / 1e9 for name, t in seconds.items()}
    print(f"{what}, {nbytes / 2**20:.0f} MB: without {rate['without']:5.1f}, with {rate['with']:5.1f} GB/s "
          f"({rate['with'] / rate['without']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="168m,1b")
    ap.add_argument("--kinds", default="bf16,q8,q4", help="f32 too: its kernel has no prefetch, both builds equal")
    ap.add_argument("--spans", default="192,1024", help="cached slots each layer's attention reads")
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        builds = {"without": build(Path(tmp), "without", ["-DBAICHUAN_NO_PREFETCH"]),
                  "with": build(Path(tmp), "with", [])}
        if not builds["with"].supported():
            raise SystemExit("this CPU lacks AVX-512 VNNI or BF16: the kernels do not run here")
        print(f"{torch.get_num_threads()} threads; median GB/s of bytes read over {args.rounds} rounds")
        for shape in args.shapes.split(","):
            for kind in args.kinds.split(","):
                prods = products(shape, kind)
                act = torch.float32 if kind == "f32" else torch.bfloat16
                xs = {k: torch.randn(1, k).to(act) for _, _, k in prods}
                ys = [torch.empty(1, w.shape[0], dtype=act) for w, _, _ in prods]
                nbytes = sum(w.numel() * w.element_size() for w, _, _ in prods)
                report(f"{shape:5s} {kind} products", nbytes,
                       medians(builds, args.rounds, partial(sweep, kind=kind, prods=prods, xs=xs, ys=ys)))
            for span in (int(n) for n in args.spans.split(",")):
                layers = caches(shape, span)
                out = torch.empty_like(layers[0][2])
                nbytes = sum(k.numel() * 2 * k.element_size() for k, _, _ in layers)
                report(f"{shape:5s} attend over {span} slots", nbytes,
                       medians(builds, args.rounds, partial(attend, layers=layers, out=out)))


if __name__ == "__main__":
    main()
