"""The array side of deduplication: text units, normalization, shingles, MinHash signatures, LSH
band keys (per shard), and runs of equal keys and connected components (global). dedup.py drives
these over shards and levels and removes what they find.

Units. A level cuts each document into units with the lossless splitters of text.py: "document"
(the whole text), "paragraph" (`split_paragraphs`) and "sentence" (`split_sentences` over the whole
document; sentences never span lines, so each lies in one paragraph, found by its start offset).
Units are numbered per document in text order, so (shard, doc, unit) is a total order.

Normalization (shared by exact hashes and shingles). Each code point is folded by a 64K-entry
table: NFKC of the single character, then lower-case, when that gives one character (full-width
Ａ -> a, ㈠ stays); then punctuation (P*), separators/whitespace (Z*) and control/format/surrogate
(C*) characters are dropped. Symbols, digits and letters stay. Folding per code point (not NFKC
of the whole string) keeps every unit's position in the original text, which the removal step needs;
the difference only shows on decomposed combining sequences. So two units are *exact duplicates*
when they are equal after folding and ignoring all whitespace and punctuation, and a punctuation
or spacing edit never changes a shingle.

Shingles. "char": every kept character is a token. "word": a run of letters/digits/marks that are
not East-Asian wide is one token (an English word) and every other kept character (Han, kana,
Hangul, symbols) is its own token, so mixed zh/en text gets Chinese character n-grams and English
word n-grams at once. Scripts written without spaces outside East Asia (Thai, Khmer, ...) would get
whole phrases as tokens: use "char" for those.
A shingle is `ngram` consecutive tokens inside one unit; a unit shorter than `ngram` tokens is one
shingle. Shingle keys are 64-bit feature hashes formed with numpy over the whole batch (this is
feature extraction; the MinHash permutations are rensa's R-MinHash, fed through its flat
pre-hashed API so no Python object is made per shingle).
"""

from __future__ import annotations

import array
import functools
import gc
import hashlib
import unicodedata
from dataclasses import dataclass

import numpy as np

from baichuan.data.ngrams import codepoints
from baichuan.data.text import split_paragraphs, split_sentences
from baichuan.errors import BaichuanError

LEVELS = ("document", "paragraph", "sentence")
SHINGLES = ("char", "word")

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_POLY = np.uint64(0x9E3779B97F4A7C15)   # odd multiplier for combining tokens into a key
_ROWS_PER_CALL = 1 << 16                # bounds the Python lists rensa's to_rows() builds at once


def rensa_module():
    try:
        import rensa
    except ImportError:
        raise BaichuanError("near-duplicate detection needs rensa: pip install 'rensa>=0.5'") from None
    return rensa


# -- normalization ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fold[c], keep[c], joins[c] for the BMP (built once, ~0.1 s) plus one last entry used for
    every code point above it: those fold to themselves, are kept and do not join (rare Han
    extensions, emoji)."""
    fold = np.arange(0x10001, dtype=np.uint32)
    keep = np.ones(0x10001, dtype=bool)
    joins = np.zeros(0x10001, dtype=bool)
    for i in range(0x10000):
        ch = chr(i)
        f = unicodedata.normalize("NFKC", ch).lower()
        if len(f) != 1:
            f = ch.lower() if len(ch.lower()) == 1 else ch
        fold[i] = ord(f)
        cat = unicodedata.category(f)
        keep[i] = cat[0] not in "PZC"
        joins[i] = cat[0] in "LNM" and unicodedata.east_asian_width(f) not in ("W", "F")
    return fold, keep, joins


def fold(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Folded code points, keep mask and word-joining mask for a code point array."""
    fold_t, keep_t, joins_t = _tables()
    idx = np.minimum(cp, 0x10000)
    folded = fold_t[idx]
    if len(cp) and cp.max() > 0xFFFF:
        folded = np.where(cp > 0xFFFF, cp, folded)
    return folded, keep_t[idx], joins_t[idx]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (in place): spreads structured 64-bit keys over all bits."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


