"""Token shards: the one place that defines their format.

A shard is a flat little-endian array of token ids (`uint16` when the vocabulary fits, else
`uint32`), documents one after another, each followed by EOS. Beside the shards, `tokens.json`:

    {"format": "baichuan-tokens/1", "dtype": "uint16", "eos_id": 2, "vocab_size": 16000,
     "tokenizer_sha256": "...", "mixture": {...},
     "shards": [{"file": "00000.bin", "tokens": 123, "docs": 4, "sha256": "..."}, ...]}

Any tool reads a shard with `np.memmap(file, dtype, mode="r")`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from baichuan.data.writers import atomic_write_text, sha256_file
from baichuan.errors import BaichuanError

FORMAT = "baichuan-tokens/1"
MANIFEST = "tokens.json"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_shard(path: Path, docs: Iterable[list[int]], dtype: np.dtype, eos_id: int) -> dict:
    """Write token ids of `docs` (each followed by EOS) to `path` atomically; returns its entry."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tokens = n_docs = 0
    limit = np.iinfo(dtype).max
    try:
        with open(tmp, "wb") as f:
            for ids in docs:
                arr = np.asarray(list(ids) + [eos_id], dtype=np.int64)
                if arr.size and (arr.min() < 0 or arr.max() > limit):
                    raise BaichuanError(f"{path}: token id out of range for {dtype.name}")
                f.write(arr.astype(dtype.newbyteorder("<")).tobytes())
                tokens += arr.size
                n_docs += 1
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"file": path.name, "tokens": tokens, "docs": n_docs, "sha256": sha256_file(path)}


def write_manifest(folder: Path, shards: list[dict], dtype: np.dtype, eos_id: int, vocab_size: int,
                   **extra) -> Path:
    folder = Path(folder)
    manifest = {"format": FORMAT, "dtype": dtype.name, "eos_id": eos_id, "vocab_size": vocab_size,
                "total_tokens": sum(s["tokens"] for s in shards), **extra,
                "shards": sorted(shards, key=lambda s: s["file"])}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    return folder / MANIFEST


@dataclass
class TokenShards:
    folder: Path
    manifest: dict

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.manifest["dtype"])

    @property
    def files(self) -> list[Path]:
        return [self.folder / s["file"] for s in self.manifest["shards"]]

    def memmap(self, i: int) -> np.ndarray:
        return np.memmap(self.files[i], dtype=self.dtype.newbyteorder("<"), mode="r")

    def verify(self) -> None:
        """Check every shard's size and checksum against the manifest (slow on big data)."""
        for s, f in zip(self.manifest["shards"], self.files):
            if f.stat().st_size != s["tokens"] * self.dtype.itemsize or sha256_file(f) != s["sha256"]:
                raise BaichuanError(f"{f}: does not match {MANIFEST} (size or sha256); the shard is corrupt")


def open_shards(folder: str | Path) -> TokenShards:
    folder = Path(folder)
    file = folder / MANIFEST
    if not file.exists():
        raise BaichuanError(f"{file}: not found (is {folder} a token-shard folder from `baichuan data`?)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BaichuanError(f"{file}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise BaichuanError(f"{file}: format {manifest.get('format')!r} is not {FORMAT!r}")
    shards = TokenShards(folder, manifest)
    dtype = shards.dtype
    for s, f in zip(manifest["shards"], shards.files):
        if not f.exists():
            raise BaichuanError(f"{f}: shard listed in {MANIFEST} is missing")
        if f.stat().st_size != s["tokens"] * dtype.itemsize:
            raise BaichuanError(f"{f}: {f.stat().st_size} bytes, but {MANIFEST} says {s['tokens']} tokens "
                                f"of {dtype.name}; the shard is truncated or corrupt")
    return shards
