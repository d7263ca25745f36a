"""How the decode step reads weights fast on a CPU, where it is a product of a few rows with
every weight matrix and so bound by memory bandwidth.

MKL runs such a product (x @ W.T, W stored [out, in]) on one core at well below the bandwidth
of two, whatever the thread count. Two remedies, one per mode:

- eager: `column_major_weights` stores fp32 weights transposed in memory, a layout MKL reads
  faster (1.75x on the `small` preset at batch 1);
- compiled: `decode_backend` compiles with products of at most `FEW_ROWS` rows written as
  reductions, for which inductor emits a loop that streams each weight row once, splits the
  weight rows over all cores and reuses each one from cache for every row of the batch. The
  product's input is put in a buffer first: inductor would otherwise recompute a pointwise
  producer (an RMSNorm, SiLU(gate) * up) for every output. Row-major weights (as stored) suit
  these loops, so a compiled engine leaves them so.

`benchmarks/cpu_products.py` on a 2-vCPU AMD EPYC (AVX2), the products of one decode step, ms
(AVX-512 CPUs differ: see `few_rows_limit`):

    preset, dtype, rows    MKL row-major   MKL column-major   backend (row-major)
    small fp32, 1              3.49             2.05               1.58
    small fp32, 8              7.50             5.33               2.62
    small fp32, 16             8.48             6.24               4.81
    small fp32, 32             9.04             7.76               9.41
    100m fp32, 1              24.38            17.22              12.60
    100m fp32, 8              62.13            52.92              31.07
    100m fp32, 16             71.65            58.43              54.70
    100m bf16, 1              13.50           260.03              10.28
    100m bf16, 16            170.49          3934.34             121.54

Past `FEW_ROWS` (16 on AVX2, 2 on AVX-512) the products stay with MKL.

`decode_backend` is built from torch internals (inductor's compile_fx, functorch's config, a prims
op), which any torch release may move. Where one is missing,
`decode_backend_available()` says so with one warning and the engine decodes eager instead.
"""

from __future__ import annotations

import functools
import types
import warnings
import weakref
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from baichuan.model import NormHead


def few_rows_limit(capability: str | None = None) -> int:
    """Up to how many rows a product is a reduction rather than MKL's. On AVX2 (the table above)
    the reductions win to 16 rows. AVX-512 gives MKL / oneDNN (bf16 natively) the edge from 4 rows:
    `cpu_products.py` on a 2-vCPU Xeon, 100m preset, bf16, reduction vs MKL ms: 10.4 vs 17.5 at
    1 row, 11.7 vs 16.6 at 2, 20.3 vs 13.8 at 4, 68.8 vs 17.4 at 16; 8 streams through the compiled
    engine, `small` preset: 2039 -> 2810 tok/s (bf16) and 2216 -> 3161 (fp32) with a limit of 2."""
    capability = capability or torch.backends.cpu.get_cpu_capability()
    return 2 if capability.startswith("AVX512") else 16


FEW_ROWS = few_rows_limit()
_compiled_models: weakref.WeakSet = weakref.WeakSet()  # models a compiled decode step reads


def column_major_weights(model: torch.nn.Module) -> None:
    """Store each fp32 Linear weight on the CPU column-major (the same [out, in] tensor, its
    transpose contiguous), in place. `F.linear` then hands MKL a plain [in, out] product, which
    reads the weights 1.75x faster at batch 1 than the transposed product of the row-major
    layout (the `small` preset's 21 matrices per token: 4.4 -> 2.5 ms) and 1.15x faster at 64
    rows, with equal results. Values, shapes and saved files (written contiguous) are unchanged.
    bf16 is the opposite (5x slower column-major): it stays as it is, but a model cast to bf16
    after this keeps the column-major strides (cast a fresh copy instead). A model that a compiled
    step decodes with keeps its layout: those graphs read the weights as they were compiled, unchecked
    (fastpath.py `compile_options`)."""
    if model in _compiled_models:
        return
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, "weight", None)
            if (isinstance(m, (torch.nn.Linear, NormHead)) and w.dtype == torch.float32 and w.device.type == "cpu"
                    and w.dim() == 2 and w.is_contiguous() and w.shape[0] > 1):
                w.data = w.data.t().contiguous().t()


