"""`baichuan index DIR`: passages of every document under DIR, a BM25 index over them (bm25s), and
optionally a dense index (dense.py), written to one folder that is replaced atomically (its
layout, reading and writing: index.py).

    report = build_index("notes/")               # -> notes/.baichuan-index/

Incremental: the manifest keeps each file's size, mtime and sha256 with the range of its passages.
A file whose size and mtime are unchanged is not even read; one whose bytes hash the same is not
split or analyzed again. Only new and changed files are. BM25 statistics (IDF, average length)
are corpus-wide, so the score matrix itself is always rebuilt, from the stored term ids, which
takes a fraction of the time that segmenting Chinese does.

The build is a pipeline; each stage is a function below, fed by the one before:
    scan           the document files under DIR, with size and mtime
    find_changes   which of them the previous index has as they are, and the bytes of the others
    analyze        the others split into passages and cut into terms, in worker processes a
                   bounded window ahead, handed on in folder order
    collect        passages, term ids and manifest entries, file by file: reused or analyzed
    compact_terms  the vocabulary without the terms no passage uses any more
    write_index    (index.py) everything into a fresh folder that replaces the old one
find_changes and analyze are generators, so only the window's bytes are in memory at a time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from baichuan.errors import BaichuanError
from baichuan.rag.index import (
    FORMAT,
    INDEX_NAME,
    MANIFEST,
    Terms,
    read_manifest,
    read_passages,
    read_terms,
    touch_mtimes,
    write_index,
)
from baichuan.rag.passages import MAX_CHARS, OVERLAP_CHARS, Passage, split_passages
from baichuan.rag.sources import Skip, list_files, read_docs
from baichuan.rag.terms import Analyzer

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


@dataclass(frozen=True)
class Settings:
    """How passages and their terms are made; an index made with other settings is not reused."""
    analyzer: Analyzer
    max_chars: int
    overlap_chars: int

    def to_json(self) -> dict:
        return {"analyzer": self.analyzer.to_dict(), "max_chars": self.max_chars, "overlap_chars": self.overlap_chars}


@dataclass(frozen=True)
class Embedding:
    """The dense side: a sentence-transformers model folder and the question languages it serves."""
    model: str
    languages: list[str] | None


@dataclass(frozen=True)
class Previous:
    """What an existing index made with the same settings lends to a rebuild."""
    files: dict                   # its manifest's per-file entries
    skipped: list | None          # its manifest's skipped files
    embedding: Embedding | None
    passages: list[Passage]
    terms: Terms
    dense: np.ndarray | None


@dataclass(frozen=True)
class DocFile:
    path: Path
    rel: str                      # relative to the documents folder, with forward slashes: its manifest key
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Change:
    """A file and whether the previous index has it as it is (`data` None) or `data` must be analyzed."""
    file: DocFile
    old: dict | None              # its entry in the previous manifest; None for a new file
    digest: str | None            # sha256 of its bytes, when they were read
    data: bytes | None


@dataclass(frozen=True)
class Analyzed:
    """A file's passages and their terms."""
    docs: int                     # documents in the file (records of a .jsonl)
    notes: list[str]              # per-line problems
    passages: list[Passage]
    terms: list[list[str]]        # each passage's terms


