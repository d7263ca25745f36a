"""A prefix cache: the keys and values of prompt prefixes that earlier requests computed (a long
system prompt, few-shot examples, retrieved passages), reused instead of recomputed.

Prefixes are whole blocks of `BLOCK` tokens. After a prefill, the engine stores the longest
whole-block prefix of each prompt, as each layer's keys and values; an entry answers for every
whole-block prefix of itself. Before a prefill, `lookup` finds the longest stored prefix of the
prompt (always short of the whole prompt: the last token must run to give the first logits), and
only the rest of the prompt is computed. Keys and values of a token depend only on the tokens
before it, so a reused prefix holds what a full prefill would compute.

Memory is bounded: entries are dropped least recently used first once their bytes pass
`max_bytes`. The counts (`stats`) go to the server's /metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

BLOCK = 64


@dataclass(eq=False)
class Entry:
    tokens: tuple[int, ...]          # the prefix, BLOCK-aligned
    k: list[torch.Tensor]            # per layer [kv_heads, len(tokens), head_dim]
    v: list[torch.Tensor]
    nbytes: int


def block_keys(prompt: list[int]) -> list[int]:
    """A hash of prompt[:BLOCK * (i + 1)] for each whole block i, each chained on the one before."""
    keys, h = [], 0
    for end in range(BLOCK, len(prompt) + 1, BLOCK):
        h = hash((h, tuple(prompt[end - BLOCK:end])))
        keys.append(h)
    return keys


class PrefixCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[int, Entry] = OrderedDict()  # by id, least recently used first
        self.keys: dict[int, Entry] = {}                      # block key -> the entry holding that prefix
        self.stats = {"prefix_cache_hits": 0, "prefix_cache_misses": 0, "prefix_cache_tokens_reused": 0,
                      "prefix_cache_bytes": 0, "prefix_cache_entries": 0}

    def lookup(self, prompt: list[int]) -> tuple[Entry | None, int]:
        """(the entry, how many tokens of it to reuse) for the longest stored prefix of `prompt`
        that leaves at least one token to compute; (None, 0) when there is none."""
        keys = block_keys(prompt[:len(prompt) - 1])
        for i in range(len(keys) - 1, -1, -1):
            entry = self.keys.get(keys[i])
            n = BLOCK * (i + 1)
            if entry is not None and entry.tokens[:n] == tuple(prompt[:n]):  # not just an equal hash
                self.entries.move_to_end(id(entry))
                self.stats["prefix_cache_hits"] += 1
                self.stats["prefix_cache_tokens_reused"] += n
                return entry, n
        self.stats["prefix_cache_misses"] += 1
        return None, 0

    def store(self, prompt: list[int], k: list[torch.Tensor], v: list[torch.Tensor]) -> None:
        """Keep the whole-block prefix of `prompt` from its keys and values `k`, `v` (per layer,
        [kv_heads, >= its length, head_dim]) unless a stored entry already holds it."""
        n = len(prompt) // BLOCK * BLOCK
        keys = block_keys(prompt[:n])
        if not keys or self.max_bytes <= 0:
            return
        held = self.keys.get(keys[-1])
        if held is not None and held.tokens[:n] == tuple(prompt[:n]):
            self.entries.move_to_end(id(held))
            return
        k = [t[:, :n].clone() for t in k]
        v = [t[:, :n].clone() for t in v]
        entry = Entry(tuple(prompt[:n]), k, v, sum(t.numel() * t.element_size() for t in k + v))
        if entry.nbytes > self.max_bytes:
            return
        self.entries[id(entry)] = entry
        for key in keys:
            self.keys[key] = entry
        self.stats["prefix_cache_bytes"] += entry.nbytes
        while self.stats["prefix_cache_bytes"] > self.max_bytes:
            self._drop(next(iter(self.entries.values())))
        self.stats["prefix_cache_entries"] = len(self.entries)

    def _drop(self, entry: Entry) -> None:
        del self.entries[id(entry)]
        for key in block_keys(list(entry.tokens)):
            if self.keys.get(key) is entry:
                del self.keys[key]
        self.stats["prefix_cache_bytes"] -= entry.nbytes
