"""Weight-only int8/int4: error bounds, the one-line forwards, the module swap on every architecture,
exact save/load round trips, streaming directory quantization, kernels, and clear errors."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from baichuan import quant
from baichuan.checkpoint import SAFE_INDEX, load_pretrained, save_pretrained, weight_files
from baichuan.config import preset
from baichuan.errors import BaichuanError
from baichuan.model import NormHead, RMSNorm, build
from baichuan.quant import (Int4Linear, Int8Linear, dequantize_int4, load_quantized, pack_int4, quantize,
                            quantize_dir, quantize_int4, quantize_int8, save_quantized, unpack_int4, use_kernels)
from baichuan.quant import linear as qlinear

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, max_len=128)
ARCHS = ["baichuan-7b", "baichuan-13b", "baichuan2-7b", "baichuan2-13b"]
MODES = [("int8", 128, None), ("int4", 32, True), ("int4", 32, False)]


def tiny(arch="baichuan-7b", dtype=torch.float32, **kw):
    torch.manual_seed(0)
    return build(preset(arch, **{**SMALL, **kw}), dtype=dtype).eval()


def weights(out=48, cols=192, seed=0):
    """Gaussian rows with a few outliers, one all-zero row, one constant row, one narrow row far from 0."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, cols, generator=g) * 0.02
    w[3, 5] = 0.5
    w[7] = 0.0
    w[8] = 0.013
    w[9] = 1.0 + torch.rand(cols, generator=g) * 1e-3
    return w


def tensors_of(model_dir):
    out = {}
    for f in weight_files(model_dir):
        with safe_open(str(f), framework="pt") as sf:
            out.update({k: sf.get_tensor(k) for k in sf.keys()})
    return out


# ------------------------------------------------------------------------------------ the math

def test_int8_error_is_within_half_a_step():
    w = weights()
    q = quantize_int8(w)
    assert q["qweight"].dtype == torch.int8 and q["scales"].dtype == torch.float32
    assert q["qweight"].abs().max() == 127
    scale = q["scales"]
    assert torch.allclose(scale[0], w[0].abs().max() / 127)
    err = (w - q["qweight"].float() * scale[:, None]).abs()
    assert (err <= scale[:, None] * (0.5 + 1e-5)).all()
    assert err[7].max() == 0 and q["qweight"][7].abs().max() == 0  # an all-zero row stays zero


@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_error_is_within_half_a_step_per_group(group_size, symmetric):
    w = weights(cols=384)
    q = quantize_int4(w, group_size, symmetric)
    assert q["qweight"].dtype == torch.uint8 and q["qweight"].shape == (48, 192)
    assert q["scales"].dtype == torch.bfloat16 and q["scales"].shape == (48, 384 // group_size)
    assert ("zeros" in q) == (not symmetric)
    d = dequantize_int4(q["qweight"], q["scales"], q.get("zeros"), group_size)
    step = q["scales"].float().repeat_interleave(group_size, dim=1)
    err = (w - d).abs()
    assert (err <= step * (0.5 + 1e-4)).all(), (err / step).max()
    assert err[7].max() == 0  # zero row
    levels = unpack_int4(q["qweight"]).view(48, -1, group_size)
    if not symmetric:  # a group's min and max sit on the grid's ends (rows 0-6: ordinary groups)
        assert (levels.amin(-1)[:10] == 0).all() and (levels.amax(-1)[:7] == 15).all()
    else:  # 15 levels around 8 (= zero)
        assert levels.min() >= 1 and levels.max() <= 15


def test_asymmetric_int4_is_more_accurate_on_gaussian_weights():
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    for g in (32, 64, 128):
        sym, asym = (quantize_int4(w, g, s) for s in (True, False))
        e_sym = (w - dequantize_int4(sym["qweight"], sym["scales"], None, g)).norm()
        e_asym = (w - dequantize_int4(asym["qweight"], asym["scales"], asym["zeros"], g)).norm()
        assert e_asym < 0.9 * e_sym, (g, e_asym, e_sym)


def test_int4_packing_round_trip_and_layout():
    q = torch.randint(0, 16, (5, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))  # 3 groups of 32
    p = pack_int4(q)
    assert p.shape == (5, 48) and p.dtype == torch.uint8
    assert torch.equal(unpack_int4(p), q)
    assert pack_int4(torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)).tolist() == [[0x21, 0x0F]]  # low nibble first
    w = torch.randn(4, 96)  # odd number of groups end to end
    r = quantize_int4(w, 32, False)
    again = quantize_int4(dequantize_int4(r["qweight"], r["scales"], r["zeros"], 32), 32, False)
    assert torch.equal(again["qweight"], r["qweight"])


