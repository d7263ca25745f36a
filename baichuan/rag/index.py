"""`baichuan index DIR`: passages of every document under DIR, a BM25 index over them (bm25s), and
optionally a dense index (dense.py), written to one folder that is replaced atomically.

    report = build_index("notes/")               # -> notes/.baichuan-index/
    index = load_index("notes/")                 # the folder itself or the docs folder
    hits = index.search("谁为关公刮骨疗毒？", k=5)

Incremental: the manifest keeps each file's size, mtime and sha256 with the range of its passages.
A file whose size and mtime are unchanged is not even read; one whose bytes hash the same is not
split or analyzed again. Only new and changed files are. BM25 statistics (IDF, average length)
are corpus-wide, so the score matrix itself is always rebuilt, from the stored term ids, which
takes a fraction of the time that segmenting Chinese does.

Layout of the index folder:
    manifest.json      settings, per-file entries, skipped files with reasons, counts
    passages.jsonl     one passage per line: file, doc, n (1-based within the file), start, end, text
    terms.json         the term vocabulary; term_ids.npy + term_offsets.npy: each passage's terms
    bm25/              the bm25s score matrix
    dense.npy          passage embeddings (only with an embedding model)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from baichuan.data.writers import replace_dir
from baichuan.errors import BaichuanError
from baichuan.rag.passages import MAX_CHARS, OVERLAP_CHARS, split_passages
from baichuan.rag.sources import Skip, list_files, read_docs
from baichuan.rag.terms import Analyzer, analyzer_from, question_language

FORMAT = 1
INDEX_NAME = ".baichuan-index"   # default place, inside the documents folder (hidden: never indexed)
MANIFEST = "manifest.json"
BM25_K1, BM25_B = 1.2, 0.75      # Lucene's defaults; the QA set shows no gain from tuning them
WINDOW_BYTES = 64 * 1024 ** 2    # file bytes read ahead of the analysis (memory stays bounded)


@dataclass
class BuildReport:
    index_dir: Path
    files: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, reason)
    notes: list[str] = field(default_factory=list)                 # per-line problems, dense-index notes
    passages: int = 0
    bytes_read: int = 0           # bytes of the files read (and analyzed) in this run
    bytes_total: int = 0          # bytes of all indexed files
    seconds: float = 0.0
    written: bool = True          # False: nothing changed, the index was left as it was

    def summary(self) -> str:
        lines = [f"{self.index_dir}: {self.files} files, {self.passages} passages "
                 f"({len(self.added)} added, {len(self.changed)} changed, {self.unchanged} unchanged, "
                 f"{len(self.removed)} removed) in {self.seconds:.1f}s"
                 + ("" if self.written else "; up to date, nothing written")]
        if self.skipped:
            counts: dict[str, int] = {}
            for _, reason in self.skipped:
                kind = reason.split(" (")[0]
                counts[kind] = counts.get(kind, 0) + 1
            lines.append(f"skipped {len(self.skipped)} files: "
                         + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
            lines += [f"  {f}: {r}" for f, r in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more (listed in {MANIFEST})")
        lines += [f"note: {n}" for n in self.notes[:20]]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ loading

@dataclass
class Hit:
    rank: int                 # 1-based
    index: int                # row in Index.passages
    score: float              # BM25 (or fused) score
    coverage: float           # share of the question's term weight (IDF) found in this passage
    passage: dict             # file, doc, n, start, end, text


class Index:
    def __init__(self, path: Path, manifest: dict, passages: list[dict], bm25, vocab: dict[str, int],
                 dense: np.ndarray | None = None):
        self.path, self.manifest, self.passages = path, manifest, passages
        self.bm25, self.vocab = bm25, vocab
        self.analyzer = analyzer_from(manifest.get("analyzer"), str(path / MANIFEST))
        self.root = Path(manifest.get("root", "."))
        n = len(passages)
        df = np.diff(bm25.scores["indptr"]) if n else np.zeros(0)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))    # Lucene IDF, per term id
        self.idf_unseen = math.log1p((n + 0.5) / 0.5)         # a term no passage has: the rarest
        self.dense = dense

    def __len__(self) -> int:
        return len(self.passages)

    def query_terms(self, text: str) -> list[str]:
        return list(dict.fromkeys(self.analyzer.terms(text)))   # unique, in order

    def bm25_scores(self, terms: list[str]) -> np.ndarray:
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        if not ids or not self.passages:
            return np.zeros(len(self.passages), dtype=np.float32)
        return self.bm25.get_scores_from_ids(ids)

    def coverage(self, terms: list[str], row: int) -> float:
        """IDF-weighted share of the query terms that occur in passage `row`."""
        total = found = 0.0
        indptr, indices = self.bm25.scores["indptr"], self.bm25.scores["indices"]
        for t in terms:
            tid = self.vocab.get(t)
            w = self.idf[tid] if tid is not None else self.idf_unseen
            total += w
            if tid is not None:
                col = indices[indptr[tid]:indptr[tid + 1]]
                if np.any(col == row):
                    found += w
        return found / total if total else 0.0

    def search(self, query: str, k: int = 5, dense_weight: float | None = None) -> list[Hit]:
        """Top-k passages for `query`, best first; passages that match no query term are never
        returned. With a dense index, BM25 and embedding ranks are fused (dense.py)."""
        terms = self.query_terms(query)
        scores = self.bm25_scores(terms)
        languages = (self.manifest.get("dense") or {}).get("languages", ["zh", "en"])
        if self.dense is not None and dense_weight != 0 and question_language(query) in languages:
            from baichuan.rag.dense import fuse
            scores = fuse(self, query, scores, weight=dense_weight)
        matched = np.flatnonzero(scores > 0)
        if not len(matched):
            return []
        top = matched[np.argsort(-scores[matched], kind="stable")[:k]]
        return [Hit(rank=r, index=int(i), score=float(scores[i]), coverage=self.coverage(terms, int(i)),
                    passage=self.passages[i]) for r, i in enumerate(top, 1)]


def _bm25s():
    try:
        import bm25s
    except ImportError:
        raise BaichuanError("the document index needs bm25s: pip install 'baichuan[rag]'") from None
    return bm25s


def resolve_index_dir(path: str | os.PathLike) -> Path:
    """The index folder for `path`: the folder itself if it holds a manifest, else DIR/.baichuan-index."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / INDEX_NAME / MANIFEST).is_file():
        return path / INDEX_NAME
    if not path.exists():
        raise BaichuanError(f"{path}: no such index or documents folder")
    raise BaichuanError(f"{path}: no index here (no {MANIFEST}, no {INDEX_NAME}/); build one with `baichuan index DIR`")


