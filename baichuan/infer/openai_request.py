"""An OpenAI request body -> what the engine runs: the prompt's ids, the sampling parameters
and how many choices. Every field is checked here, before any generation, and a bad one is an
`ApiError` (OpenAI's error shape, naming the field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from baichuan.errors import BaichuanError
from baichuan.infer.sampling import SamplingParams
from baichuan.tokenizer import ContextTooLong, chat_template_for, fit_chat
from baichuan.toolcalls import ToolError, check_tools, plain_messages

MAX_CHOICES = 8  # `n`: each choice is a request of its own in the engine
MAX_BIASED = 1024  # `logit_bias` entries


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------ validation

def number(body: dict, name: str, kind, lo, hi, default):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be between {lo} and {hi}, got {v}", param=name)
    return kind(v)


def asked_max_tokens(body: dict):
    return body.get("max_tokens", body.get("max_completion_tokens"))


def logit_bias_from(body: dict, vocab: int) -> dict[int, float]:
    """OpenAI's `logit_bias`: {"token id": bias in [-100, 100]}, ids in the model's vocabulary."""
    bias = body.get("logit_bias")
    if bias is None:
        return {}
    if not isinstance(bias, dict) or len(bias) > MAX_BIASED:
        raise ApiError(400, f"'logit_bias' must be an object of at most {MAX_BIASED} token ids", param="logit_bias")
    out = {}
    for key, value in bias.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) < vocab):
            raise ApiError(400, f"'logit_bias': {key!r} is not a token id of this model (0 to {vocab - 1})",
                           param="logit_bias")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            raise ApiError(400, f"'logit_bias': the bias of token {key} must be a number from -100 to 100",
                           param="logit_bias")
        out[int(key)] = float(value)
    return out


def sampling_from(body: dict, gen_defaults, limit: int, stop_ids: tuple[int, ...], max_len: int,
                  vocab: int = 0) -> SamplingParams:
    """A request's sampling settings; `limit` is the server's most new tokens per request and
    `vocab` the model's vocabulary, which `logit_bias` ids must be in.
    Without max_tokens: the model's default (Baichuan 2's 2048), at most half the context, so a
    model with a short context still takes a prompt."""
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 4:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 non-empty strings", param="stop")
    return SamplingParams.from_request(
        gen_defaults, stop_ids, room=min(limit, max(1, max_len // 2)),
        max_new_tokens=number({"max_tokens": asked_max_tokens(body)}, "max_tokens", int, 1, limit, None),
        temperature=number(body, "temperature", float, 0, 2, None),
        top_p=number(body, "top_p", float, 1e-6, 1, None), top_k=number(body, "top_k", int, 0, 1 << 20, None),
        repetition_penalty=number(body, "repetition_penalty", float, 0.01, 10, None),
        presence_penalty=number(body, "presence_penalty", float, -2, 2, None),
        frequency_penalty=number(body, "frequency_penalty", float, -2, 2, None),
        logit_bias=logit_bias_from(body, vocab), stop=stop, seed=number(body, "seed", int, 0, 2 ** 63 - 1, None))


MAX_TOP_LOGPROBS = {True: 20, False: 5}  # chat's top_logprobs, completions' logprobs (OpenAI's limits)


def logprobs_from(body: dict, chat: bool) -> int | None:
    """How many alternatives to report with each token's log-probability, or None for none: chat's
    `logprobs` (true/false) with `top_logprobs`, completions' `logprobs` (a count)."""
    if not chat:
        return number(body, "logprobs", int, 0, MAX_TOP_LOGPROBS[False], None)
    wanted = body.get("logprobs")
    if wanted not in (None, True, False):
        raise ApiError(400, "'logprobs' must be true or false", param="logprobs")
    top = number(body, "top_logprobs", int, 0, MAX_TOP_LOGPROBS[True], None)
    if top is not None and not wanted:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return (top or 0) if wanted else None


def chat_prompt(tok, body: dict, max_new: int, max_len: int, asked: bool = True,
                functions: list[dict] | None = None) -> tuple[list[int], int]:
    """The prompt's ids and the reply's token budget: `max_new`, or, when the client did not ask
    for a length (`asked` False), less if the newest turn needs the room. Tool calls and results
    in the messages, and the `functions` offered, are written in toolcalls.py's format."""
    try:
        clean = plain_messages(body.get("messages"), functions)
    except ToolError as e:
        raise ApiError(400, str(e), param=e.field) from None
    if clean[-1]["role"] == "system" or not any(m["role"] == "user" for m in clean):
        raise ApiError(400, "messages need at least one user message", param="messages")
    try:
        return fit_chat(tok, clean, chat_template_for(tok), max_new, max_len, shrink=not asked,
                        length_name="max_tokens")
    except ContextTooLong as e:
        raise ApiError(400, str(e), param=e.field, code="context_length_exceeded") from None
    except BaichuanError as e:
        raise ApiError(400, str(e), param="messages") from None


