"""`baichuan serve MODEL`: an OpenAI-compatible HTTP API and a web chat page over the engine.

    POST /v1/chat/completions   (stream or not; Baichuan 1 / Baichuan 2 chat prompt by tokenizer)
    POST /v1/completions        (stream or not)
    POST /v1/ask                (with --index: answers from documents with citations; stream or not)
    GET  /v1/models, /health, /metrics (Prometheus text), /  (the chat page)

Chat and completions take OpenAI's fields: `n`, `logprobs`, the penalties, `logit_bias`, `seed`,
`response_format` (json_object, json_schema) and, on chat, `tools` / `tool_choice`; the last two
constrain decoding with a grammar (structured.py), in the tool-call format of toolcalls.py.
Prompts that share a prefix with earlier ones reuse its keys and values (prefix.py).

The server only translates HTTP to engine calls: openai_request.py reads a body (prompt, sampling
settings, `n` choices, each field checked), openai_response.py writes the answers. `n` choices are
`n` engine requests (seeded ones with seed, seed + 1, ...), merged into one stream or body.
Every request is bounded: body size, prompt and
new tokens against the context, and the number of requests in the house (a full house answers
503). A client that goes away cancels its request. Binds 127.0.0.1 unless told otherwise; with an
API key, every /v1 call needs `Authorization: Bearer KEY`.
"""


import asyncio
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from baichuan.errors import BaichuanError
from baichuan.infer import openai_response as response
from baichuan.infer.engine import Engine
from baichuan.infer.openai_request import (ApiError, number, asked_max_tokens, chat_prompt, choice_count,
                                           choice_params, completion_prompt, logprobs_from, reply_grammar,
                                           sampling_from, structure_from)
from baichuan.infer.sampling import SamplingParams
from baichuan.infer.structured import Grammars
from baichuan.infer.textstream import TextStream

WEB_PAGE = Path(__file__).parent / "web" / "chat.html"


@dataclass
class ServerConfig:
    model_name: str = "baichuan"
    api_key: str | None = None
    max_queue: int = 64               # requests waiting for a row, beyond the engine's rows
    max_new_tokens: int = 2048        # per request
    max_body_bytes: int = 1 << 20
    max_question_chars: int = 4000    # /v1/ask; the prompt budget is checked in tokens as well
    stats: dict = field(default_factory=lambda: {"requests": 0, "rejected": 0, "completed": 0, "cancelled": 0,
                                                  "failed": 0, "prompt_tokens": 0, "completion_tokens": 0})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no caching or proxy buffering of a stream


def sse(event: dict | None) -> str:
    """One server-sent event: a JSON object, or OpenAI's closing `[DONE]` for None."""
    return f"data: {'[DONE]' if event is None else json.dumps(event, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------------- the app

async def merge(streams):
    """(i, item) from every async generator of `streams`, as each item arrives. A failure in one
    (a client gone, an engine error) is raised here, and the others are closed, which cancels
    their requests."""
    queue: asyncio.Queue = asyncio.Queue()
    ended = object()

    async def drain(i, stream):
        try:
            async for item in stream:
                queue.put_nowait((i, item))
            queue.put_nowait((i, ended))
        except BaseException as e:  # CancelledError too: the consumer must hear of it
            queue.put_nowait((i, e))
            raise

    tasks = [asyncio.create_task(drain(i, stream)) for i, stream in enumerate(streams)]
    try:
        left = len(tasks)
        while left:
            i, item = await queue.get()
            if item is ended:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Relay:
    """Hands tokens from the engine thread to the event loop's per-request queues with one
    wake-up of the loop per burst (a decode step emits a token for every row), not one per token."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.pending, self.armed, self.lock = loop, deque(), False, threading.Lock()

    def sink(self, queue: asyncio.Queue):
        def push(tok):
            self.pending.append((queue, tok))
            with self.lock:
                if self.armed:
                    return
                self.armed = True
            self.loop.call_soon_threadsafe(self.flush)
        return push

    def flush(self):
        with self.lock:
            self.armed = False  # a push from now on wakes the loop again; earlier ones are drained below
        while self.pending:
            queue, tok = self.pending.popleft()
            queue.put_nowait(tok)


async def request_pieces(request, req, queue, params: SamplingParams, engine: Engine, tokenizer, stats: dict,
                         lock: threading.Lock):
    """(text delta, None, the delta's tokens' log-probabilities or None) as the tokens of engine
    request `req` arrive on `queue` (decoded incrementally, stop strings honored), then ("",
    finish reason, None); counted in `stats`. Cancels the request if the client disconnects."""
    text, finish, scored = TextStream(tokenizer, params.stop), None, 0
    checked = time.monotonic()
    try:
        while finish is None:
            try:
                tok = await asyncio.wait_for(queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                tok = False
            # a non-streaming client that hangs up is seen only by asking (tokens may never pause)
            if tok is False or time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if await request.is_disconnected():
                    raise asyncio.CancelledError from None
                if tok is False:
                    continue
            # a client that fell behind takes every token already here as one delta
            toks = [tok]
            while toks[-1] is not None and not queue.empty():
                toks.append(queue.get_nowait())
            delta = ""
            for tok in toks:
                if tok is None:
                    if req.finish_reason == "error":
                        raise ApiError(500, "generation failed; the server log has the cause", "server_error")
                    finish = "length" if req.finish_reason == "length" else "stop"
                    break
                delta += text.add(tok)
                if text.stopped:  # a stop string: the text ends before it, and so does the request
                    engine.cancel(req)
                    finish = "stop"
                    break
            if delta:
                yield delta, None, scores(req, scored, len(text.ids))
                scored = len(text.ids)
        rest = text.finish()  # what was held back: a possible stop-string prefix, a partial character
        if rest:
            yield rest, None, scores(req, scored, len(text.ids))
    except (asyncio.CancelledError, GeneratorExit):
        engine.cancel(req)
        with lock:
            stats["cancelled"] += 1
        raise
    except ApiError:
        with lock:
            stats["failed"] += 1
        raise
    with lock:
        stats["completed"] += 1
        stats["completion_tokens"] += len(text.ids)
    yield "", finish, None


def scores(req, start: int, stop: int) -> list | None:
    """The log-probabilities of the request's tokens start..stop, when it asked for them."""
    return req.logprobs[start:stop] if req.params.logprobs is not None else None


