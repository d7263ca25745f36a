"""Log-probabilities of chosen tokens at chosen positions, for many prompts, batched.

Every multiple-choice protocol reduces to this: run a prompt once and read log p(token | prefix)
for a few (position, token) pairs, e.g. the four answer letters after "答案：". So the scorer:

  - sorts prompts by length (longest first, so an out-of-memory shows up on the first batch) and
    packs them into batches by a token budget, right-padded: with causal attention a real position
    never sees the padding to its right, so no mask and no position ids are needed;
  - runs the decoder once per batch and applies the LM head only to the picked positions (the
    hidden states are [B, T, H]; a [B, T, vocab] logits tensor would be 30x larger for a 7B model
    with a 125k vocabulary and is never built);
  - optionally computes the K/V of a block shared by many prompts once (the few-shot examples of a
    subject, ~80% of a 5-shot MMLU prompt) and runs only the rest of each prompt against it.

Models without the `model.model` / `model.lm_head` split (anything else with
`model(input_ids) -> logits`) are run whole and the logits gathered afterwards.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from baichuan.eval.settings import EvalSettings
from baichuan.model import BaichuanModel, KVCache

MIN_SHARED_PREFIX = 16          # tokens; below this a shared block is not worth a separate forward
HEAD_CHUNK_ELEMENTS = 1 << 28   # rows x vocab of fp32 logits computed at once (1 GiB)


@dataclass
class Request:
    """One forward pass: `tokens`, and the (position, token id) pairs whose log-probability is
    wanted, i.e. log p(tokens[position + 1] = token id | tokens[:position + 1]).
    Requests with the same `prefix_key` may share their first tokens (see `score`)."""
    tokens: list[int]
    picks: list[tuple[int, int]]
    prefix_key: str | None = None


def model_device(model) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def has_split_head(model) -> bool:
    """Built like Baichuan: `model.model(ids)` -> hidden states [B, T, H], `model.lm_head(h)` -> logits."""
    return hasattr(model, "model") and hasattr(model, "lm_head")


def log_probs_at(model, ids, rows, positions, cache=None) -> torch.Tensor:
    """fp32 log-softmax over the vocabulary at (row, position) pairs: [N, vocab]."""
    if has_split_head(model):
        h = model.model(ids, cache=cache) if cache is not None else model.model(ids)
        logits = model.lm_head(h[rows, positions])
    else:
        logits = model(ids)[rows, positions]
    return torch.log_softmax(logits.float(), dim=-1)


class _SharedPrefix:
    """A K/V cache (duck-typed like `baichuan.model.KVCache`) holding one prefix for every row of
    a batch: each layer attends to [prefix; new keys] with the prefix expanded, not copied, over
    the batch, so a batch of B suffixes costs the prefix's memory once."""

    def __init__(self, kv: KVCache):
        self.k, self.v = kv.k, kv.v            # per layer [1, heads, P, head_dim]
        self.prefix_len = kv.max_len
        self.lengths = None
        self.max_len = self.prefix_len

    def reset(self, batch_size: int, new_tokens: int):
        """Before each batch: every row holds the prefix; the forward adds `new_tokens` slots."""
        self.lengths = torch.full((batch_size,), self.prefix_len, dtype=torch.long, device=self.k[0].device)
        self.max_len = self.prefix_len + new_tokens

    def update(self, layer: int, k, v, slots=None):
        B = k.shape[0]
        return (torch.cat([self.k[layer].expand(B, -1, -1, -1), k], dim=2),
                torch.cat([self.v[layer].expand(B, -1, -1, -1), v], dim=2))


def _pad(rows: list[list[int]], device) -> torch.Tensor:
    T = max(len(r) for r in rows)
    ids = np.zeros((len(rows), T), dtype=np.int64)  # pad id 0 (<unk>); right padding is never attended
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return torch.from_numpy(ids).to(device, non_blocking=True)


def _run_batch(model, rows, picks, offset, device, cache=None) -> list[list[float]]:
    """Forward `rows` (right-padded) and read the picked log-probs. Pick positions are shifted by
    `offset` (the shared prefix length) into the rows' own coordinates."""
    sel, index = [], {}
    for i, ps in enumerate(picks):
        for pos, _ in ps:
            key = (i, pos - offset)
            if key not in index:
                index[key] = len(sel)
                sel.append(key)
    ids = _pad(rows, device)
    r = torch.tensor([k[0] for k in sel], device=device)
    p = torch.tensor([k[1] for k in sel], device=device)
    if cache is not None:
        cache.reset(*ids.shape)
    logp = log_probs_at(model, ids, r, p, cache)
    flat_rows = [index[(i, pos - offset)] for i, ps in enumerate(picks) for pos, _ in ps]
    flat_toks = [tok for ps in picks for _, tok in ps]
    vals = logp[torch.tensor(flat_rows, device=device), torch.tensor(flat_toks, device=device)].tolist()
    out, k = [], 0
    for ps in picks:
        out.append(vals[k:k + len(ps)])
        k += len(ps)
    return out


