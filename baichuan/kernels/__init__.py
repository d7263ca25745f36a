"""The CPU decode products of `_gemv.c` as torch ops: `torch.ops.baichuan.gemv_{f32,bf16,q8,q4}`.

Each multiplies a few activation rows by a weight matrix in its stored layout (f32, bf16, the int8
checkpoint tensors of baichuan.quant; int4 in a CPU layout of the checkpoint's bytes, made by
`quant.linear.pack_rows16`), with the AVX-512 dot-product instructions made for that weight type. They exist because a profile showed PyTorch's CPU kernels converting every weight
to fp32 before multiplying, which on two cores runs at 0.45-0.66 of the memory roof
(`benchmarks/cpu_roofs.py`, docs/inference.md); these read the weights at the roof.

    available()           the extension is built, this CPU has AVX-512 VNNI and BF16, and
                          BAICHUAN_CPU_KERNELS is not 0
    fits(kind, x, w)      whether a product of these dtypes and input width can run here (how
                          many rows each caller sends is its own choice: the kernels re-read each
                          weight tile from cache per row, so past a few rows a GEMM wins)
    why_not()             why not, for banners and notes

The ops are registered with torch.library (a fake kernel each), so torch.compile keeps them as
calls in its graphs. Numerics, per kind, against the fp32 product of the same weights:

    f32   exact up to summation order
    bf16  activations as given (bf16), sums in fp32
    q8    activations quantized per block of 32 inputs to int8 (scale absmax / 127, as llama.cpp's
    q4    Q8_0): relative error about 0.5% (q8) and 1% (q4) of the largest output, on random data

Where an op cannot run (not built, another CPU), callers keep torch's own kernels.
"""

from __future__ import annotations

import functools
import os

import torch

# Inputs per step of each kernel's inner loop: a product whose input width is not a multiple runs elsewhere.
_STEP = {"f32": 16, "bf16": 32, "q8": 64, "q4": 32}
_DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "q8": torch.bfloat16, "q4": torch.bfloat16}
_WEIGHT = {"f32": torch.float32, "bf16": torch.bfloat16, "q8": torch.int8, "q4": torch.uint8}


@functools.cache
def _module():
    """The extension module, or the reason it cannot be used (a str)."""
    if os.environ.get("BAICHUAN_CPU_KERNELS", "1") == "0":
        return "turned off by BAICHUAN_CPU_KERNELS=0"
    try:
        from baichuan.kernels import _gemv
    except ImportError as e:
        return f"not built ({e}); reinstall with a C compiler and OpenMP (pip install -e .)"
    if not _gemv.supported():
        return "this CPU lacks AVX-512 VNNI or BF16"
    _register()
    return _gemv


def available() -> bool:
    return not isinstance(_module(), str)


def why_not() -> str | None:
    m = _module()
    return m if isinstance(m, str) else None


def fits(kind: str, x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether `gemv_<kind>(x, w, ...)` runs here for x [..., in] and stored weight w (rows = out;
    q4's layout takes its rows 16 at a time)."""
    return (available() and x.device.type == "cpu" and w.device.type == "cpu" and x.dtype == _DTYPE[kind]
            and w.dtype == _WEIGHT[kind] and x.shape[-1] % _STEP[kind] == 0 and w.is_contiguous()
            and (kind != "q4" or w.shape[0] % 16 == 0))


# The kernels with the output given (`out`, contiguous [..., out features]; x contiguous): what the
# ops below allocate for, and what compiled graphs call directly (inductor.py). Call available() first.

def _ext():
    _ext.module.set_threads(torch.get_num_threads())
    return _ext.module


def f32_out(x, w, *, out):
    _ext().f32(x.data_ptr(), w.data_ptr(), out.data_ptr(), x.numel() // w.shape[1], w.shape[0], w.shape[1])


def bf16_out(x, w, *, out):
    _ext().bf16(x.data_ptr(), w.data_ptr(), out.data_ptr(), x.numel() // w.shape[1], w.shape[0], w.shape[1])


def q8_out(x, w, scales, *, out):
    _ext().q8(x.data_ptr(), w.data_ptr(), scales.data_ptr(), out.data_ptr(), x.numel() // w.shape[1], w.shape[0],
              w.shape[1])


def q4_out(x, w, scales, zeros, group, *, out):
    k = x.shape[-1]
    _ext().q4(x.data_ptr(), w.data_ptr(), scales.data_ptr(), 0 if zeros is None else zeros.data_ptr(), group,
              out.data_ptr(), x.numel() // k, w.shape[0], k)


def _allocating(kernel):
    """The op's CPU kernel: `kernel` into a new output."""
    def run(x, w, *rest):
        x = x if x.is_contiguous() else x.contiguous()
        out = torch.empty(x.shape[:-1] + (w.shape[0],), dtype=x.dtype)
        kernel(x, w, *rest, out=out)
        return out
    return run


@functools.cache  # a namespace is defined once per process
def _register() -> None:
    """The four ops, their CPU kernels and fake kernels."""
    from baichuan.kernels import _gemv
    _ext.module = _gemv
    lib = torch.library.Library("baichuan", "DEF")  # noqa: TOR901
    lib.define("gemv_f32(Tensor x, Tensor w) -> Tensor")
    lib.define("gemv_bf16(Tensor x, Tensor w) -> Tensor")
    lib.define("gemv_q8(Tensor x, Tensor w, Tensor scales) -> Tensor")
    lib.define("gemv_q4(Tensor x, Tensor w, Tensor scales, Tensor? zeros, int group) -> Tensor")
    _register.lib = lib  # the registrations live as long as the Library object
    for name, kernel in (("gemv_f32", f32_out), ("gemv_bf16", bf16_out), ("gemv_q8", q8_out), ("gemv_q4", q4_out)):
        lib.impl(name, _allocating(kernel), "CPU")
        torch.library.register_fake(f"baichuan::{name}", lambda x, w, *rest: x.new_empty(*x.shape[:-1], w.shape[0]),
                                    lib=lib)
