"""Tokenizer, chat prompts and tokenizer training against the released Baichuan tokenizer.model
files (../shared/baichuan-assets, skipped when absent). Every expected id list is either a
reference encoding from the spec / assets README or built by hand from those encodings."""

import json
from pathlib import Path

import pytest

from baichuan.errors import BaichuanError
from baichuan.eval.tokenizer_report import compression_report, format_report
from baichuan.tokenizer import (ASSISTANT_ID, MAX_SENTENCE_BYTES, USER_ID, Tokenizer, _split_sentences,
                                build_chat_input, build_chat_input_v1, build_chat_input_v2, reserved_layout,
                                train_tokenizer)

from conftest import assets as fixture_path


@pytest.fixture(scope="module")
def b1():
    return Tokenizer.load(fixture_path("baichuan1", "tokenizer.model"))


@pytest.fixture(scope="module")
def b2():
    return Tokenizer.load(fixture_path("baichuan2"))   # a directory works too


# Reference encodings (spec §4, assets README): raw SentencePiece, no BOS.
B2_REF = {
    "A": [92343], "B": [92359], "C": [92344], "D": [92363],
    "Hello world": [23160, 2063],
    "12345.67": [92336, 92338, 92354, 92369, 92358, 72, 92373, 92383],
    "你好，世界！": [16829, 65, 2089, 67],
    "<reserved_106>你好<reserved_107>": [195, 16829, 196],
    "def f():\n    return 1": [5273, 1365, 30902, 5, 1411, 3509, 92311, 92336],
}
B1_REF = {
    "A": [703],
    "答案：A": [31106, 6787, 77, 31132],
    "Hello world": [24568, 1275],
    "12345.67": [31106, 53, 54, 55, 56, 57, 79, 58, 59],
    "你好，世界！": [9875, 31213, 72, 2781, 74],
    "<reserved_106>你好<reserved_107>": [31106, 199, 25211, 200],
}


@pytest.mark.parametrize("text", list(B2_REF))
def test_baichuan2_reference_encodings(b2, text):
    assert b2.encode(text) == B2_REF[text]


@pytest.mark.parametrize("text", list(B1_REF))
def test_baichuan1_reference_encodings(b1, text):
    assert b1.encode(text) == B1_REF[text]


def test_special_ids_and_vocab(b1, b2):
    assert (b1.vocab_size, b2.vocab_size) == (64000, 125696)
    for tok in (b1, b2):
        assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 0)
        assert tok.special_ids == {0, 1, 2}
        assert tok.chat_role_ids == (USER_ID, ASSISTANT_ID) == (195, 196)
        assert tok.model_max_length == 4096
    assert (b1.piece(195), b1.piece(196)) == ("<reserved_102>", "<reserved_103>")
    assert (b2.piece(195), b2.piece(196)) == ("<reserved_106>", "<reserved_107>")
    assert b2.id("<reserved_106>") == 195 and b2.id("▁world") == 2063 and b2.id("<unk>") == 0
    with pytest.raises(BaichuanError, match="not in the vocabulary"):
        b2.id("no such piece")
    with pytest.raises(BaichuanError, match="out of range"):
        b2.piece(125696)


def test_normalizers(b1, b2):
    # Baichuan 1 is NFKC: full-width letters fold to ASCII. Baichuan 2 is identity: they don't
    # (they fall back to UTF-8 bytes, 3 per character).
    assert b1.encode("Ｈｅｌｌｏ") == b1.encode("Hello") == [24568]
    assert b2.encode("Hello") == [23160]
    assert b2.encode("Ｈｅｌｌｏ") != b2.encode("Hello") and len(b2.encode("Ｈｅｌｌｏ")) == 15


def test_no_bos_and_no_control_ids_from_text(b1, b2):
    for tok in (b1, b2):
        ids = tok.encode("<s>hi</s><unk>")
        assert not {0, 1, 2} & set(ids)
        assert tok.encode("") == []
    assert b2.encode_batch(list(B2_REF), num_threads=2) == list(B2_REF.values())


@pytest.mark.parametrize("name", ["b1", "b2"])
def test_decode_round_trip(name, request):
    tok = request.getfixturevalue(name)
    text = "百川 Baichuan 2: 𠀀𪚥龘 rare CJK, émoji 🙂,  two  spaces\tand\nnew lines 12345.67"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode_batch([text])[0]) == text
    # each id's bytes (logprobs, grammar masks) add up to the text, byte pieces of rare characters too
    written = b"".join(tok.piece_bytes(i) for i in tok.encode(text)).decode("utf-8")
    assert written == (" " + text if name == "b1" else text)  # Baichuan 1 adds a dummy-prefix space