# -- units -----------------------------------------------------------------------------------------

@dataclass
class Units:
    """The units of one level over a batch of texts, as spans of the concatenated batch text."""
    doc: np.ndarray     # int32: document index within the batch
    unit: np.ndarray    # int32: unit index within its document
    par: np.ndarray     # int32: paragraph index of the unit (== unit for paragraphs, 0 for documents)
    start: np.ndarray   # int64
    end: np.ndarray     # int64


def split_units(texts: list[str], level: str) -> Units:
    """Units of every text. The removal step calls this again on each document it edits, so unit
    numbers mean the same thing in both phases."""
    lens: list[int] = []
    plens: list[int] = []
    counts: list[int] = []
    pcounts: list[int] = []
    for text in texts:
        if level == "document":
            parts = [text] if text else []
        else:
            paras = split_paragraphs(text) if text else []
            plens += map(len, paras)
            pcounts.append(len(paras))
            parts = paras if level == "paragraph" else (split_sentences(text) if text else [])
        lens += map(len, parts)
        counts.append(len(parts))
    doc = np.repeat(np.arange(len(texts), dtype=np.int32), counts)
    end = np.cumsum(np.asarray(lens, dtype=np.int64))
    start = end - np.asarray(lens, dtype=np.int64)
    first = np.searchsorted(doc, doc, side="left")  # doc is non-decreasing: first unit of each doc
    unit = (np.arange(len(doc)) - first).astype(np.int32)
    if level == "document":
        par = np.zeros(len(doc), dtype=np.int32)
    elif level == "paragraph":
        par = unit
    else:  # sentences never span lines, so the paragraph holding a sentence's start holds all of it
        pend = np.cumsum(np.asarray(plens, dtype=np.int64))
        pglobal = np.searchsorted(pend, start, side="right")
        pfirst = np.concatenate([[0], np.cumsum(pcounts)])[:-1]
        par = (pglobal - pfirst[doc]).astype(np.int32)
    return Units(doc, unit, par, start, end)


# -- shingles and signatures -----------------------------------------------------------------------

