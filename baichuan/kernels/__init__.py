"""The CPU decode products of `_gemv.c` as torch ops: `torch.ops.baichuan.gemv_{f32,bf16,q8,q4}`, and
its attention of a few query rows over a KV cache, `torch.ops.baichuan.attend`.

Each multiplies a few activation rows by a weight matrix in its stored layout (f32, bf16, the int8
checkpoint tensors of baichuan.quant; int4 in a CPU layout of the checkpoint's bytes, made by
`quant.linear.pack_rows16`), with the AVX-512 dot-product instructions made for that weight type.
They exist because a profile showed PyTorch's CPU kernels converting every weight to fp32 before
multiplying, which on two cores runs at 0.45-0.66 of the memory roof (`benchmarks/cpu_roofs.py`,
docs/inference.md); these read the weights at the roof.

    available()           the extension is built, this CPU has AVX-512 VNNI and BF16, and
                          BAICHUAN_CPU_KERNELS is not 0
    fits(kind, x, w)      whether a product of these dtypes and input width can run here (how
                          many rows each caller sends is its own choice: the kernels re-read each
                          weight tile from cache per row, so past a few rows a GEMM wins)
    why_not()             why not, for banners and notes
    fits_attention(q, k, v, mask)   the same for `attend`

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


def q4_dequantize_out(w, scales, zeros, group, *, out):
    """The int4 CPU layout's weight dequantized into `out` [N, K] bf16 (contiguous), as
    quant/linear.py's `_dequantize` computes it, bit for bit."""
    _ext().dequant_q4(w.data_ptr(), scales.data_ptr(), 0 if zeros is None else zeros.data_ptr(), group,
                      out.data_ptr(), *out.shape)


def q4_repack(qweight: torch.Tensor) -> torch.Tensor:
    """The checkpoint's int4 bytes [N, K/2] (N a multiple of 16, contiguous) in the CPU layout the
    q4 kernels read (quant/linear.py `pack_rows16` describes it)."""
    qweight = qweight.contiguous()
    out = torch.empty_like(qweight)
    _ext().repack_q4(qweight.data_ptr(), out.data_ptr(), qweight.shape[0], 2 * qweight.shape[1])
    return out


_MASK_KIND = {torch.bool: 1, torch.float32: 2, torch.bfloat16: 3}


def fits_attention(q, k, v, mask) -> bool:
    """Whether `attend(q, k, v, mask)` runs here: q [B, H, T, D] and k, v [B, Hkv, S, D] of one dtype
    (fp32 or bf16; H a multiple of Hkv, D a multiple of 16 up to 256, D's stride 1), mask None or
    bool / fp32 / bf16 broadcasting to [B, H, T, S] with S's stride 1."""
    if not (available() and q.dim() == k.dim() == v.dim() == 4 and q.dtype in (torch.float32, torch.bfloat16)
            and q.dtype == k.dtype == v.dtype and all(t.device.type == "cpu" for t in (q, k, v))):
        return False
    (B, H, T, D), (Hkv, S) = q.shape, k.shape[1:3]
    if (D % 16 or D > 256 or H % Hkv or k.shape != v.shape or k.shape[0] != B or k.shape[3] != D
            or any(t.stride(-1) != 1 for t in (q, k, v))):
        return False
    if mask is None:
        return True
    try:
        torch.broadcast_shapes(mask.shape, (B, H, T, S))
    except RuntimeError:
        return False
    return mask.dtype in _MASK_KIND and mask.device.type == "cpu" and mask.stride(-1) == 1 and mask.dim() == 4


def attend_out(q, k, v, mask, scale, *, out):
    """softmax(q k^T scale + mask) v per head into `out` [B, H, T, D] (contiguous), with fp32 sums,
    k and v's head h // (H / Hkv) for query head h (grouped-query attention). A masked key weighs
    exactly 0 (a row with every key masked gives 0, where SDPA gives NaN)."""
    B, H, T, D = q.shape
    S = k.shape[2]
    m = (0, 0, (0, 0, 0)) if mask is None else (mask.data_ptr(), _MASK_KIND[mask.dtype],
                                                 mask.expand(B, H, T, S).stride()[:3])
    _ext().attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), m[0], out.data_ptr(), B, H, k.shape[1], T, S, D,
                  int(q.dtype == torch.bfloat16), m[1], *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *m[2],
                  float(scale))


def _attend(q, k, v, mask, scale):
    out = torch.empty(q.shape, dtype=q.dtype)
    attend_out(q, k, v, mask, scale, out=out)
    return out


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
    lib.define("attend(Tensor q, Tensor k, Tensor v, Tensor? mask, float scale) -> Tensor")
    lib.impl("attend", _attend, "CPU")
    torch.library.register_fake("baichuan::attend", lambda q, k, v, mask, scale: q.new_empty(q.shape), lib=lib)
    _register.lib = lib  # the registrations live as long as the Library object
    for name, kernel in (("gemv_f32", f32_out), ("gemv_bf16", bf16_out), ("gemv_q8", q8_out), ("gemv_q4", q4_out)):
        lib.impl(name, _allocating(kernel), "CPU")
        torch.library.register_fake(f"baichuan::{name}", lambda x, w, *rest: x.new_empty(*x.shape[:-1], w.shape[0]),
                                    lib=lib)
