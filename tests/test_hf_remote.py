"""Directories written by `save_pretrained` open with HF's Auto classes (trust_remote_code=True),
as the released checkpoints do, and the remote code computes what our model and tokenizer compute:
logits, greedy generation (cached, left-padded batches too), the loss, token ids and text."""

import json

import pytest
import torch

from baichuan import hf
from baichuan.checkpoint import load_pretrained, save_pretrained
from baichuan.generate import SamplingParams, generate, generate_ids
from baichuan.model import lm_loss
from baichuan.tokenizer import Tokenizer
from conftest import assets
from test_model import small_model

transformers = pytest.importorskip("transformers")
from packaging.version import Version  # noqa: E402  (a dependency of transformers)

# from_pretrained's dtype argument: `dtype` from transformers 4.56, `torch_dtype` before
DTYPE_ARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"

FAMILIES = ["baichuan-7b", "baichuan2-7b", "baichuan-13b", "baichuan2-13b"]
EOS = 2


def open_hf(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True,
                                                             **{DTYPE_ARG: torch.float32}).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(our model, HF model) per family, the HF one opened from the directory ours was saved to."""
    root = tmp_path_factory.mktemp("hf_remote")
    cache = {}

    def get(arch, **kw):
        key = (arch, tuple(sorted(kw.items())))
        if key not in cache:
            model = small_model(arch, **kw)
            out = save_pretrained(model, root / f"{arch}-{len(cache)}")  # before any eval forward: raw NormHead rows
            cache[key] = model, open_hf(out), out
        return cache[key]
    return get


def ours_greedy(model, prompt, n):
    return list(generate_ids(model, prompt, SamplingParams(max_new_tokens=n, eos_token_ids=(EOS,))))


def hf_new_tokens(row, prompt_len):
    """New tokens of one generate() row, up to (not including) EOS, as our generator yields them."""
    new = row[prompt_len:].tolist()
    return new[: new.index(EOS)] if EOS in new else new


def test_directory_carries_the_remote_code(saved):
    model, _, out = saved("baichuan2-13b")
    for name in hf.MODEL_FILES:
        assert (out / name).read_text() == (hf.HERE / name).read_text()
    assert json.loads((out / "config.json").read_text())["auto_map"] == hf.CONFIG_AUTO_MAP
    again = load_pretrained(out)  # auto_map does not bother our own loader
    assert again.cfg == model.cfg
    ids = torch.tensor([[5, 17, 99, 42]])
    with torch.no_grad():
        assert torch.equal(again(ids), model(ids))


@pytest.mark.parametrize("name", ["baichuan-13b-chat", "baichuan2"])
def test_released_configs_read_like_ours(name):
    """The remote BaichuanConfig infers each released family as `config.from_hf_dict` does."""
    from baichuan.config import from_hf_dict
    from baichuan.hf.configuration_baichuan import BaichuanConfig
    d = json.loads(assets(name, "config.json").read_text())
    c, ours = BaichuanConfig(**d), from_hf_dict(d)
    assert (c.position_embedding, c.norm_head, c.rope_fp32, c.alibi_bias, c.model_max_length) == (
        ours.position, ours.norm_head, ours.rope_fp32, ours.alibi, ours.max_len)
    for arch, hidden, position in (("BaiChuanForCausalLM", 4096, "rope"), ("BaichuanForCausalLM", 4096, "rope"),
                                   ("BaichuanForCausalLM", 5120, "alibi")):
        assert BaichuanConfig(architectures=[arch], hidden_size=hidden).position_embedding == position


@pytest.mark.parametrize("arch,kw", [pytest.param(a, {}, id=a) for a in FAMILIES]
                         + [pytest.param("baichuan2-13b", {"alibi": "absolute"}, id="baichuan2-13b-absolute")])
def test_full_forward_equals_ours(saved, arch, kw):
    model, hfm, _ = saved(arch, **kw)
    assert type(hfm).__name__ == "BaichuanForCausalLM"
    c = hfm.config
    assert (c.position_embedding, c.norm_head, c.rope_fp32, c.alibi_bias) == (
        model.cfg.position, model.cfg.norm_head, model.cfg.rope_fp32, model.cfg.alibi)
    ids = torch.randint(3, model.cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), hfm(ids, use_cache=False).logits
    assert theirs.dtype == torch.float32
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_hf_save_round_trips_to_ours(saved, tmp_path, arch):
    """ours -> HF -> (HF save_pretrained) -> ours: same logits; HF re-saves the remote code."""
    model, hfm, _ = saved(arch)
    hfm.save_pretrained(tmp_path / "resaved")
    assert all((tmp_path / "resaved" / f).is_file() for f in (hf.CONFIG_FILE, hf.MODELING_FILE))
    back = load_pretrained(tmp_path / "resaved")
    assert back.cfg == model.cfg
    ids = torch.tensor([[5, 17, 99, 42, 7]])
    with torch.no_grad():
        torch.testing.assert_close(back(ids), model(ids), atol=1e-6, rtol=0)


def test_loss_equals_ours(saved):
    model, hfm, _ = saved("baichuan2-7b")
    ids = torch.randint(3, model.cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[0, :5] = -100
    with torch.no_grad():
        theirs = hfm(ids, labels=labels).loss
        ours = lm_loss(model(ids)[:, :-1], labels[:, 1:])
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", FAMILIES)
def test_greedy_generate_equals_ours(saved, arch):
    model, hfm, _ = saved(arch)
    prompt = [5, 17, 99, 42, 7, 230]
    ours = ours_greedy(model, prompt, 8)
    out = hfm.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, use_cache=True,
                       repetition_penalty=1.0)
    assert hf_new_tokens(out[0], len(prompt)) == ours


@pytest.mark.parametrize("arch", FAMILIES)
def test_left_padded_batch_generate_equals_ours(saved, arch):
    """Each row of a left-padded batch generates what the prompt alone does: RoPE positions come
    from the mask, ALiBi distances are unchanged by padding on the left, pads are masked out."""
    model, hfm, _ = saved(arch)
    prompts = [[5, 17, 99, 42, 7, 230, 11, 64], [120, 33, 8]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = hfm.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, use_cache=True,
                       repetition_penalty=1.0, pad_token_id=0)
    for row, p in zip(out, prompts, strict=True):
        assert hf_new_tokens(row, width) == ours_greedy(model, p, 6)


@pytest.mark.parametrize("arch", FAMILIES)
def test_sampled_generate_samples_from_full_forward_logits(saved, arch):
    """Sampling through the cache, left-padded batch: the logits of every step (what HF samples
    from, before its processors) are our full forward's over the sequence so far."""
    model, hfm, _ = saved(arch)
    prompts = [[5, 17, 99, 42, 7, 230, 11], [120, 33, 8]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(0)
    out = hfm.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=True, temperature=1.0, top_k=0,
                       top_p=1.0, use_cache=True, pad_token_id=0, return_dict_in_generate=True, output_logits=True)
    assert len(out.logits) == out.sequences.shape[1] - width
    for row, p in enumerate(prompts):
        new = hf_new_tokens(out.sequences[row], width)
        with torch.no_grad():
            ours = model(torch.tensor([p + new]))[0]
        for step in range(min(len(new) + 1, len(out.logits))):  # up to the step that sampled EOS
            torch.testing.assert_close(out.logits[step][row], ours[len(p) + step - 1], atol=1e-4, rtol=0)


