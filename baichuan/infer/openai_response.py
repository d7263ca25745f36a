"""The bodies the server answers with, in OpenAI's shapes: chat completions and text completions,
whole or as stream chunks, with their usage; a reply in toolcalls.py's format becomes
`tool_calls` (`finish_reason: "tool_calls"`)."""

from __future__ import annotations

import secrets
import time

from baichuan.toolcalls import CALL_OPEN, leading_calls


def head(chat: bool, model_name: str) -> dict:
    """The fields every body and chunk of one response shares."""
    return {"id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12), "created": int(time.time()),
            "model": model_name}


def usage(prompt: list[int], completions: list[int]) -> dict:
    """Token counts: the prompt once (as OpenAI counts it for `n` choices), every choice's tokens."""
    n = sum(completions)
    return {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}


def chunk(top: dict, chat: bool, index: int, delta, finish: str | None, first: bool = False,
          scores: dict | None = None) -> dict:
    """One stream event of choice `index`: `delta` is the chat delta's fields ({"content": ...},
    {"tool_calls": [...]}, or {}) or a completion's text, `scores` its tokens' `logprobs`; a chat
    stream names the role in each choice's first."""
    if chat:
        d = {"role": "assistant", "content": None if "tool_calls" in delta else "", **delta} if first else delta
        return {**top, "object": "chat.completion.chunk",
                "choices": [{"index": index, "delta": d, "logprobs": scores, "finish_reason": finish}]}
    return {**top, "object": "text_completion",
            "choices": [{"index": index, "text": delta, "logprobs": scores, "finish_reason": finish}]}


def _piece(tok, token: int) -> tuple[str, list[int]]:
    raw = tok.piece_bytes(token)
    return raw.decode("utf-8", errors="replace"), list(raw)


def _finite(logprob: float) -> float:
    return max(logprob, -9999.0)  # JSON has no -inf; OpenAI's floor for "impossible"


def logprobs(tok, chat: bool, entries: list, before: list[int] = ()) -> dict:
    """OpenAI's `logprobs` of (id, logprob, [(id, logprob)]) entries: chat's `content` list
    (token, logprob, bytes, top_logprobs), or completions' parallel lists, with each token's
    `text_offset`: where its text starts in the completion, after the ids `before` it."""
    if chat:
        def one(token, logprob):
            text, raw = _piece(tok, token)
            return {"token": text, "logprob": _finite(logprob), "bytes": raw}
        return {"content": [{**one(token, lp), "top_logprobs": [one(j, v) for j, v in top]}
                            for token, lp, top in entries], "refusal": None}
    tokens = [_piece(tok, token)[0] for token, _, _ in entries]
    ids = list(before) + [token for token, _, _ in entries]
    offsets = [len(tok.decode(ids[:len(before) + k])) for k in range(len(entries))]  # bytes pieces: whole chars
    return {"tokens": tokens, "token_logprobs": [_finite(lp) for _, lp, _ in entries],
            "top_logprobs": [{_piece(tok, j)[0]: _finite(v) for j, v in top} for _, _, top in entries],
            "text_offset": offsets}


def usage_chunk(top: dict, chat: bool, counts: dict) -> dict:
    """OpenAI's last chunk with `stream_options.include_usage`: no choices, the usage."""
    return {**top, "object": "chat.completion.chunk" if chat else "text_completion", "choices": [], "usage": counts}


def tool_calls(calls: list[tuple[str, str]], first: int = 0, stream: bool = False) -> list[dict]:
    """OpenAI's `tool_calls` of (name, arguments JSON) pairs; a stream's carry their `index`."""
    return [{**({"index": first + k} if stream else {}), "id": "call_" + secrets.token_hex(12), "type": "function",
             "function": {"name": name, "arguments": arguments}} for k, (name, arguments) in enumerate(calls)]


def _as_calls(text: str, finish: str) -> tuple[list, str] | None:
    """(calls, finish reason) when a reply is tool calls: whole call blocks, then nothing (finish
    "tool_calls") or a block cut short by the token limit (finish "length"; the cut block is
    dropped); else None."""
    calls, rest = leading_calls(text)
    if calls and (not rest.strip() or finish == "length"):
        return calls, "tool_calls" if finish == "stop" else finish
    return None


