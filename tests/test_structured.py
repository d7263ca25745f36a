"""Grammar-constrained decoding (llguidance) in the engine, and the tool-call format: the reply
always parses and validates, whatever the weights, beside unconstrained requests in one batch."""

import json
import time

import pytest
import torch

llguidance = pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

from baichuan.infer.engine import Engine  # noqa: E402
from baichuan.infer.sampling import SamplingParams  # noqa: E402
from baichuan.infer.structured import GrammarError, Grammars, closed, json_grammar, tool_grammar  # noqa: E402
from baichuan.toolcalls import ToolError, check_tools, format_call, parse_calls, plain_messages  # noqa: E402

# nested objects, arrays with bounds, enums (Chinese too), numbers with ranges, required and optional fields
SCHEMA = {
    "type": "object",
    "properties": {
        "城市": {"enum": ["北京", "上海", "广州"]},
        "count": {"type": "integer", "minimum": -3, "maximum": 12},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 3},
        "owner": {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 6},
                                                   "age": {"type": "integer", "minimum": 0, "maximum": 150}},
                  "required": ["name"]},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]},
    },
    "required": ["城市", "count", "tags", "owner"],
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "今天的天气",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["北京", "上海"]},
                                                    "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "integer", "minimum": -12,
                                                                                 "maximum": 14}},
                                       "required": ["zone"]}}}


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    from baichuan.runtime import load_model_and_tokenizer
    model, tok = load_model_and_tokenizer(tiny_model_dir, "cpu", None)
    return model, tok, Grammars(tok, model.cfg.vocab_size, tok.stop_ids)


def sampled(seed, grammar=None, max_new=300):
    return SamplingParams(max_new_tokens=max_new, do_sample=True, temperature=1.0, seed=seed, grammar=grammar)


def run_all(engine, prompts_params):
    reqs = [engine.submit(p, params) for p, params in prompts_params]
    while not all(r.done for r in reqs):
        engine.step()
    return reqs


def test_random_weights_at_temperature_1_always_give_valid_json(setup):
    model, tok, grammars = setup
    grammar = grammars.compile(json_grammar(SCHEMA))
    engine = Engine(model, max_batch=8)
    prompt = tok.encode("请用 JSON 回答")
    reqs = run_all(engine, [(prompt, sampled(seed, grammar)) for seed in range(24)])
    seen_optional = set()
    for req in reqs:
        assert req.finish_reason == "stop", tok.decode(req.tokens)
        value = json.loads(tok.decode(req.tokens))
        jsonschema.validate(value, closed(SCHEMA))
        seen_optional |= {k for k in ("ratio", "ok", "note") if k in value} | {"age" for _ in [0] if "age" in value["owner"]}
    assert len({tok.decode(r.tokens) for r in reqs}) > 20  # sampling still chooses: not one forced reply
    assert seen_optional  # optional fields are allowed, not just skipped


def test_constrained_and_free_rows_share_a_batch(setup):
    model, tok, grammars = setup
    grammar = grammars.compile(json_grammar({"type": "object", "properties": {"a": {"enum": ["x", "是"]}},
                                             "required": ["a"]}))
    prompts = [tok.encode(t) for t in ("今天天气", "The weather", "春眠不觉晓", "Hello there")]
    greedy = SamplingParams(max_new_tokens=12)
    alone = [list(Engine(model, max_batch=1).generate(p, greedy)) for p in prompts]
    engine = Engine(model, max_batch=8)
    reqs = run_all(engine, [(p, greedy) for p in prompts] + [(p, sampled(i, grammar)) for i, p in enumerate(prompts)]
                   + [(p, SamplingParams(max_new_tokens=40, grammar=grammar)) for p in prompts])
    assert [r.tokens for r in reqs[:4]] == alone  # the free rows decode as if alone
    for req in reqs[4:]:
        assert json.loads(tok.decode(req.tokens))["a"] in ("x", "是")


def test_compiled_decode_applies_the_mask(setup):
    model, tok, grammars = setup
    grammar = grammars.compile(json_grammar({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0,
                                                                                     "maximum": 99}},
                                             "required": ["n"]}))
    params = SamplingParams(max_new_tokens=30, grammar=grammar)
    prompt = tok.encode("number")
    eager = list(Engine(model, max_batch=2).generate(prompt, params))
    compiled = Engine(model, max_batch=2, compile=True)
    if not compiled.compiled:
        pytest.skip("this torch has no CPU compile backend")
    assert list(compiled.generate(prompt, params)) == eager
    assert 0 <= json.loads(tok.decode(eager))["n"] <= 99


