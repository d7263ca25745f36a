"""The bodies the server answers with, in OpenAI's shapes: chat completions and text completions,
whole or as stream chunks, with their usage; a reply in toolcalls.py's format becomes
`tool_calls` (`finish_reason: "tool_calls"`)."""

from __future__ import annotations

import secrets
import time

from baichuan.toolcalls import CALL_BLOCK, CALL_OPEN, parse_calls


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
        d = {"role": "assistant", "content": "", **delta} if first else delta
        return {**top, "object": "chat.completion.chunk",
                "choices": [{"index": index, "delta": d, "logprobs": scores, "finish_reason": finish}]}
    return {**top, "object": "text_completion",
            "choices": [{"index": index, "text": delta, "logprobs": scores, "finish_reason": finish}]}


def _piece(tok, token: int) -> tuple[str, list[int]]:
    raw = tok.piece_bytes(token)
    return raw.decode("utf-8", errors="replace"), list(raw)


def _finite(logprob: float) -> float:
    return max(logprob, -9999.0)  # JSON has no -inf; OpenAI's floor for "impossible"


def logprobs(tok, chat: bool, entries: list, offset: int = 0) -> dict:
    """OpenAI's `logprobs` of (id, logprob, [(id, logprob)]) entries: chat's `content` list
    (token, logprob, bytes, top_logprobs), or completions' parallel lists, their `text_offset`
    counted from `offset` characters."""
    if chat:
        def one(token, logprob):
            text, raw = _piece(tok, token)
            return {"token": text, "logprob": _finite(logprob), "bytes": raw}
        return {"content": [{**one(token, lp), "top_logprobs": [one(j, v) for j, v in top]}
                            for token, lp, top in entries], "refusal": None}
    tokens = [_piece(tok, token)[0] for token, _, _ in entries]
    offsets = [offset + sum(map(len, tokens[:k])) for k in range(len(tokens))]
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


def message(text: str, finish: str, functions) -> tuple[dict, str]:
    """A chat reply's message and finish reason: tool calls when functions were offered and the
    reply is calls, else the text."""
    calls = parse_calls(text) if functions and finish == "stop" else None
    if calls:
        return {"role": "assistant", "content": None, "tool_calls": tool_calls(calls)}, "tool_calls"
    return {"role": "assistant", "content": text}, finish


class ChatDeltas:
    """One chat choice's stream: text as `content` deltas; when functions were offered and the
    reply starts with a call, each call as a `tool_calls` delta once its block closes. Text that
    might still become a call is held until it is known."""

    def __init__(self, functions):
        self.text, self.mode, self.calls = "", None if functions else "text", 0

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
        blocks = list(CALL_BLOCK.finditer(self.text))[self.calls:]
        out = []
        for block in blocks:
            calls = parse_calls(block.group(0))
            if calls:
                out.append({"tool_calls": tool_calls(calls, self.calls, stream=True)})
                self.calls += 1
        return out

    def finish(self, reason: str) -> tuple[list[dict], str]:
        """The deltas still held, and the finish reason."""
        if self.mode == "calls" and self.calls and reason == "stop" and parse_calls(self.text):
            return [], "tool_calls"
        if self.mode != "text" and not self.calls and self.text:  # held text, or a call cut short
            return [{"content": self.text}], reason
        return [], reason


def whole(top: dict, chat: bool, choices: list[tuple[str, str]], counts: dict, functions=(),
          scores: list | None = None) -> dict:
    """The non-streamed body: (text, finish reason) of each choice, in order, and each choice's
    `logprobs` (`scores`, None when not asked for)."""
    scores = scores or [None] * len(choices)
    if chat:
        replies = [message(text, finish, functions) for text, finish in choices]
        return {**top, "object": "chat.completion", "usage": counts,
                "choices": [{"index": i, "message": m, "logprobs": scores[i], "finish_reason": finish}
                            for i, (m, finish) in enumerate(replies)]}
    return {**top, "object": "text_completion", "usage": counts,
            "choices": [{"index": i, "text": text, "logprobs": scores[i], "finish_reason": finish}
                        for i, (text, finish) in enumerate(choices)]}
