"""Log-probabilities: the engine reports the model's own distribution (checked against a full
forward), eager and compiled; the server returns them in OpenAI's chat and completions shapes,
streamed and whole alike."""

import httpx
import pytest
import torch

from baichuan.checkpoint import load_pretrained
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams


def reference(model, prompt, tokens):
    """log_softmax of a full forward over prompt + tokens: row t scores tokens[t]."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens]))[0, len(prompt) - 1:-1]
    return logits.float().log_softmax(-1)


@pytest.mark.parametrize("compile", [False, True])
def test_engine_logprobs_are_the_models_distribution(tiny_model_dir, compile):
    model = load_pretrained(tiny_model_dir).eval()
    engine = Engine(model, max_batch=4, compile=compile)
    if compile and not engine.compiled:
        pytest.skip("this torch has no CPU compile backend")
    prompt = [5, 17, 99, 300]
    other = engine.submit([7, 8, 9], SamplingParams(max_new_tokens=12, do_sample=True, seed=1))  # no logprobs
    greedy = engine.submit(prompt, SamplingParams(max_new_tokens=10, logprobs=4))
    sampled = engine.submit(prompt, SamplingParams(max_new_tokens=10, do_sample=True, temperature=1.5, seed=3,
                                                   logprobs=0))
    while not (greedy.done and sampled.done and other.done):
        engine.step()
    assert other.logprobs == []
    for req, k in ((greedy, 4), (sampled, 0)):
        assert [t for t, _, _ in req.logprobs] == req.tokens
        ref = reference(model, prompt, req.tokens)
        for t, (token, logprob, top) in enumerate(req.logprobs):
            assert logprob == pytest.approx(ref[t, token].item(), abs=1e-4)
            assert len(top) == k
            values, ids = ref[t].topk(k)
            assert [i for i, _ in top] == ids.tolist()
            assert [v for _, v in top] == pytest.approx(values.tolist(), abs=1e-4)
    assert all(top[0][0] == token for token, _, top in greedy.logprobs)  # greedy takes the likeliest


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    pytest.importorskip("fastapi")
    from test_server import Server
    s = Server(tiny_model_dir, max_new_tokens=64)
    yield s
    s.close()


def post(server, path, body):
    from test_server import KEY
    return httpx.post(server.url + path, json={"model": "tiny", **body}, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60)


def test_chat_logprobs_spell_the_reply(server):
    openai = pytest.importorskip("openai")
    from test_server import KEY
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    body = dict(model="tiny", messages=[{"role": "user", "content": "你好"}], max_tokens=12, logprobs=True,
                top_logprobs=3, temperature=1.0, seed=5)
    r = c.chat.completions.create(**body)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert bytes(b for t in content for b in t.bytes).decode("utf-8", errors="replace").strip() == \
        r.choices[0].message.content.strip()
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob for t in content)
    streamed = [t for e in c.chat.completions.create(**body, stream=True) if e.choices and e.choices[0].logprobs
                for t in e.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content]
    plain = c.chat.completions.create(**{**body, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_completion_logprobs(server):
    r = post(server, "/v1/completions", {"prompt": "春眠不觉晓", "max_tokens": 8, "logprobs": 2}).json()
    lp = r["choices"][0]["logprobs"]
    n = r["usage"]["completion_tokens"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
    assert all(len(top) <= 2 for top in lp["top_logprobs"])  # two ids may print as one string
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0


@pytest.mark.parametrize("path, extra, param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": 3}, "logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
])
def test_logprobs_out_of_range_are_400(server, path, extra, param):
    body = {"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"}
    r = post(server, path, {**body, "max_tokens": 2, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_a_shared_system_prompt_is_computed_once(tiny_model_dir):
    """Chat requests with one long system prompt: the second reuses its keys and values (counted
    in /metrics, within the bound) and answers exactly as a server without the cache does."""
    pytest.importorskip("fastapi")
    from test_server import Server
    system = "你是百川助手。" + "请根据下面的资料回答问题。" * 20
    answers = []
    for cache in (0, 64 << 20):
        s = Server(tiny_model_dir, max_new_tokens=16, max_len=1024, prefix_cache_bytes=cache)
        try:
            for q in ("春眠不觉晓的下一句？", "Who wrote Hamlet?"):
                r = post(s, "/v1/chat/completions", {"messages": [{"role": "system", "content": system},
                                                                  {"role": "user", "content": q}],
                                                     "max_tokens": 8, "temperature": 0}).json()
                answers.append(r["choices"][0]["message"]["content"])
            metrics = httpx.get(s.url + "/metrics").text
        finally:
            s.close()
    assert answers[:2] == answers[2:]
    counts = dict(line.split() for line in metrics.splitlines())
    assert int(counts["baichuan_prefix_cache_hits_total"]) == 1 and int(counts["baichuan_prefix_cache_misses_total"]) == 1
    assert int(counts["baichuan_prefix_cache_tokens_reused_total"]) >= 64
    assert 0 < int(counts["baichuan_prefix_cache_bytes"]) <= int(counts["baichuan_prefix_cache_max_bytes"]) == 64 << 20
