"""The bodies the server answers with, in OpenAI's shapes: chat completions and text completions,
whole or as stream chunks, with their usage."""

from __future__ import annotations

import secrets
import time


def head(chat: bool, model_name: str) -> dict:
    """The fields every body and chunk of one response shares."""
    return {"id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12), "created": int(time.time()),
            "model": model_name}


def usage(prompt: list[int], completions: list[int]) -> dict:
    """Token counts: the prompt once (as OpenAI counts it for `n` choices), every choice's tokens."""
    n = sum(completions)
    return {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}


def chunk(top: dict, chat: bool, index: int, delta: str, finish: str | None, first: bool = False) -> dict:
    """One stream event of choice `index`; a chat stream names the role in each choice's first."""
    if chat:
        d = {"role": "assistant", "content": delta} if first else ({"content": delta} if delta else {})
        return {**top, "object": "chat.completion.chunk",
                "choices": [{"index": index, "delta": d, "finish_reason": finish}]}
    return {**top, "object": "text_completion",
            "choices": [{"index": index, "text": delta, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(top: dict, chat: bool, counts: dict) -> dict:
    """OpenAI's last chunk with `stream_options.include_usage`: no choices, the usage."""
    return {**top, "object": "chat.completion.chunk" if chat else "text_completion", "choices": [], "usage": counts}


def whole(top: dict, chat: bool, choices: list[tuple[str, str]], counts: dict) -> dict:
    """The non-streamed body: (text, finish reason) of each choice, in order."""
    if chat:
        return {**top, "object": "chat.completion", "usage": counts,
                "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                            for i, (text, finish) in enumerate(choices)]}
    return {**top, "object": "text_completion", "usage": counts,
            "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                        for i, (text, finish) in enumerate(choices)]}
