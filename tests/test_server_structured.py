"""The server's structured replies through the official openai client: `response_format` (json
schema, json object), `tools` / `tool_choice` with tool results in the conversation, streamed
`delta.tool_calls`, and the 400s that name the field."""

import json
from typing import Literal

import httpx
import pytest

pytest.importorskip("llguidance")
openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")
jsonschema = pytest.importorskip("jsonschema")

from test_server import KEY, Server  # noqa: E402

from baichuan.config import GenerationConfig  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    s = Server(tiny_model_dir, max_batch=8, max_queue=64, max_new_tokens=600, max_len=1536,  # room for tool lists
               gen=GenerationConfig(max_new_tokens=400, do_sample=False, repetition_penalty=1.0))
    yield s
    s.close()


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


class Owner(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1, max_length=5)
    age: int | None = pydantic.Field(ge=0, le=150)


class Record(pydantic.BaseModel):
    城市: Literal["北京", "上海", "广州"]
    count: int = pydantic.Field(ge=-3, le=12)
    ratio: float = pydantic.Field(ge=0, le=1)
    tags: list[Literal["红", "green"]] = pydantic.Field(min_length=1, max_length=3)
    owner: Owner


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["北京", "上海"]}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "integer", "minimum": -12,
                                                                                 "maximum": 14}},
                                       "required": ["zone"]}}}


def test_parse_returns_the_pydantic_object_at_temperature_1(server):
    c = client(server)
    for seed in range(4):
        r = c.chat.completions.parse(model="tiny", messages=[{"role": "user", "content": "提取信息：北京，3个"}],
                                     response_format=Record, temperature=1.0, seed=seed, max_tokens=400)
        assert r.choices[0].finish_reason == "stop"
        assert isinstance(r.choices[0].message.parsed, Record)


def test_json_object_on_completions(server):
    c = client(server)
    r = c.completions.create(model="tiny", prompt="JSON:", max_tokens=400, temperature=1.0, seed=3,
                             extra_body={"response_format": {"type": "json_object"}})
    text = r.choices[0].text
    assert text.startswith("{")
    if r.choices[0].finish_reason == "stop":  # random weights may write one string to the end of max_tokens
        assert isinstance(json.loads(text), dict)


def test_required_and_named_tool_calls(server):
    c = client(server)
    messages = [{"role": "user", "content": "北京天气怎么样？"}]
    for choice in ("required", {"type": "function", "function": {"name": "get_time"}}):
        for seed in range(3):
            r = c.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER, TIME], tool_choice=choice,
                                          temperature=1.0, seed=seed, max_tokens=600)
            reply = r.choices[0]
            assert reply.finish_reason == "tool_calls" and reply.message.content is None
            for call in reply.message.tool_calls:
                assert call.type == "function" and call.id.startswith("call_")
                tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
                arguments = json.loads(call.function.arguments)
                jsonschema.validate(arguments, {**tool["function"]["parameters"], "additionalProperties": False})
            if isinstance(choice, dict):
                assert [t.function.name for t in reply.message.tool_calls] == ["get_time"]


def test_streamed_tool_calls_equal_the_whole_reply(server):
    c = client(server)
    body = dict(model="tiny", messages=[{"role": "user", "content": "几点了？"}], tools=[WEATHER, TIME],
                tool_choice="required", temperature=1.0, seed=11, max_tokens=600)
    whole = c.chat.completions.create(**body).choices[0]
    calls, finish = {}, None
    for event in c.chat.completions.create(**body, stream=True):
        delta = event.choices[0].delta
        assert not delta.content
        for t in delta.tool_calls or []:
            entry = calls.setdefault(t.index, {"name": "", "arguments": ""})
            entry["name"] += t.function.name or ""
            entry["arguments"] += t.function.arguments or ""
        finish = event.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [calls[i] for i in sorted(calls)] == [{"name": t.function.name, "arguments": t.function.arguments}
                                                 for t in whole.message.tool_calls]


def test_a_conversation_with_tool_results_continues(server):
    c = client(server)
    first = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "北京天气？"}],
                                      tools=[WEATHER], tool_choice="required", max_tokens=300)
    call = first.choices[0].message.tool_calls[0]
    messages = [{"role": "user", "content": "北京天气？"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "晴，25度"}]
    for choice in ("none", "auto"):
        r = c.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER], tool_choice=choice,
                                      max_tokens=20, temperature=1.0, seed=1)
        reply = r.choices[0]
        if choice == "none":
            assert reply.finish_reason in ("stop", "length") and not reply.message.tool_calls
        assert r.usage.prompt_tokens > first.usage.prompt_tokens  # the call and its result are in the prompt


def test_a_reply_that_follows_a_schema_or_calls_a_tool(server):
    c = client(server)
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}
    for seed in range(4):
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "天气？"}], tools=[WEATHER],
                                      response_format=fmt, temperature=1.0, seed=seed, max_tokens=600)
        m = r.choices[0].message
        assert (m.tool_calls and r.choices[0].finish_reason == "tool_calls") or \
            json.loads(m.content) in ({"ok": True}, {"ok": False})


@pytest.mark.parametrize("extra, param, match", [
    ({"response_format": {"type": "xml"}}, "response_format", "json_object or json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}},
     "response_format", "name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/none"}}}}}}, "response_format", "cannot be used"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "pattern": "(open"}}}}, "response_format", "cannot be used"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools", "name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "nope"),
    ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "auto, none, required"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages", "function.name"),
])
def test_bad_structured_requests_name_the_field(server, extra, param, match):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and match in error["message"], error


def test_refused_requests_never_reach_the_engine(server):
    before = server.cfg.stats["requests"]
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and server.cfg.stats["requests"] == before


def load_example(name: str):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_run_against_the_server(server, capsys):
    tools = load_example("tool_calling")
    tools.main(["北京天气？", "--base-url", server.url + "/v1", "--api-key", KEY, "--first-choice", "required",
                "--rounds", "2"])
    out = capsys.readouterr().out
    assert out.startswith(("tool get_weather(", "tool calculate(")), out  # the first reply had to call
    assert tools.calculate("(2+3)*4") == "20" and tools.calculate("__import__('os')").startswith("error")
    extraction = load_example("json_extraction")
    contact = extraction.main(["--base-url", server.url + "/v1", "--api-key", KEY])
    assert isinstance(contact, extraction.Contact)