def load_index(path: str | os.PathLike) -> Index:
    bm25s = _bm25s()
    index_dir = resolve_index_dir(path)
    manifest = _read_manifest(index_dir / MANIFEST)
    try:
        with open(index_dir / "passages.jsonl", encoding="utf-8") as f:
            passages = [json.loads(line) for line in f]
        vocab_list = json.loads((index_dir / "terms.json").read_text(encoding="utf-8"))
        bm25 = bm25s.BM25.load(str(index_dir / "bm25"), load_vocab=False, show_progress=False, verbosity=0)
    except (OSError, ValueError) as e:
        raise BaichuanError(f"{index_dir}: the index is damaged ({e}); rebuild it with `baichuan index`") from None
    if len(passages) != manifest.get("counts", {}).get("passages"):
        raise BaichuanError(f"{index_dir}/passages.jsonl: {len(passages)} passages, the manifest says "
                            f"{manifest.get('counts', {}).get('passages')}; rebuild the index")
    dense = None
    if manifest.get("dense"):
        dense = np.load(index_dir / "dense.npy", mmap_mode="r")
    return Index(index_dir, manifest, passages, bm25, {t: i for i, t in enumerate(vocab_list)}, dense)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaichuanError(f"{path}: missing; build the index with `baichuan index DIR`") from None
    except ValueError as e:
        raise BaichuanError(f"{path}: not JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BaichuanError(f"{path}: field 'format' must be {FORMAT}, got "
                            f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r}; rebuild the index")
    return manifest