@dataclass
class Table:
    """What the new index holds, file by file in folder order. `vocab` starts as the previous
    index's, so that the term ids of reused files stay valid."""
    vocab: list[str]
    ids: dict[str, int] = field(init=False)                        # term -> its id, the index in vocab
    passages: list[Passage] = field(default_factory=list)
    entries: dict[str, dict] = field(default_factory=dict)         # the manifest's "files"
    term_ids: list[np.ndarray] = field(default_factory=list)       # per file: its passages' term ids
    lengths: list[np.ndarray] = field(default_factory=list)        # per file: its passages' term counts
    reused_rows: list[tuple[int, int, int]] = field(default_factory=list)   # (new first, old first, count)

    def __post_init__(self):
        self.ids = {t: i for i, t in enumerate(self.vocab)}


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
    settings = Settings(analyzer or Analyzer(), max_chars, overlap_chars)
    split_passages("x" * 30, max_chars, overlap_chars)          # validates the sizes before any work
    prev = load_previous(out, settings)
    report = BuildReport(index_dir=out)
    embedding = choose_embedding(embed, embed_languages, report)

    files = scan(root, out, report)
    with (tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, desc="indexing", disable=not progress,
               leave=False) as bar,
          closing(analyze(find_changes(files, prev, report, bar), settings, workers)) as analyzed):  # stops the pool
        table = collect(analyzed, prev, report, bar)
    report.removed = sorted(set(prev.files) - set(table.entries)) if prev else []
    report.files = len(table.entries)
    report.passages = len(table.passages)
    report.bytes_total = sum(e["size"] for e in table.entries.values())
    skipped = [{"file": f, "reason": r} for f, r in sorted(report.skipped)]
    if prev and not report.added and not report.changed and not report.removed \
            and embedding == prev.embedding and skipped == prev.skipped:
        report.written = False
        touch_mtimes(out, table.entries)      # mtimes may have moved with the same bytes
        report.seconds = time.perf_counter() - t0
        return report

    terms = compact_terms(table)
    dense, dense_info = None, None
    if embedding:
        from baichuan.rag.dense import build_dense
        reusable = prev.dense if prev and prev.embedding and prev.embedding.model == embedding.model else None
        dense, dense_info = build_dense(embedding.model, embedding.languages, table.passages, reusable,
                                        table.reused_rows, progress)
    manifest = {"format": FORMAT, "root": str(root), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "settings": settings.to_json(), "analyzer": settings.analyzer.to_dict(), "dense": dense_info,
                "counts": {"files": len(table.entries), "passages": len(table.passages), "terms": len(terms.vocab),
                           "bytes": report.bytes_total},
                "files": table.entries, "skipped": skipped}
    write_index(out, manifest, table.passages, terms, dense)
    report.seconds = time.perf_counter() - t0
    return report


def load_previous(index_dir: Path, settings: Settings) -> Previous | None:
    """The index already at `index_dir`, if it was made with `settings` and is whole."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        manifest = read_manifest(index_dir / MANIFEST)
        if manifest.get("settings") != settings.to_json():
            return None          # other passage sizes or analyzer: everything is redone
        passages, terms = read_passages(index_dir), read_terms(index_dir)
        dense_info = manifest.get("dense") or {}
        dense = np.load(index_dir / "dense.npy") if dense_info else None
    except (BaichuanError, OSError, ValueError, TypeError):
        return None              # a damaged index is rebuilt from scratch, not trusted
    if len(terms.offsets) != len(passages) + 1:
        return None
    embedding = Embedding(dense_info.get("model"), dense_info.get("languages")) if dense_info else None
    return Previous(manifest.get("files", {}), manifest.get("skipped"), embedding, passages, terms, dense)


def choose_embedding(embed: str | None, languages: list[str] | None, report: BuildReport) -> Embedding | None:
    """The model for the dense side, or None for BM25 only (with a note when "auto" finds none)."""
    if not embed:
        return None
    from baichuan.rag.dense import default_languages, find_model
    model, note = find_model(embed)
    if note:
        report.notes.append(note)
    return Embedding(model, languages or default_languages(embed)) if model else None


# ------------------------------------------------------------------------------------ stages

def scan(root: Path, out: Path, report: BuildReport) -> list[DocFile]:
    """The supported files under `root` with their size and mtime; the others go to report.skipped."""
    paths, other = list_files(root)
    report.skipped += other
    files = []
    for path in paths:
        if out in path.parents:                  # an index inside the folder is not a document
            continue
        rel = path.relative_to(root).as_posix()
        try:
            st = path.stat()
        except OSError as e:
            report.skipped.append((rel, f"unreadable ({e.strerror or e})"))
            continue
        files.append(DocFile(path, rel, st.st_size, st.st_mtime_ns))
    return files


def find_changes(files: list[DocFile], prev: Previous | None, report: BuildReport, bar) -> Iterator[Change]:
    """Each file with its bytes when they must be analyzed. A file whose size and mtime are
    unchanged is not read; one whose bytes hash the same is reused too."""
    for f in files:
        old = prev.files.get(f.rel) if prev else None
        bar.set_postfix_str(f.rel[-40:], refresh=False)
        if old is not None and old["size"] == f.size and old["mtime_ns"] == f.mtime_ns:
            yield Change(f, old, None, None)
            continue
        try:
            data = f.path.read_bytes()
        except OSError as e:
            report.skipped.append((f.rel, f"unreadable ({e.strerror or e})"))
            bar.update(f.size)
            continue
        report.bytes_read += len(data)
        digest = hashlib.sha256(data).hexdigest()
        yield Change(f, old, digest, None if old is not None and old["sha256"] == digest else data)


def analyze(changes: Iterable[Change], settings: Settings, workers: int) -> Iterator[tuple[Change, Future | None]]:
    """Each change with its analysis (None: reused), in folder order whatever finishes first, so the
    index does not depend on the number of workers. With workers > 1 the files are analyzed in that
    many processes, at most 4 per worker and WINDOW_BYTES ahead of what is handed on."""
    pool = None
    pending: deque[tuple[Change, Future | None]] = deque()
    pending_bytes = 0
    try:
        for change in changes:
            job = None
            if change.data is not None:
                if workers > 1 and pool is None:      # not before a file needs it: a no-op rebuild starts none
                    pool = ProcessPoolExecutor(max_workers=workers)
                args = (change.file, change.data, settings)
                job = pool.submit(analyze_file, *args) if pool else _run_here(analyze_file, *args)
                pending_bytes += change.file.size
            pending.append((change, job))
            while len(pending) > 4 * max(workers, 1) or pending_bytes > WINDOW_BYTES:
                ready = pending.popleft()
                if ready[1] is not None:
                    pending_bytes -= ready[0].file.size
                yield ready
        yield from pending
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _run_here(fn, *args) -> Future:
    """fn(*args) run in this process, as a finished Future: one path with and without workers."""
    job: Future = Future()
    try:
        job.set_result(fn(*args))
    except Skip as e:
        job.set_exception(e)
    return job


def analyze_file(file: DocFile, data: bytes, settings: Settings) -> Analyzed:
    """Split a file's documents into passages and cut those into terms; raises Skip for a file
    that cannot be used. The per-file work, run in a worker process when there are several."""
    docs, notes = read_docs(file.path, data)
    passages: list[Passage] = []
    terms: list[list[str]] = []
    for doc in docs:
        for start, end in split_passages(doc.text, settings.max_chars, settings.overlap_chars):
            text = doc.text[start:end]
            passages.append(Passage(file.rel, doc.doc, len(passages) + 1, start, end, text))
            terms.append(settings.analyzer.terms(text))
    return Analyzed(len(docs), notes, passages, terms)


def collect(analyzed: Iterable[tuple[Change, Future | None]], prev: Previous | None, report: BuildReport,
            bar) -> Table:
    """The new index's passages and term ids, file by file, and what happened to each in `report`."""
    table = Table(list(prev.terms.vocab) if prev else [])
    for change, job in analyzed:
        rel = change.file.rel
        if job is None:
            add_reused(table, change, prev)
            report.unchanged += 1
        else:
            try:
                result = job.result()
            except Skip as e:
                report.skipped.append((rel, str(e)))
            else:
                report.notes += [f"{rel}: {n}" for n in result.notes]
                (report.changed if change.old is not None else report.added).append(rel)
                add_analyzed(table, change, result)
        bar.update(change.file.size)
    return table