SAMPLE = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
          "The quick brown fox jumps over the lazy dog; 2024-05-01 it cost $3.50.",
          "混合 mixed 文本\n\tdef f(x):\n        return x ** 2  # 缩进\n",
          "生僻字：龘靐齉爩, emoji 🙂"]


@pytest.fixture(scope="module")
def hf_tok(small_tokenizer, tmp_path_factory):
    out = small_tokenizer.save(tmp_path_factory.mktemp("hf_tok") / "tok")
    assert json.loads((out / "tokenizer_config.json").read_text())["auto_map"] == hf.TOKENIZER_AUTO_MAP
    return transformers.AutoTokenizer.from_pretrained(out, trust_remote_code=True)


def test_tokenizer_encodes_and_decodes_like_ours(small_tokenizer, hf_tok):
    assert type(hf_tok).__name__ == "BaichuanTokenizer"
    assert len(hf_tok) == small_tokenizer.vocab_size
    assert (hf_tok.unk_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (0, 1, 2, 0)
    for text in SAMPLE:
        ids = small_tokenizer.encode(text)
        assert hf_tok(text).input_ids == ids  # no BOS
        assert hf_tok.decode(ids) == small_tokenizer.decode(ids) == text
    ids = [1] + small_tokenizer.encode(SAMPLE[1]) + [2, 2] + small_tokenizer.encode("好") + [2]
    for skip in (True, False):
        assert hf_tok.decode(ids, skip_special_tokens=skip) == small_tokenizer.decode(ids, skip_special_tokens=skip)
    assert hf_tok.decode([0, 1, 2], skip_special_tokens=True) == ""


def test_tokenizer_save_pretrained_round_trips(small_tokenizer, hf_tok, tmp_path):
    """HF's save_pretrained writes a directory that AutoTokenizer opens again, remote code included."""
    hf_tok.save_pretrained(tmp_path / "resaved")
    assert (tmp_path / "resaved" / hf.TOKENIZER_FILE).is_file()
    again = transformers.AutoTokenizer.from_pretrained(tmp_path / "resaved", trust_remote_code=True)
    for text in SAMPLE:
        assert again(text).input_ids == small_tokenizer.encode(text)


def test_tokenizer_pads_left_and_pickles(small_tokenizer, hf_tok):
    import pickle
    hf_tok.padding_side = "left"
    batch = hf_tok(SAMPLE[:2], padding=True)
    lens = [len(small_tokenizer.encode(t)) for t in SAMPLE[:2]]
    width = max(lens)
    for row, mask, text, n in zip(batch.input_ids, batch.attention_mask, SAMPLE[:2], lens, strict=True):
        assert row == [0] * (width - n) + small_tokenizer.encode(text) and mask == [0] * (width - n) + [1] * n
    again = pickle.loads(pickle.dumps(hf_tok))
    assert again(SAMPLE[0]).input_ids == small_tokenizer.encode(SAMPLE[0])


@pytest.mark.parametrize("name,text,ref", [
    ("baichuan2", "你好，世界！", [16829, 65, 2089, 67]),
    ("baichuan2", "<reserved_106>你好<reserved_107>", [195, 16829, 196]),
    ("baichuan1", "答案：A", [31106, 6787, 77, 31132]),   # NFKC + dummy prefix
])
def test_released_tokenizers_through_the_remote_code(tmp_path, name, text, ref):
    tok = Tokenizer.load(assets(name, "tokenizer.model"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(tok.save(tmp_path / name), trust_remote_code=True)
    assert hf_tok(text).input_ids == tok.encode(text) == ref


def test_end_to_end_text_generation(tiny_model_dir, small_tokenizer):
    """Our tiny directory (model + tokenizer) through AutoTokenizer + AutoModelForCausalLM: the
    same text as `baichuan.generate`."""
    hf_tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir, trust_remote_code=True)
    hfm = open_hf(tiny_model_dir)
    prompt = "春眠不觉晓，"
    inputs = hf_tok(prompt, return_tensors="pt")
    out = hfm.generate(**inputs, max_new_tokens=10, do_sample=False, repetition_penalty=1.0)
    theirs = hf_tok.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True)
    model = load_pretrained(tiny_model_dir)
    ours = generate(model, small_tokenizer, prompt, SamplingParams(max_new_tokens=10))
    assert theirs == ours
