"""Sampling parameters and the batched sampler: every row with its own settings, on the device.

The logits pipeline is HF `generate`'s, in HF's order, so results are comparable with it:
repetition penalty (always, greedy too), then for sampling temperature -> top-k -> top-p, then a
draw. The draw is an inverse-CDF lookup with one uniform number per row, so a request with a seed
gets the same tokens whatever else is in the batch, and nothing in here waits on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from baichuan.config import GenerationConfig
from baichuan.errors import BaichuanError


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    presence_penalty: float = 0.0   # OpenAI's: subtracted once from each token generated so far
    frequency_penalty: float = 0.0  # OpenAI's: subtracted per time each token was generated
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    stop: list[str] = field(default_factory=list)
    eos_token_ids: tuple[int, ...] = (2,)
    seed: int | None = None
    grammar: object | None = None   # structured.Grammar: only what it allows is sampled
    logprobs: int | None = None     # report each token's log-probability and this many alternatives

    @classmethod
    def from_request(cls, g: GenerationConfig, stop_ids: tuple[int, ...] = (), *, max_new_tokens: int | None = None,
                     room: int | None = None, temperature: float | None = None, top_k: int | None = None,
                     top_p: float | None = None, repetition_penalty: float | None = None,
                     presence_penalty: float | None = None, frequency_penalty: float | None = None,
                     logit_bias: dict[int, float] | None = None, stop: list[str] | None = None,
                     seed: int | None = None) -> "SamplingParams":
        """What a request (an API body, a command line) asks for, over the model's
        generation_config.json: the one rule for the server, chat, generate and ask. Temperature
        0 is greedy, a positive one samples, none keeps the model's choice; top-k/top-p default to
        the model's when it samples and are off otherwise. Without max_new_tokens: the model's,
        at most `room`. Generation ends at the config's EOS or one of the tokenizer's `stop_ids`."""
        if temperature is None:
            temperature = g.temperature if g.do_sample else 0.0
        sample = temperature > 0
        if max_new_tokens is None:
            max_new_tokens = g.max_new_tokens if room is None else min(g.max_new_tokens, room)
        return cls(max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else 1.0,
                   top_k=top_k if top_k is not None else g.top_k if g.do_sample else 0,
                   top_p=top_p if top_p is not None else g.top_p if g.do_sample else 1.0,
                   repetition_penalty=repetition_penalty if repetition_penalty is not None else g.repetition_penalty,
                   presence_penalty=presence_penalty or 0.0, frequency_penalty=frequency_penalty or 0.0,
                   logit_bias=dict(logit_bias or {}), stop=list(stop or []), seed=seed,
                   eos_token_ids=tuple(dict.fromkeys((g.eos_token_id, *stop_ids))))

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise BaichuanError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise BaichuanError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BaichuanError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise BaichuanError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise BaichuanError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


class SamplerState:
    """Per-row settings and history, as device tensors, for `rows` cache rows over `vocab` ids."""

    def __init__(self, rows: int, vocab: int, device):
        self.temperature = torch.ones(rows, device=device)
        self.top_k = torch.zeros(rows, dtype=torch.long, device=device)
        self.top_p = torch.ones(rows, device=device)
        self.penalty = torch.ones(rows, device=device)
        self.greedy = torch.ones(rows, dtype=torch.bool, device=device)
        self.seen = torch.zeros(rows, vocab, dtype=torch.bool, device=device)  # for the repetition penalty
        self.presence = torch.zeros(rows, device=device)
        self.frequency = torch.zeros(rows, device=device)
        self.counts = torch.zeros(rows, vocab, device=device)  # each token's count in the generated text
        self.bias = torch.zeros(rows, vocab, device=device)
        # the ids a grammar allows: bit i of word w allows id 32 w + i (llguidance's layout); all
        # set for a row without a grammar
        self.allowed = torch.full((rows, -(-vocab // 32)), -1, dtype=torch.int32, device=device)

    def assign(self, row: int, params: SamplingParams, prompt: torch.Tensor) -> None:
        self.temperature[row] = params.temperature if params.do_sample else 1.0
        self.top_k[row] = params.top_k
        self.top_p[row] = params.top_p
        self.penalty[row] = params.repetition_penalty
        self.greedy[row] = not params.do_sample
        self.seen[row] = False
        self.seen[row, prompt] = True
        self.presence[row] = params.presence_penalty
        self.frequency[row] = params.frequency_penalty
        self.counts[row] = 0
        self.bias[row] = 0
        self.allowed[row] = -1
        if params.logit_bias:
            ids = list(params.logit_bias)
            self.bias[row, torch.tensor(ids)] = torch.tensor([params.logit_bias[i] for i in ids])

    def record(self, rows, tokens) -> None:
        """Tokens just generated for `rows` (tensors, or one row and token as ints): into the
        repetition history and the counts."""
        self.seen[rows, tokens] = True
        self.counts[rows, tokens] += 1

    def rows(self, start: int, stop: int) -> "SamplerState":
        view = SamplerState.__new__(SamplerState)
        for name, t in vars(self).items():  # every field is a tensor over the rows
            setattr(view, name, t[start:stop])
        return view


@dataclass(frozen=True)
class Plan:
    """What a step's sampler must do for the rows it runs, so it skips passes over [rows, vocab]
    that no row needs: the grammar mask, each kind of logit adjustment, and how to filter the
    sampled rows (`filter`: "none" when no sampled row has top-k or top-p, "topk" when every one
    has a top-k (the `top` largest of all, not a sort of the vocabulary), else "sort"). Each way
    keeps the same ids (up to exact ties at a top-k boundary) and draws in vocabulary order, so
    a seeded row samples the same tokens whatever the rest of its batch asks."""
    mask: bool = True
    repetition: bool = True
    openai: bool = True            # presence and frequency penalties
    bias: bool = True
    filter: str = "sort"
    top: int = 0

    @classmethod
    def of(cls, params: list[SamplingParams]) -> "Plan":
        sampled = [p for p in params if p.do_sample]
        if not sampled or all(p.top_k == 0 and p.top_p == 1.0 for p in sampled):
            filter, top = "none", 0
        elif all(p.top_k > 0 for p in sampled):
            filter, top = "topk", max(p.top_k for p in sampled)
        else:
            filter, top = "sort", 0
        return cls(mask=any(p.grammar is not None for p in params),
                   repetition=any(p.repetition_penalty != 1.0 for p in params),
                   openai=any(p.presence_penalty or p.frequency_penalty for p in params),
                   bias=any(p.logit_bias for p in params), filter=filter, top=top)

    @property
    def adjusts(self) -> bool:
        return self.mask or self.repetition or self.openai or self.bias


EVERYTHING, NOTHING = Plan(), Plan(False, False, False, False)
TOPK_CAP = 64  # a compiled step samples among the top TOPK_CAP when every sampled row's top-k is within it
# what a compiled step runs (one graph per kind): False and True for no pass or every pass (sampled
# rows sorted), and for sampled batches that need no sort "none" or "topk", every adjustment included
COMPILED = {False: NOTHING, True: EVERYTHING, "none": Plan(filter="none"), "topk": Plan(filter="topk", top=TOPK_CAP)}
# (sampled, kind) of every graph a compiled step has, per row count
COMPILED_KINDS = ((False, False), (False, True), (True, True), (True, "none"), (True, "topk"))


def compiled_kind(plan: Plan, sampled: bool) -> bool | str:
    """The kind (a key of COMPILED) a compiled step runs a batch of this plan as."""
    if not sampled:
        return plan.adjusts
    if plan.filter == "topk" and plan.top <= TOPK_CAP:
        return "topk"
    return "none" if plan.filter == "none" else True


def _plan(plan: Plan | bool | str) -> Plan:
    return plan if isinstance(plan, Plan) else COMPILED[plan]


def allowed_ids(bits: torch.Tensor, vocab: int) -> torch.Tensor:
    """A grammar bitmask [rows, words] (bit i of word w allows id 32 w + i) as bools [rows, vocab]."""
    shifts = torch.arange(32, device=bits.device, dtype=torch.int32)
    return ((bits[:, :, None] >> shifts) & 1).view(bits.shape[0], -1)[:, :vocab].bool()


def process(logits: torch.Tensor, state: SamplerState, plan: Plan | bool | str = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(penalized logits, filtered logits) for logits [rows, V] and a state of as many rows: the
    first is what greedy rows take the argmax of; the second has -inf outside each row's top-k /
    top-p set, after temperature."""
    plan = _plan(plan)
    logits = penalize(logits.float(), state, plan)
    scaled = logits / state.temperature[:, None]
    if plan.filter == "none":
        return logits, scaled
    vocab = logits.shape[-1]
    if plan.filter == "topk":
        top = min(plan.top, vocab)
        ordered, order = scaled.topk(top, dim=-1)
    else:
        top = vocab
        ordered, order = scaled.sort(dim=-1, descending=True)
    k = torch.where(state.top_k > 0, state.top_k, top).clamp(max=top)
    kth = ordered.gather(1, (k - 1)[:, None])
    ordered = ordered.masked_fill(ordered < kth, float("-inf"))
    probs = ordered.softmax(-1)
    above = probs.cumsum(-1) - probs  # probability mass strictly above each token
    # HF drops a token when the mass at or below it is <= 1 - top_p, i.e. when the mass above is >= top_p;
    # HF applies no top-p at 1.0 (rounding could otherwise drop the far tail)
    drop = (above >= state.top_p[:, None]) & (state.top_p[:, None] < 1.0)
    ordered = ordered.masked_fill(drop, float("-inf"))
    filtered = torch.full_like(scaled, float("-inf")).scatter(1, order, ordered)
    return logits, filtered


