"""The inference engine: continuous batching over a pre-allocated KV cache. Speaks token ids only.

The cache has `max_batch` rows of `max_len` slots. A request waits until a row is free, is
prefilled into it (requests admitted in the same step share one right-padded forward, up to
`prefill_tokens`), then decodes together with every other active row, one token per step; it
leaves when it hits EOS, its token budget, the end of its row or a cancel, and the next waiting
request takes the row. Requests join and leave between steps.

Sampling runs on the device with each row's own settings (sampling.py). What a step waits on the
device for, on a GPU (PyTorch synchronizes the stream after every blocking copy, in either
direction; on a CPU nothing waits):
- decoding, one sync per step: the new tokens read back (`tolist`), which the caller streams.
  When some of the rows it ran are empty (under CUDA graphs: whenever fewer than `max_batch` rows
  are busy), resetting their lengths copies their indices to the device, a second sync, on a
  stream the first has already drained;
- admitting, per prefill forward (the prompts admitted in a step, grouped up to `prefill_tokens`
  padded tokens): one copy to the device per prompt and one of the last prompt positions, then
  one read back per request, of its first token (`int`);
- a model with ALiBi copies its slopes to the device in every eager forward (model.py): one more
  per prefill forward and per eager decode step (compiled, the slopes are a graph constant).
Sampled rows' uniform draws go to the device `non_blocking`, from pageable memory.

With `compile=True` the decode step (one token for every row, sampling included) is compiled as
the model's device does it best, by a decode path applied from outside the engine (fastpath.py:
cpu.py, cuda.py): on CUDA as CUDA graphs over all `max_batch` rows, whose cache, lengths, last
tokens and sampler state are fixed-address buffers; on a CPU through inductor over the active rows
rounded up to a power of two (one compiled variant per size and sampling kind). Either way a step
attends over the slots the longest row fills, rounded up to 64 (on CUDA to 64 times a power of
two: a graph per span), not over whole rows. A path may compile steps of up to `compiled_rows`
rows only (serve's CPU default: 1) and run wider ones eager; a stream left alone in a later row
moves to row 0. Prefill stays eager (prompt lengths vary). Eager on a CPU, the path stores the
model's fp32 Linear weights column-major, in place (cpu.py). A compiled step does not check the
model's modules and weights at each call (fastpath.py `compile_options`): once an engine is
built, its model's weights may change in value, not in shape, type or structure.

    engine = Engine(model, max_batch=16)
    for token in engine.generate(prompt_ids, SamplingParams(max_new_tokens=64)):   # one caller
        ...
    engine.start()                                                                  # a server
    req = engine.submit(prompt_ids, params, sink=callback)   # callback(token | None) per event
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from baichuan.errors import BaichuanError
from baichuan.infer.fastpath import decode_path
from baichuan.infer.prefix import PrefixCache
from baichuan.infer.sampling import COMPILED_KINDS, Plan, SamplerState, SamplingParams, compiled_kind, sample
from baichuan.model import Baichuan, KVCache
from baichuan.runtime import release_freed_heap

_ids = itertools.count()
log = logging.getLogger("baichuan.infer")


@dataclass(eq=False)  # requests are compared by identity (queue removal)
class Request:
    prompt: list[int]
    params: SamplingParams
    id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    sink: Callable[[int | None], None] | None = None  # called with each token, then None when finished
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None                 # "stop", "length", "cancelled" or "error"
    slot: int | None = None
    cancelled: bool = False
    rng: torch.Generator | None = None
    matcher: object | None = None  # the grammar's state, when params.grammar constrains the reply
    logprobs: list = field(default_factory=list)  # with params.logprobs: (id, logprob, [(id, logprob)]) per token

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class Engine:
    def __init__(self, model: Baichuan, max_batch: int = 8, max_len: int | None = None, seed: int = 0,
                 compile: bool = False, prefill_tokens: int = 4096, prefix_cache_bytes: int = 0,
                 compiled_rows: int | None = None):
        p = next(model.parameters())
        self.model, self.device = model.eval(), p.device
        self.path = decode_path(model, compile, compiled_rows)  # fastpath.py: how the decode step runs on this device
        self.max_len = max_len or model.cfg.max_len
        self.max_batch = max_batch
        self.prefill_tokens = prefill_tokens   # prompt tokens (padded) per prefill forward
        self.prefix = PrefixCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None  # prefix.py
        self.cache = KVCache(model.cfg, max_batch, self.path.cache_slots(self.max_len), device=p.device,
                             dtype=p.dtype if p.is_floating_point() else torch.bfloat16)
        self._carriers: dict[int, torch.Tensor] = {}
        self.sampler = SamplerState(max_batch, model.cfg.vocab_size, p.device)
        self.last = torch.zeros(max_batch, dtype=torch.long, device=p.device)
        self.slots: list[Request | None] = [None] * max_batch
        self.waiting: deque[Request] = deque()
        self.generator = torch.Generator().manual_seed(seed)  # draws for requests without a seed
        self.cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._events: list = []
        self._pinned_mask: torch.Tensor | None = None  # on CUDA: grammar masks, filled on the host
        # one graph per row count and sampling kind (sampling.COMPILED_KINDS)
        counts = {self._row_count(n) for n in range(1, max_batch + 1)}
        variants = len(COMPILED_KINDS) * sum(self.path.compiles(rows) for rows in counts)
        fixed = [*self.cache.k, *self.cache.v, self.cache.lengths, self.last, *vars(self.sampler).values()]
        self._decode = self.path.step(self._decode_rows, fixed, variants)

    @property
    def compiled(self) -> bool:
        return self.path.compiled

    def describe(self) -> str:
        """How this engine decodes, for banners: precision, device, eager or compiled."""
        from baichuan.quant.linear import describe_precision
        how = ("CUDA graphs" if self.device.type == "cuda" else "compiled (inductor)") if self.compiled else "eager"
        rows = self.path.compiled_rows
        if self.compiled and rows is not None:
            how += f" up to {rows} row{'s' * (rows > 1)}, eager above"
        return f"{describe_precision(self.model)}, {self.device.type} decode {how}"

    # -- requests ---------------------------------------------------------------------------
    def submit(self, prompt: list[int], params: SamplingParams, sink=None, request_id: str | None = None) -> Request:
        if not prompt:
            raise BaichuanError("the prompt is empty (0 tokens)")
        if len(prompt) >= self.max_len:
            raise BaichuanError(f"the prompt has {len(prompt)} tokens; the context is {self.max_len}")
        if max(prompt) >= self.model.cfg.vocab_size or min(prompt) < 0:
            raise BaichuanError(f"prompt token ids must be in [0, {self.model.cfg.vocab_size})")
        req = Request(list(prompt), params, sink=sink)
        if request_id:
            req.id = request_id
        if params.seed is not None:
            req.rng = torch.Generator().manual_seed(params.seed)
        if params.grammar is not None:
            req.matcher = params.grammar.start()
        with self.cond:
            self.waiting.append(req)
            self.cond.notify()
        return req

    def cancel(self, req: Request) -> None:
        """Stop a request (a client went away); its row is freed at the next step, and a request
        still waiting gives up its place in the queue now."""
        with self.cond:
            req.cancelled = True
            if req in self.waiting:
                self.waiting.remove(req)
                self._finish(req, "cancelled", [])
                if req.sink is not None:
                    req.sink(None)
            self.cond.notify()

    @property
    def busy(self) -> int:
        return sum(s is not None for s in self.slots) + len(self.waiting)

    # -- one step ---------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[tuple[Request, int | None]]:
        """Admit what fits, decode every active row once; returns (request, token or None=finished)."""
        events: list[tuple[Request, int | None]] = []
        self._events = events  # what a step that fails part-way has already done is still delivered
        for s, req in enumerate(self.slots):
            if req is not None and req.cancelled:
                self._finish(req, "cancelled", events)
        admitted = []
        while True:
            with self.cond:
                if not self.waiting or None not in self.slots:
                    break
                req = self.waiting.popleft()
            if req.cancelled:
                self._finish(req, "cancelled", events)
                continue
            req.slot = self.slots.index(None)
            self.slots[req.slot] = req
            admitted.append(req)
        # prompts that arrived together are prefilled together, within a token budget
        batch: list[Request] = []
        for req in admitted:
            longest = max([len(req.prompt)] + [len(r.prompt) for r in batch])
            if batch and (len(batch) + 1) * longest > self.prefill_tokens:
                self._prefill(batch, events)
                batch = []
            batch.append(req)
        if batch:
            self._prefill(batch, events)
        if admitted and self.device.type == "cpu":
            release_freed_heap()  # the prefills' transients, before decoding fills the cache (runtime.py)
        active = [s for s, r in enumerate(self.slots) if r is not None]
        if not active:
            return events
        if len(active) == 1 and active[0] and self.compiled and not self.path.all_rows:
            self._move(active[0], 0)  # a step runs rows 0..last busy: alone in row 0, the one-row graph serves it
            active = [0]
        hi = self._row_count(active[-1] + 1)
        if not self._constrain(0, hi, events):
            return events
        compiled = self.path.compiles(hi)
        uniform, plan = self._draws(0, hi, compiled)
        decode = self._decode if compiled else self._decode_rows
        tokens, logits = decode(self.last, self.cache.k, self.cache.v, self.cache.lengths, hi, uniform,
                                      plan, self._span_carrier(self._span(hi)))
        tokens = tokens.tolist()  # the decode's host sync (admission syncs more: see the module docstring)
        scored = self._logprobs(range(hi), logits, tokens)
        idle = [s for s in range(hi) if self.slots[s] is None]
        if idle:  # idle rows in the batch advanced too: keep them empty (one op, not a launch per row;
            # the index list goes to the device in a blocking copy: a sync, on a stream tolist drained)
            self.cache.lengths[idle] = 0
        for s in range(hi):
            if self.slots[s] is not None:
                self._emit(self.slots[s], tokens[s], events, scored.get(s))
        return events

    def _move(self, src: int, dst: int) -> None:
        """The request in row `src` into the free row `dst`: its keys and values, length, last
        token and sampler state."""
        n = int(self.cache.lengths[src])
        for k, v in zip(self.cache.k, self.cache.v):
            k[dst, :, :n] = k[src, :, :n]
            v[dst, :, :n] = v[src, :, :n]
        self.cache.lengths[dst], self.cache.lengths[src] = n, 0
        self.last[dst] = self.last[src]
        for t in vars(self.sampler).values():
            t[dst] = t[src]
        req = self.slots[src]
        self.slots[dst], self.slots[src], req.slot = req, None, dst

    def _row_count(self, active: int) -> int:
        return self.path.rows(active, self.max_batch)

    def _span(self, rows: int) -> int:
        """Slots the decode step attends over: what the longest of rows [0, rows) holds after this
        step, not the whole row (at serving defaults the cache outweighs the model), rounded up
        as the decode path runs spans."""
        need = max(len(r.prompt) + len(r.tokens) for r in self.slots[:rows] if r is not None)
        return self.path.span(need, self.max_len)

    def _span_carrier(self, span: int) -> torch.Tensor:
        """An empty [0, span] tensor that carries the span into the decode step as a size, which
        dynamo keeps symbolic: one compiled graph serves every span (an int argument would be
        specialized, one compile per span)."""
        carrier = self._carriers.get(span)
        if carrier is None:
            carrier = self._carriers[span] = torch.empty(0, span, device=self.device)
            if self.compiled:  # (eager, dynamo is never imported: 71 MB of RSS)
                torch._dynamo.maybe_mark_dynamic(carrier, 1)
        return carrier

    @torch.inference_mode()
    def warm_up(self, greedy_only: bool = False, only: SamplingParams | None = None) -> None:
        """Compile the decode step for every row count the path compiles and every sampling kind
        it will run with (only greedy without repetition penalty when `greedy_only`; only the kind
        `only` decodes with, when given), and run it at each span the path compiles for, so no
        request waits for it. CUDA graphs are recorded per span on a function's second call and
        replayed from the third: the path asks for three calls per variant there."""
        if not self.compiled:
            return
        for rows in sorted({self._row_count(n) for n in range(1, self.max_batch + 1)}):
            if not self.path.compiles(rows):
                continue
            kinds = COMPILED_KINDS
            if greedy_only:
                kinds = kinds[:1]
            elif only is not None:  # as `_draws` makes them for a batch of such requests
                kinds = [(only.do_sample, compiled_kind(Plan.of([only]), only.do_sample))]
            for sampled, kind in kinds:
                uniform = torch.zeros(rows, device=self.device) if sampled else None
                for span in self.path.spans(self.max_len):
                    for _ in range(self.path.warm_calls):
                        self._decode(self.last, self.cache.k, self.cache.v, self.cache.lengths, rows, uniform,
                                     kind, self._span_carrier(span))
                    self.cache.lengths.zero_()  # each call advanced every row by one slot

    def _decode_rows(self, last, k, v, lengths, rows: int, uniform, plan: Plan | bool | str, span: torch.Tensor):
        """The decode step (compiled when asked): the next token of rows [0, rows), attending over
        the first `span.shape[1]` slots, sampled on the device, recorded as each row's last token
        and in its repetition-penalty history."""
        cache = KVCache.view(k, v, lengths[:rows], 0, rows, span.shape[1])
        logits = self.model(last[:rows, None], cache=cache)[:, -1]
        state = self.sampler.rows(0, rows)
        tokens = sample(logits, state, uniform, plan)
        last[:rows] = tokens
        state.record(torch.arange(rows, device=tokens.device), tokens)
        return tokens, logits

    def _prefill(self, reqs: list[Request], events) -> None:
        """One forward over the prompts of `reqs` (right-padded to the longest), writing their keys
        and values into their rows of the cache (`_prefill_cache`). Padding comes after a row's real
        tokens, so causal attention never lets it change them. With a prefix cache, a row starts
        from the longest prefix of its prompt stored there and computes only the rest."""
        hits = [self.prefix.lookup(r.prompt) if self.prefix else (None, 0) for r in reqs]
        reused = [n for _, n in hits]
        rest = max(len(r.prompt) - n for r, n in zip(reqs, reused))
        ids = torch.zeros(len(reqs), rest, dtype=torch.long, device=self.device)
        for i, (req, n) in enumerate(zip(reqs, reused)):
            ids[i, :len(req.prompt) - n] = torch.tensor(req.prompt[n:], device=self.device)
        cache, rows = self._prefill_cache(reqs, reused, rest)
        for row, (entry, n) in zip(rows, hits):
            if entry is not None:
                for layer in range(len(cache.k)):
                    cache.k[layer][row, :, :n] = entry.k[layer][:, :n]
                    cache.v[layer][row, :, :n] = entry.v[layer][:, :n]
        hidden = self.model.model(ids, cache=cache)
        last = torch.tensor([len(r.prompt) - n - 1 for r, n in zip(reqs, reused)], device=self.device)
        # the LM head on the last prompt position only: over the whole prompt it would cost more than the blocks
        logits = self.model.lm_head(hidden[torch.arange(len(reqs), device=self.device), last])
        if self.prefix:
            for row, req in zip(rows, reqs):
                self.prefix.store(req.prompt, [k[row] for k in cache.k], [v[row] for v in cache.v])
        for i, (req, n_reused) in enumerate(zip(reqs, reused)):
            n, slot = len(req.prompt), req.slot
            if cache.k is not self.cache.k:  # a scratch cache
                for layer in range(len(cache.k)):
                    self.cache.k[layer][slot, :, :n] = cache.k[layer][i, :, :n]
                    self.cache.v[layer][slot, :, :n] = cache.v[layer][i, :, :n]
            self.cache.lengths[slot] = n
            # the repetition penalty's history is the whole prompt (the ids hold only what was computed)
            prompt = ids[i, :n] if not n_reused else torch.tensor(req.prompt, device=self.device)
            self.sampler.assign(slot, req.params, prompt)
        for i, req in enumerate(reqs):
            if not self._constrain(req.slot, req.slot + 1, events):
                continue
            token = int(self._sample(logits[i:i + 1], req.slot, req.slot + 1)[0])
            self.last[req.slot] = token
            self.sampler.record(req.slot, token)  # Python ints: no copy to the device
            self._emit(req, token, events, self._logprobs([req.slot], logits[i:i + 1], {req.slot: token}).get(req.slot))

    def _prefill_cache(self, reqs: list[Request], reused: list[int], rest: int) -> tuple[KVCache, list[int]]:
        """The cache a prefill writes into, and each request's row in it: the requests' own rows of
        the engine's cache, in place (no second copy of their keys and values at the peak: 92 MB
        for 8 prompts of 92 tokens at the 1B shape), or a scratch cache where a reused prefix plus
        the padded rest would pass the cache's slots."""
        lengths = torch.tensor(reused, device=self.device)
        span = max(reused) + rest
        if span <= self.cache.k[0].shape[2]:
            slots = [r.slot for r in reqs]
            return self.cache.select(torch.tensor(slots, device=self.device), lengths, span), slots
        scratch = KVCache(self.model.cfg, len(reqs), span, device=self.device, dtype=self.cache.k[0].dtype)
        scratch.lengths = lengths
        return scratch, list(range(len(reqs)))

    def _constrain(self, lo: int, hi: int, events) -> bool:
        """The allowed ids of rows lo..hi whose requests follow a grammar, into the sampler's
        bitmask (structured.py); a request whose grammar failed (its work limits) ends with an
        error. Whether any row of lo..hi is still active."""
        rows = [(r.matcher, s) for s, r in enumerate(self.slots[lo:hi], lo) if r is not None and r.matcher is not None]
        if rows:
            from baichuan.infer.structured import fill_masks
            allowed = self.sampler.allowed
            host = allowed if allowed.device.type == "cpu" else self._host_mask()
            fill_masks(rows, host)
            for matcher, s in rows:
                if matcher.is_error():
                    log.warning("%s: grammar failed: %s", self.slots[s].id, matcher.get_error())
                    self._finish(self.slots[s], "error", events)
                elif host is not allowed:
                    allowed[s].copy_(host[s], non_blocking=True)
        return any(r is not None for r in self.slots[lo:hi])

    def _host_mask(self) -> torch.Tensor:
        if self._pinned_mask is None:
            self._pinned_mask = torch.full(self.sampler.allowed.shape, -1, dtype=torch.int32, pin_memory=True)
        return self._pinned_mask

    def _draws(self, lo: int, hi: int, compiled: bool = False) -> tuple[torch.Tensor | None, Plan | bool | str]:
        """(uniform draws for rows lo..hi, or None when every row is greedy; the sampler's Plan:
        which passes over the vocabulary the rows need). Compiled, the plan is one of a few kinds,
        a graph each (sampling.compiled_kind): a batch with any adjustment (a grammar, a penalty,
        a logit bias) or any sampled row runs every adjustment pass. Draws come from each
        request's own generator, so a seeded request samples the same tokens whatever else is in
        the batch."""
        reqs = self.slots[lo:hi]
        plan = Plan.of([r.params for r in reqs if r is not None])
        sampled = any(r is not None and r.params.do_sample for r in reqs)
        kind = compiled_kind(plan, sampled) if compiled else plan
        if not sampled:
            return None, kind
        uniform = torch.empty(hi - lo)
        for i, req in enumerate(reqs):
            uniform[i] = torch.rand(1, generator=req.rng if req is not None and req.rng else self.generator)
        return uniform.to(self.device, non_blocking=True), kind

    def _sample(self, logits, lo: int, hi: int) -> torch.Tensor:
        uniform, plan = self._draws(lo, hi)
        return sample(logits, self.sampler.rows(lo, hi), uniform, plan)

    def _logprobs(self, slots, logits: torch.Tensor, tokens) -> dict[int, tuple]:
        """slot -> (its token, the token's log-probability, [(id, log-probability)] of the `logprobs` likeliest
        ids) for the slots (row i of `logits` is slot slots[i]) whose requests ask for them: the
        model's own distribution, before penalties, grammar and temperature (vLLM's default)."""
        rows = [(i, s) for i, s in enumerate(slots) if self.slots[s] is not None
                and self.slots[s].params.logprobs is not None]
        if not rows:
            return {}
        lp = logits[[i for i, _ in rows]].float().log_softmax(-1)
        chosen = lp.gather(1, torch.tensor([[tokens[s]] for _, s in rows], device=lp.device))[:, 0].tolist()
        k = max(self.slots[s].params.logprobs for _, s in rows)
        values, ids = lp.topk(k) if k else (lp[:, :0], lp[:, :0].long())
        values, ids = values.tolist(), ids.tolist()  # one more sync, only when a row asks
        out = {}
        for j, (_, s) in enumerate(rows):
            n = self.slots[s].params.logprobs
            out[s] = (tokens[s], chosen[j], list(zip(ids[j][:n], values[j][:n])))
        return out

    def _emit(self, req: Request, token: int, events, scored: tuple | None = None) -> None:
        if token in req.params.eos_token_ids:
            self._finish(req, "stop", events)
            return
        if req.matcher is not None and not req.matcher.consume_token(token):
            log.warning("%s: token %d is outside its grammar: %s", req.id, token, req.matcher.get_error())
            self._finish(req, "error", events)
            return
        req.tokens.append(token)
        if scored is not None:
            req.logprobs.append(scored)  # before the event: a sink that reads it finds it there
        events.append((req, token))
        if req.matcher is not None and req.matcher.is_stopped():  # the grammar is complete: only EOS could follow
            self._finish(req, "stop", events)
        elif len(req.tokens) >= req.params.max_new_tokens or len(req.prompt) + len(req.tokens) >= self.max_len:
            self._finish(req, "length", events)

    def _finish(self, req: Request, reason: str, events) -> None:
        req.finish_reason = reason
        if req.slot is not None and self.slots[req.slot] is req:
            self.slots[req.slot] = None
            self.cache.lengths[req.slot] = 0
        events.append((req, None))

    # -- drivers ----------------------------------------------------------------------------
    def generate(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Tokens of one request, driving the engine from the calling thread (not with start())."""
        if self._thread is not None:
            raise RuntimeError("the engine runs in its own thread; use submit() with a sink")
        req = self.submit(prompt, params)
        try:
            while not req.done:
                for r, tok in self.step():
                    if r is req and tok is not None:
                        yield tok
        finally:
            if not req.done:
                self.cancel(req)
                self.step()

    def start(self) -> None:
        """Run steps in a background thread, delivering events to each request's sink."""
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="baichuan-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self._stop and not self.waiting and all(s is None for s in self.slots):
                    self.cond.wait()
                if self._stop:
                    return
            try:
                events = self.step()
            except Exception as e:  # noqa: BLE001 - a failed step must not leave clients waiting forever
                log.exception("engine step failed: %s", e)
                events = self._events
                with self.cond:
                    pending = [r for r in self.slots if r is not None] + list(self.waiting)
                    self.waiting.clear()
                for req in pending:
                    self._finish(req, "error", events)
            for req, tok in events:
                if req.sink is not None:
                    req.sink(tok)