def test_tool_grammar_constrains_calls_and_arguments(setup):
    model, tok, grammars = setup
    functions = check_tools([WEATHER, TIME])
    engine = Engine(model, max_batch=8)
    prompt = tok.encode("天气")
    for choice, names in (("required", {"get_weather", "get_time"}), ("get_time", {"get_time"})):
        grammar = grammars.compile(tool_grammar(functions, choice))
        for req in run_all(engine, [(prompt, sampled(s, grammar, 600)) for s in range(8)]):
            assert req.finish_reason == "stop"
            calls = parse_calls(tok.decode(req.tokens))
            assert calls and {n for n, _ in calls} <= names
            for name, arguments in calls:
                schema = next(f["parameters"] for f in functions if f["name"] == name)
                jsonschema.validate(json.loads(arguments), closed(schema))
            if choice != "required":
                assert len(calls) == 1
    # "none": text that never starts a call
    grammar = grammars.compile(tool_grammar(functions, "none"))
    for req in run_all(engine, [(prompt, sampled(s, grammar, 30)) for s in range(6)]):
        assert not tok.decode(req.tokens).lstrip().startswith("<tool_call>")


def test_bad_schemas_are_refused(setup):
    _, _, grammars = setup
    with pytest.raises(GrammarError):
        grammars.compile(json_grammar({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}))
    with pytest.raises(GrammarError):
        grammars.compile(json_grammar({"type": "string", "pattern": "(unclosed"}))
    # too large: refused by llguidance's limits, quickly (not after minutes of work)
    big = {"anyOf": [{"type": "object", "properties": {f"k{i}_{j}": {"type": "integer", "minimum": i, "maximum": i + j}
                                                       for j in range(20)}} for i in range(3000)]}
    t0 = time.monotonic()
    with pytest.raises(GrammarError, match="too large"):
        grammars.compile(json_grammar(big))
    assert time.monotonic() - t0 < 5
    with pytest.raises(GrammarError, match="to compile; the limit"):  # over the time limit: refused
        grammars.compile(json_grammar({"type": "object", "properties": {"slow": {"type": "boolean"}}}), seconds=0)


def test_grammars_are_compiled_once(setup):
    _, _, grammars = setup
    source = json_grammar({"type": "object", "properties": {"z": {"type": "boolean"}}})
    assert grammars.compile(source) is grammars.compile(source)


# ------------------------------------------------------------------------------ the format

def test_tool_messages_render_as_the_documented_text():
    functions = check_tools([WEATHER])
    messages = [
        {"role": "system", "content": "你是助手。"},
        {"role": "user", "content": "北京天气？"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴，25度"},
        {"role": "tool", "tool_call_id": "call_1", "content": "北风"},
    ]
    plain = plain_messages(messages, functions)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[0]["content"].startswith("你是助手。\n\n# Tools\n") and '"name": "get_weather"' in plain[0]["content"]
    assert plain[2]["content"] == '<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call>'
    assert plain[3]["content"] == "<tool_response>晴，25度</tool_response>\n<tool_response>北风</tool_response>"
    assert parse_calls(plain[2]["content"]) == [("get_weather", '{"city": "北京"}')]


def test_sft_learns_the_calls_and_the_answer_not_the_tools_or_results(small_tokenizer):
    from baichuan.train.chat_data import IGNORE, parse_conversation, render
    record = {"tools": [WEATHER], "messages": [
        {"role": "user", "content": "北京天气？"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}]},
        {"role": "tool", "tool_call_id": "c", "content": "晴"},
        {"role": "assistant", "content": "北京晴。"}]}
    tok = small_tokenizer
    ids, labels = render(tok, parse_conversation(record), tok.eos_id)
    learned = [lab for lab in labels if lab != IGNORE]
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call>'
    # the call, then EOS where the tool's turn begins, then the answer and EOS: nothing of the tools or results
    assert learned == tok.encode(call) + [tok.eos_id] + tok.encode("北京晴。") + [tok.eos_id]
    assert tok.decode(ids).count("<tool_response>晴</tool_response>") == 1 and "<tools>" in tok.decode(ids)


def test_replies_are_read_back_as_calls_only_when_whole():
    two = format_call("a", {"x": 1}) + "\n" + format_call("b", "{}")
    assert parse_calls(two) == [("a", '{"x": 1}'), ("b", "{}")]
    assert parse_calls("hello " + two) is None
    assert parse_calls(two + " and text") is None
    assert parse_calls('<tool_call>{"name": "a", "arguments": 3}</tool_call>') is None
    assert parse_calls('<tool_call>{"name": "a"') is None