# --------------------------------------------------------------------------------- the modules

@pytest.mark.parametrize("mode,group_size,symmetric", MODES)
def test_forward_is_f_linear_with_the_dequantized_weight(mode, group_size, symmetric):
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 80, bias=False)
    m = qlinear._empty_module(lin.weight, mode, group_size, qlinear._check_mode(mode, group_size, symmetric))
    for field, t in quant.quantize_weight(lin.weight.detach(), mode, group_size, m.symmetric).items():
        getattr(m, field).copy_(t)
    x = torch.randn(2, 7, 96)
    ref = F.linear(x, m.dequantize())
    assert torch.allclose(m(x), ref, rtol=1e-5, atol=1e-6)
    assert (m(x) - F.linear(x, lin.weight)).abs().max() < 0.1 * F.linear(x, lin.weight).abs().max()
    xb = x.bfloat16()
    assert m(xb).dtype == torch.bfloat16
    assert torch.allclose(m(xb).float(), F.linear(xb, m.dequantize(torch.bfloat16)).float(), rtol=2e-2, atol=2e-2)
    xh = x.half() * 1000  # int8 in fp16 scales the weight first: x @ q.T alone would pass 65504
    if mode == "int8":
        assert torch.isfinite(m(xh)).all()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode,group_size,symmetric", MODES)
