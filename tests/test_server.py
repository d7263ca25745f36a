"""The OpenAI-compatible server: the official client, streaming, validation, limits, disconnects,
and 100 concurrent streams mixed with bad requests."""

import asyncio
import gc
import json
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from baichuan.checkpoint import load_pretrained  # noqa: E402
from baichuan.config import GenerationConfig  # noqa: E402
from baichuan.infer.engine import Engine  # noqa: E402
from baichuan.infer.server import ServerConfig, create_app  # noqa: E402
from baichuan.tokenizer import Tokenizer  # noqa: E402

KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, **cfg):
        self.model = load_pretrained(model_dir)
        self.tok = Tokenizer.load(model_dir)
        self.engine = Engine(self.model, max_batch=cfg.pop("max_batch", 4),
                             max_len=cfg.pop("max_len", 256), prefix_cache_bytes=cfg.pop("prefix_cache_bytes", 0))
        index = cfg.pop("index", None)
        gen = cfg.pop("gen", None) or GenerationConfig(max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
        self.cfg = ServerConfig(model_name="tiny", api_key=KEY, **cfg)
        app = create_app(self.engine, self.tok, gen, self.cfg, index=index)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.engine.start()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.engine.stop()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    s = Server(tiny_model_dir, max_queue=200, max_new_tokens=64)
    yield s
    s.close()


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def test_openai_client_chat_and_completions(server):
    assert client(server).models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("gpt-4")
    c = client(server)
    assert [m.id for m in c.models.list()] == ["tiny"]
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "你好"}], max_tokens=8)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.choices[0].finish_reason in ("stop", "length")
    # the reply equals the engine's greedy output decoded (the server adds nothing)
    from baichuan.generate import generate
    from baichuan.infer.sampling import SamplingParams
    from baichuan.tokenizer import build_chat_input
    ids = build_chat_input(server.tok, [{"role": "user", "content": "你好"}], max_new_tokens=8, model_max_length=256)
    assert r.choices[0].message.content == generate(server.model, server.tok, ids, SamplingParams(max_new_tokens=8))
    s = c.completions.create(model="tiny", prompt="床前明月光，", max_tokens=6)
    assert s.object == "text_completion" and s.usage.completion_tokens <= 6


def test_streaming_matches_non_streaming(server):
    c = client(server)
    msgs = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"}, {"role": "user", "content": "继续"}]
    full = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12).choices[0].message.content
    chunks = list(c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == full
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = list(c.completions.create(model="tiny", prompt="子曰：", max_tokens=5, stream=True))
    assert "".join(ch.choices[0].text for ch in streamed) == \
        c.completions.create(model="tiny", prompt="子曰：", max_tokens=5).choices[0].text
    # usage on request: one last chunk with no choices, counting the streamed tokens
    counted = list(c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, stream=True,
                                             stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage.prompt_tokens > 0
    assert counted[-1].usage.completion_tokens == \
        c.chat.completions.create(model="tiny", messages=msgs, max_tokens=12).usage.completion_tokens
    assert all(ch.usage is None for ch in counted[:-1])


def test_n_choices_stream_and_whole_alike_and_seeds_repeat(server):
    """n choices: greedy ones are all the single reply; seeded sampled ones differ from each other,
    repeat on every run and stream the same text as they return whole; usage counts the prompt
    once and every choice's tokens."""
    c = client(server)
    msgs = [{"role": "user", "content": "你好"}]
    one = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=8)
    three = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, n=3)
    assert [ch.index for ch in three.choices] == [0, 1, 2]
    assert {ch.message.content for ch in three.choices} == {one.choices[0].message.content}
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert three.usage.completion_tokens == 3 * one.usage.completion_tokens
    sampled = dict(model="tiny", messages=msgs, max_tokens=12, n=4, temperature=1.5, seed=11)
    a = [ch.message.content for ch in c.chat.completions.create(**sampled).choices]
    assert a == [ch.message.content for ch in c.chat.completions.create(**sampled).choices]
    assert len(set(a)) > 1
    texts = ["", "", "", ""]
    for chunk in c.chat.completions.create(**sampled, stream=True):
        for ch in chunk.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts == a
    done = c.completions.create(model="tiny", prompt="子曰：", max_tokens=5, n=2, temperature=1.5, seed=3)
    assert [ch.index for ch in done.choices] == [0, 1] and 2 <= done.usage.completion_tokens <= 10


