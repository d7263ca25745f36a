"""The math and the modules: int8/int4 weight quantization, Int8Linear / Int4Linear, the module
swap, and torch's packed matmul kernels. The checkpoint layout is described in `baichuan.quant`."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, NormHead

QUANT_METHOD = "baichuan-wo"
MODULES = ("self_attn.W_pack", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# Optional, not in Baichuan's releases: on small models and CPUs the LM head is the largest read
# per token. NormHead rows are normalized first, so the quantized head is the effective one.
LM_HEAD = "lm_head"
MODES = ("int8", "int4")
GROUP_SIZES = (32, 64, 128)
INT4_SYMMETRIC = False  # the default; see the module docstring


# ------------------------------------------------------------------------------------- the math

def quantize_int8(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """[out, in] -> {"qweight": int8 [out, in], "scales": float32 [out]}, w ~= qweight * scales[:, None]."""
    w = w.float()
    absmax = w.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / 127, 1.0)  # an all-zero row: q = 0 under any scale
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return {"qweight": q, "scales": scale}


def quantize_int4(w: torch.Tensor, group_size: int, symmetric: bool) -> dict[str, torch.Tensor]:
    """[out, in] -> {"qweight": uint8 [out, in/2], "scales": bf16 [out, groups], "zeros": bf16 (asymmetric)}.

    w ~= (q - 8) * scale + zero per group of `group_size` columns; |error| <= scale / 2."""
    out, cols = w.shape
    g = w.float().reshape(out, cols // group_size, group_size)
    absmax = g.abs().amax(-1)
    if symmetric:
        scale = _bf16(torch.where(absmax > 0, absmax / 7, 1.0))
        q = torch.round(g / scale[..., None]).clamp_(-8, 7) + 8
        zero = None
    else:
        lo, hi = g.amin(-1), g.amax(-1)
        # The floor absmax/128 only bites for a narrow group far from 0 (or a constant one), where a
        # bf16 zero could not resolve the range anyway; it keeps that zero's rounding below scale/2.
        scale = torch.maximum((hi - lo) / 15, absmax / 128)
        scale = _bf16(torch.where(scale > 0, scale, 1.0))
        zero = _bf16(lo + 8 * scale)
        q = torch.round((g - zero[..., None]) / scale[..., None]).clamp_(-8, 7) + 8
    out_ = {"qweight": pack_int4(q.to(torch.uint8).reshape(out, cols)), "scales": scale.bfloat16()}
    if zero is not None:
        out_["zeros"] = zero.bfloat16()
    return out_


def _bf16(t):
    """Round to bfloat16, keep float32: q is computed with the scale and zero as stored."""
    return t.bfloat16().float()


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2n] of values 0..15 -> uint8 [..., n]: column 2j in the low nibble, 2j+1 in the high."""
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    return torch.stack((p & 15, p >> 4), dim=-1).flatten(-2)


def dequantize_int8(qweight, scales, dtype=torch.float32) -> torch.Tensor:
    return (qweight.float() * scales.float()[:, None]).to(dtype)


def dequantize_int4(qweight, scales, zeros, group_size: int, dtype=torch.float32) -> torch.Tensor:
    return _dequantize(unpack_int4(qweight), scales, zeros, group_size, dtype)


def _dequantize(q, scales, zeros, group_size: int, dtype) -> torch.Tensor:
    """(q - 8) * scale (+ zero) per group, from values q [out, in] of 0..15. Without zeros it is
    computed in `dtype` itself: q - 8 is exact and the product is rounded once either way."""
    out = q.shape[0]
    work = torch.float32 if zeros is not None or dtype not in (torch.bfloat16, torch.float32) else dtype
    w = q.view(out, -1, group_size).to(work)
    w.sub_(8).mul_(scales.to(work)[..., None])  # in place: this runs per prefill on the kernel path
    if zeros is not None:
        w.add_(zeros.float()[..., None])
    return w.view(out, -1).to(dtype)


# Rows of a weight dequantized at a time: a 64000-row LM head done whole would add a bf16 copy of
# itself (262 MB at the 1B shape) to the peak RSS of loading a model.
BLOCK_ROWS = 4096


