"""GGUF export against real llama.cpp (llama-cpp-python, built from source by the test extras):
each family at a depth llama.cpp's own Baichuan graph gets wrong computes our logits at every
position; its tokenizer gives our ids; its chat completion builds our prompt ids; llama.cpp's
quantizer makes the quantized types; bad input fails in one line and leaves no file."""

import json

import numpy as np
import pytest
import torch

from baichuan.checkpoint import save_pretrained
from baichuan.errors import BaichuanError
from baichuan.gguf.export import export_gguf
from baichuan.tokenizer import Tokenizer, build_chat_input, chat_template_for
from conftest import assets
from test_model import small_model

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

FAMILIES = ["baichuan-7b", "baichuan2-7b", "baichuan-13b", "baichuan2-13b"]
# 3 layers: llama.cpp's "baichuan" graph would run it with no position code at all. ALiBi with 6
# heads: the slopes of a head count that is not a power of two (the 13B models have 40).
SHAPE = {"rope": dict(num_layers=3, hidden_size=64, num_heads=4),
         "alibi": dict(num_layers=3, hidden_size=96, num_heads=6)}


def llama(path, **kw):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, n_batch=256, logits_all=True,
                           verbose=False, **kw)


def exported(tmp_path, arch, tok, outtype="f32", **kw):
    position = "rope" if "7b" in arch else "alibi"
    model = small_model(arch, vocab_size=tok.vocab_size, **{**SHAPE[position], **kw})
    d = save_pretrained(model, tmp_path / arch, tokenizer=tok)
    return model, export_gguf(d, tmp_path / f"{arch}-{outtype}.gguf", outtype, progress=False)


def llama_logits(path, ids):
    llm = llama(path)
    llm.eval(ids)
    return torch.from_numpy(np.array(llm.scores[:len(ids)], dtype=np.float32))


@pytest.mark.parametrize("arch", FAMILIES)
def test_llama_cpp_computes_our_logits_at_every_position(tmp_path, small_tokenizer, arch):
    model, r = exported(tmp_path, arch, small_tokenizer)
    assert r.arch == ("llama" if "7b" in arch else "refact")
    ids = torch.randint(3, small_tokenizer.vocab_size, (48,), generator=torch.Generator().manual_seed(3)).tolist()
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
    theirs = llama_logits(r.path, ids)
    assert ours.abs().max() > 0.5  # logits of a scale at which a missing position code would show
    torch.testing.assert_close(theirs, ours, atol=2e-3, rtol=0)


def test_the_head_written_is_the_normalized_one(tmp_path, small_tokenizer):
    model, r = exported(tmp_path, "baichuan2-7b", small_tokenizer)
    head = {t.name: t for t in gguf.GGUFReader(r.path).tensors}["output.weight"]
    rows = np.linalg.norm(np.array(head.data), axis=1)
    assert np.allclose(rows, 1, atol=1e-5)
    assert not torch.allclose(model.lm_head.weight.norm(dim=1), torch.ones(1), atol=0.1)  # it was not before


TEXTS = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "The quick brown fox jumps over the lazy dog.",
         "2024年12月05日，价格是3.14159元；电话 13800138000", "a   b\t\tc\n\n  d    end  ", "生僻字：龘靐齉爩 emoji 🙂👍",
         "def f(x):\n        return x ** 2  # 缩进\n", "混合 mixed 文本 with English words", " leading space and trailing "]