def _tokens(kept: np.ndarray, kept_pos: np.ndarray, joins: np.ndarray, bounds: np.ndarray,
            shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Token keys (uint64) of the kept character stream and the token index of each unit boundary.
    `bounds` are all unit starts/ends in kept-character coordinates (tokens never cross them)."""
    if shingle == "char":
        return _mix(kept.astype(np.uint64)), bounds
    n = len(kept)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        # a token continues while both characters join and nothing (space, punctuation) was between
        starts[1:] = ~(joins[1:] & joins[:-1] & (kept_pos[1:] == kept_pos[:-1] + 1))
    starts[bounds[bounds < n]] = True
    first = np.flatnonzero(starts)
    seg = np.cumsum(starts) - 1
    pos = np.minimum(np.arange(n) - first[seg], 63)
    powers = np.cumprod(np.full(64, _POLY, dtype=np.uint64))   # wraps mod 2^64, as intended
    contrib = _mix(kept.astype(np.uint64)) * powers[pos]
    keys = _mix(np.add.reduceat(contrib, first)) if n else np.zeros(0, np.uint64)
    tok_index = np.concatenate([[0], np.cumsum(starts)])
    return keys, tok_index[bounds]


def ngram_keys(tok: np.ndarray, ts: np.ndarray, te: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys of every n-token window inside each unit [ts, te) (one key for a shorter unit); returns
    the flat keys and row offsets (len(ts) + 1) in the layout rensa's flat API takes. Units must be
    disjoint and in ascending order (they are: spans of one lossless split)."""
    length = te - ts
    cnt = np.where(length >= n, length - n + 1, np.minimum(length, 1))
    offsets = np.concatenate([[0], np.cumsum(cnt)])
    size = len(tok)
    # every window of the whole stream from contiguous shifted slices (Horner), zero-padded at the end
    padded = np.concatenate([tok, np.zeros(n - 1, np.uint64)])
    keys = padded[:size].copy()
    for k in range(1, n):
        keys *= _POLY
        keys += padded[k:k + size]
    # windows that fit in their unit: [ts, te - n] for each long unit (difference array, units disjoint)
    long = length >= n
    mark = np.zeros(size + 1, dtype=np.int32)
    np.add.at(mark, ts[long], 1)
    np.add.at(mark, te[long] - n + 1, -1)
    # a short unit is one window of its own tokens, zero-padded like the stream's end
    short = np.flatnonzero((length > 0) & ~long)
    if len(short):
        pos, end = ts[short], te[short]
        part = np.zeros(len(short), dtype=np.uint64)
        for k in range(n):
            part *= _POLY
            part += np.where(pos + k < end, tok[np.minimum(pos + k, size - 1)], np.uint64(0))
        keys[pos] = part
        np.add.at(mark, pos, 1)
        np.add.at(mark, pos + 1, -1)
    return _mix(keys[np.cumsum(mark[:size]) > 0]), offsets


def signatures(keys: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """R-MinHash signatures (rows, num_perm) uint32 of the key sets given in flat layout."""
    rensa = rensa_module()
    rows = len(offsets) - 1
    out = np.empty((rows, num_perm), dtype=np.uint32)
    was_enabled = gc.isenabled()
    gc.disable()  # to_rows() makes one list per row; cyclic GC passes over them double the cost
    try:
        for a in range(0, rows, _ROWS_PER_CALL):
            b = min(rows, a + _ROWS_PER_CALL)
            lo, hi = int(offsets[a]), int(offsets[b])
            m = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
                keys[lo:hi], (offsets[a:b + 1] - lo).astype(np.uint64), num_perm, seed)
            # rensa 0.5 gives rows only as Python lists; array.extend is the cheapest way into a
            # buffer (~21 ns per value, plus ~25 in to_rows): the main per-unit cost for short units
            flat = array.array("I")
            for row in m.to_rows():
                flat.extend(row)
            out[a:b] = np.frombuffer(flat, dtype=np.uint32).reshape(b - a, num_perm)
    finally:
        if was_enabled:
            gc.enable()
    return out


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands, n) uint64: one key per LSH band, a hash of that band's `rows` signature values."""
    out = np.empty((bands, len(sig)), dtype=np.uint64)
    cols = np.ascontiguousarray(sig[:, :bands * rows].T)  # one pass, then contiguous columns
    for b in range(bands):
        h = np.full(len(sig), np.uint64(b + 1), dtype=np.uint64)
        for c in range(b * rows, (b + 1) * rows):
            h ^= cols[c]
            h *= _POLY
        out[b] = _mix(h)
    return out


@functools.cache
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5,
                  fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimizing the weighted areas under the LSH
    S-curve P(candidate | J=s) = 1-(1-s^r)^b: false positives over s < threshold, false negatives
    over s >= threshold (the criterion datasketch uses; written here from the formula)."""
    s = np.linspace(0.0, 1.0, 2001)
    below, above = s <= threshold, s >= threshold
    best, best_err = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s ** r) ** b
            fp = np.trapezoid(p[below], s[below])
            fn = np.trapezoid(1.0 - p[above], s[above])
            err = fp_weight * fp + fn_weight * fn
            if err < best_err - 1e-12:
                best, best_err = (b, r), err
    return best


# -- all features of one level over a batch ---------------------------------------------------------

def _stream(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kept (folded) characters of the concatenated texts, their positions in it, their joining
    flags, and the prefix count of kept characters (maps text offsets to kept offsets)."""
    folded, keep, joins = fold(codepoints("".join(texts)))
    kept_pos = np.flatnonzero(keep)
    return folded[kept_pos], kept_pos, joins[kept_pos], np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])


