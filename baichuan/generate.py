"""Text generation with a KV cache: greedy and sampling, applied the way HF `generate` applies them.

The logits pipeline is HF's, in HF's order, so a seed-for-seed comparison is meaningful:
repetition penalty (always), then for sampling temperature -> top-k -> top-p, then a multinomial
draw. Defaults come from the model's `generation_config.json` (Baichuan2-Chat: T 0.3, top-k 5,
top-p 0.85, repetition penalty 1.05). This is the simple single-sequence path used by the CLI; the
batched serving engine lives in the inference stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from baichuan.config import GenerationConfig
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, KVCache


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    stop: list[str] = field(default_factory=list)
    eos_token_ids: tuple[int, ...] = (2,)
    seed: int | None = None

    @classmethod
    def from_generation_config(cls, g: GenerationConfig, **overrides) -> "SamplingParams":
        base = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample, temperature=g.temperature,
                    top_k=g.top_k, top_p=g.top_p, repetition_penalty=g.repetition_penalty,
                    eos_token_ids=(g.eos_token_id,))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise BaichuanError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise BaichuanError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BaichuanError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.repetition_penalty <= 0:
            raise BaichuanError("top_k must be >= 0 and repetition_penalty > 0")


def apply_repetition_penalty(logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty on every token already in the sequence (prompt included), as HF does:
    positive logits are divided by it, negative ones multiplied."""
    if penalty == 1.0:
        return logits
    score = logits.gather(1, seen_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(1, seen_ids, score)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: drop the least likely tokens whose total probability is <= 1-p,
    always keeping the most likely one."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = cum <= 1 - p
    drop_sorted[..., -1] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, seen_ids: torch.Tensor, params: SamplingParams,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] of the last position -> next ids [B]."""
    logits = apply_repetition_penalty(logits.float(), seen_ids, params.repetition_penalty)
    if not params.do_sample:
        return logits.argmax(-1)
    logits = apply_top_p(apply_top_k(logits / params.temperature, params.top_k), params.top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


@torch.no_grad()
def generate_ids(model: Baichuan, prompt_ids: list[int], params: SamplingParams) -> Iterator[int]:
    """Yield new token ids one at a time; stops after an EOS id (not yielded) or max_new_tokens."""
    if not prompt_ids:
        raise BaichuanError("the prompt is empty (0 tokens)")
    limit = model.cfg.max_len
    if len(prompt_ids) >= limit:
        raise BaichuanError(f"the prompt has {len(prompt_ids)} tokens; the model's context is {limit}")
    new = min(params.max_new_tokens, limit - len(prompt_ids))
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)
    cache = KVCache(model.cfg, 1, len(prompt_ids) + new, device=device, dtype=dtype)
    seen = torch.tensor([prompt_ids], device=device)
    logits = model(seen, cache=cache)[:, -1]
    for _ in range(new):
        tok = next_token(logits, seen, params, generator)
        t = int(tok)
        if t in params.eos_token_ids:
            return
        yield t
        seen = torch.cat([seen, tok[:, None]], dim=1)
        if cache.length < cache.max_len:
            logits = model(tok[:, None], cache=cache)[:, -1]


def stream_text(model: Baichuan, tokenizer, prompt_ids: list[int], params: SamplingParams) -> Iterator[str]:
    """Yield pieces of text as tokens arrive. Text is re-decoded from all new ids (so multi-token
    characters and the tokenizer's spacing come out right), a trailing partial UTF-8 character is
    held back, and so is any tail that could still become a stop string."""
    ids: list[int] = []
    sent = 0
    hold = max((len(s) for s in params.stop), default=1) - 1
    for t in generate_ids(model, prompt_ids, params):
        ids.append(t)
        text = tokenizer.decode(ids)
        hit = min((i for i in (text.find(s) for s in params.stop) if i >= 0), default=-1)
        if hit >= 0:
            if hit > sent:
                yield text[sent:hit]
            return
        ready = len(text) - hold if params.stop else len(text)
        if text.endswith("\ufffd"):
            ready = min(ready, len(text) - 1)
        if ready > sent:
            yield text[sent:ready]
            sent = ready
    text = tokenizer.decode(ids)
    if len(text) > sent:
        yield text[sent:]


def generate(model: Baichuan, tokenizer, prompt: str | list[int], params: SamplingParams) -> str:
    prompt_ids = tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    return "".join(stream_text(model, tokenizer, prompt_ids, params))
