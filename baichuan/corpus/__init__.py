"""The bundled bilingual corpus: classical and modern Chinese, English verse, drama and prose.

Built by ``scripts/build_corpus.py`` from pinned registry packages (see SOURCES.md next to this
file). Data lives in ``data/`` as gzip'd JSON lines, one document per line::

    {"id": "...", "text": "...", "lang": "zh" | "en", "source": "<source key>"}

Two splits per language: ``train`` and ``heldout`` (whole works kept apart, about 5% of the
characters, for evaluation). A split may be sharded (``zh.train-00.jsonl.gz``, ...). Document
texts never contain a blank line, so ``write_text`` can separate documents with one.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from baichuan.errors import BaichuanError

DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST_PATH = Path(__file__).resolve().parent / "manifest.json"
LANGS = ("zh", "en")
SPLITS = ("train", "heldout")

_REBUILD = "run `python scripts/build_corpus.py` from the repository root to build it"


def _langs(lang: str | None) -> tuple[str, ...]:
    if lang is None:
        return LANGS
    if lang not in LANGS:
        raise BaichuanError(f"unknown corpus language {lang!r}: expected one of {', '.join(LANGS)}")
    return (lang,)


def files(lang: str | None = None, split: str = "train") -> list[Path]:
    """The data files of one split, for one language (or both, zh first), in shard order."""
    if split not in SPLITS:
        raise BaichuanError(f"unknown corpus split {split!r}: expected one of {', '.join(SPLITS)}")
    out: list[Path] = []
    for lg in _langs(lang):
        found = sorted(DATA_DIR.glob(f"{lg}.{split}.jsonl.gz")) + sorted(DATA_DIR.glob(f"{lg}.{split}-*.jsonl.gz"))
        if not found:
            raise BaichuanError(f"corpus data missing: no {DATA_DIR / f'{lg}.{split}*.jsonl.gz'}; {_REBUILD}")
        out += found
    return out


def iter_documents(lang: str | None = None, split: str = "train") -> Iterator[dict]:
    """Yield each document as a dict with keys id, text, lang, source."""
    for path in files(lang, split):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise BaichuanError(f"{path}:{n}: not a JSON line ({e.msg}); {_REBUILD}") from None


def iter_texts(lang: str | None = None, split: str = "train") -> Iterator[str]:
    """Yield only the document texts."""
    for doc in iter_documents(lang, split):
        yield doc["text"]


def write_text(path: str | Path, lang: str | None = None, split: str = "train") -> Path:
    """Write the split as plain UTF-8 text, documents separated by one blank line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i, text in enumerate(iter_texts(lang, split)):
            f.write(("\n\n" if i else "") + text)
        f.write("\n")
    return path


def manifest() -> dict:
    """The build manifest: per-file sha256 and counts, totals per language/split, sources."""
    try:
        return json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaichuanError(f"corpus manifest missing: {MANIFEST_PATH}; {_REBUILD}") from None
