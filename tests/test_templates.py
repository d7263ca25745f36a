"""Chat templates as data: a LLaMA-family tokenizer directory's Jinja chat_template gives the prompt
ids HF's apply_chat_template gives (LLaMA-2-Chat's format with a BOS in the template, Yi-Chat's
ChatML with added tokens; HF's legacy and non-legacy handling of text after a special token); its
plain prompts start with BOS where add_bos_token says so; the files survive a save."""

import json
import shutil

import pytest

from baichuan import corpus
from baichuan.errors import BaichuanError
from baichuan.tokenizer import Tokenizer, build_chat_input, chat_template_for, fit_chat

transformers = pytest.importorskip("transformers")

# LLaMA-2-Chat's prompt format, as a template of our own writing
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
          "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
          "{% for message in messages %}"
          "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
          "{% if message['role'] == 'user' %}"
          "{% set content = ('<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'])"
          " if loop.first and system else message['content'] %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% else %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
# Yi-Chat's: ChatML
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "你好，请介绍一下长城。"}],
    [{"role": "system", "content": "You are a helpful assistant. 请用中文回答。"},
     {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4，当然。"},
     {"role": "user", "content": "  And 3 + 3 ?\n"}],
]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    """A SentencePiece model set up as LLaMA's: BPE, dummy prefix, no normalization, byte fallback,
    split digits; ChatML markers as user-defined pieces (as in Yi's)."""
    import sentencepiece as spm
    root = tmp_path_factory.mktemp("llama_sp")
    text = root / "train.txt"
    with open(text, "w", encoding="utf-8") as f:
        for lang, n in (("en", 150), ("zh", 4)):
            for i, t in enumerate(corpus.iter_texts(lang=lang)):
                if i >= n:
                    break
                f.write(t + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(root / "sp"), vocab_size=2000, model_type="bpe", byte_fallback=True,
        split_digits=True, add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        character_coverage=0.98, bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        user_defined_symbols=["<|im_start|>", "<|im_end|>"], minloglevel=2)
    return root / "sp.model"


def tokenizer_dir(root, spm_model, name, template, add_bos, legacy):
    d = root / name
    d.mkdir()
    shutil.copy(spm_model, d / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": add_bos, "add_eos_token": False,
              "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": template,
              "model_max_length": 4096, "clean_up_tokenization_spaces": False}
    if legacy is not None:
        config["legacy"] = legacy
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


def hf_ids(hf_tok, messages):
    out = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


@pytest.mark.parametrize("template,add_bos", [(LLAMA2, True), (CHATML, False)], ids=["llama2", "chatml"])
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "non-legacy"])
def test_prompt_ids_equal_hf_apply_chat_template(tmp_path, spm_model, template, add_bos, legacy):
    d = tokenizer_dir(tmp_path, spm_model, "tok", template, add_bos, legacy)
    tok, hf_tok = Tokenizer.load(d), transformers.AutoTokenizer.from_pretrained(d)
    assert chat_template_for(tok) == "jinja"
    for messages in CONVERSATIONS:
        if template == LLAMA2 and messages[-1]["role"] != "user":
            continue
        assert build_chat_input(tok, messages, "jinja") == hf_ids(hf_tok, messages), messages
    # plain prompts: BOS as configured. (Not runs of spaces: there HF's converted BPE merges them
    # differently from SentencePiece, which the models were trained with and which we follow.)
    for text in ("你好，世界", "Hello world, 1234!", "line one\nline two"):
        assert tok.encode_prompt(text) == hf_tok(text).input_ids, text


def test_fit_chat_keeps_the_newest_rounds_in_the_template(tmp_path, spm_model):
    tok = Tokenizer.load(tokenizer_dir(tmp_path, spm_model, "tok", CHATML, False, None))
    messages = [{"role": "user", "content": "第一个问题" * 20}, {"role": "assistant", "content": "回答" * 20},
                {"role": "user", "content": "最新的问题"}]
    full = build_chat_input(tok, messages, "jinja")
    ids, _ = fit_chat(tok, messages, "jinja", max_new_tokens=16, max_len=len(full) + 8)
    assert ids == build_chat_input(tok, messages[2:], "jinja")  # the old round did not fit; the question did
    ids, _ = fit_chat(tok, messages, "jinja", max_new_tokens=16, max_len=len(full) + 16)
    assert ids == full