@functools.cache
def _internals() -> SimpleNamespace | None:
    """The torch internals `decode_backend` is built from, or None (one warning) if this torch lacks one."""
    try:
        from torch._functorch import config as functorch_config
        from torch._inductor.compile_fx import compile_fx
        force_stride_order = torch.ops.prims.inductor_force_stride_order.default
        if not hasattr(functorch_config, "enable_autograd_cache"):
            raise AttributeError("torch._functorch.config has no enable_autograd_cache")
    except (ImportError, AttributeError) as e:
        warnings.warn(f"the compiled CPU decode step needs torch internals that torch {torch.__version__} lacks "
                      f"({e}); decoding eager instead", RuntimeWarning, stacklevel=3)
        return None
    return SimpleNamespace(functorch_config=functorch_config, compile_fx=compile_fx,
                           force_stride_order=force_stride_order)


def decode_backend_available() -> bool:
    return _internals() is not None


def few_rows_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """F.linear(x, w) without bias, for at most FEW_ROWS rows of x, as a reduction over the inputs
    that inductor writes as one loop: built [out, rows] so that the outputs are the outer loop
    (each weight row is read once for all rows), with x first put in a buffer of its own."""
    a = x.reshape(-1, x.shape[-1])
    a = _internals().force_stride_order(a, [a.shape[1], 1])
    y = (w.unsqueeze(1) * a.unsqueeze(0)).sum(2).t()
    return y.reshape(*x.shape[:-1], w.shape[0])


def _few_rows(node: torch.fx.Node) -> bool:
    """Whether a graph node is a floating-point F.linear without bias over at most FEW_ROWS rows."""
    if node.op != "call_function" or node.target not in (torch._C._nn.linear, torch.nn.functional.linear):
        return False
    args = list(node.args) + [node.kwargs.get("bias")] * (3 - len(node.args))
    x, w = (a.meta.get("example_value") if isinstance(a, torch.fx.Node) else None for a in args[:2])
    if args[2] is not None or x is None or w is None or x.dim() < 1:
        return False
    rows = x.numel() // x.shape[-1] if x.shape[-1] else None
    return isinstance(rows, int) and rows <= FEW_ROWS and x.is_floating_point() and x.dtype == w.dtype


def _few_rows_target(node: torch.fx.Node):
    """What a few-row F.linear becomes: baichuan.kernels' product for its dtype where it runs here
    (bf16 weights through VDPBF16PS, read as stored, where inductor's loop converts each to fp32),
    else `few_rows_linear`."""
    from baichuan import kernels
    x, w = (a.meta["example_value"] for a in node.args[:2])
    for kind, op in (("bf16", "gemv_bf16"), ("f32", "gemv_f32")):
        if kernels.fits(kind, x, w):
            return getattr(torch.ops.baichuan, op).default
    return few_rows_linear


_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _few_rows_attention(node: torch.fx.Node) -> tuple | None:
    """(q, k, v, mask, scale) of an SDPA node over at most FEW_ROWS query rows that baichuan.kernels'
    `attend` computes (no dropout, not causal: a decode step's own mask), else None. SDPA's CPU
    kernel takes 35 us for the 168M model's 8 heads of 64 over 192 cached bf16 keys, `attend` 22
    (the cache read alone would take about 15 at this VM's copy bandwidth)."""
    if node.op != "call_function" or node.target not in (torch._C._nn.scaled_dot_product_attention,
                                                         F.scaled_dot_product_attention):
        return None
    from baichuan import kernels
    bound = dict(zip(_SDPA_ARGS, node.args)) | node.kwargs
    if bound.get("dropout_p") or bound.get("is_causal"):
        return None
    q, k, v, mask = (bound.get(n) for n in _SDPA_ARGS[:4])
    values = [a.meta.get("example_value") if isinstance(a, torch.fx.Node) else a for a in (q, k, v, mask)]
    if not all(isinstance(t, torch.Tensor) for t in values[:3]) or not isinstance(values[3], (torch.Tensor, type(None))):
        return None
    gqa_ok = values[0].shape[1] == values[1].shape[1] or bound.get("enable_gqa")
    if values[0].shape[-2] > FEW_ROWS or not gqa_ok or not kernels.fits_attention(*values):
        return None
    return q, k, v, mask, bound.get("scale") or values[0].shape[-1] ** -0.5