def test_logit_bias_steers_the_reply(server):
    """A +100 bias makes a token every greedy choice; a -100 one keeps it out."""
    c = client(server)
    msgs = [{"role": "user", "content": "你好"}]
    token = server.tok.encode("好")[-1]
    forced = c.completions.create(model="tiny", prompt="子曰：", max_tokens=4, logit_bias={str(token): 100})
    assert server.tok.encode(forced.choices[0].text) == [token] * 4 or forced.choices[0].text == "好" * 4
    plain = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=6).choices[0].message.content
    first = server.tok.encode(plain)[0] if plain else None
    if first is not None:
        banned = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=6,
                                           logit_bias={str(first): -100}).choices[0].message.content
        assert not banned.startswith(server.tok.decode([first]))


def test_stop_strings(server):
    c = client(server)
    full = c.completions.create(model="tiny", prompt="To be", max_tokens=20).choices[0].text
    if len(full) < 4:
        pytest.skip("the tiny model stopped early")
    stop = full[2:4]
    cut = c.completions.create(model="tiny", prompt="To be", max_tokens=20, stop=[stop]).choices[0]
    assert cut.text == full[:full.find(stop)] and cut.finish_reason == "stop"


def test_validation_errors_say_what_is_wrong(server):
    h = {"Authorization": f"Bearer {KEY}"}
    url = server.url + "/v1/chat/completions"
    ok = {"messages": [{"role": "user", "content": "hi"}]}
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({**ok, "model": "gpt-4"}), 404, "does not exist"),
        (json.dumps({"messages": []}), 400, "non-empty list"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}), 400, "role must be"),
        (json.dumps({**ok, "temperature": 9}), 400, "'temperature' must be between"),
        (json.dumps({**ok, "max_tokens": 100000}), 400, "'max_tokens' must be between"),
        (json.dumps({**ok, "max_tokens": 60, "messages": [{"role": "user", "content": "很长的问题" * 200}]}), 400,
         "available"),
        (json.dumps({**ok, "n": 9}), 400, "'n' must be between 1 and 8"),
        (json.dumps({**ok, "presence_penalty": 3}), 400, "'presence_penalty' must be between -2 and 2"),
        (json.dumps({**ok, "frequency_penalty": "a"}), 400, "'frequency_penalty' must be a number"),
        (json.dumps({**ok, "logit_bias": {"x": 1}}), 400, "'logit_bias': 'x' is not a token id"),
        (json.dumps({**ok, "logit_bias": {"99999999": 1}}), 400, "is not a token id of this model"),
        (json.dumps({**ok, "logit_bias": {"5": 101}}), 400, "must be a number from -100 to 100"),
        (json.dumps({**ok, "logit_bias": [1]}), 400, "'logit_bias' must be an object"),
        (json.dumps({**ok, "n": 0}), 400, "'n' must be between 1 and 8"),
        (json.dumps({**ok, "stream": True, "stream_options": "yes"}), 400, "'stream_options' must be an object"),
    ]
    before = server.cfg.stats["requests"]
    for body, status, text in cases:
        r = httpx.post(url, content=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert text in r.json()["error"]["message"], r.text
    assert server.cfg.stats["requests"] == before   # nothing refused reached the engine
    assert httpx.post(url, json=ok).status_code == 401
    assert httpx.post(url, json=ok, headers={"Authorization": "Bearer wrong"}).status_code == 401
    big = httpx.post(url, content=b"x" * (2 << 20), headers=h)
    assert big.status_code == 413
    assert httpx.post(url, json={**ok, "n": None, "max_tokens": 2}, headers={"authorization": f"bearer {KEY}"}
                      ).status_code == 200                               # the scheme is case-insensitive
    for r, status in ((httpx.get(server.url + "/v1/nothing", headers=h), 404),
                      (httpx.get(url, headers=h), 405)):                  # OpenAI's error shape here too
        assert r.status_code == status and r.json()["error"]["message"], r.text
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert "baichuan_requests_total" in httpx.get(server.url + "/metrics").text
    assert "<textarea" in httpx.get(server.url + "/").text


def test_full_house_answers_503(tiny_model_dir):
    s = Server(tiny_model_dir, max_batch=1, max_queue=1, max_new_tokens=64)
    try:
        h = {"Authorization": f"Bearer {KEY}"}
        body = {"prompt": "床前", "max_tokens": 60, "stream": True}

        async def go():
            async with httpx.AsyncClient(timeout=60) as ac:
                return await asyncio.gather(*[ac.post(s.url + "/v1/completions", json=body, headers=h)
                                              for _ in range(6)])
        codes = sorted(r.status_code for r in asyncio.run(go()))
        assert codes.count(503) >= 1 and codes.count(200) >= 2
    finally:
        s.close()


def test_disconnect_cancels_the_request(server):
    h = {"Authorization": f"Bearer {KEY}"}
    before = server.cfg.stats["cancelled"]
    with httpx.stream("POST", server.url + "/v1/completions", headers=h,
                      json={"prompt": "床前明月光", "max_tokens": 64, "stream": True, "stop": ["impossible-stop"]}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                break  # read one event, then hang up
    for _ in range(100):
        if server.cfg.stats["cancelled"] > before and server.engine.busy == 0:
            break
        time.sleep(0.05)
    assert server.cfg.stats["cancelled"] > before and server.engine.busy == 0


def test_disconnect_cancels_a_non_streaming_request(server, monkeypatch):
    step = server.engine.step

    def slow_step():  # a big model's pace: 64 tokens take ~2 s, the client gives up after 0.5 s
        time.sleep(0.03)
        return step()
    monkeypatch.setattr(server.engine, "step", slow_step)
    before = dict(server.cfg.stats)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5,
                   json={"prompt": "床前明月光", "max_tokens": 64, "stop": ["impossible-stop"]})
    for _ in range(100):
        if server.cfg.stats["cancelled"] > before["cancelled"] and server.engine.busy == 0:
            break
        time.sleep(0.05)
    assert server.cfg.stats["cancelled"] > before["cancelled"] and server.engine.busy == 0
    assert server.cfg.stats["completion_tokens"] - before["completion_tokens"] < 64


def rss() -> int:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024


def test_100_concurrent_streams_with_bad_requests(server):
    h = {"Authorization": f"Bearer {KEY}"}

    async def stream_one(ac, i):
        body = {"messages": [{"role": "user", "content": f"第{i}个问题"}], "max_tokens": 16, "stream": True}
        text, finish = "", None
        async with ac.stream("POST", server.url + "/v1/chat/completions", json=body, headers=h) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    ch = json.loads(line[6:])["choices"][0]
                    text += ch["delta"].get("content", "")
                    finish = ch["finish_reason"] or finish
        return finish

    async def bad_one(ac, i):
        r = await ac.post(server.url + "/v1/chat/completions", headers=h,
                          content=[b"{oops", b'{"messages": 5}', b'{"model": "x", "messages": []}'][i % 3])
        return r.status_code

    async def go():
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=200)) as ac:
            return await asyncio.gather(*[stream_one(ac, i) for i in range(100)],
                                        *[bad_one(ac, i) for i in range(30)])

    asyncio.run(go())  # warm-up: allocator pools, code paths
    gc.collect()
    base = rss()
    results = asyncio.run(go())
    gc.collect()
    time.sleep(0.5)
    assert all(f in ("stop", "length") for f in results[:100])
    assert all(code in (400, 404) for code in results[100:])
    assert server.engine.busy == 0
    assert rss() - base < 50 * 1024 ** 2, (rss() - base) / 1e6