def test_quantizing_changes_logits_only_slightly(arch, mode, group_size, symmetric):
    model = tiny(arch)
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids)
        quantize(model, mode, group_size, symmetric)
        out = model(ids)
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < (0.01 if mode == "int8" else 0.1), rel


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_only_the_five_linears_of_each_block_are_swapped(arch):
    model = tiny(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_type = type(model.lm_head)
    quantize(model, "int4", 32)
    names = [n for n, m in model.named_modules() if isinstance(m, Int4Linear)]
    assert names == [f"model.layers.{i}.{p}" for i in range(2) for p in quant.MODULES]
    assert not any(isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if n.startswith("model.layers"))
    assert type(model.lm_head) is head_type and isinstance(model.model.embed_tokens, torch.nn.Embedding)
    assert isinstance(model.lm_head, NormHead) == arch.startswith("baichuan2")
    assert sum(isinstance(m, RMSNorm) for m in model.modules()) == 2 * 2 + 1
    after = model.state_dict()
    kept = [k for k in before if not k.endswith(tuple(f"{p}.weight" for p in quant.MODULES))]
    assert len(kept) == 3 + 2 * 2 and all(torch.equal(after[k], before[k]) for k in kept)
    assert quant.quantization_config(model) == {"quant_method": "baichuan-wo", "bits": 4, "group_size": 32,
                                                "symmetric": False, "modules": list(quant.MODULES)}


# ------------------------------------------------------------------------------ save and load

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode,group_size,symmetric", MODES)
def test_save_load_round_trip_is_exact(tmp_path, arch, mode, group_size, symmetric):
    model = quantize(tiny(arch), mode, group_size, symmetric)
    out = save_quantized(model, tmp_path / "q", max_shard_bytes=20_000)
    index = json.loads((out / SAFE_INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "baichuan-wo"
    assert cfg["quantization_config"]["bits"] == (8 if mode == "int8" else 4)
    stored = tensors_of(out)
    qw = stored["model.layers.1.self_attn.W_pack.qweight"]
    assert qw.dtype == (torch.int8 if mode == "int8" else torch.uint8)
    assert qw.shape == ((192, 64) if mode == "int8" else (192, 32))
    assert "model.layers.1.self_attn.W_pack.weight" not in stored and stored["lm_head.weight"].dtype == torch.float32
    assert ("model.layers.0.mlp.up_proj.zeros" in stored) == (symmetric is False)
    loaded = load_quantized(out)
    assert loaded.cfg == model.cfg and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    ids = torch.randint(0, 300, (2, 11))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_bf16_round_trip_is_exact_and_kernels_agree(tmp_path):
    model = quantize(tiny("baichuan2-7b", dtype=torch.bfloat16), "int4", 32)
    out = save_quantized(model, tmp_path / "q")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = load_quantized(out, dtype=torch.bfloat16, kernels=False)
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        ref = model(ids)
        assert torch.equal(loaded(ids), ref)
        fast = load_quantized(out, dtype=torch.bfloat16)  # kernels by default in bf16, where torch has them
        got = fast(ids)
    assert ((got.float() - ref.float()).norm() / ref.float().norm()) < 0.02


def test_int8_scales_keep_fp32_in_a_bf16_checkpoint(tmp_path):
    model = quantize(tiny(), "int8")
    out = save_quantized(model, tmp_path / "q", dtype=torch.bfloat16)
    stored = tensors_of(out)
    assert stored["model.layers.0.mlp.down_proj.scales"].dtype == torch.float32
    assert stored["model.embed_tokens.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode,group_size,symmetric", MODES)
def test_quantize_dir_equals_quantize_then_save(tmp_path, dtype, mode, group_size, symmetric):
    src = save_pretrained(tiny("baichuan-13b").train(), tmp_path / "src", dtype=dtype, max_shard_bytes=30_000)
    a = quantize_dir(src, tmp_path / "a", mode, group_size, symmetric, device="cpu")
    b = save_quantized(quantize(load_pretrained(src, dtype=dtype), mode, group_size, symmetric), tmp_path / "b")
    ta, tb = tensors_of(a), tensors_of(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
    assert len(set(json.loads((a / SAFE_INDEX).read_text())["weight_map"].values())) > 1  # one per source shard
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        assert torch.equal(load_quantized(a, kernels=False)(ids), load_quantized(b, kernels=False)(ids))


def test_quantize_dir_reads_released_bin_layout(tmp_path):
    from test_checkpoint import write_released_bin_dir
    model = tiny()
    src = write_released_bin_dir(model, tmp_path / "rel", "BaiChuanForCausalLM")
    out = quantize_dir(src, tmp_path / "q", "int8", device="cpu")
    ref = quantize(load_pretrained(src), "int8")
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        assert torch.equal(load_quantized(out)(ids), ref(ids))


def test_quantize_dir_copies_tokenizer_and_generation_config(tmp_path, tiny_model_dir):
    from baichuan.tokenizer import Tokenizer
    assert quant.default_out_dir("models/tiny", "int4", 64).as_posix() == "models/tiny-int4-g64"
    out = quantize_dir(tiny_model_dir, quant.default_out_dir(tmp_path / "tiny", "int8"), "int8")
    assert out.name == "tiny-int8"
    for f in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        assert (out / f).read_bytes() == (tiny_model_dir / f).read_bytes(), f
    assert Tokenizer.load(out).vocab_size == Tokenizer.load(tiny_model_dir).vocab_size
    assert load_quantized(out).cfg.vocab_size == Tokenizer.load(out).vocab_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_crash_mid_quantize_dir_leaves_old_directory_intact(tmp_path, monkeypatch):
    src = save_pretrained(tiny(), tmp_path / "src", max_shard_bytes=30_000)
    out = quantize_dir(src, tmp_path / "q", "int8", device="cpu")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from test_checkpoint import fail_second_shard
    fail_second_shard(monkeypatch)
    with pytest.raises(OSError):
        quantize_dir(src, out, "int4", 32, device="cpu")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_pretrained_dispatches_quantized_dirs(tmp_path):
    """checkpoint.load_pretrained hands `baichuan-wo` directories to load_quantized (a hook in checkpoint.py)."""
    out = save_quantized(quantize(tiny(), "int8"), tmp_path / "q")
    try:
        model = load_pretrained(out)
    except BaichuanError as e:
        pytest.skip(f"checkpoint.load_pretrained does not dispatch to quant.load_quantized yet ({e})")
    assert isinstance(model.model.layers[0].mlp.down_proj, Int8Linear)


def test_quantize_dir_peak_memory_is_about_one_shard(tmp_path):
    """Quantizing a directory holds one source shard and its output at a time, not the model."""
    torch.manual_seed(0)
    cfg = preset("baichuan-7b", vocab_size=4000, hidden_size=512, intermediate_size=1408, num_layers=8,
                 num_heads=8, max_len=256)
    model = build(cfg)
    model_bytes = sum(p.numel() * 4 for p in model.parameters())
    shard_bytes = model_bytes // 8
    save_pretrained(model, tmp_path / "m", max_shard_bytes=shard_bytes)
    del model
    script = textwrap.dedent(f"""
        import torch
        from baichuan import quant
        from baichuan.config import preset
        from baichuan.model import build
        build(preset("tiny"))  # warm up imports (the meta device's are ~70 MB) and the allocator
        quant.quantize_int4(torch.randn(64, 128), 32, False)
        def status(key):
            return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
        base = status("VmRSS")
        quant.quantize_dir({str(tmp_path / 'm')!r}, {str(tmp_path / 'q')!r}, "int4", 128, device="cpu")
        print(base, status("VmHWM"))
    """)
    # A fixed mmap threshold makes glibc hand freed blocks back at once, so the peak RSS tracks live
    # memory (its adaptive threshold would keep a few freed shards' worth cached: ~2x the growth).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    base, peak = map(int, out.stdout.split())
    growth = peak - base
    print(f"quantize_dir grew RSS by {growth / 1e6:.0f} MB for a {model_bytes / 1e6:.0f} MB model "
          f"in shards of {shard_bytes / 1e6:.0f} MB")
    assert growth < 2 * shard_bytes, (growth / 1e6, shard_bytes / 1e6, model_bytes / 1e6)


# ------------------------------------------------------------------------------------- kernels

@pytest.fixture
def torch_kernels_only(monkeypatch):
    """use_kernels picks torch's kernels, not baichuan.kernels' (test_cpu_kernels.py covers those)."""
    monkeypatch.setattr(qlinear, "_cpu_gemv_fits", lambda m: False)
    monkeypatch.setattr(qlinear, "_verified", {})


def test_use_kernels_switches_and_agrees_on_cpu_bf16(torch_kernels_only):
    model = quantize(tiny("baichuan-13b", dtype=torch.bfloat16), "int4", 32)
    ids = torch.randint(0, 300, (2, 9))
    with torch.no_grad():
        ref = model(ids).float()
        n = use_kernels(model)
        got = model(ids).float()
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        pytest.skip("this torch has no CPU int4 kernel")
    assert n == 10
    assert (got - ref).norm() / ref.norm() < 0.02
    with pytest.raises(BaichuanError, match="use_kernels"):
        save_quantized(model, "/nonexistent/never-written")


@pytest.mark.parametrize("mode, symmetric", [("int8", True), ("int4", True), ("int4", False)])
def test_many_rows_take_a_bf16_gemm_with_the_reference_numbers(mode, symmetric, torch_kernels_only):
    """A prefill (CPU_GEMM_ROWS rows or more) with kernels on multiplies the weight dequantized
    for the call, read back from the int4 kernel's own layout: the reference path's numbers
    exactly; fewer rows keep torch's kernel."""
    bits = 8 if mode == "int8" else 4
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        pytest.skip("this torch has no CPU int4 kernel")
    torch.manual_seed(0)
    w = torch.randn(192, 256)
    m = Int8Linear(256, 192) if mode == "int8" else Int4Linear(256, 192, 32, symmetric)
    for name, t in qlinear.quantize_weight(w, mode, 32, symmetric).items():
        getattr(m, name).copy_(t)
    reference = m.dequantize(torch.bfloat16)
    x = torch.randn(qlinear.CPU_GEMM_ROWS[bits], 256).bfloat16()
    expected = (F.linear(x, m.qweight.bfloat16()) * m.scales.bfloat16() if mode == "int8"
                else F.linear(x, reference))
    assert qlinear._try_kernel(m) is None
    if mode == "int4":
        assert m.cpu_unpack and m.qweight is None  # only the kernel's layout is kept, and read back
        assert torch.equal(m.dequantize(torch.bfloat16), reference)
    assert torch.equal(m(x), expected)
    few = m(x[:qlinear.CPU_GEMM_ROWS[bits] - 1]).float()
    reference_few = expected[:qlinear.CPU_GEMM_ROWS[bits] - 1].float()
    assert (few - reference_few).norm() / reference_few.norm() < 0.02


def test_a_wrong_or_missing_kernel_falls_back_to_the_reference_path(monkeypatch, torch_kernels_only):
    monkeypatch.setattr(qlinear, "_verified", {})
    monkeypatch.setattr(qlinear, "_warned", set())
    wrong = lambda x, packed, group_size, sz: torch.zeros(x.shape[0], sz.shape[1], dtype=x.dtype)  # noqa: E731
    monkeypatch.setattr(qlinear, "_int4_mm", wrong)
    model = quantize(tiny(dtype=torch.bfloat16), "int4", 32)
    ids = torch.randint(0, 300, (1, 5))
    with torch.no_grad():
        ref = model(ids)
        with pytest.warns(UserWarning, match="disagrees with the reference path"):
            assert use_kernels(model) == 0
        assert torch.equal(model(ids), ref)

    def missing(*a, **kw):
        raise NotImplementedError("no kernel here")
    monkeypatch.setattr(qlinear, "_verified", {})
    monkeypatch.setattr(torch, "_weight_int8pack_mm", missing)
    model8 = quantize(tiny(dtype=torch.bfloat16), "int8")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert use_kernels(model8) == 0
    assert any("no kernel here" in str(x.message) for x in w)
    assert not any(m.kernel for m in model8.modules() if isinstance(m, Int8Linear))


def test_kernels_are_for_bf16_models_only(tmp_path):
    out = save_quantized(quantize(tiny(), "int8"), tmp_path / "q")
    model = load_quantized(out)  # fp32 on the CPU: no kernels by default
    assert not any(m.kernel for m in model.modules() if isinstance(m, Int8Linear))
    with pytest.raises(BaichuanError, match="use_kernels needs a bfloat16 model.*float32"):
        use_kernels(model)


# -------------------------------------------------------------------------------------- errors

def test_unsupported_options_are_clear_errors():
    with pytest.raises(BaichuanError, match="group_size 48 is not supported.*32, 64, 128"):
        quantize(tiny(), "int4", 48)
    with pytest.raises(BaichuanError, match="unknown quantization mode 'int3'"):
        quantize(tiny(), "int3")
    with pytest.raises(BaichuanError, match="int8 quantization is symmetric"):
        quantize(tiny(), "int8", symmetric=False)
    model = tiny()
    with pytest.raises(BaichuanError, match=r"model\.layers\.0\.mlp\.down_proj: in_features 160 is not divisible "
                                            r"by group_size 64 \(group sizes that fit this model: 32\)"):
        quantize(model, "int4", 64)
    assert isinstance(model.model.layers[0].self_attn.W_pack, torch.nn.Linear)  # nothing was swapped
    quantize(model, "int8")
    with pytest.raises(BaichuanError, match=r"model\.layers\.0\.self_attn\.W_pack: already quantized"):
        quantize(model, "int8")
    with pytest.raises(BaichuanError, match="not quantized"):
        save_quantized(tiny(), "/nonexistent/never-written")


def test_quantize_dir_errors(tmp_path):
    src = save_pretrained(tiny(), tmp_path / "src")
    with pytest.raises(BaichuanError, match=r"W_pack: in_features 64 is not divisible by group_size 128"):
        quantize_dir(src, tmp_path / "q", "int4", 128)
    assert not (tmp_path / "q").exists()
    q = quantize_dir(src, tmp_path / "q", "int8")
    with pytest.raises(BaichuanError, match="already quantized"):
        quantize_dir(q, tmp_path / "qq", "int4", 32)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    with pytest.raises(BaichuanError, match="refusing to overwrite"):
        quantize_dir(src, tmp_path / "notes", "int8")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BaichuanError, match="afile: exists and is not a folder"):
        quantize_dir(src, tmp_path / "afile", "int8")
    other = save_pretrained(tiny(), tmp_path / "other")                 # a full-precision model is never replaced
    with pytest.raises(BaichuanError, match="holds a model that a quantized copy would replace"):
        quantize_dir(src, other, "int8")
    foreign = save_pretrained(tiny(), tmp_path / "foreign")        # nor a release quantized by another tool
    cfg = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "bitsandbytes"}}))
    with pytest.raises(BaichuanError, match="holds a model that a quantized copy would replace"):
        quantize_dir(src, foreign, "int8")
    assert quantize_dir(src, q, "int4", 32) == q and json.loads((q / "config.json").read_text()
                                                                )["quantization_config"]["bits"] == 4  # re-run: replaced
    assert quant.default_out_dir(".", "int8") == Path.cwd().parent / f"{Path.cwd().name}-int8"
    cfg = json.loads((src / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match=r"tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"):
        quantize_dir(src, tmp_path / "q2", "int8")


def test_loading_refuses_bad_quantization_configs(tmp_path):
    out = save_quantized(quantize(tiny(), "int4", 32), tmp_path / "q")
    good = json.loads((out / "config.json").read_text())

    def with_qc(qc):
        (out / "config.json").write_text(json.dumps(good | {"quantization_config": qc}))

    with_qc({"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    with pytest.raises(BaichuanError, match="bitsandbytes"):
        load_quantized(out)
    with_qc(good["quantization_config"] | {"bits": 3})
    with pytest.raises(BaichuanError, match="bits must be 8 or 4, got 3"):
        load_quantized(out)
    with_qc(good["quantization_config"] | {"group_size": 100})
    with pytest.raises(BaichuanError, match="group_size must be one of"):
        load_quantized(out)
    with_qc(good["quantization_config"] | {"symmetric": True})  # the file has zeros the config does not expect
    with pytest.raises(BaichuanError, match=r"unexpected tensor '.*\.zeros'"):
        load_quantized(out)
    with_qc(good["quantization_config"] | {"bits": 8})
    with pytest.raises(BaichuanError, match=r"symmetric must be true or false \(true for 8 bits\), got False"):
        load_quantized(out)
    sym = save_quantized(quantize(tiny(), "int4", 32, symmetric=True), tmp_path / "sym")
    cfg = json.loads((sym / "config.json").read_text())
    cfg["quantization_config"]["bits"] = 8  # int4 tensors under an int8 config
    (sym / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match=r"tensor '.*' has shape \[\d+(, \d+)?\], but config.json implies"):
        load_quantized(sym)
    (out / "config.json").write_text(json.dumps({k: v for k, v in good.items() if k != "quantization_config"}))
    with pytest.raises(BaichuanError, match="not a quantized model"):
        load_quantized(out)


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_quantized_lm_head_round_trips_and_stays_close(tmp_path, arch):
    model = tiny(arch).eval()
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        ref = model(ids)
    src = save_pretrained(tiny(arch), tmp_path / "src", max_shard_bytes=30_000)
    out = quantize_dir(src, tmp_path / "q", "int8", device="cpu", lm_head=True)
    assert json.loads((out / "config.json").read_text())["quantization_config"]["modules"][-1] == "lm_head"
    assert {"lm_head.qweight", "lm_head.scales"} <= tensors_of(out).keys() and "lm_head.weight" not in tensors_of(out)
    loaded = load_quantized(out, kernels=False)
    assert isinstance(loaded.lm_head, quant.Int8Linear)
    in_memory = quantize(load_pretrained(src), "int8", lm_head=True)
    with torch.no_grad():
        got = loaded(ids)
        assert torch.equal(got, in_memory(ids))     # streaming = in memory, NormHead rows normalized in both
    assert ((got - ref).abs().max() / ref.abs().max()) < 0.05
    assert quant.quantization_config(in_memory)["modules"][-1] == "lm_head"