def _batches(lengths: list[int], order: list[int], budget: int, max_rows: int, extra: int = 0):
    """Consecutive runs of `order` (sorted longest first) whose padded size fits the budget:
    rows x (longest row + extra) <= budget, at most max_rows rows."""
    batch, longest = [], 0
    for i in order:
        longest_next = max(longest, lengths[i])
        if batch and (len(batch) >= max_rows or (len(batch) + 1) * (longest_next + extra) > budget):
            yield batch
            batch, longest_next = [], lengths[i]
        batch.append(i)
        longest = longest_next
    if batch:
        yield batch


def _common_prefix(ref: np.ndarray, tokens: list[int]) -> int:
    n = min(len(ref), len(tokens))
    diff = np.flatnonzero(ref[:n] != np.asarray(tokens[:n], dtype=ref.dtype))
    return int(diff[0]) if diff.size else n


def _shared_groups(requests, prefixes) -> tuple[dict[str, tuple[int, list[int]]], list[int]]:
    """Requests that start with their key's prefix (up to a boundary token or two: the tokenizer
    may merge across it) -> {key: (shared length, request indices)}; the rest run alone. A prompt
    that was truncated or lost shots no longer starts with the block and runs alone."""
    by_key, alone = defaultdict(list), []
    for i, r in enumerate(requests):
        (by_key[r.prefix_key] if r.prefix_key in prefixes else alone).append(i)
    groups = {}
    for key, idx in by_key.items():
        ref = np.asarray(prefixes[key], dtype=np.int64)
        joined, shared = [], len(ref)
        for i in idx:
            req = requests[i]
            n = min(_common_prefix(ref, req.tokens), min(p for p, _ in req.picks))
            if n >= max(MIN_SHARED_PREFIX, len(ref) // 2):
                joined.append(i)
                shared = min(shared, n)
            else:
                alone.append(i)
        if len(joined) >= 2 and shared >= MIN_SHARED_PREFIX:
            groups[key] = (shared, joined)
        else:
            alone.extend(joined)
    return groups, alone


def score(model, requests: list[Request], prefixes: dict[str, list[int]] | None = None, *,
          batch_tokens: int = EvalSettings.batch_tokens, max_rows: int = 512, share_prefix: bool = True,
          progress: bool = True, desc: str = "scoring") -> list[list[float]]:
    """Log-probabilities of every request's picks, in pick order.

    `prefixes` maps a request's `prefix_key` to the token ids of the block it shares with the
    other requests of that key; with `share_prefix` (Baichuan models only: it needs the K/V cache)
    the block runs once and each request runs only its remaining tokens. Exact up to float
    rounding: the same attention over the same keys, computed in a different grouping.
    """
    device = model_device(model)
    out: list[list[float] | None] = [None] * len(requests)
    lengths = [len(r.tokens) for r in requests]
    use_share = share_prefix and bool(prefixes) and isinstance(getattr(model, "model", None), BaichuanModel)
    groups, alone = _shared_groups(requests, prefixes) if use_share else ({}, list(range(len(requests))))
    bar = tqdm(total=len(requests), desc=desc, unit="prompt", disable=not progress, leave=False)
    with torch.inference_mode():
        order = sorted(alone, key=lambda i: -lengths[i])
        for batch in _batches(lengths, order, batch_tokens, max_rows):
            res = _run_batch(model, [requests[i].tokens for i in batch], [requests[i].picks for i in batch], 0, device)
            for i, v in zip(batch, res):
                out[i] = v
            bar.update(len(batch))
        for P, idx in groups.values():
            cache = _prefix_cache(model, requests[idx[0]].tokens[:P], device)
            rest = {i: lengths[i] - P for i in idx}
            order = sorted(idx, key=lambda i: -rest[i])
            # the concatenated keys cost B x (P + T) per layer: count a quarter of P against the budget
            for batch in _batches(rest, order, batch_tokens, max_rows, extra=P // 4):
                res = _run_batch(model, [requests[i].tokens[P:] for i in batch], [requests[i].picks for i in batch],
                                 P, device, cache)
                for i, v in zip(batch, res):
                    out[i] = v
                bar.update(len(batch))
    bar.close()
    return out


def _prefix_cache(model, prefix: list[int], device) -> _SharedPrefix:
    dtype = model.model.embed_tokens.weight.dtype
    kv = KVCache(model.model.cfg, 1, len(prefix), device=device, dtype=dtype)
    model.model(torch.tensor([prefix], device=device), cache=kv)
    return _SharedPrefix(kv)