def message(text: str, finish: str, may_call: bool) -> tuple[dict, str]:
    """A chat reply's message and finish reason: tool calls when the request let the model call
    tools and the reply is calls, else the text."""
    called = _as_calls(text, finish) if may_call else None
    if called:
        return {"role": "assistant", "content": None, "tool_calls": tool_calls(called[0])}, called[1]
    return {"role": "assistant", "content": text}, finish


class ChatDeltas:
    """One chat choice's stream, as `message` reads the whole reply: text as `content` deltas;
    when the model may call tools and the reply starts with a call, each call as a `tool_calls`
    delta once its block closes. Text that might still become a call is held until it is known."""

    def __init__(self, may_call: bool):
        self.text, self.mode, self.calls = "", None if may_call else "text", 0

    def add(self, delta: str) -> list[dict]:
        self.text += delta
        if self.mode is None:
            head = self.text.lstrip()
            if len(head) < len(CALL_OPEN) and CALL_OPEN.startswith(head):
                return []
            self.mode = "calls" if head.startswith(CALL_OPEN) else "text"
            delta = self.text
        if self.mode == "text":
            return [{"content": delta}] if delta else []
        calls = leading_calls(self.text)[0][self.calls:]
        self.calls += len(calls)
        return [{"tool_calls": tool_calls([call], self.calls - len(calls) + k, stream=True)}
                for k, call in enumerate(calls)]

    def finish(self, reason: str) -> tuple[list[dict], str]:
        """The deltas still held, and the finish reason."""
        called = _as_calls(self.text, reason) if self.mode == "calls" else None
        if called:
            return [], called[1]
        if self.mode != "text" and self.text:  # held text, or calls that turned out not to be
            return [{"content": self.text}], reason
        return [], reason


async def stream(choices, top: dict, chat: bool, n: int, may_call: bool, score, usage=None):
    """The chunks of a streamed response: `choices` yields (i, (text delta, finish reason or None,
    log-probability entries or None)) for `n` choices, merged; `score(entries, before)` writes
    entries as `logprobs` (None when not asked for); `usage()`, when given, the last chunk's
    counts. Each chunk carries the scores of the tokens whose text it sends, or, at the end, of
    those it held back."""
    first = [True] * n
    split = [ChatDeltas(may_call) for _ in range(n)]
    held, reported = [[] for _ in range(n)], [[] for _ in range(n)]

    def take(i):
        if not held[i]:
            return None
        scores = score(held[i], [token for token, _, _ in reported[i]])
        reported[i] += held[i]
        held[i] = []
        return scores

    async for i, (delta, finish, scores) in choices:
        held[i] += scores or []
        parts = split[i].add(delta) if chat else [delta] if delta else []
        if finish and chat:
            more, finish = split[i].finish(finish)
            parts += more
        for part in parts:
            yield chunk(top, chat, i, part, None, first[i], take(i))
            first[i] = False
        if finish or first[i]:
            yield chunk(top, chat, i, {} if chat else "", finish, first[i], take(i) if finish else None)
            first[i] = False
    if usage is not None:
        yield usage_chunk(top, chat, usage())


def whole(top: dict, chat: bool, choices: list[tuple[str, str]], counts: dict, may_call: bool = False,
          scores: list | None = None) -> dict:
    """The non-streamed body: (text, finish reason) of each choice, in order, and each choice's
    `logprobs` (`scores`, None when not asked for)."""
    scores = scores or [None] * len(choices)
    if chat:
        replies = [message(text, finish, may_call) for text, finish in choices]
        return {**top, "object": "chat.completion", "usage": counts,
                "choices": [{"index": i, "message": m, "logprobs": scores[i], "finish_reason": finish}
                            for i, (m, finish) in enumerate(replies)]}
    return {**top, "object": "text_completion", "usage": counts,
            "choices": [{"index": i, "text": text, "logprobs": scores[i], "finish_reason": finish}
                        for i, (text, finish) in enumerate(choices)]}
