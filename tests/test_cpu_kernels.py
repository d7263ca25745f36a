"""baichuan.kernels: the AVX-512 decode products against the math they implement, written out here
in plain torch (the activations' per-block int8 quantization included), and against the fp32
product of the same weights with the tolerance stated per kind."""

import pytest
import torch

from baichuan import kernels
from baichuan.quant import Int4Linear, Int8Linear, quantize, quantize_int4, quantize_int8, use_kernels
from baichuan.quant import linear as qlinear
from baichuan.quant.files import load_quantized, save_quantized
from baichuan.quant.linear import dequantize_int4, pack_rows16, rows16, unpack_int4, unpack_rows16, unrows16
from baichuan.config import preset
from baichuan.model import build


def tiny(dtype):
    torch.manual_seed(0)
    cfg = preset("baichuan-7b", vocab_size=300, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                 max_len=128)
    return build(cfg, dtype=dtype).eval()

pytestmark = pytest.mark.skipif(not kernels.available(), reason=f"baichuan.kernels: {kernels.why_not()}")


def quantize_activations(x: torch.Tensor):
    """Per block of 32 inputs: int8 values and scales, as the kernels do (llama.cpp's Q8_0)."""
    b = x.float().reshape(*x.shape[:-1], -1, 32)
    scale = b.abs().amax(-1, keepdim=True) / 127
    q = torch.where(scale > 0, torch.round(b / torch.where(scale > 0, scale, 1)), 0).clamp(-127, 127)
    return q, scale


def q8_math(x, w, scales):
    q, s = quantize_activations(x)
    dots = (q.unsqueeze(-3) * w.float().reshape(w.shape[0], -1, 32)).sum(-1)   # [..., out, blocks]
    return (dots * s.squeeze(-1).unsqueeze(-2)).sum(-1) * scales


def q4_math(x, qweight, s, z, group):
    """sum_g s_g sum(q x) + (z_g - 8 s_g) sum(x), with q x over the quantized activations."""
    q, xs = quantize_activations(x)
    nib = torch.stack((qweight & 15, qweight >> 4), -1).flatten(-2).float()        # [out, in]
    rep = group // 32
    sb = s.float().repeat_interleave(rep, -1)                                       # per block of 32
    zb = (z.float() if z is not None else torch.zeros_like(s.float())).repeat_interleave(rep, -1)
    dots = (q.unsqueeze(-3) * nib.reshape(nib.shape[0], -1, 32)).sum(-1)           # [..., out, blocks]
    xsum = x.float().reshape(*x.shape[:-1], -1, 32).sum(-1).unsqueeze(-2)
    return (dots * xs.squeeze(-1).unsqueeze(-2) * sb).sum(-1) + ((zb - 8 * sb) * xsum).sum(-1)


