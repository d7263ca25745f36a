"""The bundled chat set (baichuan/corpus/chat): well-formed, bilingual, short, and right on the facts it states."""
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

import baichuan.corpus

CHAT_DIR = Path(baichuan.corpus.__file__).parent / "chat"
MAKE_CHAT = Path(__file__).resolve().parents[1] / "scripts" / "make_chat.py"  # the generator, outside the package
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z]+")

# bounds stated in chat/README.md
N_SFT, N_DPO = (400, 600), (150, 250)
ZH_SHARE, MULTI_SHARE, SYSTEM_SHARE = (0.50, 0.60), (0.25, 0.35), (0.07, 0.13)
MAX_CJK, MAX_WORDS = 80, 60


def load_chat(name: str) -> list[dict]:
    """The rows of a chat file (sft.jsonl or dpo.jsonl); every line must be one JSON object."""
    rows = []
    with (CHAT_DIR / name).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            assert line.endswith("\n") and line.strip(), f"{name}:{n}: blank or unterminated line"
            row = json.loads(line)
            assert isinstance(row, dict), f"{name}:{n}: not an object"
            rows.append(row)
    return rows


def lang_of(texts) -> str:
    """'zh' when the text has more CJK characters than English words (the README's rule)."""
    texts = list(texts)
    cjk = sum(len(CJK.findall(t)) for t in texts)
    words = sum(len(WORD.findall(t)) for t in texts)
    return "zh" if cjk > words else "en"


def body(row: dict) -> list[dict]:
    msgs = row["messages"]
    return msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs


def exchanges(rows):
    """(user text, the assistant reply that follows it) for every turn of every conversation."""
    for row in rows:
        b = body(row)
        for u, a in zip(b[::2], b[1::2]):
            yield u["content"], a["content"]


@pytest.fixture(scope="module")
def sft():
    return [row for row in load_chat("sft.jsonl") if "tools" not in row]


@pytest.fixture(scope="module")
def tool_use():
    return [row for row in load_chat("sft.jsonl") if "tools" in row]


@pytest.fixture(scope="module")
def dpo():
    return load_chat("dpo.jsonl")


def test_sizes(sft, dpo):
    assert N_SFT[0] <= len(sft) <= N_SFT[1]
    assert N_DPO[0] <= len(dpo) <= N_DPO[1]