def _unit_keys(stream, ks: np.ndarray, ke: np.ndarray, shingle: str, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    kept, kept_pos, joins, _ = stream
    tok, tb = _tokens(kept, kept_pos, joins, np.concatenate([ks, ke]), shingle)
    return ngram_keys(tok, tb[:len(ks)], tb[len(ks):], ngram)


def shingle_sets(texts: list[str], shingle: str = "char", ngram: int = 5) -> list[np.ndarray]:
    """Sorted distinct shingle keys of each whole text: the sets whose Jaccard the signatures
    estimate (used for ground truth in tests and benchmarks)."""
    stream = _stream(texts)
    end = np.cumsum([len(t) for t in texts], dtype=np.int64)
    ks, ke = stream[3][end - [len(t) for t in texts]], stream[3][end]
    keys, off = _unit_keys(stream, ks, ke, shingle, ngram)
    return [np.unique(keys[off[i]:off[i + 1]]) for i in range(len(texts))]


def level_features(texts: list[str], level: str, *, shingle: str, ngram: int, num_perm: int, seed: int,
                   bands: int, rows: int, min_chars: int, near: bool) -> dict[str, np.ndarray]:
    """Arrays for the indexed units of one level (units with at least `min_chars` kept characters;
    documents need one): doc, unit, par, nchars (original length), exact (n, 2) uint64 (128-bit
    BLAKE2b of the folded text), and with `near` bands (bands, n) uint64 and sig (n, num_perm) uint16."""
    units = split_units(texts, level)
    stream = _stream(texts)
    ckeep = stream[3]
    ks, ke = ckeep[units.start], ckeep[units.end]
    ok = (ke - ks) >= (max(min_chars, 1) if level != "document" else 1)
    out = {"doc": units.doc[ok], "unit": units.unit[ok], "par": units.par[ok],
           "nchars": (units.end - units.start)[ok].astype(np.int32), "units_total": np.int64(len(units.doc))}
    ks, ke = ks[ok], ke[ok]
    buf = memoryview(stream[0].astype("<u4").tobytes())
    digests = b"".join(hashlib.blake2b(buf[a * 4:b * 4], digest_size=16).digest()
                       for a, b in zip(ks.tolist(), ke.tolist()))
    out["exact"] = np.frombuffer(digests, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    if near:
        keys, offsets = _unit_keys(stream, ks, ke, shingle, ngram)
        sig = signatures(keys, offsets, num_perm, seed)
        out["bands"] = band_keys(sig, bands, rows)
        # verification only needs slot equality: the low 16 bits collide by chance with p = 2^-16
        out["sig"] = (sig & 0xFFFF).astype(np.uint16)
    return out


# -- clustering primitives (phase 2) ---------------------------------------------------------------

def run_pairs(keys: list[np.ndarray], gidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, member) for every run of rows with equal keys (all columns equal): each later member
    is paired with the run's smallest global index. Sorting, not hashing into buckets, so memory is
    a few arrays of the rows' size and the output does not depend on the input order."""
    if len(gidx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.lexsort((gidx, *keys[::-1]))
    g = gidx[order]
    new = np.zeros(len(g), dtype=bool)
    new[0] = True
    for k in keys:
        ks = k[order]
        new[1:] |= ks[1:] != ks[:-1]
    first = g[np.flatnonzero(new)][np.cumsum(new) - 1]
    return first[~new], g[~new]


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, root of each node) of the graph with edges (u, v): root = the smallest node of its
    connected component. Min-label propagation with pointer jumping: a handful of vectorized passes
    for the star-shaped clusters run_pairs produces."""
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    a, b = inv[:len(u)], inv[len(u):]
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        while not np.array_equal(jumped := new[new], new):
            new = jumped
        if np.array_equal(new, label):
            return nodes, nodes[label]
        label = new