def create_app(engine: Engine, tokenizer, gen_defaults, cfg: ServerConfig, index=None):
    """The FastAPI app; `index` (baichuan.rag.Index) enables POST /v1/ask."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="baichuan", docs_url=None, redoc_url=None)
    stats = cfg.stats
    lock = threading.Lock()
    max_len = engine.max_len
    vocab = engine.model.cfg.vocab_size

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)  # unknown path, wrong method: OpenAI's error shape too
    async def http_error(_, e: StarletteHTTPException):
        return JSONResponse(ApiError(e.status_code, str(e.detail)).body(), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    def refusal(request: Request) -> JSONResponse | None:
        if request.url.path.startswith("/v1") and cfg.api_key:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), cfg.api_key.encode()):
                return JSONResponse(ApiError(401, "invalid or missing API key", "authentication_error").body(), 401)
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > cfg.max_body_bytes):
            return JSONResponse(ApiError(413, f"request body over {cfg.max_body_bytes} bytes").body(), 413)
        return None

    class Guard:
        """The API key and body size, checked as plain ASGI: Starlette's `@app.middleware` wraps
        `receive`, and endpoints behind it never see a client hang up."""

        def __init__(self, app):  # Starlette before 0.41.3 passes it by this name
            self.app = app

        async def __call__(self, scope, receive, send):
            response = refusal(Request(scope)) if scope["type"] == "http" else None
            await (response(scope, receive, send) if response else self.app(scope, receive, send))

    app.add_middleware(Guard)

    def unknown_model(name) -> ApiError:
        return ApiError(404, f"model {name!r} does not exist; this server serves {cfg.model_name!r}", param="model",
                        code="model_not_found")

    async def read_body(request: Request) -> dict:
        raw = bytearray()
        async for part in request.stream():  # counted as it arrives: a chunked body has no length header
            raw += part
            if len(raw) > cfg.max_body_bytes:
                raise ApiError(413, f"request body over {cfg.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        if body.get("model") not in (None, cfg.model_name):
            raise unknown_model(body.get("model"))
        return body

    def event_stream(events) -> StreamingResponse:
        """The dicts of async generator `events` as server-sent events, then `[DONE]`. A failure
        once the stream has begun (its status is sent) is an error event, which OpenAI's clients
        raise, and ends the stream."""
        async def body():
            try:
                async for event in events:
                    yield sse(event)
            except ApiError as e:
                yield sse(e.body())
                return
            yield sse(None)
        return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)

    relays: dict = {}  # one per event loop (one in a server; tests may start several)
    grammars = Grammars(tokenizer, vocab, tokenizer.stop_ids)  # compiled reply grammars, cached

    def admit(prompt: list[int], params: SamplingParams, loop) -> tuple:
        if len(prompt) + params.max_new_tokens > max_len:
            raise ApiError(400, f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_new_tokens}) exceeds the "
                                f"{max_len}-token context", param="max_tokens", code="context_length_exceeded")
        with lock:
            if engine.busy >= engine.max_batch + cfg.max_queue:
                stats["rejected"] += 1
                raise ApiError(503, "the server is at capacity; retry later", "server_error", code="overloaded")
            stats["requests"] += 1
            stats["prompt_tokens"] += len(prompt)
            queue: asyncio.Queue = asyncio.Queue()
            try:
                relay = relays.get(loop) or relays.setdefault(loop, Relay(loop))
                req = engine.submit(prompt, params, sink=relay.sink(queue))
            except BaichuanError as e:
                raise ApiError(400, str(e)) from None
        return req, queue

    def admit_all(prompt: list[int], choices: list[SamplingParams], loop) -> list[tuple]:
        """(request, queue, parameters) of each choice, all admitted or none."""
        runs = []
        try:
            for params in choices:
                runs.append((*admit(prompt, params, loop), params))
        except ApiError:
            for req, _, _ in runs:
                engine.cancel(req)
            raise
        return runs

    def pieces(request: Request, req, queue, params: SamplingParams):
        return request_pieces(request, req, queue, params, engine, tokenizer, stats, lock)

    async def complete(request: Request, chat: bool):
        body = await read_body(request)
        params = sampling_from(body, gen_defaults, cfg.max_new_tokens, tokenizer.stop_ids, max_len, vocab)
        n = choice_count(body)
        structure = structure_from(body, chat)
        functions = structure.functions if structure else ()
        may_call = bool(structure and structure.may_call)
        if chat:
            prompt, max_new = chat_prompt(tokenizer, body, params.max_new_tokens, max_len,
                                          asked=asked_max_tokens(body) is not None, functions=list(functions))
            params = replace(params, max_new_tokens=max_new)
        else:
            prompt = completion_prompt(tokenizer, body)
            if asked_max_tokens(body) is None and len(prompt) < max_len:
                # no max_tokens asked for: a long prompt gets what is left of the context
                params = replace(params, max_new_tokens=min(params.max_new_tokens, max_len - len(prompt)))
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):  # checked before admit: a refused request must not run
            raise ApiError(400, "'stream_options' must be an object", param="stream_options")
        if structure is not None:
            params = replace(params, grammar=await reply_grammar(structure, grammars))
        params = replace(params, logprobs=logprobs_from(body, chat))
        runs = admit_all(prompt, choice_params(params, n), asyncio.get_running_loop())
        top = response.head(chat, cfg.model_name)
        choices = merge([pieces(request, req, queue, p) for req, queue, p in runs])

        def counts():
            return response.usage(prompt, [len(req.tokens) for req, _, _ in runs])

        def scored(entries: list, before: list[int] = ()) -> dict | None:
            return None if params.logprobs is None else response.logprobs(tokenizer, chat, entries, before)

        if body.get("stream"):
            return event_stream(response.stream(choices, top, chat, n, may_call, scored,
                                                counts if options.get("include_usage") else None))
        texts, finishes, entries = [[] for _ in range(n)], ["stop"] * n, [[] for _ in range(n)]
        async for i, (delta, finish, scores) in choices:
            texts[i].append(delta)
            entries[i] += scores or []
            finishes[i] = finish or finishes[i]
        return response.whole(top, chat, [("".join(t), f) for t, f in zip(texts, finishes)], counts(), may_call,
                              [scored(e) for e in entries])

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.post("/v1/ask")
    async def ask(request: Request):
        """{"question", "passages"? (how many to retrieve, default 5), "max_tokens"?, "stream"?,
        sampling fields?} -> the answer with citations (baichuan.rag.answer.Answer.to_dict).
        Streaming sends {"passages"} first, then {"delta"} events, then {"answer": ...}. Greedy
        unless told otherwise."""
        from baichuan.rag.answer import finish, prepare
        if index is None:
            raise ApiError(404, "this server has no document index; start it with `baichuan serve MODEL --index DIR`",
                           code="no_index")
        body = await read_body(request)
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ApiError(400, "'question' must be a non-empty string", param="question")
        if len(question) > cfg.max_question_chars:
            raise ApiError(400, f"'question' is {len(question)} characters; the limit is {cfg.max_question_chars}",
                           param="question", code="context_length_exceeded")
        top_k = number(body, "passages", int, 1, 20, 5)
        params = sampling_from({"temperature": 0, **body}, gen_defaults, cfg.max_new_tokens, tokenizer.stop_ids,
                               max_len, vocab)
        try:
            prepared = await asyncio.to_thread(prepare, question, index, tokenizer, top_k=top_k,
                                               max_new_tokens=params.max_new_tokens, max_len=max_len)
        except BaichuanError as e:
            raise ApiError(400, str(e), param="question", code="context_length_exceeded") from None
        stream = bool(body.get("stream"))
        if prepared.refusal is not None:                       # nothing relevant: no generation
            result = prepared.refusal.to_dict()
            if not stream:
                return result
            async def refused():
                yield {"passages": []}
                yield {"answer": result}
            return event_stream(refused())
        req, queue = admit(prepared.ids, params, asyncio.get_running_loop())
        if not stream:
            text = [delta async for delta, _, _ in pieces(request, req, queue, params)]
            return finish("".join(text), prepared).to_dict()

        async def events():
            yield {"passages": [s.to_json() for s in prepared.sources]}
            text = []
            async for delta, _, _ in pieces(request, req, queue, params):
                if delta:
                    text.append(delta)
                    yield {"delta": delta}
            yield {"answer": finish("".join(text), prepared).to_dict()}
        return event_stream(events())

    card = {"id": cfg.model_name, "object": "model", "created": 0, "owned_by": "baichuan", "context_length": max_len}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model:path}")
    async def model(model: str):
        if model != cfg.model_name:
            raise unknown_model(model)
        return card

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": cfg.model_name, "busy": engine.busy, "index": index is not None,
                "context_length": max_len}

    @app.get("/metrics")
    async def metrics():
        lines = [f"baichuan_{k}_total {v}" for k, v in stats.items()]
        lines += [f"baichuan_active_requests {sum(s is not None for s in engine.slots)}",
                  f"baichuan_waiting_requests {len(engine.waiting)}",
                  f"baichuan_rows {engine.max_batch}"]
        if engine.prefix is not None:  # counts end in _total; sizes are gauges
            lines += [f"baichuan_{k}{'' if k.endswith(('bytes', 'entries')) else '_total'} {v}"
                      for k, v in engine.prefix.stats.items()]
            lines.append(f"baichuan_prefix_cache_max_bytes {engine.prefix.max_bytes}")
        return PlainTextResponse("\n".join(lines) + "\n")

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(WEB_PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", cfg.model_name))

    return app


def _check_listen(host: str, port: int) -> None:
    import socket
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind((host, port))
    except OSError as e:
        raise BaichuanError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          max_batch: int = 8, max_queue: int = 64, max_len: int | None = None, device: str | None = None,
          dtype=None, model_name: str | None = None, index_dir: str | None = None, compile: bool | None = None,
          prefix_cache_mb: int = 512) -> None:
    """Serve a model directory. `compile`: True compiles the decode step for every row count and
    sampling kind before serving (CUDA graphs on a GPU); None (the default) compiles on a CPU where
    `runtime.compile_decode` says it pays and the weights are under `SERVE_COMPILE_BELOW_BYTES`
    (512 MB: above, the compiler's memory outweighs the gain), for one-row steps only (a lone stream is bound by
    per-operator overhead, which compiling removes; batches amortize it eager), warmed for greedy
    decoding and the model's own sampling defaults: two graphs, not one per row count and kind."""
    try:
        import uvicorn
    except ImportError:
        raise BaichuanError("serving needs FastAPI and uvicorn: pip install 'baichuan[serve]'") from None
    _check_listen(host, port)  # before the model loads: a busy port is known in a second, not a minute
    from baichuan.config import load_generation_config
    from baichuan.runtime import SERVE_COMPILE_BELOW_BYTES, load_model_and_tokenizer, ready_engine, weight_bytes
    model, tok = load_model_and_tokenizer(model_dir, device, dtype)
    generation = load_generation_config(model_dir)
    index = None
    if index_dir:
        from baichuan.rag.index import load_index
        index = load_index(index_dir)
    # what requests without sampling fields decode with, greedy (temperature 0) and sampled
    defaults = [SamplingParams.from_request(generation, tok.stop_ids, temperature=t) for t in (0.0, None)]
    asked = compile
    if asked is None and next(model.parameters()).dtype == torch.float32:
        asked = False  # fp32 batches decode fastest eager with column-major weights, which compiled steps cannot share
    if asked is None and weight_bytes(model) >= SERVE_COMPILE_BELOW_BYTES:
        asked = False  # the compiler's memory outweighs what one-row steps gain (runtime.py)
    engine = ready_engine(model, asked, None if compile else defaults, print, max_batch=max_batch, max_len=max_len,
                          prefix_cache_bytes=prefix_cache_mb << 20, compiled_rows=None if compile else 1)
    cfg = ServerConfig(model_name=model_name or Path(model_dir).resolve().name, api_key=api_key, max_queue=max_queue)
    app = create_app(engine, tok, generation, cfg, index=index)
    engine.start()
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        print(f"warning: serving on {host} without --api-key: anyone who can reach it can use it")
    print(f"serving {cfg.model_name} on http://{host}:{port} (chat page at /, OpenAI API at /v1); "
          f"{engine.describe()}")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        engine.stop()
