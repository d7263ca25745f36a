"""Write document shards (JSONL.gz or parquet) that a later stage can trust.

A shard is written under a temporary name in the same folder and renamed when complete, so a
crash leaves no file with a shard's name that is half-written. A writer rolls over to a new part
when a part reaches `max_bytes` of text, so one huge input does not make one huge output.
Shard rows are {"id", "text", "meta"}: readable by datasets, datatrove, pandas or `zcat`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from baichuan.data.document import Document


def atomic_write_bytes(path, data: bytes) -> None:
    """`data` under a temporary name in the same folder, then renamed: a crash never leaves a
    half-written file under the real name (a truncated tokenizer.model would load as another
    vocabulary), nor the temporary one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """UTF-8 text, ending in a newline unless empty, as `atomic_write_bytes` writes."""
    atomic_write_bytes(path, (text + ("" if not text or text.endswith("\n") else "\n")).encode("utf-8"))


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, not while threads write files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def plain_mode(path) -> None:
    """Give a file the mode open() would have (0666 less the umask): safetensors creates its files
    private (0600), so a model exported for a server's account or a team could not be read."""
    os.chmod(path, 0o666 & ~_UMASK)


def replace_dir(src: Path, dst: Path) -> None:
    """Put the finished folder `src` at `dst`: the old folder moves aside, the new one takes its
    name, then the old one is deleted. Each rename is atomic on one filesystem, so a reader sees
    the old folder or the new one, never a mixture."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Writes `{prefix}-{part:03d}.{jsonl.gz|parquet}` files in `folder`; `close()` returns them."""

    def __init__(self, folder: Path, prefix: str, fmt: str = "jsonl", max_bytes: int = 512 * 1024 ** 2):
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"format must be 'jsonl' or 'parquet', got {fmt!r}")
        self.folder, self.prefix, self.fmt, self.max_bytes = Path(folder), prefix, fmt, max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        # parts left by an interrupted or earlier attempt at this task: the task is redone whole
        for stale in self.folder.glob(f"{prefix}-*"):
            stale.unlink()
        for stale in self.folder.glob(f".{prefix}-*"):
            stale.unlink()
        self.done: list[Path] = []
        self._part = 0
        self._file = None
        self._rows: list[dict] = []
        self._bytes = 0

    @property
    def suffix(self) -> str:
        return ".jsonl.gz" if self.fmt == "jsonl" else ".parquet"

    def _final(self) -> Path:
        return self.folder / f"{self.prefix}-{self._part:03d}{self.suffix}"

    def _tmp(self) -> Path:
        return self.folder / f".{self._final().name}.tmp-{os.getpid()}"

    def write(self, doc: Document) -> None:
        row = doc.to_json()
        if self.fmt == "jsonl":
            if self._file is None:
                # level 3: most of gzip's ratio at several times level 9's speed
                self._file = gzip.open(self._tmp(), "wt", encoding="utf-8", compresslevel=3)
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            row = {**row, "meta": json.dumps(row["meta"], ensure_ascii=False)}
            self._rows.append(row)
        self._bytes += len(doc.text)
        if self._bytes >= self.max_bytes:
            self._finish_part()

    def _finish_part(self) -> None:
        if self.fmt == "jsonl":
            if self._file is None:
                return
            self._file.close()
            self._file = None
        else:
            if not self._rows:
                return
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.Table.from_pylist(self._rows), self._tmp(), compression="zstd")
            self._rows = []
        os.replace(self._tmp(), self._final())
        self.done.append(self._final())
        self._part += 1
        self._bytes = 0

    def close(self) -> list[Path]:
        self._finish_part()
        return self.done

    def abort(self) -> None:
        """Remove everything this writer produced (the task will be redone)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp().unlink(missing_ok=True)
        for p in self.done:
            p.unlink(missing_ok=True)
        self.done = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_shard(path: Path) -> Iterator[Document]:
    """Documents of a shard written by ShardWriter."""
    path = Path(path)
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield Document(text=row["text"], id=row["id"], meta=json.loads(row["meta"]))
        return
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield Document(text=row["text"], id=row["id"], meta=row["meta"])
