"""Text generation for one prompt: ids from the engine (infer/engine.py), text as it arrives.

Sampling is HF `generate`'s logits pipeline (infer/sampling.py); defaults come from the model's
`generation_config.json` (Baichuan2-Chat: T 0.3, top-k 5, top-p 0.85, repetition penalty 1.05).
"""

from __future__ import annotations

from typing import Iterator

from baichuan.errors import BaichuanError
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams
from baichuan.infer.textstream import TextStream
from baichuan.model import Baichuan

__all__ = ["SamplingParams", "generate", "generate_ids", "stream_text"]


def generate_ids(model: Baichuan, prompt_ids: list[int], params: SamplingParams,
                 engine: Engine | None = None) -> Iterator[int]:
    """New token ids one at a time (EOS is not yielded), through `engine`, or a one-row engine
    made for this prompt (a session of many prompts keeps one engine, compiled once)."""
    if not prompt_ids:
        raise BaichuanError("the prompt is empty (0 tokens)")
    limit = model.cfg.max_len
    if len(prompt_ids) >= limit:
        raise BaichuanError(f"the prompt has {len(prompt_ids)} tokens; the model's context is {limit}")
    if engine is None:
        engine = Engine(model, max_batch=1, max_len=min(limit, len(prompt_ids) + params.max_new_tokens + 1))
    yield from engine.generate(prompt_ids, params)


def stream_text(model: Baichuan, tokenizer, prompt_ids: list[int], params: SamplingParams,
                engine: Engine | None = None) -> Iterator[str]:
    """Yield pieces of text as tokens arrive (infer/textstream.py: multi-token characters and the
    tokenizer's spacing come out right, and a tail that could still become a stop string is held
    back); generation ends at a stop string, which is not part of the text."""
    text = TextStream(tokenizer, params.stop)
    gen = generate_ids(model, prompt_ids, params, engine)
    for t in gen:
        delta = text.add(t)
        if delta:
            yield delta
        if text.stopped:
            gen.close()
            return
    rest = text.finish()
    if rest:
        yield rest


def generate(model: Baichuan, tokenizer, prompt: str | list[int], params: SamplingParams) -> str:
    prompt_ids = tokenizer.encode_prompt(prompt) if isinstance(prompt, str) else prompt
    return "".join(stream_text(model, tokenizer, prompt_ids, params))