def decode_backend(gm: torch.fx.GraphModule, example_inputs):
    """torch.compile backend: inductor, after each F.linear of at most FEW_ROWS rows in the
    graph is replaced by `_few_rows_target` (baichuan.kernels' product or `few_rows_linear`), and
    each attention of as few query rows by baichuan.kernels' `attend` where it is lowered (cheaper
    than SDPA's kernel, `_few_rows_attention`). The graph is rewritten, not inductor's tables, so
    inductor's cache keys and serves it (a second run compiles the 168M model in 15 s, not 60 s).
    AOTAutograd's cache stays off: its key names `few_rows_linear` without its code. Check
    `decode_backend_available()` first."""
    t = _internals()
    from torch._inductor import config as inductor_config
    from baichuan.kernels.inductor import cache_key_pass, lower
    # baichuan.kernels' ops (quantized layers, the products below) called without the dispatcher
    marker = cache_key_pass() if lower() else None
    options = {"post_grad_custom_post_pass": marker} if marker else {}
    for node in gm.graph.nodes:
        if _few_rows(node):
            node.target, node.args, node.kwargs = _few_rows_target(node), tuple(node.args[:2]), {}
        elif marker and (attention := _few_rows_attention(node)):
            node.target, node.args, node.kwargs = torch.ops.baichuan.attend.default, attention, {}
    gm.recompile()
    with t.functorch_config.patch(enable_autograd_cache=False), inductor_config.patch(options):
        return t.compile_fx(gm, example_inputs)


def _few_row_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype == self.weight.dtype and x.numel() <= FEW_ROWS * x.shape[-1]:
        return torch.ops.baichuan.gemv_bf16(x, self.weight)
    return F.linear(x, self.weight)


def few_row_kernels(model: torch.nn.Module) -> int:
    """bf16 Linear layers without bias take baichuan.kernels' product for up to FEW_ROWS rows, in
    place: their forward is replaced on the instance (F.linear past that). Eager, where oneDNN
    takes 100 us for the 168M model's 1536 x 512 product at one row and the kernel 32; compiled,
    the graph then holds the kernel's op as decode_backend would have made it. Returns how many."""
    from baichuan import kernels
    switched = 0
    for m in model.modules():
        if (type(m) is torch.nn.Linear and m.bias is None
                and kernels.fits("bf16", torch.empty(1, m.in_features, dtype=torch.bfloat16), m.weight)):
            m.forward = types.MethodType(_few_row_forward, m)
            switched += 1
    return switched


def cpu_decode_path(model: torch.nn.Module, compile: bool, compiled_rows: int | None = None):
    """The CPU's decode path (fastpath.py): compiled through `decode_backend` over the active rows
    rounded up to a power of two (up to `compiled_rows` of them, where given: more run eager), or
    eager with fp32 weights column-major (in place), also where this torch lacks the backend's
    internals (warned once). A path that compiles some steps keeps weights row-major. Either way
    bf16 Linears take baichuan.kernels' few-row product where it runs (`few_row_kernels`, in place)."""
    from baichuan.infer.fastpath import DecodePath, normalize_head
    few_row_kernels(model)
    if compile and decode_backend_available():
        normalize_head(model)
        _compiled_models.add(model)
        return DecodePath(compiled=True, compiled_rows=compiled_rows,
                          compile=lambda fn, buffers, options: torch.compile(fn, backend=decode_backend, **options))
    column_major_weights(model)
    return DecodePath()