def completion_prompt(tok, body: dict) -> list[int]:
    """/v1/completions' `prompt`: a string, or token ids as the OpenAI API allows (a list of one
    of either is taken too)."""
    text = body.get("prompt")
    if isinstance(text, list) and len(text) == 1 and isinstance(text[0], (str, list)):
        text = text[0]
    if isinstance(text, list) and text and all(isinstance(t, int) and not isinstance(t, bool) for t in text):
        return text
    if isinstance(text, str) and text:
        return tok.encode_prompt(text)  # BOS first where the tokenizer asks (LLaMA)
    raise ApiError(400, "'prompt' must be a non-empty string or list of token ids", param="prompt")


def choice_count(body: dict) -> int:
    return number(body, "n", int, 1, MAX_CHOICES, 1)


def choice_params(params: SamplingParams, n: int) -> list[SamplingParams]:
    """The parameters of each of `n` choices: with a seed, choice i samples with seed + i, so each
    choice differs from the others and is the same on every run."""
    if params.seed is None or n == 1:
        return [params] * n
    return [replace(params, seed=(params.seed + i) % 2 ** 63) for i in range(n)]


# ---------------------------------------------------------------------- structured replies

SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Structure:
    """What a reply must be: llguidance grammar text (structured.py), the functions offered (the
    prompt lists them) and whether the reply may call them (its calls are read back into
    `tool_calls`; not with tool_choice "none")."""
    grammar: str
    functions: tuple[dict, ...] = ()
    may_call: bool = False


def reply_schema(body: dict) -> dict | None:
    """`response_format`: None for text, {} for any JSON object, else the JSON schema."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind != "json_schema":
        raise ApiError(400, "'response_format.type' must be text, json_object or json_schema",
                       param="response_format")
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not SCHEMA_NAME.match(spec["name"]):
        raise ApiError(400, "'response_format.json_schema' needs a name of 1 to 64 letters, digits, '_' or '-'",
                       param="response_format")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise ApiError(400, "'response_format.json_schema.schema' must be a JSON schema object",
                       param="response_format")
    return schema or {}


def tool_choice_from(body: dict, functions: list[dict]) -> str:
    """`tool_choice`: "auto" (the default with tools), "none", "required", or a function's name."""
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise ApiError(400, "'tool_choice' must be auto, none, required or "
                                "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")
        if name not in {f["name"] for f in functions}:
            raise ApiError(400, f"'tool_choice' names {name!r}, which is not among the tools", param="tool_choice")
        return name
    if choice not in ("auto", "none", "required"):
        raise ApiError(400, "'tool_choice' must be auto, none, required or a function", param="tool_choice")
    return choice


def structure_from(body: dict, chat: bool) -> Structure | None:
    """The grammar a request's reply must follow (`response_format`, and on chat `tools` with
    `tool_choice` and `parallel_tool_calls`), or None for free text. Grammar text is built here;
    compiling it (which may still refuse the schema) is the server's, off the event loop."""
    from baichuan.infer.structured import json_grammar, tool_grammar
    schema = reply_schema(body)
    tools = body.get("tools") if chat else None
    if tools is None and body.get("tool_choice") is not None:
        raise ApiError(400, "'tool_choice' needs 'tools'", param="tool_choice")
    try:
        if tools is None:
            return None if schema is None else Structure(json_grammar(schema or None))
        try:
            functions = check_tools(tools)
        except ToolError as e:
            raise ApiError(400, str(e), param=e.field) from None
        choice = tool_choice_from(body, functions)
        parallel = body.get("parallel_tool_calls", True)
        if not isinstance(parallel, bool):
            raise ApiError(400, "'parallel_tool_calls' must be true or false", param="parallel_tool_calls")
        return Structure(tool_grammar(functions, choice, schema, parallel), tuple(functions), choice != "none")
    except BaichuanError as e:  # a schema llguidance cannot read, or no llguidance
        raise ApiError(400, f"the schema cannot be used: {e}", param="tools" if tools else "response_format") from None


async def reply_grammar(structure: Structure, grammars):
    """`structure`'s grammar compiled by `grammars` (structured.Grammars) off the event loop,
    within COMPILE_SECONDS, or a 400 that names the field it came from."""
    import asyncio

    from baichuan.infer.structured import COMPILE_SECONDS
    param = "tools" if structure.functions else "response_format"
    try:
        return await asyncio.wait_for(asyncio.to_thread(grammars.compile, structure.grammar), COMPILE_SECONDS)
    except asyncio.TimeoutError:
        raise ApiError(400, f"the schema takes over {COMPILE_SECONDS:g} s to compile", param=param) from None
    except BaichuanError as e:
        raise ApiError(400, f"the schema cannot be used: {e}", param=param) from None