def test_roles_and_contents(sft):
    for i, row in enumerate(sft):
        assert set(row) == {"messages"}, i
        msgs = row["messages"]
        for m in msgs:
            assert set(m) == {"role", "content"}, (i, m)
            assert m["role"] in ("system", "user", "assistant"), (i, m)
            assert isinstance(m["content"], str) and m["content"].strip(), (i, m)
            assert m["content"] == m["content"].strip(), (i, m)
        roles = [m["role"] for m in body(row)]
        assert "system" not in roles, f"line {i + 1}: system message not first"
        assert roles and roles[0] == "user" and roles[-1] == "assistant", i
        assert roles == ["user", "assistant"] * (len(roles) // 2), f"line {i + 1}: roles do not alternate"
        assert 1 <= len(roles) // 2 <= 4, i


def test_language_mix_multi_turn_and_system_shares(sft):
    n = len(sft)
    zh = sum(lang_of(m["content"] for m in row["messages"]) == "zh" for row in sft)
    multi = sum(len(body(row)) > 2 for row in sft)
    system = sum(row["messages"][0]["role"] == "system" for row in sft)
    assert ZH_SHARE[0] <= zh / n <= ZH_SHARE[1], zh / n
    assert MULTI_SHARE[0] <= multi / n <= MULTI_SHARE[1], multi / n
    assert SYSTEM_SHARE[0] <= system / n <= SYSTEM_SHARE[1], system / n
    # both languages have multi-turn chats and system messages
    for lang in ("zh", "en"):
        rows = [r for r in sft if lang_of(m["content"] for m in r["messages"]) == lang]
        assert sum(len(body(r)) > 2 for r in rows) >= 0.15 * len(rows), lang
        assert any(r["messages"][0]["role"] == "system" for r in rows), lang


def test_no_duplicates(sft):
    convs = Counter(json.dumps(row["messages"], ensure_ascii=False, sort_keys=True) for row in sft)
    assert max(convs.values()) == 1, [c for c, k in convs.items() if k > 1][:3]
    firsts = Counter(body(row)[0]["content"] for row in sft)
    assert max(firsts.values()) == 1, [p for p, k in firsts.items() if k > 1][:5]


def test_replies_are_short(sft):
    for row in sft:
        for m in row["messages"]:
            if m["role"] == "assistant":
                assert len(CJK.findall(m["content"])) <= MAX_CJK, m["content"]
                assert len(WORD.findall(m["content"])) <= MAX_WORDS, m["content"]
            if m["role"] == "system":
                assert len(m["content"]) <= 100, m["content"]


def test_tool_use_conversations(tool_use):
    from baichuan.toolcalls import check_tools
    from baichuan.train.chat_data import parse_conversation
    assert 30 <= len(tool_use) <= 60
    assert {lang_of(m["content"] or "" for m in row["messages"]) for row in tool_use} == {"zh", "en"}
    calls = 0
    for row in tool_use:
        assert set(row) == {"tools", "messages"}
        names = {f["name"]: f for f in check_tools(row["tools"])}
        plain = parse_conversation(row)  # what SFT trains on: calls are assistant text, results user text
        assert plain[0]["role"] == "system" and "<tools>" in plain[0]["content"]
        msgs = row["messages"]
        for k, m in enumerate(msgs):
            for call in m.get("tool_calls") or []:
                calls += 1
                f = names[call["function"]["name"]]
                arguments = json.loads(call["function"]["arguments"])
                assert set(f["parameters"]["required"]) <= set(arguments) <= set(f["parameters"]["properties"])
                result = msgs[k + 1]
                assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
                if f["name"] == "calculate":  # the arithmetic the tool returns is right, and the answer says it
                    a, b = map(int, arguments["expression"].split("*"))
                    assert result["content"] == str(a * b) and str(a * b) in msgs[k + 2]["content"]
        assert msgs[-1]["role"] == "assistant" and msgs[-1]["content"].strip()
    assert calls >= 25


def test_dpo_pairs(dpo):
    for i, row in enumerate(dpo):
        assert set(row) == {"prompt", "chosen", "rejected"}, i
        for k in ("prompt", "chosen", "rejected"):
            assert isinstance(row[k], str) and row[k].strip() and row[k] == row[k].strip(), (i, k)
        assert row["chosen"] != row["rejected"], i
        assert len(CJK.findall(row["chosen"])) <= MAX_CJK and len(WORD.findall(row["chosen"])) <= MAX_WORDS, i
    prompts = Counter(row["prompt"] for row in dpo)
    assert max(prompts.values()) == 1
    zh = sum(lang_of([row["prompt"]]) == "zh" for row in dpo)
    assert 0.3 <= zh / len(dpo) <= 0.7, zh / len(dpo)


# (a user turn containing this, the reply that follows contains all of these)
FACTS = [
    ("床前明月光", ["疑是地上霜"]),
    ("白日依山尽", ["黄河入海流"]),
    ("春眠不觉晓", ["处处闻啼鸟"]),
    ("学而时习之", ["不亦说乎"]),
    ("桃园三结义", ["刘备", "关羽", "张飞"]),
    ("《三国演义》的作者", ["罗贯中"]),
    ("三国是哪三个国家", ["魏", "蜀", "吴"]),
    ("谢谢", ["Thank you"]),
    ("To be, or not to be", ["that is the question", "Hamlet"]),
    ("All the world's a stage", ["As You Like It"]),
    ("first verse of the Bible", ["In the beginning God created the heaven and the earth"]),
    ("When was the King James Bible published", ["1611"]),
    ("Who wrote Paradise Lost", ["John Milton"]),
]


@pytest.mark.parametrize("cue,answer", FACTS, ids=[c for c, _ in FACTS])
def test_spot_check_facts(sft, cue, answer):
    replies = [a for u, a in exchanges(sft) if cue in u]
    assert replies, f"no user turn mentions {cue!r}"
    assert any(all(x in a for x in answer) for a in replies), (cue, replies[:3])


def test_poem_lines_are_not_misattributed(sft):
    # wherever these poems are named in a reply, the right poet is named with them
    poets = {"静夜思": "李白", "登鹳雀楼": "王之涣", "春晓": "孟浩然", "江雪": "柳宗元", "游子吟": "孟郊",
             "枫桥夜泊": "张继", "题西林壁": "苏轼", "蜀相": "杜甫"}
    for _, a in exchanges(sft):
        for title, poet in poets.items():
            m = re.search(rf"(..)的《{title}》", a)
            if m:
                assert m.group(1) == poet[-2:], a


ARITH_ZH = re.compile(r"(\d+)(加|减去|减|乘以|除以)(\d+)等于(\d+)")
ARITH_EN = re.compile(r"(\d+) (plus|minus|times|divided by|multiplied by) (\d+) is (\d+)")
ARITH_SYM = re.compile(r"(\d+) ?([+\-×]) ?(\d+) ?= ?(\d+)")
OPS = {"加": int.__add__, "减去": int.__sub__, "减": int.__sub__, "乘以": int.__mul__, "除以": int.__floordiv__,
       "plus": int.__add__, "minus": int.__sub__, "times": int.__mul__, "divided by": int.__floordiv__,
       "multiplied by": int.__mul__, "+": int.__add__, "-": int.__sub__, "×": int.__mul__}


def test_arithmetic_is_right(sft, dpo):
    texts = [a for _, a in exchanges(sft)] + [row["chosen"] for row in dpo]
    checked = 0
    for t in texts:
        for rx in (ARITH_ZH, ARITH_EN, ARITH_SYM):
            for a, op, b, c in rx.findall(t):
                a, b, c = int(a), int(b), int(c)
                if op in ("除以", "divided by"):
                    assert b and a % b == 0, t
                assert OPS[op](a, b) == c, t
                checked += 1
    assert checked >= 60, checked
    # and the questions: every "a加b等于多少？" / "What is a plus b?" gets the right sum
    q_zh, q_en = re.compile(r"^(\d+)加(\d+)等于多少？$"), re.compile(r"^What is (\d+) plus (\d+)\?$")
    for u, a in exchanges(sft):
        m = q_zh.match(u) or q_en.match(u)
        if m:
            assert str(int(m.group(1)) + int(m.group(2))) in a, (u, a)


def test_dpo_spot_checks(dpo):
    by_prompt = {row["prompt"]: row for row in dpo}
    row = by_prompt["《三国演义》的作者是谁？"]
    assert "罗贯中" in row["chosen"] and "罗贯中" not in row["rejected"]
    row = by_prompt["In which year did the King James Bible first appear?"]
    assert "1611" in row["chosen"] and "1611" not in row["rejected"]


def test_sft_rows_parse_with_the_chat_loader(sft):
    chat_data = pytest.importorskip("baichuan.train.chat_data")
    parse = getattr(chat_data, "parse_conversation", None)
    if parse is None:
        pytest.skip("baichuan.train.chat_data has no parse_conversation")
    for row in sft:
        turns = parse(row)
        assert [t["content"] for t in turns] == [m["content"] for m in row["messages"]]


def test_generator_reproduces_the_files():
    spec = importlib.util.spec_from_file_location("make_chat", MAKE_CHAT)
    make_chat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_chat)
    sft_text, dpo_text, _ = make_chat.render()
    assert sft_text == (CHAT_DIR / "sft.jsonl").read_text(encoding="utf-8")
    assert dpo_text == (CHAT_DIR / "dpo.jsonl").read_text(encoding="utf-8")
