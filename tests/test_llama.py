"""LLaMA-family checkpoints (LLaMA-2, Yi): grouped-query attention and tied heads are config fields
of the one model; directories in HF's Llama layout load (Yi's ln1/ln2 names too) and are written
back in it; logits and cached decoding equal HF `LlamaForCausalLM`'s; the KV cache holds the KV
heads only; quantize, LoRA fine-tuning and GGUF export take them."""

import json

import pytest
import torch

from baichuan.checkpoint import load_pretrained, save_pretrained
from baichuan.config import load_config, preset
from baichuan.errors import BaichuanError
from baichuan.generate import SamplingParams, generate_ids
from baichuan.infer.engine import Engine
from baichuan.model import build

transformers = pytest.importorskip("transformers")

GQA = dict(vocab_size=300, hidden_size=64, intermediate_size=160, num_layers=3, num_heads=8, num_kv_heads=2,
           max_len=128, rope_theta=500000.0, family="llama")


def llama_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = build(preset("baichuan-7b", **{**GQA, **kw})).eval()
    with torch.no_grad():  # non-trivial norms, so a norm loaded into the wrong place would show
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    return model


def hf_dir(tmp_path, tie=False, yi=False):
    """An HF LlamaForCausalLM directory written by transformers itself (GQA 8/2)."""
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                                   num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                                   rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=tie)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    out = tmp_path / ("yi" if yi else "llama")
    hf.save_pretrained(out)
    if yi:  # Yi's first release: the same model with its norms named ln1 / ln2
        from safetensors.torch import load_file, save_file
        f = out / "model.safetensors"
        state = {k.replace("input_layernorm", "ln1").replace("post_attention_layernorm", "ln2"): v
                 for k, v in load_file(f).items()}
        save_file(state, f, metadata={"format": "pt"})
        d = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps(d | {"architectures": ["YiForCausalLM"], "model_type": "Yi"}))
    return hf, out


@pytest.mark.parametrize("tie,yi", [(False, False), (True, False), (False, True)], ids=["untied", "tied", "yi"])
def test_hf_llama_directories_load_with_equal_logits(tmp_path, tie, yi):
    hf, d = hf_dir(tmp_path, tie, yi)
    model = load_pretrained(d)
    cfg = model.cfg
    assert (cfg.family, cfg.kv_heads, cfg.num_heads, cfg.tie_word_embeddings, cfg.rope_theta) == (
        "llama", 2, 8, tie, 500000.0)
    assert model.lm_head.weight is model.model.embed_tokens.weight if tie else True
    ids = torch.randint(0, 300, (2, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-4, rtol=0)


def test_cached_decoding_equals_hf_and_the_cache_holds_kv_heads_only(tmp_path):
    hf, d = hf_dir(tmp_path)
    model = load_pretrained(d)
    prompt = [5, 17, 99, 42, 7, 230]
    ours = list(generate_ids(model, prompt, SamplingParams(max_new_tokens=10, eos_token_ids=())))
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None,
                         pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == theirs
    engine = Engine(model, max_batch=2, max_len=64)
    assert engine.cache.k[0].shape == (2, 2, 64, 8)  # 2 KV heads of 8 dims, not 8 heads
    assert list(engine.generate(prompt, SamplingParams(max_new_tokens=10, eos_token_ids=()))) == theirs


def test_our_save_is_a_directory_hf_llama_opens(tmp_path):
    model = llama_model(tie_word_embeddings=True)
    d = save_pretrained(model, tmp_path / "ours")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "auto_map" not in cfg
    assert not (d / "modeling_baichuan.py").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(d).eval()  # HF's own Llama class, no remote code
    ids = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-4, rtol=0)
    assert load_config(d) == model.cfg


def test_bad_llama_configs_are_one_line_errors(tmp_path):
    _, d = hf_dir(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    for change, message in ((dict(rope_scaling={"type": "linear", "factor": 2.0}), "RoPE scaling"),
                            (dict(attention_bias=True), "attention_bias"),
                            (dict(num_key_value_heads=3), "num_kv_heads 3 must divide num_heads 8")):
        (d / "config.json").write_text(json.dumps(cfg | change))
        with pytest.raises(BaichuanError, match=message):
            load_pretrained(d)
    (d / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file
    state = load_file(d / "model.safetensors")
    del state["model.layers.1.self_attn.v_proj.weight"]
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BaichuanError, match=r"model\.layers\.1\.self_attn\.v_proj\.weight is missing"):
        load_pretrained(d)


def test_gqa_quantizes_and_fine_tunes(tmp_path):
    from baichuan.quant import quantize_dir
    from baichuan.train.lora import add_lora, merge_lora
    model = llama_model()
    d = save_pretrained(model, tmp_path / "m")
    q = load_pretrained(quantize_dir(d, tmp_path / "m-int8", "int8"))
    ids = torch.randint(0, 300, (1, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(ids)
        assert (q(ids) - ref).abs().max() < 0.05 * ref.abs().max()
    add_lora(model, r=4, alpha=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    loss = model(ids, targets=ids)
    loss.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        before = model(ids)
    merge_lora(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_gguf_export_runs_in_llama_cpp_and_imports_back(tmp_path, small_tokenizer, tie):
    import numpy as np
    llama_cpp = pytest.importorskip("llama_cpp")
    from baichuan.gguf.export import export_gguf
    from baichuan.gguf.importer import import_gguf
    model = llama_model(vocab_size=small_tokenizer.vocab_size, tie_word_embeddings=tie)
    d = save_pretrained(model, tmp_path / "m", tokenizer=small_tokenizer)
    r = export_gguf(d, tmp_path / "m.gguf", "f32", progress=False)
    ids = torch.randint(3, small_tokenizer.vocab_size, (40,), generator=torch.Generator().manual_seed(6)).tolist()
    llm = llama_cpp.Llama(model_path=str(r.path), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    torch.testing.assert_close(torch.from_numpy(np.array(llm.scores[:len(ids)], dtype=np.float32)), ours,
                               atol=2e-3, rtol=0)
    back = load_pretrained(import_gguf(r.path, tmp_path / "back", progress=False))
    assert back.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(back(torch.tensor([ids]))[0], ours, atol=1e-5, rtol=0)