# ----------------------------------------------------------------------------------- building

@dataclass
class _Previous:
    """What an existing index can lend to a rebuild: per-file passages and term ids."""
    files: dict
    passages: list[dict]
    vocab: list[str]
    term_ids: np.ndarray
    offsets: np.ndarray
    dense: np.ndarray | None
    dense_model: str | None
    dense_languages: list[str] | None


def _previous(index_dir: Path, settings: dict) -> _Previous | None:
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        manifest = _read_manifest(index_dir / MANIFEST)
        if manifest.get("settings") != settings:
            return None          # other passage sizes or analyzer: everything is redone
        with open(index_dir / "passages.jsonl", encoding="utf-8") as f:
            passages = [json.loads(line) for line in f]
        vocab = json.loads((index_dir / "terms.json").read_text(encoding="utf-8"))
        term_ids = np.load(index_dir / "term_ids.npy")
        offsets = np.load(index_dir / "term_offsets.npy")
        dense_info = manifest.get("dense") or {}
        dense = np.load(index_dir / "dense.npy") if dense_info else None
    except (BaichuanError, OSError, ValueError):
        return None              # a damaged index is rebuilt from scratch, not trusted
    if len(offsets) != len(passages) + 1:
        return None
    return _Previous(manifest.get("files", {}), passages, vocab, term_ids, offsets, dense, dense_info.get("model"),
                     dense_info.get("languages"))


