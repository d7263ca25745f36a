"""Text as integer arrays, for the steps that count repetitions and hash features (filters,
quality, MinHash): code points, and 64-bit hashes of every n-gram window. The numpy half of the
text helpers, kept apart so modules that only split text (the command line, RAG) do not load it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

MIX = np.uint64(0x9E3779B97F4A7C15)   # golden-ratio multiplier: spreads nearby ids over 64 bits


def codepoints(text: str) -> np.ndarray:
    """The Unicode code points of `text` as a uint32 array (one C-level encode, no Python loop).
    surrogatepass: a lone surrogate (broken input) becomes a code point, not a crash."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def iter_ngram_hashes(ids: np.ndarray, ns) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (n, 64-bit hashes of every length-n window of `ids`) for each n of `ns`, ascending.

    Polynomial hash in wrapping uint64 arithmetic, extended one position at a time, so all the n
    together cost max(ns) vectorized multiply-adds over the sequence instead of a Python loop over
    windows. Collisions (~2^-64 per pair) are irrelevant for repetition statistics and feature
    hashing. A sequence shorter than n gives an empty array.
    """
    ids = np.asarray(ids, dtype=np.uint64)
    h, k = ids.copy(), 1
    for n in sorted(ns):
        while k < n:
            m = len(ids) - k
            if m <= 0:
                h = h[:0]
                break
            h = h[:m] * MIX
            h ^= h >> np.uint64(29)
            h += ids[k:k + m]
            k += 1
        yield n, h