def rel(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


SHAPES = [((1, 128), 12), ((3, 256), 7), ((1, 1, 384), 64), ((2, 1408), 130)]  # x shape, outputs (tails of 4)


@pytest.mark.parametrize("shape, n", SHAPES)
def test_f32_and_bf16_are_the_plain_product(shape, n):
    torch.manual_seed(0)
    x, w = torch.randn(shape), torch.randn(n, shape[-1])
    assert rel(torch.ops.baichuan.gemv_f32(x, w), x @ w.T) < 1e-5
    xb, wb = x.bfloat16(), w.bfloat16()
    got = torch.ops.baichuan.gemv_bf16(xb, wb)
    assert got.dtype == torch.bfloat16 and got.shape == (*shape[:-1], n)
    assert rel(got, xb.float() @ wb.float().T) < 8e-3  # the output rounded to bf16


@pytest.mark.parametrize("shape, n", SHAPES)
def test_q8_is_its_math_and_near_the_weights_product(shape, n):
    torch.manual_seed(0)
    x, w = torch.randn(shape).bfloat16(), torch.randn(n, shape[-1]) * 0.02
    x[..., 5] = 40.0  # an outlier feature: only its own block's scale grows
    q = quantize_int8(w)
    got = torch.ops.baichuan.gemv_q8(x, q["qweight"], q["scales"])
    assert rel(got, q8_math(x, q["qweight"], q["scales"])) < 8e-3   # bf16 output
    assert rel(got, x.float() @ (q["qweight"].float() * q["scales"][:, None]).T) < 2e-2  # 1.3% with the outlier


def test_the_int4_cpu_layout_holds_the_checkpoints_bytes():
    torch.manual_seed(0)
    q = quantize_int4(torch.randn(48, 256), 64, False)
    packed = pack_rows16(q["qweight"])
    assert packed.shape == q["qweight"].shape and packed.dtype == torch.uint8
    assert not torch.equal(packed, q["qweight"])
    assert torch.equal(unpack_rows16(packed), unpack_int4(q["qweight"]))
    assert torch.equal(unrows16(rows16(q["scales"])), q["scales"])
    # row 16 t + r, inputs 8 c .. 8 c + 7: bytes [64 (t * in/8 + c) + 4 r, + 4), low nibbles first
    values, row, c = unpack_int4(q["qweight"]), 21, 5
    at = 64 * (1 * 256 // 8 + c) + 4 * (row - 16)
    got = packed.view(-1)[at:at + 4]
    assert torch.equal(torch.cat([got & 15, got >> 4]), values[row, 8 * c:8 * c + 8])


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("shape, n", [((1, 256), 16), ((3, 384), 48), ((1, 1, 1408), 64), ((6, 128), 32)])
def test_q4_is_its_math_and_near_the_weights_product(shape, n, group, symmetric):
    if shape[-1] % group:
        pytest.skip("the width is not a multiple of the group")
    torch.manual_seed(0)
    x, w = torch.randn(shape).bfloat16(), torch.randn(n, shape[-1]) * 0.02 + 0.01
    q = quantize_int4(w, group, symmetric)
    z = q.get("zeros")
    got = torch.ops.baichuan.gemv_q4(x, pack_rows16(q["qweight"]), rows16(q["scales"]),
                                     None if z is None else rows16(z), group)
    assert got.shape == (*shape[:-1], n)
    assert rel(got, q4_math(x, q["qweight"], q["scales"], z, group)) < 8e-3
    assert rel(got, x.float() @ dequantize_int4(q["qweight"], q["scales"], z, group).T) < 3e-2


@pytest.mark.parametrize("group, symmetric", [(32, True), (128, True), (64, False), (128, False)])
def test_a_prefill_multiplies_by_the_checkpoints_int4_weight_dequantized_bit_for_bit(group, symmetric):
    """Past CPU_GEMV_ROWS a layer on the CPU layout dequantizes to bf16 in C (dequant_q4): the same
    bits as torch's dequantize of the checkpoint tensors, and the same product."""
    torch.manual_seed(0)
    w = torch.randn(208, 384)
    layer = Int4Linear(384, 208, group_size=group, symmetric=symmetric)
    for name, t in quantize_int4(w, group, symmetric).items():
        setattr(layer, name, t)
    ref = dequantize_int4(layer.qweight, layer.scales, layer.zeros, group, torch.bfloat16)
    ref32 = dequantize_int4(layer.qweight, layer.scales, layer.zeros, group, torch.float32)
    x = torch.randn(qlinear.CPU_GEMV_ROWS[4] + 1, 384).bfloat16()
    expected = torch.nn.functional.linear(x, ref)
    layer.cpu_weight, layer.cpu_scales = pack_rows16(layer.qweight), rows16(layer.scales)
    layer.cpu_zeros = None if symmetric else rows16(layer.zeros)
    layer.qweight = layer.scales = layer.zeros = None
    assert torch.equal(layer.dequantize(torch.bfloat16), ref)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.dequantize(torch.float32), ref32)  # torch's ops


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 8e-3)])
@pytest.mark.parametrize("heads, kv_heads, rows, keys, dim, mask", [
    (8, 8, 1, 192, 64, "bool"), (8, 2, 2, 77, 128, "float"), (4, 4, 1, 64, 16, None), (6, 6, 1, 130, 32, "alibi")])