def test_template_errors_and_the_files_survive_a_save(tmp_path, spm_model):
    d = tokenizer_dir(tmp_path, spm_model, "tok", LLAMA2, True, False)
    tok = Tokenizer.load(d)
    with pytest.raises(BaichuanError, match="roles must alternate"):
        build_chat_input(tok, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "jinja")
    out = tok.save(tmp_path / "saved")
    assert (out / "tokenizer_config.json").read_bytes() == (d / "tokenizer_config.json").read_bytes()
    again = Tokenizer.load(out)
    assert again.add_bos and again.chat_template == LLAMA2
    assert not (out / "tokenization_baichuan.py").exists()


@pytest.mark.parametrize("template,add_bos", [(LLAMA2, True), (CHATML, False)], ids=["llama2", "chatml"])
def test_sft_learns_the_assistant_turns_of_the_template(tmp_path, spm_model, template, add_bos):
    """SFT on a LLaMA-family directory renders conversations in its own template and learns exactly
    the assistant turns with the marker that closes each (EOS for LLaMA-2, <|im_end|> for ChatML)."""
    from baichuan.train.chat_data import IGNORE, render
    tok = Tokenizer.load(tokenizer_dir(tmp_path, spm_model, "tok", template, add_bos, False))
    messages = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2。"},
                {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4。"}]
    ids, labels = render(tok, messages, tok.eos_id)
    assert len(ids) == len(labels) and all(label in (IGNORE, i) for i, label in zip(ids, labels))
    learned = tok.sp.decode([i for i, label in zip(ids, labels) if label != IGNORE])
    if template == CHATML:
        assert learned == "2。<|im_end|>\n4。<|im_end|>\n"
    else:
        assert learned.split() == ["2。", "4。"]
        assert [label for label in labels if label == tok.eos_id] == [tok.eos_id] * 2
    prompt = build_chat_input(tok, messages[:3], "jinja")  # what chat sends before the last answer
    assert ids[:len(prompt)] == prompt


def test_a_chat_eos_token_of_its_own_stops_replies(tmp_path, spm_model):
    """Yi-Chat's config names <|im_end|> as eos_token: replies stop there as well as at </s>."""
    d = tokenizer_dir(tmp_path, spm_model, "tok", CHATML, False, False)
    config = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps(config | {"eos_token": "<|im_end|>"}))
    tok = Tokenizer.load(d)
    assert tok.stop_ids == (tok.eos_id, tok.sp.piece_to_id("<|im_end|>"))


@pytest.mark.parametrize("template,add_bos", [(LLAMA2, True), (CHATML, False)], ids=["llama2", "chatml"])
def test_gguf_of_a_llama_family_model_carries_its_own_template(tmp_path, spm_model, template, add_bos, monkeypatch):
    """Exported to GGUF, llama.cpp's chat completion renders the directory's own template to our ids.
    (llama.cpp starts the text after every special token with the dummy-prefix "▁", as HF's legacy
    mode and Meta's reference encoding do; HF's non-legacy mode does not, and cannot be expressed
    in a GGUF.)"""
    llama_cpp = pytest.importorskip("llama_cpp")
    from baichuan.checkpoint import save_pretrained
    from baichuan.gguf.export import export_gguf
    from test_llama import llama_model
    tok = Tokenizer.load(tokenizer_dir(tmp_path, spm_model, "tok", template, add_bos, True))
    d = save_pretrained(llama_model(vocab_size=tok.vocab_size), tmp_path / "m", tokenizer=tok)
    r = export_gguf(d, tmp_path / "m.gguf", "f32", progress=False)
    llm = llama_cpp.Llama(model_path=str(r.path), n_ctx=256, verbose=False)
    seen = []

    def capture(prompt, **kw):
        seen.append(prompt)
        raise StopIteration
    monkeypatch.setattr(llm, "create_completion", capture)
    for messages in CONVERSATIONS:
        with pytest.raises(StopIteration):
            llm.create_chat_completion(messages=messages, max_tokens=1)
        assert seen[-1] == build_chat_input(Tokenizer.load(d), messages, "jinja"), messages
    assert "TEMPLATE" not in r.modelfile.read_text()  # Ollama takes the GGUF's own template