def test_decode_special_token_spacing(b1, b2):
    # The released convert_tokens_to_string writes a space before the run of ordinary pieces
    # that precedes a special token, unless that special is first or follows another special.
    for tok in (b1, b2):
        hw = tok.encode("Hello world")
        assert tok.decode(hw + [2], skip_special_tokens=False) == " Hello world</s>"
        assert tok.decode([2] + hw + [2], skip_special_tokens=False) == "</s> Hello world</s>"
        assert tok.decode([1, 2] + hw + [0], skip_special_tokens=False) == "<s></s> Hello world<unk>"
        assert tok.decode([1] + hw, skip_special_tokens=False) == "<s>Hello world"
        assert tok.decode([1] + hw + [2, 0]) == "Hello world"
    ids = b2.encode("你好") + [2] + b2.encode("世界")
    assert b2.decode(ids, skip_special_tokens=False) == " 你好</s>世界"
    # reserved pieces are not HF special tokens: literal text, never skipped
    assert b2.decode([195, 16829, 196]) == "<reserved_106>你好<reserved_107>"
    assert b1.decode([195, 25211, 196]) == "<reserved_102>你好<reserved_103>"
    with pytest.raises(BaichuanError, match="out of range"):
        b1.decode([64000])


def test_load_errors(tmp_path):
    with pytest.raises(BaichuanError, match="no such"):
        Tokenizer.load(tmp_path / "missing.model")
    with pytest.raises(BaichuanError, match="has no tokenizer.model"):
        Tokenizer.load(tmp_path)
    bad = tmp_path / "tokenizer.model"
    bad.write_text("this is not a protobuf\n")
    with pytest.raises(BaichuanError, match="not a SentencePiece model"):
        Tokenizer.load(bad)
    bad.write_bytes(b"")
    with pytest.raises(BaichuanError, match="not a SentencePiece model"):
        Tokenizer.load(tmp_path)