@pytest.mark.parametrize("name", ["baichuan1", "baichuan2"])
def test_llama_cpp_tokenizes_like_ours(tmp_path, name):
    """The released tokenizers through llama.cpp: the same ids for Chinese, English, digits,
    whitespace runs, rare characters (byte fallback) and code; the chat role markers in raw text
    too for Baichuan 2. Baichuan 1 normalizes text with SentencePiece's NFKC table first ("；"
    becomes ";"), which llama.cpp's tokenizer does not do (its own converter neither): there the
    ids are ours for text in that normal form, and differ for text that is not. (A role marker in
    raw Baichuan 1 text is followed by an extra "▁" in llama.cpp; chat prompts are unaffected,
    as each message is encoded on its own, test_llama_cpp_chat_completion_builds_our_prompt_ids.)"""
    tok = Tokenizer.load(assets(name, "tokenizer.model"))
    _, r = exported(tmp_path, "baichuan2-7b" if name == "baichuan2" else "baichuan-7b", tok, num_layers=1)
    llm = llama_cpp.Llama(model_path=str(r.path), vocab_only=True, verbose=False)
    user, assistant = tok.piece(195), tok.piece(196)
    texts = TEXTS + ([f"{user}你好{assistant}我是百川{user}1+1=?"] if name == "baichuan2" else [])
    nfkc = name == "baichuan1"

    def normal_form(text):  # SentencePiece's own normalizer, without its dummy prefix and escaping
        return tok.sp.normalize(text).removeprefix("▁").replace("▁", " ") if nfkc else text
    for text in texts:
        assert llm.tokenize(normal_form(text).encode(), add_bos=False, special=False) == tok.encode(text), text
    if nfkc:
        assert normal_form("元；电话") == "元;电话"
        assert llm.tokenize("元；电话".encode(), add_bos=False, special=False) != tok.encode("元；电话")
    assert llm.token_eos() == tok.eos_id and llm.token_bos() == tok.bos_id


CONVERSATIONS = [
    [{"role": "user", "content": "你好"}],
    [{"role": "user", "content": "1+1等于几？"}, {"role": "assistant", "content": "等于2。"},
     {"role": "user", "content": "Then 2+2?"}],
]


@pytest.mark.parametrize("name", ["baichuan1", "baichuan2"])
def test_llama_cpp_chat_completion_builds_our_prompt_ids(tmp_path, name, monkeypatch):
    """The chat template inside the GGUF, as llama-cpp-python's chat completion renders and
    tokenizes it, gives build_chat_input's ids (Baichuan-13B-Chat's format for the Baichuan 1
    tokenizer, Baichuan2-Chat's otherwise; a system prompt for the latter)."""
    tok = Tokenizer.load(assets(name, "tokenizer.model"))
    _, r = exported(tmp_path, "baichuan2-13b" if name == "baichuan2" else "baichuan-13b", tok, num_layers=1)
    llm = llama(r.path)
    template = chat_template_for(tok)
    conversations = CONVERSATIONS + ([[{"role": "system", "content": "你是百川。"}] + CONVERSATIONS[1]]
                                     if template == "baichuan2" else [])
    seen = []

    def capture(prompt, **kw):
        seen.append(prompt)
        raise StopIteration  # the prompt is all this test needs
    monkeypatch.setattr(llm, "create_completion", capture)
    for messages in conversations:
        with pytest.raises(StopIteration):
            llm.create_chat_completion(messages=messages, max_tokens=1)
        assert seen[-1] == build_chat_input(tok, messages, template), messages


def test_quantized_types_come_from_llama_cpp_and_run(tmp_path, small_tokenizer):
    ids = torch.randint(3, small_tokenizer.vocab_size, (64,), generator=torch.Generator().manual_seed(4)).tolist()
    model, f32 = exported(tmp_path, "baichuan2-7b", small_tokenizer, hidden_size=256, intermediate_size=512)
    reference = llama_logits(f32.path, ids)
    kinds = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K"}
    for outtype, kind in kinds.items():
        r = export_gguf(f32.path.parent / "baichuan2-7b", tmp_path / f"{outtype}.gguf", outtype, progress=False)
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(r.path).tensors}
        assert types["blk.0.ffn_up.weight"] == kind and types["blk.0.ffn_norm.weight"] == "F32"
        assert r.bytes < f32.bytes / (3 if outtype == "q8_0" else 5)
        agree = (llama_logits(r.path, ids).argmax(-1) == reference.argmax(-1)).float().mean()
        assert agree > (0.9 if outtype == "q8_0" else 0.6), (outtype, agree)