@pytest.mark.parametrize("tools, match", [
    ([], "list of 1"),
    ([{"type": "function", "function": {"name": "has space"}}], "name"),
    ([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}], "twice"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], "type object"),
    ([{"type": "retrieval"}], "function"),
])
def test_bad_tool_definitions_are_named(tools, match):
    with pytest.raises(ToolError, match=match):
        check_tools(tools)


def test_the_mask_is_applied_on_the_device_sampler():
    from baichuan.infer.sampling import SamplerState, sample
    state = SamplerState(2, 70, "cpu")
    state.allowed[0] = 0
    state.allowed[0, 2] = 1 << 3  # only id 67 for row 0; row 1 is free
    logits = torch.randn(2, 70)
    logits[0, 5] = 100.0
    tokens = sample(logits, state, None, plan=True)
    assert tokens.tolist() == [67, int(logits[1].argmax())]


def test_text_pieces_stay_text_and_markers_stay_out(setup):
    """User-defined pieces that write text ("\\n", "，" in tokenizers trained here) are text to a
    grammar; marker pieces (<reserved_N>, Baichuan's role tokens) and control ids never are."""
    from baichuan.infer.structured import token_bytes
    _, tok, _ = setup
    pieces = token_bytes(tok, tok.vocab_size)
    assert pieces[tok.sp.piece_to_id("\n")] == b"\n" and pieces[tok.sp.piece_to_id("，")] == "，".encode()
    assert pieces[195].startswith(b"\xff<reserved_") and pieces[196].startswith(b"\xff<reserved_")
    assert pieces[tok.eos_id] == b"\xff</s>"


def test_tool_grammar_follows_refs_and_no_text_hides_a_call(setup):
    model, tok, grammars = setup
    params = {"type": "object", "$defs": {"Place": {"type": "object", "properties": {"city": {"enum": ["北京", "上海"]}},
                                                    "required": ["city"]}},
              "properties": {"place": {"$ref": "#/$defs/Place"}, "days": {"type": "integer", "minimum": 1,
                                                                          "maximum": 7}},
              "required": ["place"]}
    functions = check_tools([{"type": "function", "function": {"name": "forecast", "parameters": params}}])
    grammar = grammars.compile(tool_grammar(functions, "required"))
    engine = Engine(model, max_batch=4)
    for req in run_all(engine, [(tok.encode("天气"), sampled(s, grammar, 600)) for s in range(4)]):
        for name, arguments in parse_calls(tok.decode(req.tokens)):
            jsonschema.validate(json.loads(arguments), closed(params))
    for choice in ("none", "auto"):  # blanks then a call would be read as a call: text cannot start so
        matcher = grammars.compile(tool_grammar(functions, choice)).start()
        ids = tok.encode(' \n<tool_call>{"name": "forecast", "arguments": {}}</tool_call>')
        assert matcher.try_consume_tokens(ids) < len(ids)


def test_a_cut_reply_of_calls_reads_the_same_streamed_and_whole():
    from baichuan.infer.openai_response import ChatDeltas, message
    text = format_call("a", {"x": 1}) + "\n" + format_call("b", {"y": "是"}) + '\n<tool_call>{"name": "a", "argu'
    msg, finish = message(text, "length", may_call=True)
    assert finish == "length" and [c["function"]["name"] for c in msg["tool_calls"]] == ["a", "b"]
    deltas = ChatDeltas(may_call=True)
    streamed = [d for k in range(0, len(text), 7) for d in deltas.add(text[k:k + 7])]
    rest, finish = deltas.finish("length")
    assert finish == "length" and not rest
    assert [(d["tool_calls"][0]["index"], d["tool_calls"][0]["function"]) for d in streamed] == \
        [(i, c["function"]) for i, c in enumerate(msg["tool_calls"])]
    assert message(text, "length", may_call=False)[0]["content"] == text  # tool_choice "none": text


def test_a_tool_result_keeps_its_call_and_question_when_history_is_cut(small_tokenizer):
    from baichuan.tokenizer import fit_chat
    tok = small_tokenizer
    call = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
    messages = [{"role": "user", "content": "春眠不觉晓的下一句？" * 6}, {"role": "assistant", "content": "处处闻啼鸟。" * 6},
                {"role": "user", "content": "北京天气？"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c", "content": "晴"}]
    plain = plain_messages(messages)
    newest = fit_chat(tok, plain[2:], "baichuan2", 8, 10 ** 6)[0]
    ids, _ = fit_chat(tok, plain, "baichuan2", 8, len(newest) + 8 + 5)  # room for the newest round only
    assert ids == newest and "北京天气" in tok.decode(ids) and "get_weather" in tok.decode(ids)
    assert "春眠" not in tok.decode(ids)