def test_requests_without_max_tokens_fit_the_context(tiny_model_dir):
    """Baichuan 2's default of 2048 new tokens against a 256-token context: a request that sets no
    max_tokens still gets a reply, of at most half the context (a chat) or what the prompt leaves."""
    s = Server(tiny_model_dir, gen=GenerationConfig(do_sample=False, repetition_penalty=1.0))
    try:
        c = client(s)
        r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "你好"}])
        assert 0 < r.usage.completion_tokens <= 128
        r = c.completions.create(model="tiny", prompt=list(range(3, 203)))
        assert r.usage.prompt_tokens == 200 and 0 < r.usage.completion_tokens <= 56
        long = [{"role": "user", "content": "很长的问题" * 35}]    # over half the context: the reply gets the rest
        r = c.chat.completions.create(model="tiny", messages=long)
        assert r.usage.prompt_tokens > 128 and 0 < r.usage.completion_tokens <= 256 - r.usage.prompt_tokens
        with pytest.raises(openai.BadRequestError, match="available"):  # asked for: honoured, or refused
            c.chat.completions.create(model="tiny", messages=long, max_tokens=128)
    finally:
        s.close()


def test_completions_accept_token_ids(server):
    c = client(server)
    ids = server.tok.encode("床前明月光，")
    by_ids = c.completions.create(model="tiny", prompt=ids, max_tokens=5).choices[0].text
    assert by_ids == c.completions.create(model="tiny", prompt="床前明月光，", max_tokens=5).choices[0].text
    r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"prompt": [1, 2, 10 ** 9], "max_tokens": 2})
    assert r.status_code == 400 and "token ids must be in" in r.json()["error"]["message"]


