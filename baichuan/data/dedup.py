"""Exact and near-duplicate removal at document, paragraph and sentence level, in three phases that
work shard by shard and keep the global phase's memory bounded:

1. `compute_shard` (one task per docs shard): for every unit of every level, a 128-bit hash of the
   normalized text, an R-MinHash signature and its LSH band keys (minhash.py explains units,
   normalization and shingles). `save_shard` writes them as .npy files, band keys already sorted.
2. `find_duplicates` (one global task): per level, exact duplicates are runs of equal hashes; near
   duplicates are runs of equal band keys (band by band, key range by key range: `partitions`),
   each member paired with the run's first unit, the pair kept only if the signatures agree on at
   least `threshold` of their slots (cuts LSH false positives), then connected components of the
   kept pairs. Every cluster keeps its first unit in (shard, doc, unit) order and the rest are
   removed, so the result does not depend on how documents were cut into shards. Levels run
   coarse to fine and a finer level ignores units inside removed documents/paragraphs, so the
   unit a cluster keeps is never one that is already gone.
3. `apply_removals` (one task per shard): drops duplicate documents ("exact_dup"/"near_dup"),
   cuts removed paragraphs/sentences out with `join_kept`, and drops a document left blank
   ("near_dup").

Memory. Phase 1 holds its shard's arrays: 36 + 12*bands + 2*num_perm bytes per indexed unit (460 B
at the defaults; the same goes to disk), so size shards by units, not bytes, at sentence level.
Phase 2 keeps 1 bit per unit of the level plus the candidate pairs (16 B each, about one per
duplicate unit) and otherwise works on one band and one key range at a time, reading memory-mapped
slices: measured on 79k sentence units, its peak is 114 B per unit with `partitions=1`, 35 with 4
and 18 with 16 (the rest is per-shard transients, bounded by the largest shard). So a level with
more units than RAM / 115 B needs `partitions` > 1, and the candidate pairs must always fit.

Defaults, chosen with benchmarks/dedup.py (1,500 corpus documents plus one edited copy each, 10.4
MB; numbers in its docstring): "word" 3-grams, where a Han character and an English word are each
a token, are the only shingles for which one edit rate gives one Jaccard in both languages (0.8 at
4.7% inserted/deleted tokens in zh and in en; char 5-grams: 2.7% vs 9.0%), and on short English
units char n-grams matched number-only variants ("Deuteronomy 1" / "Deuteronomy 18") that they do
not. 128 permutations, threshold 0.8 -> 14 bands x 9 rows. min_chars 10 for paragraphs and
sentences, so that short formulae ("是的。", "谢谢大家！") that legitimately repeat stay.

Throughput, one core, phases 1+2 (benchmarks/dedup.py, 2-vCPU x86): on the synthetic set at document
level 24.6 MB/s (zh 38.6, en 20.6) against 1.64 MB/s for plain datasketch MinHash + MinHashLSH on the
same shingles (15x), precision 0.995 / recall 0.969 at Jaccard >= 0.8 (datasketch 0.987 / 0.917).
On the bundled corpus: document 42 (zh) / 19 (en) MB/s, paragraph 5.5 / 3.2, sentence 3.7 / 2.3;
num_perm=64 gives 8.8 / 4.5 and 5.3 / 3.1. The finer levels pay per unit: rensa 0.5 hands
signatures back only as Python lists (~6 us per unit at 128 slots, the largest share), and
text.py's sentence splitter alone runs at 23 (zh) / 10 (en) MB/s.

`dedup_documents` is the in-memory path over the same functions (tests, small data); `run_stage` is
the pipeline stage. Needs rensa >= 0.5 for near duplicates (exact-only runs do not).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from baichuan.data import minhash
from baichuan.data.document import Document
from baichuan.data.minhash import (
    LEVELS,
    SHINGLES,
    components,
    level_features,
    optimal_bands,
    run_pairs,
    split_units,
)
from baichuan.data.text import join_kept, split_paragraphs, split_sentences
from baichuan.errors import BaichuanError


@dataclass(frozen=True)
class DedupConfig:
    levels: tuple = ("document",)   # any of LEVELS; Baichuan-7B used paragraph and sentence
    exact: bool = True
    near: bool = True
    threshold: float = 0.8          # Jaccard of shingle sets
    shingle: str = "word"           # "word" (English words, CJK characters) or "char"
    ngram: int = 3
    num_perm: int = 128
    bands: int = 0                  # 0: derived from threshold and num_perm (with rows)
    rows: int = 0
    min_chars: int = 10             # paragraphs/sentences with fewer kept characters are left alone
    verify: bool = True             # check candidate pairs against their signatures
    partitions: int = 1             # key ranges per band in phase 2 (memory / partitions)
    seed: int = 1
    batch_chars: int = 8_000_000    # phase 1 works on this much text at a time

    def __post_init__(self):
        levels = (self.levels,) if isinstance(self.levels, str) else tuple(self.levels)
        bad = [lv for lv in levels if lv not in LEVELS]
        if bad or not levels:
            raise BaichuanError(f"dedup.levels: expected some of {', '.join(LEVELS)}, got {list(levels)}")
        object.__setattr__(self, "levels", tuple(lv for lv in LEVELS if lv in levels))
        checks = [("threshold", 0 < self.threshold <= 1), ("shingle", self.shingle in SHINGLES),
                  ("ngram", 1 <= self.ngram <= 32), ("num_perm", 8 <= self.num_perm <= 1024),
                  ("min_chars", self.min_chars >= 0), ("partitions", self.partitions >= 1),
                  ("batch_chars", self.batch_chars >= 1), ("bands", self.bands >= 0 and self.rows >= 0)]
        for name, ok in checks:
            if not ok:
                raise BaichuanError(f"dedup.{name}: invalid value {getattr(self, name)!r}")
        if bool(self.bands) != bool(self.rows):
            raise BaichuanError("dedup.bands and dedup.rows: give both or neither")
        if not self.bands:
            # every candidate is verified, so LSH may over-generate: weigh misses 9:1 against false
            # candidates (the equal weights datasketch uses give 9x13 at 0.8, which makes a pair at
            # J = 0.8 a candidate with p = 0.40; 14x9 gives 0.87 and recall 0.904 -> 0.965)
            b, r = optimal_bands(round(self.threshold, 6), self.num_perm, 0.1, 0.9)
            object.__setattr__(self, "bands", b)
            object.__setattr__(self, "rows", r)
        if self.bands * self.rows > self.num_perm:
            raise BaichuanError(f"dedup.bands x dedup.rows = {self.bands * self.rows} exceeds num_perm {self.num_perm}")

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "dedup") -> DedupConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise BaichuanError(f"{source}: unknown option(s) {', '.join(unknown)}")
        return cls(**d)

    def fingerprint(self) -> dict:
        """What phase-1 files depend on; phase 2 refuses files made with anything else."""
        keys = ("levels", "shingle", "ngram", "num_perm", "bands", "rows", "min_chars", "seed", "near")
        fp = {k: getattr(self, k) for k in keys}
        fp["levels"] = list(self.levels)
        if self.near:
            fp["rensa_algorithm"] = int(minhash.rensa_module().RMinHash.ALGORITHM_VERSION)
        return fp


# -- phase 1: per shard ----------------------------------------------------------------------------

_ARRAYS = ("doc", "unit", "par", "nchars", "exact_keys", "exact_rows", "band_keys", "band_rows", "sig")


@dataclass
class LevelIndex:
    """One level of one shard as phase 2 reads it (in memory, or memory-mapped from .npy files)."""
    doc: np.ndarray         # (n,) int32, units in (doc, unit) order
    unit: np.ndarray
    par: np.ndarray
    nchars: np.ndarray      # (n,) int32 original characters of the unit
    exact_keys: np.ndarray  # (2, n) uint64 hashes, columns sorted
    exact_rows: np.ndarray  # (n,) uint32 row of each sorted column
    band_keys: np.ndarray   # (bands, n) uint64, each band sorted
    band_rows: np.ndarray   # (bands, n) uint32
    sig: np.ndarray         # (n, num_perm) uint16: low 16 bits of each slot, enough to estimate Jaccard
    units_total: int        # including units under min_chars


@dataclass
class ShardFeatures:
    shard: int
    docs: int
    fingerprint: dict
    levels: dict = field(default_factory=dict)   # level -> LevelIndex


def _index(f: dict) -> LevelIndex:
    order = np.lexsort((f["exact"][:, 1], f["exact"][:, 0]))
    bands = f.get("bands", np.zeros((0, len(f["doc"])), np.uint64))
    border = np.argsort(bands, axis=1, kind="stable")
    sig = f.get("sig", np.zeros((len(f["doc"]), 0), np.uint16))
    return LevelIndex(f["doc"], f["unit"], f["par"], f["nchars"], f["exact"][order].T.copy(),
                      order.astype(np.uint32), np.take_along_axis(bands, border, 1), border.astype(np.uint32),
                      sig, int(f["units_total"]))


def compute_shard(docs: Iterable, config: DedupConfig, shard: int = 0) -> ShardFeatures:
    """Phase 1 for one shard: `docs` are Documents (or strings) in shard order."""
    parts: dict[str, list[dict]] = {lv: [] for lv in config.levels}
    n_docs = 0

    def flush(texts: list[str]) -> None:
        for lv in config.levels:
            f = level_features(texts, lv, shingle=config.shingle, ngram=config.ngram, num_perm=config.num_perm,
                               seed=config.seed, bands=config.bands, rows=config.rows,
                               min_chars=config.min_chars, near=config.near)
            f["doc"] = f["doc"] + np.int32(n_docs - len(texts))
            parts[lv].append(f)

    texts: list[str] = []
    size = 0
    for doc in docs:
        text = doc.text if isinstance(doc, Document) else doc
        texts.append(text if isinstance(text, str) else "")  # non-text input: no units, never removed
        size += len(texts[-1])
        n_docs += 1
        if size >= config.batch_chars:
            flush(texts)
            texts, size = [], 0
    flush(texts)
    levels = {}
    for lv, fs in parts.items():
        merged = {k: np.concatenate([f[k] for f in fs]) for k in fs[0] if k not in ("bands", "units_total")}
        if config.near:
            merged["bands"] = np.concatenate([f["bands"] for f in fs], axis=1)
        merged["units_total"] = sum(int(f["units_total"]) for f in fs)
        levels[lv] = _index(merged)
    return ShardFeatures(shard, n_docs, config.fingerprint(), levels)


def save_shard(features: ShardFeatures, folder: str | Path) -> Path:
    """Write `folder` atomically: .npy arrays per level and meta.json (written last)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for lv, idx in features.levels.items():
        (tmp / lv).mkdir(parents=True)
        for name in _ARRAYS:
            np.save(tmp / lv / f"{name}.npy", getattr(idx, name))
    meta = {"shard": features.shard, "docs": features.docs, "fingerprint": features.fingerprint,
            "units_total": {lv: idx.units_total for lv, idx in features.levels.items()}}
    (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_shard(folder: str | Path) -> ShardFeatures:
    """Memory-map a folder written by `save_shard`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        levels = {lv: LevelIndex(**{n: np.load(folder / lv / f"{n}.npy", mmap_mode="r", allow_pickle=False)
                                    for n in _ARRAYS}, units_total=int(total))
                  for lv, total in meta["units_total"].items()}
    except (OSError, ValueError, KeyError) as e:
        raise BaichuanError(f"{folder}: not a complete dedup signature folder ({e})") from None
    return ShardFeatures(int(meta["shard"]), int(meta["docs"]), meta["fingerprint"], levels)


# -- phase 2: global -------------------------------------------------------------------------------

@dataclass
class Removals:
    """What phase 2 removes from one shard."""
    shard: int
    doc_exact: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    doc_near: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    paragraph: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))  # (doc, unit)
    sentence: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))

    def save(self, path: str | Path) -> None:
        np.savez(path, shard=np.int64(self.shard), doc_exact=self.doc_exact, doc_near=self.doc_near,
                 paragraph=self.paragraph, sentence=self.sentence)

    @classmethod
    def load(cls, path: str | Path) -> Removals:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(int(z["shard"]), z["doc_exact"], z["doc_near"], z["paragraph"], z["sentence"])
        except (OSError, ValueError, KeyError) as e:
            raise BaichuanError(f"{path}: not a dedup removals file ({e})") from None


@dataclass
class LevelReport:
    units: int = 0            # all units seen
    indexed: int = 0          # units with at least min_chars kept characters
    exact_clusters: int = 0
    exact_removed: int = 0
    near_candidates: int = 0  # distinct pairs sharing a band
    near_verified: int = 0    # ... whose signatures agree on >= threshold
    near_clusters: int = 0
    near_removed: int = 0
    chars_removed: int = 0    # original characters of the removed units


@dataclass
class DedupReport:
    config: dict
    levels: dict = field(default_factory=dict)   # level -> LevelReport
    docs: int = 0
    docs_dropped: dict = field(default_factory=dict)
    docs_modified: int = 0
    chars_in: int = 0
    chars_out: int = 0

    def count(self, doc: Document, result) -> None:
        self.docs += 1
        self.chars_in += len(doc.text)
        if isinstance(result, str):
            self.docs_dropped[result] = self.docs_dropped.get(result, 0) + 1
        else:
            self.chars_out += len(result.text)
            self.docs_modified += result is not doc

    def to_dict(self) -> dict:
        return {**asdict(self), "levels": {lv: asdict(r) for lv, r in self.levels.items()}}

    def markdown(self) -> str:
        cols = [f.name for f in fields(LevelReport)]
        lines = ["| level | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {lv} | " + " | ".join(str(getattr(r, c)) for c in cols) + " |" for lv, r in self.levels.items()]
        lines.append(f"\ndocs {self.docs}, dropped {self.docs_dropped}, modified {self.docs_modified}, "
                     f"chars {self.chars_in} -> {self.chars_out}")
        return "\n".join(lines) + "\n"


def _key_range(keys: np.ndarray, p: int, parts: int) -> tuple[int, int]:
    lo = 0 if p == 0 else int(np.searchsorted(keys, np.uint64((p << 64) // parts)))
    hi = len(keys) if p == parts - 1 else int(np.searchsorted(keys, np.uint64(((p + 1) << 64) // parts)))
    return lo, hi


def _dead(bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Test bits of a np.packbits mask (1 bit per unit) without unpacking it."""
    return ((bits[rows >> 3] >> (7 - (rows & 7)).astype(np.uint8)) & 1).astype(bool)


def _mark(dead: list[np.ndarray], offsets: np.ndarray, g: np.ndarray) -> list[np.ndarray]:
    out = []
    for s, bits in enumerate(dead):
        mask = np.unpackbits(bits, count=int(offsets[s + 1] - offsets[s])).astype(bool)
        mask[g[(g >= offsets[s]) & (g < offsets[s + 1])] - offsets[s]] = True
        out.append(np.packbits(mask))
    return out


def _pairs(idx: list[LevelIndex], offsets: np.ndarray, dead: list[np.ndarray], band: int | None,
           p: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Run pairs in key range p of one band (None: the exact hashes), live units only. Reads just
    that slice of each shard's sorted keys, so memory is bounded by the slice."""
    cols: list[list[np.ndarray]] = []
    gidx = []
    for s, ix in enumerate(idx):
        k0 = ix.exact_keys[0] if band is None else ix.band_keys[band]
        lo, hi = _key_range(k0, p, parts)
        rows = np.asarray((ix.exact_rows if band is None else ix.band_rows[band])[lo:hi], dtype=np.int64)
        live = ~_dead(dead[s], rows)
        cols.append([np.asarray(k0[lo:hi])[live]] + ([np.asarray(ix.exact_keys[1][lo:hi])[live]] if band is None else []))
        gidx.append(rows[live] + offsets[s])
    keys = [np.concatenate([c[j] for c in cols]) for j in range(len(cols[0]))]
    return run_pairs(keys, np.concatenate(gidx))


def _signatures_of(idx: list[LevelIndex], offsets: np.ndarray, g: np.ndarray) -> np.ndarray:
    shard = np.searchsorted(offsets, g, side="right") - 1
    out = np.empty((len(g), idx[0].sig.shape[1]), dtype=np.uint16)
    for s in np.unique(shard):
        m = shard == s
        out[m] = idx[s].sig[g[m] - offsets[s]]   # memory-mapped: reads only these rows
    return out


def _near_edges(idx: list[LevelIndex], offsets: np.ndarray, dead: list[np.ndarray], config: DedupConfig,
                rep: LevelReport) -> np.ndarray:
    """Verified candidate pairs (k, 2) of global unit indices."""
    found = [_pairs(idx, offsets, dead, b, p, config.partitions)
             for b in range(config.bands) for p in range(config.partitions)]
    uv = np.stack([np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])], axis=1)
    uv = np.unique(uv, axis=0) if len(uv) else uv   # a pair usually collides in several bands
    rep.near_candidates = len(uv)
    if config.verify and len(uv):
        chunks = np.array_split(uv, max(1, len(uv) // 65536))
        ok = [(_signatures_of(idx, offsets, c[:, 0]) == _signatures_of(idx, offsets, c[:, 1])).mean(axis=1)
              >= config.threshold for c in chunks]
        uv = uv[np.concatenate(ok)]
    rep.near_verified = len(uv)
    return uv


def find_duplicates(shards: list[ShardFeatures], config: DedupConfig,
                    pairs: dict | None = None) -> tuple[list[Removals], DedupReport]:
    """Phase 2 over all shards (in shard order): one Removals per shard and the unit counts. With a
    dict as `pairs`, also stores per level the (k, 2) global-index pairs found: "exact" (cluster
    first, member) and "near" (verified pairs); global index = the unit's row counted over shards."""
    want = config.fingerprint()
    for sh in shards:
        for k, v in want.items():
            if sh.fingerprint.get(k) != v:
                raise BaichuanError(f"dedup shard {sh.shard}: signatures were made with {k}={sh.fingerprint.get(k)!r}, "
                                    f"the config says {v!r}; recompute phase 1")
    report = DedupReport(config=asdict(config))
    removals = [Removals(sh.shard) for sh in shards]
    gone_docs = [np.zeros(0, np.int64) for _ in shards]
    gone_pars = [np.zeros(0, np.int64) for _ in shards]  # doc << 32 | paragraph
    for lv in config.levels:
        idx = [sh.levels[lv] for sh in shards]
        offsets = np.concatenate([[0], np.cumsum([len(ix.doc) for ix in idx])]).astype(np.int64)
        rep = report.levels[lv] = LevelReport(units=sum(ix.units_total for ix in idx), indexed=int(offsets[-1]))
        dead = []
        for s, ix in enumerate(idx):  # units inside documents/paragraphs a coarser level removed
            doc = np.asarray(ix.doc, dtype=np.int64)
            dead.append(np.packbits(np.isin(doc, gone_docs[s]) | np.isin(doc << 32 | np.asarray(ix.par), gone_pars[s])))
        exact = np.zeros(0, np.int64)
        near = np.zeros(0, np.int64)
        if config.exact and rep.indexed:
            found = [_pairs(idx, offsets, dead, None, p, config.partitions) for p in range(config.partitions)]
            firsts, exact = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
            rep.exact_clusters, rep.exact_removed = len(np.unique(firsts)), len(exact)
            dead = _mark(dead, offsets, exact)
            if pairs is not None:
                pairs.setdefault(lv, {})["exact"] = np.stack([firsts, exact], axis=1)
        if config.near and rep.indexed:
            uv = _near_edges(idx, offsets, dead, config, rep)
            nodes, root = components(uv[:, 0], uv[:, 1])
            rep.near_clusters = len(np.unique(root))
            near = nodes[root != nodes]
            rep.near_removed = len(near)
            if pairs is not None:
                pairs.setdefault(lv, {})["near"] = uv
        gone = np.concatenate([exact, near])
        shard_of = np.searchsorted(offsets, gone, side="right") - 1
        for s, ix in enumerate(idx):
            rows = np.sort(gone[shard_of == s] - offsets[s])
            rep.chars_removed += int(np.asarray(ix.nchars)[rows].sum())
            du = np.stack([np.asarray(ix.doc)[rows], np.asarray(ix.unit)[rows]], axis=1).astype(np.int32)
            if lv == "document":
                is_exact = np.isin(rows + offsets[s], exact)
                removals[s].doc_exact, removals[s].doc_near = du[is_exact, 0], du[~is_exact, 0]
                gone_docs[s] = du[:, 0].astype(np.int64)
            else:
                setattr(removals[s], lv, du)
            if lv == "paragraph":
                gone_pars[s] = du[:, 0].astype(np.int64) << 32 | du[:, 1]
    return removals, report


# -- phase 3: apply --------------------------------------------------------------------------------

def _by_doc(pairs: np.ndarray) -> dict[int, set]:
    out: dict[int, set] = defaultdict(set)
    for d, u in pairs.tolist():
        out[d].add(u)
    return out


def apply_removals(docs: Iterable[Document], removals: Removals) -> Iterator[tuple[Document, Document | str]]:
    """Phase 3: for each input document in shard order yield (document, result): the result is the
    same object if untouched, a new Document if units were cut out, or the reason it is dropped."""
    drop = {**{d: "near_dup" for d in removals.doc_near.tolist()}, **{d: "exact_dup" for d in removals.doc_exact.tolist()}}
    pars, sents = _by_doc(removals.paragraph), _by_doc(removals.sentence)
    highest = max([-1, *drop, *pars, *sents])
    n = 0
    for n, doc in enumerate(docs, 1):
        d = n - 1
        if d in drop:
            yield doc, drop[d]
            continue
        gone_p, gone_s = pars.get(d), sents.get(d)
        if not gone_p and not gone_s:
            yield doc, doc
            continue
        if gone_s:
            parts = split_sentences(doc.text)
            par = split_units([doc.text], "sentence").par.tolist()
            keep = [i not in gone_s and p not in (gone_p or ()) for i, p in enumerate(par)]
        else:
            parts = split_paragraphs(doc.text)
            keep = [i not in gone_p for i in range(len(parts))]
        text = join_kept(parts, keep)
        yield doc, (Document(text=text, id=doc.id, meta=dict(doc.meta)) if text.strip() else "near_dup")
    if highest >= n:
        raise BaichuanError(f"dedup shard {removals.shard}: removals name document {highest} but the shard has {n} "
                            "documents; the shard changed since its signatures were computed")


# -- in memory -------------------------------------------------------------------------------------

def dedup_documents(docs: Iterable, level="document", threshold: float = 0.8, ngram: int = 3,
                    num_perm: int = 128, shard_size: int | None = None, **options) -> tuple[list[Document], DedupReport]:
    """All three phases in memory: returns the kept (possibly shortened) documents and the report.
    Strings are wrapped as Documents with id = their position. `shard_size` cuts the input into
    shards of that many documents (the result is the same; tests use it)."""
    config = DedupConfig(levels=level, threshold=threshold, ngram=ngram, num_perm=num_perm, **options)
    docs = [d if isinstance(d, Document) else Document(text=d, id=str(i)) for i, d in enumerate(docs)]
    size = shard_size or max(1, len(docs))
    groups = [docs[i:i + size] for i in range(0, len(docs), size)] or [[]]
    shards = [compute_shard(g, config, shard=s) for s, g in enumerate(groups)]
    removals, report = find_duplicates(shards, config)
    kept = []
    for group, rm in zip(groups, removals):
        for doc, result in apply_removals(group, rm):
            report.count(doc, result)
            if not isinstance(result, str):
                kept.append(result)
    return kept, report


# -- pipeline stage --------------------------------------------------------------------------------

def _shard_docs(files: list[str]) -> Iterator[Document]:
    from baichuan.data.writers import read_shard
    for f in files:
        yield from read_shard(Path(f))


def signature_task(task: int, files: list[str], work: str, config: DedupConfig) -> bool:
    """Phase 1 for one docs shard (a group of files); False if its folder was already complete."""
    folder = Path(work) / f"shard-{task:05d}"
    meta, inputs = folder / "meta.json", folder / "inputs.json"
    # the same options and the same input files (a changed clean stage rewrites them)
    key = json.dumps([[f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns] for f in files])
    if meta.exists() and inputs.exists() and inputs.read_text(encoding="utf-8") == key \
            and json.loads(meta.read_text(encoding="utf-8"))["fingerprint"] == config.fingerprint():
        return False   # done by an earlier run with the same options and inputs
    inputs.unlink(missing_ok=True)
    save_shard(compute_shard(_shard_docs(files), config, shard=task), folder)
    inputs.write_text(key, encoding="utf-8")
    return True


def apply_task(task: int, files: list[str], work: str, cfg) -> dict:
    """Phase 3 for one docs shard: write the kept documents to dedup/, return counts (and a marker)."""
    from baichuan.data.stats import Stats
    from baichuan.data.writers import ShardWriter, atomic_write_text
    out = Path(cfg.output)
    marker = out / "stats" / f"dedup-{task:05d}.json"
    if marker.exists():
        return json.loads(marker.read_text(encoding="utf-8"))
    removals = Removals.load(Path(work) / f"shard-{task:05d}" / "removals.npz")
    stats, report, comp = Stats(), DedupReport(config={}), defaultdict(dict)
    with ShardWriter(out / "dedup", f"{task:05d}", cfg.format, cfg.shard_chars) as writer:
        for doc, result in apply_removals(_shard_docs(files), removals):
            stats.seen("dedup", doc.lang, len(doc.text))
            report.count(doc, result)
            if isinstance(result, str):
                stats.dropped("dedup", doc.lang, result)
                continue
            stats.kept("dedup", doc.lang, len(result.text), modified=result is not doc)
            writer.write(result)
            src = str(result.meta.get("source", "unknown"))
            comp[result.lang][src] = comp[result.lang].get(src, 0) + len(result.text)
        written = writer.close()
    result = {"files": [f.name for f in written], "stats": stats.to_dict(), "composition": comp,
              "docs": {k: getattr(report, k) for k in ("docs", "docs_dropped", "docs_modified", "chars_in", "chars_out")}}
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(result, ensure_ascii=False))
    return result


def run_stage(cfg, shard_groups: list[list[Path]], progress: bool = True) -> dict:
    """The pipeline's dedup stage over docs shards (`cfg` is a pipeline DataConfig; options come
    from its `dedup` table). Signature folders stay in <output>/dedup-work for reruns."""
    from baichuan.data.executor import run_tasks
    from baichuan.data.stats import Stats
    from baichuan.data.writers import atomic_write_text
    config = DedupConfig.from_dict(cfg.dedup, "dedup")
    out, work = Path(cfg.output), Path(cfg.output) / "dedup-work"
    groups = [[str(f) for f in g] for g in shard_groups]
    fresh = run_tasks(signature_task, [(i, g, str(work), config) for i, g in enumerate(groups)], cfg.executor,
                      cfg.workers, desc="dedup signatures", progress=progress)
    if any(fresh) or not (work / "report.json").exists():
        removals, report = find_duplicates([load_shard(work / f"shard-{i:05d}") for i in range(len(groups))], config)
        for rm in removals:
            with open(work / f"shard-{rm.shard:05d}" / "removals.npz", "wb") as f:
                rm.save(f)
        for i in range(len(groups)):  # removals changed: earlier apply results are stale
            (out / "stats" / f"dedup-{i:05d}.json").unlink(missing_ok=True)
        atomic_write_text(work / "report.json", json.dumps(report.to_dict(), ensure_ascii=False))
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    results = run_tasks(apply_task, [(i, g, str(work), cfg) for i, g in enumerate(groups)], cfg.executor,
                        cfg.workers, desc="dedup apply", progress=progress)
    stats, comp = Stats(), defaultdict(dict)
    for r in results:
        stats.merge(Stats.from_dict(r["stats"]))
        for lang, srcs in r["composition"].items():
            for src, n in srcs.items():
                comp[lang][src] = comp[lang].get(src, 0) + n
        for k, v in r["docs"].items():
            if k == "docs_dropped":
                for reason, n in v.items():
                    report[k][reason] = report[k].get(reason, 0) + n
            else:
                report[k] += v
    return {"stats": stats.to_dict(), "files": [[out / "dedup" / f for f in r["files"]] for r in results],
            "composition": {k: dict(v) for k, v in comp.items()}, "report": report}