def test_attend_is_sdpa_over_a_cache_view(dtype, tol, heads, kv_heads, rows, keys, dim, mask):
    """attend against SDPA in fp32 on the same inputs: q a transposed view, k and v the first
    `keys` slots of a longer cache (not contiguous), the decode step's masks (bool; an additive
    one; ALiBi's per-head bias with -inf), grouped-query heads."""
    torch.manual_seed(0)
    cache_k, cache_v = (torch.randn(2, kv_heads, keys + 40, dim, dtype=dtype) for _ in range(2))
    k, v = cache_k[:, :, :keys], cache_v[:, :, :keys]
    q = torch.randn(2, rows, heads, dim, dtype=dtype).transpose(1, 2)
    if mask == "bool":
        mask = torch.rand(2, 1, rows, keys) < 0.8
        mask[..., 0] = True
    elif mask == "float":
        mask = torch.randn(2, 1, rows, keys, dtype=dtype)
    elif mask == "alibi":
        mask = torch.randn(2, heads, rows, keys, dtype=dtype).masked_fill(torch.rand(2, heads, rows, keys) < 0.3,
                                                                           float("-inf"))
        mask[..., 0] = 0
    assert kernels.fits_attention(q, k, v, mask)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask if mask is None or mask.dtype == torch.bool else mask.float(),
        enable_gqa=heads != kv_heads)
    got = torch.ops.baichuan.attend(q, k, v, mask, dim ** -0.5)
    assert got.dtype == dtype and got.shape == want.shape and got.is_contiguous()
    assert rel(got, want) < tol


def test_attend_fits_only_what_it_computes():
    q, k = torch.randn(1, 8, 1, 64), torch.randn(1, 4, 10, 64)
    assert kernels.fits_attention(q, k, k, None) and kernels.fits_attention(q, k, k, torch.ones(1, 1, 1, 10) > 0)
    assert not kernels.fits_attention(q, k.bfloat16(), k.bfloat16(), None)           # dtypes differ
    assert not kernels.fits_attention(torch.randn(1, 6, 1, 64), k, k, None)          # 6 heads over 4
    assert not kernels.fits_attention(q[..., :40], k[..., :40], k[..., :40], None)   # head dim not a multiple of 16
    assert not kernels.fits_attention(q, k, k.transpose(2, 3).contiguous().transpose(2, 3), None)  # dim's stride
    assert not kernels.fits_attention(q, k, k, torch.ones(1, 1, 1, 10, dtype=torch.int32))
    assert not kernels.fits_attention(q, k, k, torch.ones(1, 1, 1, 9) > 0)          # does not broadcast


def test_ops_compile_and_fits_says_where_they_run():
    torch.manual_seed(0)
    x, w = torch.randn(1, 256).bfloat16(), torch.randn(64, 256).bfloat16()
    compiled = torch.compile(lambda a, b: torch.ops.baichuan.gemv_bf16(a, b) * 2, fullgraph=True)
    assert torch.equal(compiled(x, w), torch.ops.baichuan.gemv_bf16(x, w) * 2)
    assert kernels.fits("bf16", x, w)
    assert not kernels.fits("bf16", x.float(), w)           # dtype
    assert not kernels.fits("bf16", x, w.float())           # the weight's dtype
    q4 = torch.zeros(32, 96, dtype=torch.uint8)
    assert kernels.fits("q4", torch.randn(1, 192).bfloat16(), q4)
    assert not kernels.fits("q4", torch.randn(1, 176).bfloat16(), q4[:, :88])  # width not a multiple of 32
    assert not kernels.fits("q4", torch.randn(1, 192).bfloat16(), q4[:24])    # rows not a multiple of 16
    assert not kernels.fits("bf16", x, w.t().contiguous().t()[:, :256])  # weight not contiguous