def penalize(logits: torch.Tensor, state: SamplerState, plan: Plan | bool | str = True) -> torch.Tensor:
    """Ids a grammar does not allow to -inf; HF's repetition penalty (logits of tokens already
    seen are divided if > 0, else multiplied), then OpenAI's presence and frequency penalties over
    the generated tokens and the logit bias: each only when `plan` says a row needs it."""
    plan = _plan(plan)
    if plan.mask:
        logits = logits.masked_fill(~allowed_ids(state.allowed, logits.shape[-1]), float("-inf"))
    if plan.repetition:
        pen = state.penalty[:, None]
        logits = torch.where(state.seen, torch.where(logits < 0, logits * pen, logits / pen), logits)
    if plan.openai:
        counts = state.counts
        logits = logits - state.presence[:, None] * (counts > 0) - state.frequency[:, None] * counts
    if plan.bias:
        logits = logits + state.bias
    return logits


def sample(logits: torch.Tensor, state: SamplerState, uniform: torch.Tensor | None,
           plan: Plan | bool | str = True) -> torch.Tensor:
    """Next ids [rows]: argmax for greedy rows, else a draw at `uniform` [rows] in [0, 1).
    `uniform=None` means every row is greedy, which skips the filtering; `plan` (a Plan, or a
    compiled step's kind: a key of COMPILED) says which passes over the vocabulary any row needs."""
    plan = _plan(plan)
    if uniform is None:  # (fp32 either way: torch's CPU argmax takes 2x longer over bf16 than the cast and it)
        scores = logits.float()
        return (penalize(scores, state, plan) if plan.adjusts else scores).argmax(-1)
    penalized, filtered = process(logits, state, plan)
    probs = filtered.softmax(-1)
    cdf = probs.cumsum(-1)
    # right side: the first token whose cumulative mass exceeds the draw, never a zero-mass one
    drawn = torch.searchsorted(cdf, (uniform[:, None] * cdf[:, -1:]).contiguous(), side="right").squeeze(1)
    drawn = drawn.clamp(max=logits.shape[-1] - 1)
    return torch.where(state.greedy, penalized.argmax(-1), drawn)