def test_save_matches_released_config(b2, tmp_path):
    out = b2.save(tmp_path / "tok")
    released = json.loads(fixture_path("baichuan2", "tokenizer_config.json").read_text())
    assert json.loads((out / "tokenizer_config.json").read_text()) == released  # auto_map included
    assert (out / "tokenization_baichuan.py").is_file()
    special = json.loads(fixture_path("baichuan-13b-chat", "special_tokens_map.json").read_text())
    assert json.loads((out / "special_tokens_map.json").read_text()) == special
    assert (out / "tokenizer.model").read_bytes() == fixture_path("baichuan2", "tokenizer.model").read_bytes()
    again = Tokenizer.load(out)
    assert again.encode("你好，世界！") == B2_REF["你好，世界！"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temp files left


# -- chat prompts: expected ids are concatenations of the reference encodings above ----------

def test_chat_v2_multi_turn_with_system(b2):
    msgs = [{"role": "system", "content": "A"},
            {"role": "user", "content": "你好，世界！"},
            {"role": "assistant", "content": "Hello world"},
            {"role": "user", "content": "12345.67"}]
    expected = ([92343] + [195] + B2_REF["你好，世界！"] + [196] + B2_REF["Hello world"]
                + [195] + B2_REF["12345.67"] + [196])
    assert build_chat_input_v2(b2, msgs) == expected
    assert build_chat_input(b2, msgs) == expected


def test_chat_v2_tiny_budget_keeps_newest_rounds(b2):
    msgs = [{"role": "system", "content": "A"},
            {"role": "user", "content": "你好，世界！"},
            {"role": "assistant", "content": "Hello world"},
            {"role": "user", "content": "12345.67"}]
    # max_input 12, history budget 11: newest round (9 ids) fits, the older one (8) does not
    assert build_chat_input_v2(b2, msgs, max_new_tokens=8, model_max_length=20) == (
        [92343, 195] + B2_REF["12345.67"] + [196])
    # the newest round is kept even when it alone overflows; left truncation then cuts the system
    msgs[0]["content"] = "def f():\n    return 1"
    assert build_chat_input_v2(b2, msgs, max_new_tokens=4, model_max_length=16) == (
        [92311, 92336, 195] + B2_REF["12345.67"] + [196])


def test_chat_v2_continuation_and_other_roles(b2):
    msgs = [{"role": "user", "content": "你好，世界！"}, {"role": "assistant", "content": "Hello"}]
    assert build_chat_input_v2(b2, msgs) == [195] + B2_REF["你好，世界！"] + [196, 23160]   # no trailing 196
    msgs = [{"role": "user", "content": "A"}, {"role": "observation", "content": "B"}]
    assert build_chat_input_v2(b2, msgs) == [195, 92343, 196, 92359, 196]
    with pytest.raises(BaichuanError, match=r"messages\[1\].*index 0"):
        build_chat_input_v2(b2, [{"role": "user", "content": "A"}, {"role": "system", "content": "B"}])


def test_chat_v1_multi_turn(b1):
    msgs = [{"role": "user", "content": "你好，世界！"},
            {"role": "assistant", "content": "Hello world"},
            {"role": "user", "content": "答案：A"}]
    expected = ([195] + B1_REF["你好，世界！"] + [196] + B1_REF["Hello world"]
                + [195] + B1_REF["答案：A"] + [196])
    assert build_chat_input_v1(b1, msgs) == expected
    assert build_chat_input(b1, msgs, template="baichuan") == expected
    # the later Baichuan-13B-Chat revision: EOS after each past assistant reply
    assert build_chat_input_v1(b1, msgs, eos_after_assistant=True) == (
        [195] + B1_REF["你好，世界！"] + [196] + B1_REF["Hello world"] + [2] + [195] + B1_REF["答案：A"] + [196])


def test_chat_v1_first_round_always_kept(b1):
    msgs = [{"role": "user", "content": "你好，世界！"},
            {"role": "assistant", "content": "A"},
            {"role": "user", "content": "12345.67"}]
    # budget max(8//2, 8-6) = 4: the newest round (10 ids) is still taken, then cut to its last 4
    assert build_chat_input_v1(b1, msgs, max_new_tokens=6, model_max_length=8) == [57, 79, 58, 59, 196]


def test_chat_v1_budget_stops_at_older_round(b1):
    msgs = [{"role": "user", "content": "A"},
            {"role": "assistant", "content": "Hello world"},
            {"role": "user", "content": "你好，世界！"},
            {"role": "assistant", "content": "答案：A"}]
    newest = [195] + B1_REF["你好，世界！"] + [196] + B1_REF["答案：A"]           # 11 ids
    older = [195] + B1_REF["A"] + [196] + B1_REF["Hello world"]                  # 5 ids
    # v1 appends 196 even after an assistant message (no continuation mode)
    assert build_chat_input_v1(b1, msgs, max_new_tokens=20, model_max_length=32) == older + newest + [196]
    assert build_chat_input_v1(b1, msgs, max_new_tokens=20, model_max_length=30) == newest + [196]
    # assistant turns before the first user turn are dropped, as released
    msgs = [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Hello world"}]
    assert build_chat_input_v1(b1, msgs) == [195, 24568, 1275, 196]


def test_chat_message_errors(b1, b2):
    with pytest.raises(BaichuanError, match=r"messages\[0\].*'system'"):
        build_chat_input_v1(b1, [{"role": "system", "content": "x"}, {"role": "user", "content": "A"}])
    with pytest.raises(BaichuanError, match="non-empty list"):
        build_chat_input_v2(b2, [])
    with pytest.raises(BaichuanError, match=r"messages\[1\]\.content"):
        build_chat_input_v2(b2, [{"role": "user", "content": "A"}, {"role": "assistant", "content": None}])
    with pytest.raises(BaichuanError, match=r"messages\[0\]: expected a dict"):
        build_chat_input_v2(b2, ["hello"])
    with pytest.raises(BaichuanError, match="unknown"):
        build_chat_input(b2, [{"role": "user", "content": "A"}], template="chatml")
    with pytest.raises(BaichuanError, match="no room"):
        build_chat_input_v2(b2, [{"role": "user", "content": "A"}], max_new_tokens=4096)


# -- compression report ----------------------------------------------------------------------

def test_compression_report(b1, b2):
    zh = ["你好，世界！", "百川智能发布了新一代开源大语言模型，在多个中文评测基准上取得了领先的成绩。",
          "北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。"]
    en = ["Hello world", "Large language models are trained on trillions of tokens of text."]
    rows = compression_report({"baichuan1": b1, "baichuan2": b2}, {"zh": zh, "en": en})
    by = {(r["tokenizer"], r["lang"]): r for r in rows}
    assert len(rows) == 6
    for name, tok in (("baichuan1", b1), ("baichuan2", b2)):
        for lang, texts in (("zh", zh), ("en", en)):
            r = by[name, lang]
            assert r["tokens"] == sum(len(tok.encode(t)) for t in texts)
            assert r["chars"] == sum(map(len, texts)) and r["bytes"] == sum(len(t.encode()) for t in texts)
            assert r["tokens_per_char"] == pytest.approx(r["tokens"] / r["chars"])
    # Baichuan 2's larger vocabulary packs Chinese tighter (measured: 0.45 vs 0.57 tokens/char)
    assert by["baichuan2", "zh"]["tokens_per_char"] < by["baichuan1", "zh"]["tokens_per_char"]
    mix = by["baichuan2", "mix zh:en = 3:1"]
    assert mix["tokens"] is None
    assert mix["tokens_per_char"] == pytest.approx(
        (3 * by["baichuan2", "zh"]["tokens_per_char"] + by["baichuan2", "en"]["tokens_per_char"]) / 4)
    # exact counts for fixed strings: 你好，世界！ is 4 tokens in Baichuan 2, 5 in Baichuan 1
    one = compression_report({"b1": b1, "b2": b2}, {"zh": ["你好，世界！"]})
    assert [(r["tokens"], r["chars"], r["bytes"]) for r in one] == [(5, 6, 18), (4, 6, 18)]
    table = format_report(rows)
    assert table.splitlines()[0] == "| tokenizer | lang | chars | bytes | tokens | tokens/char | bytes/token |"
    assert "| baichuan2 | zh |" in table and len(table.splitlines()) == 8
    with pytest.raises(BaichuanError, match="no text"):
        compression_report({"b2": b2}, {"zh": [""]})


# -- training ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(small_tokenizer):
    """The session's small tokenizer (conftest.py), trained on the bundled corpus, and its folder."""
    return small_tokenizer, Path(small_tokenizer.source).parent


def test_trained_layout(trained):
    tok, out = trained
    assert tok.vocab_size == 3000
    assert [tok.piece(i) for i in range(7)] == ["<unk>", "<s>", "</s>", "<SEP>", "<CLS>", "\n", "\t"]
    assert (tok.piece(195), tok.piece(196)) == ("<reserved_106>", "<reserved_107>")
    assert tok.chat_role_ids == (195, 196)
    assert tok.piece(101) == "<reserved_12>" and tok.piece(388) == "<reserved_299>"
    layout = reserved_layout()
    assert [tok.piece(i) for i in range(3, 3 + len(layout))] == layout
    assert tok.id("<0x00>") > 388 and tok.id("<0xFF>") == tok.id("<0x00>") + 255
    assert sorted(p.name for p in out.iterdir()) == ["special_tokens_map.json", "tokenization_baichuan.py",
                                                      "tokenizer.model", "tokenizer_config.json"]
    assert Tokenizer.load(out).encode("你好 world") == tok.encode("你好 world")


def test_trained_encoding(trained):
    tok, _ = trained
    assert len(tok.encode("12345")) == 5                       # split_digits
    assert tok.encode("<reserved_106>") == [195]
    ids = tok.encode("a\nb")
    assert 5 in ids and 1 not in ids and 2 not in ids         # "\n" is id 5; no BOS/EOS
    assert tok.encode("，")[0] == reserved_layout().index("，") + 3
    text = "百川 Baichuan: 𠀀𪚥龘 rare chars, 12345.67,  two  spaces\tand\n    indented ￥"
    ids = tok.encode(text)
    assert tok.decode(ids) == text                               # identity + byte fallback is lossless
    assert any(tok.sp.is_byte(i) for i in ids)
    assert not tok.piece(tok.encode("hello")[0]).startswith("▁")   # no dummy prefix


def test_training_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("你好，世界！\nhello world\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("第一行\n第二行\n".encode() + b"caf\xe9 latin-1\n")
    with pytest.raises(BaichuanError, match=r"bad\.txt: line 3 is not valid UTF-8"):
        train_tokenizer([good, bad], tmp_path / "out", vocab_size=1000, progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(BaichuanError, match="no training text in .*empty.txt"):
        train_tokenizer([empty], tmp_path / "out", vocab_size=1000, progress=False)
    with pytest.raises(BaichuanError, match="missing.txt: no such file"):
        train_tokenizer([tmp_path / "missing.txt"], tmp_path / "out", vocab_size=1000, progress=False)
    with pytest.raises(BaichuanError, match="vocab_size 600 is too small"):
        train_tokenizer([good], tmp_path / "out", vocab_size=600, progress=False)
    with pytest.raises(BaichuanError, match="too high|Vocabulary size"):
        train_tokenizer([good], tmp_path / "out", vocab_size=5000, progress=False)
    assert not (tmp_path / "out" / "tokenizer.model").exists()


def test_long_lines_are_split_for_sentencepiece():
    # SentencePiece drops sentences over max_sentence_length without an error, so long lines are
    # cut, at sentence ends when there are any, and never lose text.
    prose = "这是一个很长的句子，用来测试切分。" * 2000 + "And an English sentence. " * 500
    parts = list(_split_sentences(prose, MAX_SENTENCE_BYTES))
    assert "".join(parts) == prose and len(parts) > 1
    assert all(len(p.encode()) <= MAX_SENTENCE_BYTES for p in parts)
    assert all(p.endswith(("。", ".")) for p in parts[:-1])
    blob = "字" * 20000                                            # no sentence end: hard cut
    parts = list(_split_sentences(blob, 1000))
    assert "".join(parts) == blob and {len(p) for p in parts[:-1]} == {333}
    assert list(_split_sentences("short", 1000)) == ["short"]


def test_too_small_vocab_for_the_characters_says_what_to_change(tmp_path):
    text = tmp_path / "chars.txt"
    text.write_text("".join(chr(0x4E00 + i) for i in range(3000)) + "\n", encoding="utf-8")
    with pytest.raises(BaichuanError, match=r"vocab_size 1000 cannot hold the \d+ distinct characters.*raise vocab_size"):
        train_tokenizer([text], tmp_path / "out", vocab_size=1000, character_coverage=1.0, progress=False)


@pytest.mark.parametrize("template", ["baichuan2", "baichuan"])
def test_fit_chat_keeps_whole_rounds_the_system_prompt_and_room_for_the_reply(small_tokenizer, template):
    """The released builders fill their budget and cut from the left (into the system prompt or a
    question), and Baichuan-13B-Chat's budget of at least half the context can leave the reply
    short. fit_chat keeps the newest turn and whole earlier rounds within max_len - max_new."""
    from baichuan.tokenizer import ContextTooLong, fit_chat
    tok = small_tokenizer
    system = [{"role": "system", "content": "你是一个乐于助人的助手。"}] if template == "baichuan2" else []
    rounds = [[{"role": "user", "content": f"第{i}个问题：" + "床前明月光" * (i + 1)},
               {"role": "assistant", "content": "疑是地上霜。" * 3}] for i in range(4)]
    messages = system + [m for r in rounds for m in r][:-1]          # ends with the fourth question

    def whole(start):
        return build_chat_input(tok, system + messages[start:], template=template, max_new_tokens=0,
                                model_max_length=10 ** 9)
    starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
    sizes = [len(whole(i)) for i in starts]
    assert sizes[0] > 150 > sizes[1] > sizes[2] > sizes[3], sizes   # the oldest round never fits, the others may
    max_len, kept = 150, set()
    for max_new in range(2, max_len - sizes[-1] + 1, 3):              # from three rounds down to the newest alone
        ids, budget = fit_chat(tok, messages, template, max_new, max_len)
        kept.add(len(ids))
        fits = [i for i, n in zip(starts, sizes) if n <= max_len - max_new]
        assert budget == max_new and ids == whole(fits[0]) and len(ids) + max_new <= max_len
        if system:
            assert ids[:len(tok.encode(system[0]["content"]))] == tok.encode(system[0]["content"])
    assert kept == set(sizes[1:])
    with pytest.raises(ContextTooLong, match=r"needs \d+ tokens but 150 - --max-new-tokens \d+ = \d+ are available"):
        fit_chat(tok, messages, template, max_len - sizes[-1] + 1, max_len, length_name="--max-new-tokens")
    ids, budget = fit_chat(tok, messages, template, max_len - sizes[-1] + 1, max_len, shrink=True)
    assert ids == whole(starts[-1]) and budget == max_len - sizes[-1]      # the reply gets what is left
    with pytest.raises(ContextTooLong) as e:
        fit_chat(tok, messages, template, max_len - 1, max_len, length_name="max_tokens")
    assert e.value.field == "max_tokens" and "leaves no room for a prompt" in str(e.value)