def build_index(docs_dir: str | os.PathLike, index_dir: str | os.PathLike | None = None, *,
                analyzer: Analyzer | None = None, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS,
                embed: str | None = None, embed_languages: list[str] | None = None,
                workers: int = 1, progress: bool = True) -> BuildReport:
    """Index every .txt/.md/.html/.jsonl file under `docs_dir` into `index_dir` (default
    DOCS/.baichuan-index), reusing what an existing index there has for unchanged files.
    `embed`: None (BM25 only), "auto" (the bundled-package model if installed) or a
    sentence-transformers model folder; `embed_languages`: the question languages it serves
    (default: dense.default_languages). `workers` > 1 splits and segments files in that many
    processes (the result is the same)."""
    t0 = time.perf_counter()
    root = Path(docs_dir).resolve()
    if not root.is_dir():
        raise BaichuanError(f"{docs_dir}: not a folder")
    out = Path(index_dir).resolve() if index_dir else root / INDEX_NAME
    analyzer = analyzer or Analyzer()
    settings = {"analyzer": analyzer.to_dict(), "max_chars": max_chars, "overlap_chars": overlap_chars}
    split_passages("x" * 30, max_chars, overlap_chars)          # validates the sizes before any work
    prev = _previous(out, settings)
    report = BuildReport(index_dir=out)
    embed_model = languages = None
    if embed:
        from baichuan.rag.dense import default_languages, find_model
        embed_model, note = find_model(embed)
        languages = (embed_languages or default_languages(embed)) if embed_model else None
        if note:
            report.notes.append(note)

    files, other = list_files(root)
    files = [p for p in files if out not in p.parents]           # an index inside the folder is not a document
    report.skipped += other
    vocab_list: list[str] = list(prev.vocab) if prev else []
    vocab = {t: i for i, t in enumerate(vocab_list)}
    entries: dict[str, dict] = {}
    passages: list[dict] = []
    chunks: list[np.ndarray] = []                                 # term ids, file by file
    lengths: list[np.ndarray] = []
    reused_rows: list[tuple[int, int, int]] = []                  # (new first, old first, count) for dense rows

    sizes = {}
    for p in files:
        try:
            sizes[p] = p.stat()
        except OSError as e:
            report.skipped.append((p.relative_to(root).as_posix(), f"unreadable ({e.strerror or e})"))
    bar = tqdm(total=sum(s.st_size for s in sizes.values()), unit="B", unit_scale=True, desc="indexing",
               disable=not progress, leave=False)

    def add_analyzed(rel, st, old, digest, result) -> None:
        value, why = result
        if why is not None:
            report.skipped.append((rel, why))
            return
        n_docs, notes, units = value
        report.notes += [f"{rel}: {n}" for n in notes]
        (report.changed if old is not None else report.added).append(rel)
        new_first = len(passages)
        ids: list[int] = []
        for n, (doc, start, end, text, terms) in enumerate(units, 1):
            passages.append({"file": rel, "doc": doc, "n": n, "start": start, "end": end, "text": text})
            for t in terms:
                i = vocab.get(t)
                if i is None:
                    i = vocab[t] = len(vocab_list)
                    vocab_list.append(t)
                ids.append(i)
        chunks.append(np.asarray(ids, dtype=np.int64))
        lengths.append(np.asarray([len(u[4]) for u in units], dtype=np.int64))
        entries[rel] = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "docs": n_docs,
                        "passages": [new_first, len(units)], "notes": notes[:20]}

    def add_reused(rel, st, old) -> None:
        first, count = old["passages"]
        new_first = len(passages)
        passages.extend(prev.passages[first:first + count])
        a, b = prev.offsets[first], prev.offsets[first + count]
        chunks.append(prev.term_ids[a:b])
        lengths.append(np.diff(prev.offsets[first:first + count + 1]))
        reused_rows.append((new_first, first, count))
        entries[rel] = {**old, "mtime_ns": st.st_mtime_ns, "passages": [new_first, count]}
        report.unchanged += 1

    # Files are analyzed (split + segmented) by `workers` processes, a bounded window ahead, and
    # added in folder order, so the index does not depend on the number of workers.
    pool = None
    pending: deque = deque()
    pending_bytes = 0

    def drain(limit_files: int, limit_bytes: int) -> None:
        nonlocal pending_bytes
        while pending and (len(pending) > limit_files or pending_bytes > limit_bytes):
            kind, rel, st, old, digest, job = pending.popleft()
            if kind == "reuse":
                add_reused(rel, st, old)
            else:
                pending_bytes -= st.st_size
                add_analyzed(rel, st, old, digest, job.result() if pool else _analyze(*job))
            bar.update(st.st_size)

    try:
        for path, st in sizes.items():
            rel = path.relative_to(root).as_posix()
            old = prev.files.get(rel) if prev else None
            bar.set_postfix_str(rel[-40:], refresh=False)
            same_stat = old is not None and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns
            digest = None
            if not same_stat:
                try:
                    data = path.read_bytes()
                except OSError as e:
                    report.skipped.append((rel, f"unreadable ({e.strerror or e})"))
                    bar.update(st.st_size)
                    continue
                report.bytes_read += len(data)
                digest = hashlib.sha256(data).hexdigest()
            if old is not None and (same_stat or old["sha256"] == digest):
                pending.append(("reuse", rel, st, old, None, None))
            else:
                job = (path, data, analyzer, max_chars, overlap_chars)
                if workers > 1 and pool is None:
                    pool = ProcessPoolExecutor(max_workers=workers)
                pending.append(("new", rel, st, old, digest, pool.submit(_analyze, *job) if pool else job))
                pending_bytes += st.st_size
            drain(limit_files=4 * max(workers, 1), limit_bytes=WINDOW_BYTES)
        drain(limit_files=0, limit_bytes=-1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    bar.close()
    report.removed = sorted(set(prev.files) - set(entries)) if prev else []
    report.files = len(entries)
    report.passages = len(passages)
    report.bytes_total = sum(e["size"] for e in entries.values())
    skipped = [{"file": f, "reason": r} for f, r in sorted(report.skipped)]
    if prev and not report.added and not report.changed and not report.removed \
            and (embed_model, languages) == (prev.dense_model, prev.dense_languages) \
            and skipped == _read_manifest(out / MANIFEST).get("skipped"):
        report.written = False
        _touch_mtimes(out, entries)      # mtimes may have moved with the same bytes
        report.seconds = time.perf_counter() - t0
        return report

    term_ids = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    lens_all = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    # drop terms no passage uses any more (removed or changed files), renumbering the rest
    used = np.unique(term_ids)
    remap = np.full(len(vocab_list), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    term_ids = remap[term_ids].astype(np.int32)
    vocab_list = [vocab_list[i] for i in used]
    offsets = np.concatenate([[0], np.cumsum(lens_all)]).astype(np.int64)

    dense, dense_info = None, None
    if embed_model:
        from baichuan.rag.dense import build_dense
        dense, dense_info = build_dense(embed_model, passages, prev, reused_rows, progress, languages)

    manifest = {"format": FORMAT, "root": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": settings, "analyzer": analyzer.to_dict(), "dense": dense_info,
                "counts": {"files": len(entries), "passages": len(passages), "terms": len(vocab_list),
                           "bytes": report.bytes_total},
                "files": entries, "skipped": skipped}
    write_index(out, manifest, passages, vocab_list, term_ids, offsets, dense)
    report.seconds = time.perf_counter() - t0
    return report


def _touch_mtimes(out: Path, entries: dict) -> None:
    """Record new mtimes of files whose bytes did not change (so the next run skips hashing them),
    by rewriting the manifest alone, atomically."""
    manifest = _read_manifest(out / MANIFEST)
    if manifest.get("files") == entries:
        return
    manifest["files"] = entries
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def _analyze(path: Path, data: bytes, analyzer: Analyzer, max_chars: int, overlap_chars: int):
    """((documents, notes, [(doc, start, end, text, terms)]), None), or (None, why skipped):
    the per-file work, run in a worker process when there are several."""
    try:
        docs, notes = read_docs(path, data)
    except Skip as e:
        return None, str(e)
    units = []
    for doc in docs:
        for start, end in split_passages(doc.text, max_chars, overlap_chars):
            text = doc.text[start:end]
            units.append((doc.doc, start, end, text, analyzer.terms(text)))
    return (len(docs), notes, units), None


# ------------------------------------------------------------------------------------ writing

def write_index(out: Path, manifest: dict, passages: list[dict], vocab: list[str], term_ids: np.ndarray,
                offsets: np.ndarray, dense: np.ndarray | None) -> None:
    """Write everything into a temporary sibling folder, then swap it in: a crash at any point
    leaves either the old index or the new one, never a mixture."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        (tmp / "terms.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "term_ids.npy", term_ids)
        np.save(tmp / "term_offsets.npy", offsets)
        _write_bm25(tmp / "bm25", vocab, term_ids, offsets)
        if dense is not None:
            np.save(tmp / "dense.npy", dense)
        # the manifest last: a folder without one is never taken for an index
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        replace_dir(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BaichuanError(f"{out}: cannot write the index there ({e.strerror or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_bm25(path: Path, vocab: list[str], term_ids: np.ndarray, offsets: np.ndarray) -> None:
    bm25s = _bm25s()
    docs = [term_ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    if docs:
        retriever.index((docs, {t: i for i, t in enumerate(vocab)}), create_empty_token=False, show_progress=False)
    else:      # an empty folder still gets a valid (empty) index
        retriever.scores = {"data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32),
                            "indptr": np.zeros(1, np.int32), "num_docs": 0}
        retriever.vocab_dict = {}
    retriever.save(str(path), show_progress=False)
