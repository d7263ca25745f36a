"""The model against independent references: HF transformers' Llama (RoPE models), the released
ALiBi slopes, a naive ALiBi attention, F.normalize for NormHead, and full recomputation for the
KV cache."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baichuan.config import preset
from baichuan.model import KVCache, alibi_slopes, build, lm_loss
from baichuan.train.parallel import parallelize

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=4, max_len=128)
ARCHS = {
    "baichuan-7b": dict(position="rope"),
    "baichuan2-7b": dict(position="rope", rope_fp32=True, norm_head=True),
    "baichuan-13b": dict(position="alibi"),
    "baichuan2-13b": dict(position="alibi", norm_head=True),
}


def small_model(arch, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = preset(arch, **{**SMALL, **ARCHS[arch], **kw})
    model = build(cfg).eval()
    with torch.no_grad():  # non-trivial norms so a missing norm weight would show
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    return model


def hf_llama_from(model):
    """HF LlamaForCausalLM holding the same weights (W_pack split into q/k/v; NormHead pre-normalized)."""
    cfg = model.cfg
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    sd = {}
    H = cfg.hidden_size
    for k, v in model.state_dict().items():
        if k.endswith("W_pack.weight"):
            base = k[: -len("W_pack.weight")]
            sd[base + "q_proj.weight"], sd[base + "k_proj.weight"], sd[base + "v_proj.weight"] = v[:H], v[H:2 * H], v[2 * H:]
        elif k == "lm_head.weight" and cfg.norm_head:
            sd[k] = F.normalize(v, dim=-1)
        else:
            sd[k] = v
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return hf


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-7b"])
def test_rope_full_forward_equals_hf_llama(arch):
    model = small_model(arch)
    hf = hf_llama_from(model)
    ids = torch.randint(0, 300, (2, 37))
    with torch.no_grad():
        ours, ref = model(ids), hf(ids).logits
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-7b"])
def test_rope_cached_decoding_equals_hf_llama(arch):
    model = small_model(arch)
    hf = hf_llama_from(model)
    ids = torch.randint(0, 300, (2, 20))
    cache = KVCache(model.cfg, batch_size=2, max_len=32)
    hf_cache = transformers.DynamicCache()
    with torch.no_grad():
        ours = [model(ids[:, :8], cache=cache)]
        ref = [hf(ids[:, :8], past_key_values=hf_cache, use_cache=True).logits]
        for t in range(8, 20):
            ours.append(model(ids[:, t:t + 1], cache=cache))
            out = hf(ids[:, t:t + 1], past_key_values=hf_cache, use_cache=True)
            ref.append(out.logits)
    diff = (torch.cat(ours, 1) - torch.cat(ref, 1)).abs().max().item()
    assert diff < 1e-4


def test_left_padded_batch_matches_unpadded_rope():
    model = small_model("baichuan-7b")
    seq = torch.randint(3, 300, (1, 10))
    pad = 4
    padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], 1)
    key_mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 10, dtype=torch.bool)], 1)
    pos = (key_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = model(seq)
        out = model(padded, position_ids=pos, key_mask=key_mask)
    assert torch.isfinite(out).all()
    assert (out[:, pad:] - ref).abs().max().item() < 1e-4


def test_alibi_slopes_40_heads_match_the_released_list():
    expected = [2 ** (-k / 4) for k in range(1, 33)] + [2 ** (-(2 * k - 1) / 8) for k in range(1, 9)]
    assert alibi_slopes(40) == pytest.approx(expected, rel=1e-12)
    assert alibi_slopes(40)[:3] == pytest.approx([0.8409, 0.7071, 0.5946], abs=1e-4)
    assert alibi_slopes(40)[32:] == pytest.approx([0.9170, 0.7711, 0.6484, 0.5453, 0.4585, 0.3856, 0.3242, 0.2726], abs=1e-4)
    assert alibi_slopes(8) == pytest.approx([2 ** -(i + 1) for i in range(8)])


def naive_alibi_forward(model, ids):
    """An independent ALiBi decoder: explicit loops over heads, bias slope*(j - i), softmax in fp32."""
    cfg = model.cfg
    sd = model.state_dict()
    H, nh, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    slopes = alibi_slopes(nh)

    def rms(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_norm_eps) * w

    x = sd["model.embed_tokens.weight"][ids[0]]
    T = x.shape[0]
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        qkv = h @ sd[p + "self_attn.W_pack.weight"].T
        heads = []
        for n in range(nh):
            q = qkv[:, n * hd:(n + 1) * hd]
            k = qkv[:, H + n * hd:H + (n + 1) * hd]
            v = qkv[:, 2 * H + n * hd:2 * H + (n + 1) * hd]
            scores = q @ k.T / math.sqrt(hd)
            for a in range(T):
                for b in range(T):
                    scores[a, b] = scores[a, b] + slopes[n] * (b - a) if b <= a else float("-inf")
            heads.append(torch.softmax(scores, -1) @ v)
        x = x + torch.cat(heads, -1) @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = h @ sd[p + "mlp.gate_proj.weight"].T
        u = h @ sd[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(g) * u) @ sd[p + "mlp.down_proj.weight"].T
    x = rms(x, sd["model.norm.weight"])
    w = sd["lm_head.weight"]
    return x @ (F.normalize(w, dim=-1) if cfg.norm_head else w).T


@pytest.mark.parametrize("arch", ["baichuan-13b", "baichuan2-13b"])
@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_alibi_equals_naive_reference(arch, form):
    model = small_model(arch, num_heads=5, hidden_size=40, alibi=form)  # 5 heads: not a power of two
    ids = torch.randint(0, 300, (1, 12))
    ref = naive_alibi_forward(model, ids)
    with torch.no_grad():
        ours = model(ids)[0]
    assert (ours - ref).abs().max().item() < 1e-4


def test_alibi_relative_form_is_more_precise_in_bf16():
    """The released absolute bias (slope*j) loses the q.k signal in bf16 at long range; the relative
    form stays close to the fp32 reference (spec §3.3 precision hazard)."""
    torch.manual_seed(0)
    errors = {}
    ids = torch.randint(0, 300, (1, 600))
    ref_model = small_model("baichuan-13b", max_len=1024)
    with torch.no_grad():
        ref = ref_model(ids)[0, -50:].float()
        for form in ("absolute", "relative"):
            m = small_model("baichuan-13b", max_len=1024, alibi=form)
            m.load_state_dict(ref_model.state_dict())
            m = m.to(torch.bfloat16)
            errors[form] = (m(ids)[0, -50:].float() - ref).abs().mean().item()
    assert errors["relative"] < errors["absolute"] / 2, errors


def test_norm_head_equals_row_normalize_and_trains_through_it():
    model = small_model("baichuan2-7b")
    h = torch.randn(2, 5, model.cfg.hidden_size)
    raw = model.lm_head.weight.detach().clone()
    expected = h @ F.normalize(raw, dim=-1).T
    model.train()
    out = model.lm_head(h)
    assert (out - expected).abs().max().item() < 1e-5
    out.sum().backward()
    g = model.lm_head.weight.grad
    # the gradient through normalize is orthogonal to each row
    assert (g * raw).sum(-1).abs().max().item() < 1e-4
    model.eval()
    with torch.no_grad():
        assert (model.lm_head(h) - expected).abs().max().item() < 1e-5
        assert model.lm_head.weight.norm(dim=-1).sub(1).abs().max().item() < 1e-5
        # loading new raw weights in eval mode is noticed and normalized again
        model.lm_head.weight.copy_(raw * 3)
        assert (model.lm_head(h) - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("arch", list(ARCHS))
def test_cached_decoding_equals_full_recomputation(arch):
    model = small_model(arch)
    ids = torch.randint(0, 300, (3, 24))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.cfg, 3, 24)
        steps = [model(ids[:, :5], cache=cache), model(ids[:, 5:9], cache=cache)]
        steps += [model(ids[:, t:t + 1], cache=cache) for t in range(9, 24)]
    assert cache.lengths.tolist() == [24, 24, 24]  # every row advanced by each forward's tokens
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-4


def test_cache_overflow_is_an_error():
    model = small_model("baichuan-7b")
    cache = KVCache(model.cfg, 1, 4)
    with pytest.raises(ValueError, match="KV cache"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RssAnon from /proc")
def test_cpu_cache_memory_becomes_resident_only_as_slots_are_written():
    """A server's cache is sized for its longest context and every row at once; on the CPU it
    costs memory for what its requests fill, not for that bound."""
    import gc

    def anon_mb():
        return int(Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]) / 1024
    cfg = preset("baichuan-7b", **{**SMALL, "hidden_size": 512, "num_heads": 4, "num_layers": 4})
    gc.collect()
    gc.disable()  # earlier tests' garbage, freed mid-test, would move the count
    try:
        before = anon_mb()
        cache = KVCache(cfg, 8, 8192, dtype=torch.bfloat16)  # 512 MB of keys and values
        tensors = cache.k + cache.v
        assert anon_mb() - before < 16
        assert all(t.count_nonzero() == 0 for t in tensors)  # zeros, and reading them makes nothing resident
        assert anon_mb() - before < 16
        for t in tensors:
            t[0].fill_(1.0)  # one row of eight: 64 MB in all
        assert 56 < anon_mb() - before < 90
    finally:
        gc.enable()
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 8 and all(t.is_contiguous() for t in tensors)


def test_lm_loss_masks_and_z_loss():
    logits = torch.randn(2, 4, 10)
    targets = torch.tensor([[1, -100, 3, 4], [-100, -100, -100, 2]])
    keep = targets != -100
    ce = F.cross_entropy(logits[keep], targets[keep])
    assert lm_loss(logits, targets).item() == pytest.approx(ce.item(), rel=1e-6)
    z = logits.max(-1).values.pow(2).mean()
    assert lm_loss(logits, targets, z_loss_weight=2e-4).item() == pytest.approx(ce.item() + 2e-4 * z.item(), rel=1e-6)
    all_masked = torch.full((2, 4), -100)
    assert lm_loss(logits, all_masked).item() == 0.0


def test_built_on_meta_and_initialized_once():
    cfg = preset("tiny")
    model = build(cfg)
    assert all(p.device.type == "cpu" for p in model.parameters())
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        if p.ndim == 1:
            assert (p == 1).all(), name
        else:
            assert 0 < p.std().item() < 0.05, name
    n = sum(p.numel() for p in model.parameters())
    assert n == cfg.num_params()


def test_released_parameter_counts():
    assert preset("baichuan-7b").num_params() == 7_000_559_616
    assert preset("baichuan-13b").num_params() == 13_264_901_120
    assert preset("baichuan2-7b").num_params() == 7_505_973_248
    assert preset("baichuan2-13b").num_params() == 13_896_668_160


@pytest.mark.parametrize("arch", list(ARCHS))
def test_rows_of_different_lengths_decode_together(arch):
    """Continuous batching: rows prefilled separately to different lengths, then decoded in one
    batch, give what each sequence gives alone."""
    model = small_model(arch)
    a, b = torch.randint(0, 300, (1, 8)), torch.randint(0, 300, (1, 13))
    cache = KVCache(model.cfg, 3, 32)
    with torch.no_grad():
        model(a[:, :5], cache=cache.rows(0, 1))
        model(b[:, :9], cache=cache.rows(2, 3))       # row 1 stays empty (a free slot)
        outs = []
        for t in range(3):
            step = torch.tensor([[a[0, 5 + t]], [0], [b[0, 9 + t]]])
            outs.append(model(step, cache=cache))
        full_a, full_b = model(a[:, :8]), model(b[:, :12])
    assert cache.lengths.tolist() == [8, 3, 12]
    got = torch.cat(outs, 1)
    assert (got[0] - full_a[0, 5:8]).abs().max().item() < 1e-4
    assert (got[2] - full_b[0, 9:12]).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", list(ARCHS))
def test_packed_segments_equal_separate_sequences(arch):
    """Two sequences packed in one row with segment ids and restarted positions give each
    sequence's own logits (block-diagonal attention)."""
    model = small_model(arch)
    a, b = torch.randint(0, 300, (1, 7)), torch.randint(0, 300, (1, 10))
    packed = torch.cat([a, b], 1)
    segments = torch.tensor([[0] * 7 + [1] * 10])
    positions = torch.cat([torch.arange(7), torch.arange(10)])[None]
    with torch.no_grad():
        out = model(packed, position_ids=positions, segments=segments)
        ref_a, ref_b = model(a), model(b)
    # ALiBi needs no position restart: its bias depends on slot differences only
    assert (out[:, :7] - ref_a).abs().max().item() < 1e-4
    assert (out[:, 7:] - ref_b).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_loss_from_targets_equals_full_logits_loss_and_gradients(arch):
    """model(x, targets=y) computes lm_loss in chunks without all logits at once: same value,
    same gradients (NormHead trained through its normalization, z-loss included), and so does
    training's compiled path (blocks and loss chunks)."""
    import baichuan.model as bm
    ids = torch.randint(0, 300, (3, 21))
    targets = torch.randint(0, 300, (3, 21))
    targets[0, :5] = -100
    grads = {}
    for mode in ("full", "chunked", "compiled"):
        model = small_model(arch, z_loss_weight=1e-3).train()
        if mode == "compiled":  # as training compiles it: the blocks and each loss chunk
            parallelize(model, world_size=1, compile=True)
            assert model.chunk_loss is not bm._chunk_loss
        if mode == "full":
            loss = lm_loss(model(ids), targets, 1e-3)
        else:
            original = bm.chunked_lm_loss.__defaults__
            bm.chunked_lm_loss.__defaults__ = (0.0, -100, 8, 0, None)  # many small chunks, always chunked
            try:
                loss = model(ids, targets=targets)
            finally:
                bm.chunked_lm_loss.__defaults__ = original
        loss.backward()
        grads[mode] = (loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()})
    for mode in ("chunked", "compiled"):
        assert grads["full"][0] == pytest.approx(grads[mode][0], rel=1e-5)
        for n, g in grads["full"][1].items():
            assert torch.allclose(g, grads[mode][1][n], atol=1e-6, rtol=1e-4), (mode, n)