def pack_rows16(qweight: torch.Tensor) -> torch.Tensor:
    """The checkpoint's int4 bytes [out, in/2] (pack_int4) in baichuan.kernels' CPU layout, the same
    shape: per tile of 16 output rows and per 8 inputs, 64 bytes, 4 per row, byte j holding input
    8c + j in its low nibble and 8c + 4 + j in its high one, so each vector lane of the kernel sums
    one output row. `out` must be a multiple of 16. Repacked in C (`kernels.q4_repack`, which
    `unpack_rows16` inverts), as only the kernels read this layout."""
    from baichuan import kernels
    return kernels.q4_repack(qweight)


def unpack_rows16(packed: torch.Tensor) -> torch.Tensor:
    """The values 0..15 [out, in] of pack_rows16's layout."""
    out, half = packed.shape
    b = packed.view(out // 16, half // 4, 16, 4).permute(0, 2, 1, 3)  # [tile, row, 8 inputs, byte]
    return torch.stack((b & 15, b >> 4), dim=-2).reshape(out, 2 * half)


def rows16(t: torch.Tensor) -> torch.Tensor:
    """Per-group scales or zeros [out, groups] as the CPU layout reads them: [out/16, groups, 16]."""
    return t.view(t.shape[0] // 16, 16, -1).transpose(1, 2).contiguous()


def unrows16(t: torch.Tensor) -> torch.Tensor:
    return t.transpose(1, 2).reshape(-1, t.shape[1])


def unpack_int4_cpu(packed: torch.Tensor, out: int, cols: int) -> torch.Tensor:
    """The values 0..15 [out, cols] of torch's CPU int4 layout (`_convert_weight_to_int4pack_for_cpu`
    in torch 2.13): per block of 64 output rows, for each input column 32 bytes, byte a holding row
    a in its low nibble and row 32 + a in its high one. use_kernels checks this against the values
    it packed before relying on it."""
    blocks = packed.view(out // 64, cols, 32)
    q = torch.empty(out // 64, 64, cols, dtype=torch.uint8, device=packed.device)
    q[:, :32] = (blocks & 15).transpose(1, 2)
    q[:, 32:] = (blocks >> 4).transpose(1, 2)
    return q.view(out, cols)


def quantize_weight(w: torch.Tensor, mode: str, group_size: int, symmetric: bool) -> dict[str, torch.Tensor]:
    """The tensors one Linear weight is stored as, in their checkpoint dtypes."""
    return quantize_int8(w) if mode == "int8" else quantize_int4(w, group_size, symmetric)


# ------------------------------------------------------------------------------------ the modules

# From this many rows on (a prompt's prefill, a large decode batch), a bf16 GEMM over the weight
# dequantized for the call beats torch's CPU int8/int4 kernels, which cost the same per row at
# any row count. On this project's 2-core AVX-512 VM, 2048 -> 5504: either kernel takes 0.077 ms
# per row; the bf16 GEMM 0.9 ms at 16 rows and 2.9 at 256; making the bf16 weight takes 1 ms from
# int8 and 5.7 ms from baichuan.kernels' int4 layout (`dequant_q4`).
CPU_GEMM_ROWS = {8: 16, 4: 128}
# Up to this many rows, baichuan.kernels' products (AVX-512 VNNI) beat torch's int8 kernel. Its int4
# product takes every row count below CPU_GEMM_ROWS: per 2048 -> 5504-sized 1B layer (the average of
# its five), cold, 2 threads, it took 0.35 / 0.38 / 0.75 / 2.3 ms at 1 / 4 / 16 / 64 rows against
# torch's int4 kernel's 0.34 / 0.55 / 1.77 / 7.2 (the 168M model's layers: 0.013 against 0.028 ms).
CPU_GEMV_ROWS = {8: 4, 4: CPU_GEMM_ROWS[4] - 1}


class Int8Linear(nn.Module):
    """Buffers in their checkpoint dtypes whatever the activation dtype, so a model quantized in
    bf16 and one quantized by quantize_dir hold (and save) the same fp32 scales."""
    bits, group_size, symmetric = 8, None, True

    def __init__(self, in_features: int, out_features: int, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.float32, device=device))
        self.kernel = False  # set by use_kernels: torch._weight_int8pack_mm for bf16 inputs
        self.cpu_gemv = False  # set by use_kernels: baichuan.kernels' gemv_q8 for a few bf16 rows first
        # its bf16 scales, made once: a cast inside forward is a graph op that compiled int8pack_mm rejects
        self.kernel_scales = None

    def forward(self, x):
        if self.kernel and x.dtype == torch.bfloat16:
            rows = x.reshape(-1, x.shape[-1])
            if self.cpu_gemv and rows.shape[0] <= CPU_GEMV_ROWS[8]:
                return torch.ops.baichuan.gemv_q8(x, self.qweight, self.scales)
            if rows.shape[0] >= CPU_GEMM_ROWS[8] and x.device.type == "cpu":  # the reference path below, in bf16
                return F.linear(x, self.qweight.to(x.dtype)) * self.kernel_scales
            return torch._weight_int8pack_mm(rows, self.qweight, self.kernel_scales).view(*x.shape[:-1], -1)
        if x.dtype == torch.float16:  # x @ q.T is ~1/scale times the output and can pass fp16's 65504
            return F.linear(x, self.dequantize(x.dtype))
        return F.linear(x, self.qweight.to(x.dtype)) * self.scales.to(x.dtype)

    def dequantize(self, dtype=torch.float32):
        return dequantize_int8(self.qweight, self.scales, dtype)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Int4Linear(nn.Module):
    bits = 4

    def __init__(self, in_features: int, out_features: int, group_size: int = 128, symmetric: bool = INT4_SYMMETRIC,
                 device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.group_size, self.symmetric = group_size, symmetric
        groups = in_features // group_size
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.bfloat16, device=device))
        self.register_buffer("zeros", None if symmetric else torch.zeros(out_features, groups, dtype=torch.bfloat16,
                                                                           device=device))
        # set by use_kernels, which drops the three tensors above, either to baichuan.kernels' CPU
        # layout of them (pack_rows16, rows16: the same bytes) ...
        self.register_buffer("cpu_weight", None, persistent=False)
        self.register_buffer("cpu_scales", None, persistent=False)
        self.register_buffer("cpu_zeros", None, persistent=False)
        # ... or to torch's packed layout for this device
        self.register_buffer("packed", None, persistent=False)
        self.register_buffer("scales_and_zeros", None, persistent=False)
        self.cpu_unpack = False  # set by use_kernels where it read the CPU packed layout back exactly

    def forward(self, x):
        if self.cpu_gemv:  # use_kernels checked that the model computes in bf16
            if x.numel() // x.shape[-1] <= CPU_GEMV_ROWS[4]:
                return torch.ops.baichuan.gemv_q4(x, self.cpu_weight, self.cpu_scales, self.cpu_zeros, self.group_size)
            return F.linear(x, self.dequantize(x.dtype))
        if self.packed is not None:  # use_kernels checked that the model computes in bf16
            rows = x.reshape(-1, x.shape[-1])
            if self.cpu_unpack and rows.shape[0] >= CPU_GEMM_ROWS[4]:
                return F.linear(x, self.dequantize(x.dtype))
            return _int4_mm(rows, self.packed, self.group_size, self.scales_and_zeros).view(*x.shape[:-1], -1)
        return F.linear(x, self.dequantize(x.dtype))

    @property
    def cpu_gemv(self) -> bool:
        return self.cpu_weight is not None

    @property
    def kernel(self) -> bool:
        return self.packed is not None or self.cpu_gemv

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """qweight, scales and zeros (where asymmetric) in the checkpoint's layout, from whichever
        layout the layer holds (baichuan.kernels' is the same bytes, reordered)."""
        if self.cpu_gemv:
            out = {"qweight": pack_int4(unpack_rows16(self.cpu_weight)), "scales": unrows16(self.cpu_scales)}
            return out | ({"zeros": unrows16(self.cpu_zeros)} if self.cpu_zeros is not None else {})
        return {k: v for k, v in (("qweight", self.qweight), ("scales", self.scales), ("zeros", self.zeros))
                if v is not None}

    def dequantize(self, dtype=torch.float32):
        if self.cpu_gemv:
            if dtype == torch.bfloat16 and not torch.compiler.is_compiling():  # a C call: not in a graph
                # each prefill's weight: 5.7 ms and 21 MB at the peak for the 1B shape's 5504 x 2048,
                # where torch's ops below took 30 ms and 90 MB (uint8 and fp32 intermediates)
                from baichuan import kernels
                w = torch.empty(self.out_features, self.in_features, dtype=dtype)
                kernels.q4_dequantize_out(self.cpu_weight, self.cpu_scales, self.cpu_zeros, self.group_size, out=w)
                return w
            return _dequantize(unpack_rows16(self.cpu_weight), unrows16(self.cpu_scales),
                               None if self.cpu_zeros is None else unrows16(self.cpu_zeros), self.group_size, dtype)
        if self.packed is not None:  # the kernel layout (CPU), read back: use_kernels checked it
            scales, zeros = self.scales_and_zeros.transpose(0, 1).contiguous().unbind(-1)  # [out, groups]
            q = unpack_int4_cpu(self.packed, self.out_features, self.in_features)
            return _dequantize(q, scales, None if self.symmetric else zeros, self.group_size, dtype)
        return dequantize_int4(self.qweight, self.scales, self.zeros, self.group_size, dtype)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"symmetric={self.symmetric}")


QUANTIZED = (Int8Linear, Int4Linear)


def _empty_module(weight: torch.Tensor, mode: str, group_size: int, symmetric: bool) -> nn.Module:
    out_features, in_features = weight.shape
    if mode == "int8":
        return Int8Linear(in_features, out_features, device=weight.device)
    return Int4Linear(in_features, out_features, group_size, symmetric, device=weight.device)


def _float_weight(module: nn.Module) -> torch.Tensor:
    """The weight a module multiplies by: NormHead's rows normalized (without changing the module)."""
    if isinstance(module, NormHead):
        return F.normalize(module.weight.float(), dim=-1).to(module.weight.dtype)
    return module.weight


# ----------------------------------------------------------------------------------- the swap

def largest_group(cfg) -> int:
    """The largest int4 group that divides every quantized layer's inputs (the hidden and FFN
    widths): the finest error per stored byte that fits. 128 when none does (quantize then names
    the sizes that fit)."""
    return next((g for g in sorted(GROUP_SIZES, reverse=True)
                 if cfg.hidden_size % g == 0 and cfg.intermediate_size % g == 0), 128)


def _check_mode(mode: str, group_size: int, symmetric: bool | None) -> bool:
    """Validate the options; returns `symmetric` resolved to its default."""
    if mode not in MODES:
        raise BaichuanError(f"unknown quantization mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "int8":
        if symmetric is False:
            raise BaichuanError("int8 quantization is symmetric (per-row absmax / 127); asymmetric is int4 only")
        return True
    if group_size not in GROUP_SIZES:
        raise BaichuanError(f"group_size {group_size!r} is not supported for int4; choose one of: "
                            f"{', '.join(map(str, GROUP_SIZES))}")
    return INT4_SYMMETRIC if symmetric is None else bool(symmetric)


def _targets(model: Baichuan, lm_head: bool = False):
    """(name, parent module, attribute) of the five Linear layers of every block (and the LM head)."""
    for i, layer in enumerate(model.model.layers):
        for path in MODULES:
            parent_name, attr = path.split(".")
            yield f"model.layers.{i}.{path}", getattr(layer, parent_name), attr
    if lm_head:
        yield LM_HEAD, model, LM_HEAD


def quantize(model: Baichuan, mode: str = "int8", group_size: int = 128, symmetric: bool | None = None,
             lm_head: bool = False) -> Baichuan:
    """Swap the five Linear layers of every block (and with `lm_head`, the LM head) for Int8Linear /
    Int4Linear, in place; returns `model`.

    Weights are quantized where they are (CPU or GPU). Works on a meta-device model too (shapes only)."""
    symmetric = _check_mode(mode, group_size, symmetric)
    targets = list(_targets(model, lm_head))
    for name, parent, attr in targets:  # check everything before changing anything
        lin = getattr(parent, attr)
        if isinstance(lin, QUANTIZED):
            raise BaichuanError(f"{name}: already quantized ({type(lin).__name__}); quantize the original model")
        if not isinstance(lin, (nn.Linear, NormHead)):
            raise BaichuanError(f"{name}: expected nn.Linear, found {type(lin).__name__}")
        if mode == "int4" and lin.weight.shape[1] % group_size:
            fits = [g for g in GROUP_SIZES if all(getattr(p, a).weight.shape[1] % g == 0 for _, p, a in targets)]
            raise BaichuanError(f"{name}: in_features {lin.weight.shape[1]} is not divisible by group_size {group_size}"
                                f" (group sizes that fit this model: {', '.join(map(str, fits)) or 'none'})")
    with torch.no_grad():
        for name, parent, attr in targets:
            lin = getattr(parent, attr)
            q = _empty_module(lin.weight, mode, group_size, symmetric)
            if lin.weight.device.type != "meta":
                for field, t in quantize_weight(_float_weight(lin), mode, group_size, symmetric).items():
                    getattr(q, field).copy_(t)
            setattr(parent, attr, q)
    return model


def quantization_config(model: Baichuan) -> dict | None:
    """The config.json entry describing how `model` is quantized (None if it is not)."""
    mods = [m for m in model.modules() if isinstance(m, QUANTIZED)]
    if not mods:
        return None
    kinds = {(m.bits, m.group_size, m.symmetric) for m in mods}
    head = isinstance(model.lm_head, QUANTIZED)
    if len(kinds) > 1 or len(mods) != len(MODULES) * model.cfg.num_layers + head:
        raise BaichuanError(f"the model is partially or mixed quantized ({len(mods)} quantized layers, "
                            f"kinds {sorted(kinds, key=str)}); quantize() the original model in one call")
    bits, group_size, symmetric = kinds.pop()
    return {"quant_method": QUANT_METHOD, "bits": bits, "group_size": group_size, "symmetric": symmetric,
            "modules": list(MODULES) + ([LM_HEAD] if head else [])}


def describe_precision(model: Baichuan) -> str:
    """What a model computes with, for banners: e.g. "int4 g32 weights (AVX-512 VNNI kernels on 160 of
    160 layers), bfloat16 activations" or "float32"."""
    dtype = str(model.model.embed_tokens.weight.dtype).removeprefix("torch.")
    mods = [m for m in model.modules() if isinstance(m, QUANTIZED)]
    if not mods:
        return dtype
    m = mods[0]
    kind = f"int{m.bits}" + (f" g{m.group_size}" if m.bits == 4 else "")
    ours = sum(q.cpu_gemv for q in mods)
    torch_kernels = sum(bool(q.kernel) for q in mods) - ours
    kernels = ", ".join(f"{name} on {n} of {len(mods)} layers" for name, n in
                        (("AVX-512 VNNI kernels", ours), ("torch kernels", torch_kernels)) if n) or "no kernels"
    return f"{kind} weights ({kernels}), {dtype} activations"


# --------------------------------------------------------------------------------------- kernels

def _int4_mm(x, packed, group_size, scales_and_zeros):
    if x.device.type == "cuda":
        return torch.ops.aten._weight_int4pack_mm(x, packed, group_size, scales_and_zeros)
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros)


def _int4_pack_for_kernel(m: Int4Linear):
    """(packed weight, scales_and_zeros [groups, out, 2] bf16) in the layout of torch's int4 kernels."""
    q = unpack_int4(m.qweight)
    if m.qweight.device.type == "cuda":  # the CUDA kernel wants column 2j in the high nibble
        inner_k_tiles = next(t for t in (8, 4, 2) if m.in_features % (t * 16) == 0)
        packed = torch.ops.aten._convert_weight_to_int4pack((q[:, 0::2] << 4) | q[:, 1::2], inner_k_tiles)
    else:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 2)
    zeros = m.zeros if m.zeros is not None else torch.zeros_like(m.scales)
    return packed, torch.stack((m.scales, zeros), dim=-1).transpose(0, 1).contiguous().bfloat16()


