"""The pretraining data loader over token shards: packed, seeded, rank-split and exactly resumable.

Every shard is cut into windows of seq_len+1 tokens with stride seq_len (inputs and shifted
targets; documents are packed back to back with their EOS, as Baichuan-7B's trainer does). An
epoch visits every window of every shard once, in a seeded random order over all of them: a
keyed Feistel permutation of the window indices, so sources are mixed from the first step and no
permutation array is stored (a trillion-token corpus has ~10^8 windows).

The loader walks one global sequence of windows; each step takes the next `batch_size *
world_size` windows and rank r gets its contiguous slice. So the state is one integer (the global
position) that is the same on every rank, and the windows a global batch holds do not depend on
how it is split across ranks or micro-steps: 2 ranks x batch 4 see exactly what 1 rank x batch 8
sees. Restoring refuses a state from other shards, another seed or another sequence length.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from baichuan.data.shards import TokenShards
from baichuan.errors import BaichuanError


class TokenLoader:
    def __init__(self, shards: TokenShards, seq_len: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        if not 0 <= rank < world_size:
            raise BaichuanError(f"rank {rank} is not in [0, {world_size})")
        self.shards, self.seq_len, self.batch_size = shards, seq_len, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.counts = np.array([max(0, (s["tokens"] - 1) // seq_len) for s in shards.manifest["shards"]])
        self.total = int(self.counts.sum())
        if self.total < batch_size * world_size:
            raise BaichuanError(f"{shards.folder}: {shards.manifest['total_tokens']} tokens make {self.total} "
                                f"windows of {seq_len + 1}; one global batch needs {batch_size * world_size}")
        self.bounds = np.concatenate([[0], np.cumsum(self.counts)])
        self.position = 0  # global window index, identical on every rank
        self._maps: dict[int, np.ndarray] = {}

    # -- order ------------------------------------------------------------------------------
    def window(self, index: int) -> np.ndarray:
        """Tokens [seq_len+1] of the global window `index` (any epoch)."""
        epoch, pos = divmod(index, self.total)
        g = permute(pos, self.total, (self.seed, epoch))
        shard = int(np.searchsorted(self.bounds, g, side="right") - 1)
        start = (g - int(self.bounds[shard])) * self.seq_len
        return np.asarray(self._map(shard)[start:start + self.seq_len + 1], dtype=np.int64)

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            self._maps[shard] = self.shards.memmap(shard)
        return self._maps[shard]

    # -- iteration --------------------------------------------------------------------------
    @property
    def epoch(self) -> float:
        return self.position / self.total

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (inputs, targets), each [batch_size, seq_len] int64, of the next global batch."""
        first = self.position + self.rank * self.batch_size
        rows = np.stack([self.window(first + i) for i in range(self.batch_size)])
        self.position += self.batch_size * self.world_size
        vocab = self.shards.manifest["vocab_size"]
        if rows.max() >= vocab:  # a shard corrupted after writing: an embedding lookup would crash on it
            raise BaichuanError(f"{self.shards.folder}: token id {int(rows.max())} at or above the vocabulary size "
                                f"{vocab} in windows {first}..{first + self.batch_size - 1}; a shard is corrupt "
                                "(compare its sha256 with tokens.json, or rerun `baichuan data run`)")
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]

    def __iter__(self):
        while True:
            yield self.next_batch()

    # -- state ------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        shards = [(s["file"], s["tokens"], s.get("sha256")) for s in self.shards.manifest["shards"]]
        return hashlib.sha256(json.dumps([shards, self.seq_len, self.seed]).encode()).hexdigest()[:16]

    def state_dict(self) -> dict:
        return {"position": self.position, "fingerprint": self.fingerprint(), "seq_len": self.seq_len,
                "seed": self.seed, "global_batch": self.batch_size * self.world_size,
                "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint():
            raise BaichuanError(
                "data loader state is from other token shards, seed or sequence length "
                f"(saved seq_len {state.get('seq_len')}, seed {state.get('seed')}; now {self.seq_len}, {self.seed})")
        self.position = int(state["position"])


_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finalizer: a cheap, well-mixed 64-bit integer hash."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def permute(i: int, n: int, key: tuple[int, ...], rounds: int = 4) -> int:
    """A keyed bijection of [0, n): a balanced Feistel network on the smallest even number of bits
    covering n, with cycle-walking to stay inside [0, n) (fewer than 4 walks on average)."""
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half, mask = bits // 2, (1 << (bits // 2)) - 1
    k = 0
    for part in key:
        k = _mix(k ^ (part + 0x9E3779B97F4A7C15) & _MASK64)
    while True:
        left, right = i >> half, i & mask
        for r in range(rounds):
            left, right = right, left ^ (_mix(right ^ _mix(k + r)) & mask)
        i = (left << half) | right
        if i < n:
            return i


def iter_eval_batches(shards: TokenShards, seq_len: int, batch_size: int, max_batches: int | None = None):
    """Held-out batches in file order (no shuffling), for validation loss and bits per byte."""
    batch = []
    n = 0
    for i in range(len(shards.files)):
        data = shards.memmap(i)
        for start in range(0, max(0, len(data) - 1) // seq_len * seq_len, seq_len):
            batch.append(np.asarray(data[start:start + seq_len + 1], dtype=np.int64))
            if len(batch) == batch_size:
                t = torch.from_numpy(np.stack(batch))
                yield t[:, :-1], t[:, 1:]
                batch = []
                n += 1
                if max_batches is not None and n >= max_batches:
                    return
    if batch:
        t = torch.from_numpy(np.stack(batch))
        yield t[:, :-1], t[:, 1:]