def test_off_by_environment(monkeypatch):
    monkeypatch.setenv("BAICHUAN_CPU_KERNELS", "0")
    kernels._module.cache_clear()
    try:
        assert not kernels.available() and "BAICHUAN_CPU_KERNELS" in kernels.why_not()
    finally:
        monkeypatch.delenv("BAICHUAN_CPU_KERNELS")
        kernels._module.cache_clear()
    assert kernels.available()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_use_kernels_takes_them_and_the_model_still_saves(mode, tmp_path, monkeypatch):
    """A model on the kernels is as far from the fp32 model as the reference path (the weights'
    quantization dominates; the activations' adds little), and still saves the same checkpoint
    (int4: written back from the kernel's layout of the same bytes)."""
    monkeypatch.setattr(qlinear, "_verified", {})
    fp32 = tiny(torch.float32)
    model = quantize(tiny(torch.bfloat16), mode, 32)
    save_quantized(model, tmp_path / "q")
    assert use_kernels(model) == 10
    layers = [m for m in model.modules() if isinstance(m, (Int8Linear, Int4Linear))]
    assert all(m.cpu_gemv and (m.qweight is None) == (mode == "int4") for m in layers)
    assert "AVX-512 VNNI kernels on 10 of 10 layers" in qlinear.describe_precision(model)
    reference = load_quantized(tmp_path / "q", dtype=torch.bfloat16, kernels=False)
    tokens = [torch.tensor([[t]]) for t in range(0, 300, 37)]  # one row each: the kernels' case
    with torch.no_grad():
        want = torch.cat([fp32(t) for t in tokens])
        err = lambda m: ((torch.cat([m(t) for t in tokens]).float() - want).norm() / want.norm()).item()  # noqa: E731
        ours, theirs = err(model), err(reference)
        prompt = torch.randint(0, 300, (1, qlinear.CPU_GEMM_ROWS[4]))  # a prefill: the weights dequantized
        assert torch.equal(model(prompt), reference(prompt))
    assert ours < 1.2 * theirs + 2e-3, (ours, theirs)
    save_quantized(model, tmp_path / "again")
    again = load_quantized(tmp_path / "again", dtype=torch.bfloat16, kernels=False).state_dict()
    want = reference.state_dict()
    assert again.keys() == want.keys() and all(torch.equal(again[k], want[k]) for k in want)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_compiled_engine_calls_them_directly_and_decodes_as_eager(mode):
    """Compiled, the decode step calls the kernels through inductor's lowering (kernels/inductor.py)
    with the inputs' own dtypes, and picks the tokens the eager step (through the dispatcher) picks."""
    from torch._inductor.utils import run_and_get_code
    from baichuan.infer.engine import Engine
    from baichuan.infer.sampling import SamplingParams
    from baichuan.kernels.inductor import lower
    model = quantize(tiny(torch.bfloat16), mode, 32)
    use_kernels(model)
    params = SamplingParams(max_new_tokens=8, eos_token_ids=(-1,))
    eager = list(Engine(model, max_batch=1, max_len=64).generate([1, 2, 3], params))
    torch._dynamo.reset()
    engine = Engine(model, max_batch=1, max_len=64, compile=True)
    compiled, code = run_and_get_code(lambda: list(engine.generate([1, 2, 3], params)))
    assert lower() and compiled == eager
    assert f"extern_kernels.baichuan_gemv_q{mode[-1]}(" in "\n".join(code)
    assert "extern_kernels.baichuan_attend(" in "\n".join(code)


@pytest.mark.parametrize("arch", ["baichuan-13b", "baichuan2-7b"])
def test_compiled_fp32_engines_attend_with_the_kernel_and_decode_as_eager(arch):
    """ALiBi's additive bias and RoPE's boolean mask, fp32 caches, 3 rows of different lengths:
    the compiled step's attention is `attend` and its tokens are the eager engine's."""
    from torch._inductor.utils import run_and_get_code
    from baichuan.infer.engine import Engine
    from baichuan.infer.sampling import SamplingParams
    torch.manual_seed(0)
    cfg = preset(arch, vocab_size=300, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, max_len=128)
    model = build(cfg).eval()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
    params = SamplingParams(max_new_tokens=6, eos_token_ids=(-1,))

    def run(engine):
        reqs = [engine.submit(p, params) for p in prompts]
        while not all(r.done for r in reqs):
            engine.step()
        return [r.tokens for r in reqs]
    eager = run(Engine(model, max_batch=4, max_len=64))
    compiled, code = run_and_get_code(lambda: run(Engine(model, max_batch=4, max_len=64, compile=True)))
    assert compiled == eager
    assert "extern_kernels.baichuan_attend(" in "\n".join(code)


def test_bf16_linears_take_them_for_few_rows_eager_and_fp32_ones_do_not():
    """The CPU decode path switches a bf16 model's Linears (in place) to gemv_bf16 for up to
    FEW_ROWS rows; one-row logits stay the bf16 model's, a prefill keeps F.linear's numbers."""
    from baichuan.infer.cpu import FEW_ROWS, _few_row_forward, few_row_kernels
    model = tiny(torch.bfloat16)
    one, prompt = torch.tensor([[7]]), torch.randint(0, 300, (1, FEW_ROWS + 7))
    with torch.no_grad():
        want_one, want_prompt = model(one).float(), model(prompt)
        assert few_row_kernels(model) == 2 * 5 + 1  # W_pack, o_proj, gate, up, down per layer; the head
        assert model.lm_head.forward.__func__ is _few_row_forward
        assert few_row_kernels(tiny(torch.float32)) == 0
        got_one = model(one).float()
        assert (got_one - want_one).norm() / want_one.norm() < 1e-2
        assert torch.equal(model(prompt), want_prompt)