def _reads_back(m: Int4Linear) -> bool:
    """Whether unpack_int4_cpu gives back the values m's packed CPU layout was made from."""
    if m.packed.device.type != "cpu" or m.out_features % 64:
        return False
    try:
        return torch.equal(unpack_int4_cpu(m.packed, m.out_features, m.in_features), unpack_int4(m.qweight))
    except RuntimeError:  # another layout (another torch, another CPU): a view that does not fit
        return False


def _cpu_gemv_fits(m: nn.Module) -> bool:
    """Whether baichuan.kernels runs this layer's few-row products (a CPU with AVX-512 VNNI, an
    input width its loop steps through)."""
    from baichuan import kernels
    x = torch.empty(1, m.in_features, dtype=torch.bfloat16)
    return kernels.fits("q8" if isinstance(m, Int8Linear) else "q4", x, m.qweight)


_verified: dict[tuple, str | None] = {}  # layer kind and shape -> None if its kernel matched, else why not
_reads: dict[tuple, bool] = {}  # layer kind and shape -> whether unpack_int4_cpu reads its packed layout
_warned: set[str] = set()


def _reference_product(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """F.linear(x, the layer's weight dequantized to bf16), in fp32, BLOCK_ROWS outputs at a time."""
    outs = []
    for i in range(0, m.out_features, BLOCK_ROWS):
        rows = slice(i, i + BLOCK_ROWS)
        if isinstance(m, Int8Linear):
            w = dequantize_int8(m.qweight[rows], m.scales[rows], torch.bfloat16)
        else:
            w = dequantize_int4(m.qweight[rows], m.scales[rows], None if m.zeros is None else m.zeros[rows],
                                m.group_size, torch.bfloat16)
        outs.append(F.linear(x, w).float())
    return torch.cat(outs, -1)


def _try_kernel(m: nn.Module) -> str | None:
    """Switch one layer to its kernel if this torch and device have it and it agrees with the
    reference path on this kind and shape (checked once per process); returns why not, or None."""
    if isinstance(m, Int8Linear) and m.qweight.device.type == "cuda":
        # torch's CUDA int8pack_mm gives each output one thread looping over K (no tiling): slower
        # than bf16. The reference path, compiled, becomes a fused int8 dequantize + reduction.
        return "torch's CUDA int8 kernel is slower than the reference path under torch.compile"
    key = (type(m).__name__, str(m.qweight.device), m.out_features, m.in_features, m.group_size, m.symmetric)
    why = _verified.get(key, "unchecked")
    if why is not None and why != "unchecked":
        return why
    with torch.no_grad():
        try:
            if why == "unchecked":
                gen = torch.Generator(m.qweight.device).manual_seed(0)
                x = torch.randn(4, m.in_features, device=m.qweight.device, generator=gen).bfloat16()
                ref = _reference_product(m, x)
            ours = _cpu_gemv_fits(m)
            if isinstance(m, Int8Linear):
                m.kernel, m.kernel_scales, m.cpu_gemv = True, m.scales.to(torch.bfloat16), ours
            elif ours:  # the CPU layout serves every row count: no second copy
                m.cpu_weight, m.cpu_scales = pack_rows16(m.qweight), rows16(m.scales)
                m.cpu_zeros = None if m.zeros is None else rows16(m.zeros)
            else:
                m.packed, m.scales_and_zeros = _int4_pack_for_kernel(m)
                if key not in _reads:
                    _reads[key] = _reads_back(m)
                m.cpu_unpack = _reads[key]
            if why == "unchecked":  # 4 rows and 8: both of an int8 layer's few-row kernels
                y = torch.cat([m(x), m(torch.cat([x, x]))[4:]]).float()
                err = ((y - ref.repeat(2, 1)).abs().max() / ref.abs().max().clamp(min=1e-6)).item()
                why = None if err < 2e-2 else f"disagrees with the reference path: relative error {err:.3g}"
        except (RuntimeError, NotImplementedError, AttributeError, StopIteration) as e:
            why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    _verified[key] = why
    if why is not None and isinstance(m, Int8Linear):
        m.kernel, m.kernel_scales, m.cpu_gemv = False, None, False
    elif why is not None:
        m.packed = m.scales_and_zeros = m.cpu_weight = m.cpu_scales = m.cpu_zeros = None
    elif isinstance(m, Int4Linear):  # the kernel's layout replaces the checkpoint one: still 0.5 byte per weight
        m.qweight = m.scales = m.zeros = None
    return why


def use_kernels(model: Baichuan) -> int:
    """Let the quantized layers of a bf16 model use matmul kernels where this torch and device have
    them: baichuan.kernels' on a CPU with AVX-512 VNNI (int8: the stored layout, for a few rows;
    int4: its own CPU layout of the same bytes, for every row count), else torch's int8/int4
    kernels. Returns how many layers switched (the others warn once and keep the reference path).
    Call it after moving the model to its device: int4 layers keep only their kernel's layout, so
    they cannot be moved or cast afterwards (save_quantized writes the checkpoint layout back from
    baichuan.kernels' layout; torch's it cannot)."""
    dtype = model.model.embed_tokens.weight.dtype
    if dtype != torch.bfloat16:  # the int4 kernels take bf16 activations only
        raise BaichuanError(f"use_kernels needs a bfloat16 model (torch's int4/int8 kernels take bf16 "
                            f"activations); this one computes in {str(dtype).removeprefix('torch.')}")
    switched = 0
    for name, m in model.named_modules():
        if isinstance(m, QUANTIZED) and not m.kernel:
            why = _try_kernel(m)
            switched += why is None
            if why is not None and why not in _warned:
                _warned.add(why)
                warnings.warn(f"{name}: {type(m).__name__} stays on the reference path ({why})", stacklevel=2)
    return switched