def test_relay_delivers_every_token_in_order_with_few_wakeups():
    from baichuan.infer.server import Relay

    async def main():
        loop = asyncio.get_running_loop()
        relay = Relay(loop)
        wakeups = 0
        flush = relay.flush

        def counted():
            nonlocal wakeups
            wakeups += 1
            flush()
        relay.flush = counted
        queues = [asyncio.Queue() for _ in range(8)]
        sinks = [relay.sink(q) for q in queues]

        def engine_thread():  # 200 steps, each emitting one token for every row, then the ends
            for step in range(200):
                for sink in sinks:
                    sink(step)
            for sink in sinks:
                sink(None)
        t = threading.Thread(target=engine_thread)
        t.start()
        got = []
        for q in queues:
            out = []
            while (tok := await q.get()) is not None:
                out.append(tok)
            got.append(out)
        t.join()
        return got, wakeups

    got, wakeups = asyncio.run(main())
    assert got == [list(range(200))] * 8
    assert 1 <= wakeups < 8 * 201  # a wake-up per burst at most, never one per token


def test_serve_on_a_busy_port_is_one_line_before_loading(tmp_path, capsys):
    from baichuan.cli import main
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["serve", str(tmp_path / "no-model-needed"), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err


def test_an_engine_failure_is_an_error_not_a_reply(server, monkeypatch):
    def broken(*args):
        raise RuntimeError("out of memory (injected)")
    monkeypatch.setattr(server.engine, "_prefill", broken)
    c = client(server)
    before = server.cfg.stats["failed"]
    with pytest.raises(openai.InternalServerError, match="generation failed"):
        c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "你好"}], max_tokens=4)
    with pytest.raises(openai.APIError, match="generation failed"):   # streamed: an error event, as OpenAI's
        list(c.completions.create(model="tiny", prompt="床前", max_tokens=4, stream=True))
    assert server.cfg.stats["failed"] == before + 2 and server.engine.busy == 0


def test_a_client_that_gives_up_in_the_queue_frees_its_place():
    from test_model import small_model
    from baichuan.infer.sampling import SamplingParams
    engine = Engine(small_model("baichuan-7b"), max_batch=1, max_len=64)
    params = SamplingParams(max_new_tokens=20, eos_token_ids=(-1,))
    running = engine.submit([5, 6, 7], params)
    engine.step()
    seen = []
    queued = engine.submit([8, 9], params, sink=seen.append)
    assert engine.busy == 2
    engine.cancel(queued)          # before any step: the place is free at once
    assert engine.busy == 1 and queued.finish_reason == "cancelled" and seen == [None]
    while not running.done:
        engine.step()
    assert running.finish_reason == "length" and not queued.tokens


def test_a_chunked_body_is_refused_as_it_arrives(server):
    """Without a Content-Length the size limit must hold while the body comes in: the app stops
    reading at 1 MiB, rather than taking 64 MiB into memory and refusing it afterwards."""
    app = create_app(server.engine, server.tok, GenerationConfig(), ServerConfig(model_name="tiny", api_key=KEY))
    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": len(received) < 64}

    async def send(message):
        sent.append(message)
    path = "/v1/chat/completions"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and len(received) <= 2


@pytest.mark.parametrize("flags, compiled, rows, large", [
    (["--dtype", "bfloat16"], True, 1, False), ([], False, None, False),
    (["--dtype", "bfloat16", "--no-compile"], False, None, False), (["--dtype", "bfloat16"], False, None, True)])
def test_serve_on_a_cpu_compiles_one_row_steps_by_default(tiny_model_dir, monkeypatch, capsys, flags, compiled, rows,
                                                          large):
    """`baichuan serve` of a small bf16 model on a CPU compiles its one-row decode step before it
    listens (greedy and the model's sampling defaults), and says so in its banner; fp32 stays
    eager (its batches are fastest with column-major weights), and so does a model of
    SERVE_COMPILE_BELOW_BYTES or more (`large`: the bound lowered under the tiny model)."""
    import uvicorn

    from baichuan import runtime
    from baichuan.cli import main
    if large:
        monkeypatch.setattr(runtime, "SERVE_COMPILE_BELOW_BYTES", 1)
    from baichuan.infer.engine import Engine
    seen = {}
    monkeypatch.setattr(Engine, "start", lambda self: seen.setdefault("engine", self) and None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)  # up to listening, no further
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["serve", str(tiny_model_dir), "--port", str(port), "--device", "cpu", *flags])
    out = capsys.readouterr().out
    engine = seen["engine"]
    assert code == 0 and engine.compiled == compiled and engine.path.compiled_rows == rows
    assert (("compiled (inductor) up to 1 row, eager above" in out) == compiled
            and ("compiling the decode step" in out) == compiled), out
