"""The document index on disk and searching it: `write_index` writes the folder that `baichuan
index DIR` (build.py) makes, `load_index` reads it, `Index.search` ranks passages by BM25 (bm25s),
fused with a dense index when there is one (dense.py).

    index = load_index("notes/")                 # the folder itself or the docs folder
    hits = index.search("谁为关公刮骨疗毒？", k=5)

Layout of the index folder:
    manifest.json      settings, per-file entries, skipped files with reasons, counts
    passages.jsonl     one passage per line: file, doc, n (1-based within the file), start, end, text
    terms.json         the term vocabulary; term_ids.npy + term_offsets.npy: each passage's terms
    bm25/              the bm25s score matrix
    dense.npy          passage embeddings (only with an embedding model)
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from baichuan.data.writers import replace_dir
from baichuan.errors import BaichuanError
from baichuan.rag.passages import Passage
from baichuan.rag.terms import analyzer_from, question_language

FORMAT = 1
INDEX_NAME = ".baichuan-index"   # default place, inside the documents folder (hidden: never indexed)
MANIFEST = "manifest.json"
BM25_K1, BM25_B = 1.2, 0.75      # Lucene's defaults; the QA set shows no gain from tuning them


@dataclass(frozen=True)
class Terms:
    """Every passage's terms as ids into `vocab`: passage i has ids[offsets[i]:offsets[i + 1]]."""
    vocab: list[str]
    ids: np.ndarray
    offsets: np.ndarray


# ------------------------------------------------------------------------------------ loading

@dataclass
class Hit:
    rank: int                 # 1-based
    index: int                # row in Index.passages
    score: float              # BM25 (or fused) score
    coverage: float           # share of the question's term weight (IDF) found in this passage
    passage: Passage


class Index:
    def __init__(self, path: Path, manifest: dict, passages: list[Passage], bm25, vocab: dict[str, int],
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


def import_bm25s():
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
    bm25s = import_bm25s()
    index_dir = resolve_index_dir(path)
    manifest = read_manifest(index_dir / MANIFEST)
    try:
        passages, vocab_list = read_passages(index_dir), read_vocab(index_dir)
        bm25 = bm25s.BM25.load(str(index_dir / "bm25"), load_vocab=False, show_progress=False, verbosity=0)
    except (OSError, ValueError, TypeError) as e:
        raise BaichuanError(f"{index_dir}: the index is damaged ({e}); rebuild it with `baichuan index`") from None
    if len(passages) != manifest.get("counts", {}).get("passages"):
        raise BaichuanError(f"{index_dir}/passages.jsonl: {len(passages)} passages, the manifest says "
                            f"{manifest.get('counts', {}).get('passages')}; rebuild the index")
    dense = None
    if manifest.get("dense"):
        dense = np.load(index_dir / "dense.npy", mmap_mode="r")
    return Index(index_dir, manifest, passages, bm25, {t: i for i, t in enumerate(vocab_list)}, dense)


def read_passages(index_dir: Path) -> list[Passage]:
    """passages.jsonl; OSError, ValueError or TypeError (a line that is not a passage) when damaged."""
    with open(index_dir / "passages.jsonl", encoding="utf-8") as f:
        return [Passage(**json.loads(line)) for line in f]


def read_vocab(index_dir: Path) -> list[str]:
    """terms.json: the term of each term id."""
    return json.loads((index_dir / "terms.json").read_text(encoding="utf-8"))


def read_terms(index_dir: Path) -> Terms:
    """terms.json, term_ids.npy and term_offsets.npy: what a rebuild reuses for unchanged files."""
    return Terms(read_vocab(index_dir), np.load(index_dir / "term_ids.npy"), np.load(index_dir / "term_offsets.npy"))


def read_manifest(path: Path) -> dict:
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


# ------------------------------------------------------------------------------------ writing

def touch_mtimes(out: Path, entries: dict) -> None:
    """Record new mtimes of files whose bytes did not change (so the next run skips hashing them),
    by rewriting the manifest alone, atomically."""
    manifest = read_manifest(out / MANIFEST)
    if manifest.get("files") == entries:
        return
    manifest["files"] = entries
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def write_index(out: Path, manifest: dict, passages: list[Passage], terms: Terms, dense: np.ndarray | None) -> None:
    """Write everything into a temporary sibling folder, then swap it in: a crash at any point
    leaves either the old index or the new one, never a mixture."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")
        (tmp / "terms.json").write_text(json.dumps(terms.vocab, ensure_ascii=False), encoding="utf-8")
        np.save(tmp / "term_ids.npy", terms.ids)
        np.save(tmp / "term_offsets.npy", terms.offsets)
        _write_bm25(tmp / "bm25", terms)
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


def _write_bm25(path: Path, terms: Terms) -> None:
    bm25s = import_bm25s()
    docs = [terms.ids[terms.offsets[i]:terms.offsets[i + 1]].tolist() for i in range(len(terms.offsets) - 1)]
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    if docs:
        retriever.index((docs, {t: i for i, t in enumerate(terms.vocab)}), create_empty_token=False,
                        show_progress=False)
    else:      # an empty folder still gets a valid (empty) index
        retriever.scores = {"data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32),
                            "indptr": np.zeros(1, np.int32), "num_docs": 0}
        retriever.vocab_dict = {}
        retriever.nonoccurrence_array = None     # set by index() alone, and bm25s >= 0.3 saves it
    retriever.save(str(path), show_progress=False)