def add_reused(table: Table, change: Change, prev: Previous) -> None:
    """A file's passages and term ids as the previous index has them."""
    first, count = change.old["passages"]
    new_first = len(table.passages)
    table.passages += prev.passages[first:first + count]
    offsets = prev.terms.offsets
    table.term_ids.append(prev.terms.ids[offsets[first]:offsets[first + count]])
    table.lengths.append(np.diff(offsets[first:first + count + 1]))
    table.reused_rows.append((new_first, first, count))
    table.entries[change.file.rel] = {**change.old, "mtime_ns": change.file.mtime_ns, "passages": [new_first, count]}


def add_analyzed(table: Table, change: Change, result: Analyzed) -> None:
    """A new or changed file's passages, with ids for its terms (new terms get new ids)."""
    ids: list[int] = []
    for terms in result.terms:
        for t in terms:
            i = table.ids.get(t)
            if i is None:
                i = table.ids[t] = len(table.vocab)
                table.vocab.append(t)
            ids.append(i)
    f = change.file
    table.entries[f.rel] = {"sha256": change.digest, "size": f.size, "mtime_ns": f.mtime_ns, "docs": result.docs,
                            "passages": [len(table.passages), len(result.passages)], "notes": result.notes[:20]}
    table.passages += result.passages
    table.term_ids.append(np.asarray(ids, dtype=np.int64))
    table.lengths.append(np.asarray([len(t) for t in result.terms], dtype=np.int64))


def compact_terms(table: Table) -> Terms:
    """The table's term ids with the terms no passage uses any more (removed or changed files)
    dropped from the vocabulary, and the rest renumbered."""
    ids = np.concatenate(table.term_ids) if table.term_ids else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate(table.lengths) if table.lengths else np.zeros(0, dtype=np.int64)
    used = np.unique(ids)
    remap = np.full(len(table.vocab), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return Terms([table.vocab[i] for i in used], remap[ids].astype(np.int32),
                 np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