def test_an_int8_directory_is_refused_with_what_to_export_instead(tmp_path, small_tokenizer):
    from baichuan.quant import quantize_dir
    model = small_model("baichuan-7b", vocab_size=small_tokenizer.vocab_size)
    d = save_pretrained(model, tmp_path / "m", tokenizer=small_tokenizer)
    q = quantize_dir(d, tmp_path / "m-int8", "int8")
    with pytest.raises(BaichuanError, match="export the full-precision directory it was made from with --outtype q8_0"):
        export_gguf(q, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf"))


def test_a_failed_export_leaves_no_file_and_a_bad_shape_names_the_tensor(tmp_path, small_tokenizer, monkeypatch):
    model = small_model("baichuan-7b", vocab_size=small_tokenizer.vocab_size)
    d = save_pretrained(model, tmp_path / "m", tokenizer=small_tokenizer)
    calls = {"n": 0}
    real = gguf.GGUFWriter.write_tensor_data

    def failing(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(self, *a, **kw)
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", failing)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(d, tmp_path / "out.gguf", "f16", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no file, no partial left behind
    monkeypatch.undo()
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] += 8
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match=r"tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape"):
        export_gguf(d, tmp_path / "out.gguf", "f16", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


@pytest.mark.parametrize("arch", ["baichuan2-7b", "baichuan-13b"])
@pytest.mark.parametrize("outtype", ["f32", "bf16", "q8_0"])
def test_import_round_trips_to_the_same_model(tmp_path, small_tokenizer, arch, outtype):
    """f32 -> GGUF -> directory: the same config, tokenizer and logits (bf16 and q8_0 within their
    rounding); every stage reads the directory (here: load_pretrained and the tokenizer)."""
    from baichuan.checkpoint import load_pretrained
    from baichuan.gguf.importer import import_gguf
    model, f32 = exported(tmp_path, arch, small_tokenizer)
    r = f32 if outtype == "f32" else export_gguf(tmp_path / arch, tmp_path / f"x.{outtype}.gguf", outtype,
                                                  progress=False)
    back = import_gguf(r.path, tmp_path / "back", progress=False)
    again = load_pretrained(back)
    assert again.cfg == model.cfg
    assert Tokenizer.load(back).model_proto == small_tokenizer.model_proto
    ids = torch.randint(3, small_tokenizer.vocab_size, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours, theirs = model(ids), again(ids)
    tolerance = {"f32": 1e-5, "bf16": 5e-2, "q8_0": 5e-2}[outtype]
    torch.testing.assert_close(theirs, ours, atol=tolerance * ours.abs().max().item(), rtol=0)


def test_bad_gguf_files_are_one_line_errors(tmp_path, small_tokenizer):
    from baichuan.gguf.importer import import_gguf
    _, r = exported(tmp_path, "baichuan-7b", small_tokenizer)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(r.path.read_bytes()[:5000])
    with pytest.raises(BaichuanError, match="cut.gguf: not a readable GGUF file"):
        import_gguf(cut, tmp_path / "a", progress=False)
    other = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(str(other), "gpt2")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(BaichuanError, match="architecture 'gpt2' is not a Baichuan model"):
        import_gguf(other, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def converter_style_gguf(model, tok, path, embedding_type=np.float32):
    """A file laid out as llama.cpp's own converter writes a Baichuan release (convert_hf_to_gguf.py,
    conversion/baichuan.py): architecture "baichuan", W_pack split with q/k rows in llama.cpp's RoPE
    order for every family, the head as stored (raw NormHead rows), the SentencePiece vocabulary."""
    from sentencepiece import sentencepiece_model_pb2
    from baichuan.gguf.format import rope_rows_to_gguf
    cfg, h = model.cfg, model.cfg.hidden_size
    w = gguf.GGUFWriter(str(path), "baichuan")
    for key, value in (("context_length", cfg.max_len), ("embedding_length", h), ("block_count", cfg.num_layers),
                       ("feed_forward_length", cfg.intermediate_size), ("attention.head_count", cfg.num_heads),
                       ("attention.head_count_kv", cfg.num_heads), ("rope.dimension_count", cfg.head_dim)):
        w.add_uint32(f"baichuan.{key}", value)
    w.add_float32("baichuan.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tok.model_proto)
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece for p in proto.pieces])
    w.add_token_scores([p.score for p in proto.pieces])
    w.add_token_types([p.type for p in proto.pieces])
    w.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    state = model.state_dict()
    w.add_tensor("token_embd.weight", state["model.embed_tokens.weight"].numpy().astype(embedding_type))
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        q, k, v = state[p + "self_attn.W_pack.weight"].split(h)
        for name, t in (("attn_norm", state[p + "input_layernorm.weight"]), ("attn_q", rope_rows_to_gguf(q, cfg.num_heads)),
                        ("attn_k", rope_rows_to_gguf(k, cfg.num_heads)), ("attn_v", v),
                        ("attn_output", state[p + "self_attn.o_proj.weight"]),
                        ("ffn_norm", state[p + "post_attention_layernorm.weight"]),
                        ("ffn_gate", state[p + "mlp.gate_proj.weight"]), ("ffn_up", state[p + "mlp.up_proj.weight"]),
                        ("ffn_down", state[p + "mlp.down_proj.weight"])):
            w.add_tensor(f"blk.{i}.{name}.weight", t.contiguous().numpy())
    w.add_tensor("output_norm.weight", state["model.norm.weight"].numpy())
    w.add_tensor("output.weight", state["lm_head.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch,layers", [("baichuan-7b", 32), ("baichuan-13b", 40)])
def test_llama_cpp_converter_files_import_to_what_llama_cpp_runs(tmp_path, small_tokenizer, arch, layers):
    """A released shape as llama.cpp's converter writes it imports to a directory whose logits are
    the ones llama.cpp computes from that file (its Baichuan graph is right at 32 and 40 layers)."""
    from baichuan.checkpoint import load_pretrained
    from baichuan.gguf.importer import import_gguf
    position = "rope" if "7b" in arch else "alibi"
    model = small_model(arch, vocab_size=small_tokenizer.vocab_size, **{**SHAPE[position], "num_layers": layers})
    path = converter_style_gguf(model, small_tokenizer, tmp_path / "converted.gguf")
    back = load_pretrained(import_gguf(path, tmp_path / "back", progress=False))
    assert (back.cfg.position, back.cfg.num_layers) == (position, layers)
    ids = torch.randint(3, small_tokenizer.vocab_size, (32,), generator=torch.Generator().manual_seed(7)).tolist()
    with torch.no_grad():
        ours = back(torch.tensor([ids]))[0]
        torch.testing.assert_close(ours, model(torch.tensor([ids]))[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(llama_logits(path, ids), ours, atol=2e-3, rtol=0)


def test_a_tensor_type_that_cannot_be_read_is_named(tmp_path, small_tokenizer):
    from baichuan.gguf.importer import import_gguf
    model = small_model("baichuan-7b", vocab_size=small_tokenizer.vocab_size, **{**SHAPE["rope"], "num_layers": 32})
    path = converter_style_gguf(model, small_tokenizer, tmp_path / "odd.gguf", embedding_type=np.int32)
    with pytest.raises(BaichuanError, match="tensor 'token_embd.weight' has type I32, which gguf-py cannot dequantize"):
        import_gguf(path, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_the_gguf_chat_template_renders_tool_use_as_the_server_writes_it():
    """HF's apply_chat_template over the exported Baichuan 2 template, with `tools`, assistant
    `tool_calls` (arguments as an object and as a string) and `tool` results, gives the ids the
    server, chat and SFT build for the same conversation (toolcalls.py's format)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from baichuan.gguf.template import jinja_chat_template
    from baichuan.templates import encode_chat_text
    from baichuan.toolcalls import check_tools, plain_messages
    tok = Tokenizer.load(assets("baichuan2", "tokenizer.model"))
    weather = {"type": "function", "function": {"name": "get_weather", "description": "查询天气", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    calls = [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "北京"}}},
             {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "上海"}'}}]
    for system in ([{"role": "system", "content": "你是百川。"}], []):
        messages = system + [{"role": "user", "content": "北京和上海天气？"},
                             {"role": "assistant", "content": None, "tool_calls": calls},
                             {"role": "tool", "content": "晴"}, {"role": "tool", "content": "小雨"},
                             {"role": "assistant", "content": "北京晴，上海小雨。"}, {"role": "user", "content": "谢谢"}]
        text = render_jinja_template(conversations=[messages], tools=[weather], chat_template=jinja_chat_template(tok),
                                     add_generation_prompt=True)[0][0]
        assert "<tool_response>晴</tool_response>\n<tool_response>小雨</tool_response>" in text
        assert encode_chat_text(tok, text) == build_chat_input(tok, plain_messages(messages, check_tools([weather])),
                                                               "baichuan2")
