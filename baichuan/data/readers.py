"""Read documents from JSONL (plain, .gz, .zst), parquet and .txt files, streaming.

Every problem is reported with its file and line, counted, and skipped; a reader never raises on
bad data, so one broken line (or file) in a terabyte corpus costs that line, not the run. What a
reader yields plus what it counted as dropped equals what it read (lines, rows or files).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from baichuan.data.document import Document
from baichuan.errors import BaichuanError

log = logging.getLogger("baichuan.data")

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
TXT_SUFFIXES = (".txt", ".txt.gz", ".txt.zst")
SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES + TXT_SUFFIXES

# reason -> how many of its problems are logged; the rest are only counted
_LOGGED_PER_REASON = 20


@dataclass
class ReadSpec:
    """How to map input records to Documents."""
    text_field: str = "text"
    id_field: str | None = "id"          # None or absent: "<file>:<line>"
    meta_fields: tuple[str, ...] | None = None   # None: every other field goes to meta
    source: str | None = None            # meta["source"] for every record; default: the record's, else the file stem
    txt_unit: str = "file"               # .txt: one document per "file", "paragraph" or "line"
    max_txt_bytes: int = 256 * 1024 ** 2  # a "file"-unit .txt larger than this is refused

    def __post_init__(self):
        if self.txt_unit not in ("file", "paragraph", "line"):
            raise BaichuanError(f"txt_unit must be 'file', 'paragraph' or 'line', got {self.txt_unit!r}")


class Problems:
    """Counts reader problems by reason and logs the first few of each with file and line."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, reason: str, where: str, detail: str = "") -> None:
        n = self.counts.get(reason, 0)
        self.counts[reason] = n + 1
        if n < _LOGGED_PER_REASON:
            log.warning("%s: %s%s", where, reason, f" ({detail})" if detail else "")
        elif n == _LOGGED_PER_REASON:
            log.warning("further %r problems are counted but not logged", reason)


def list_inputs(paths: list[str | Path], problems: Problems | None = None) -> list[Path]:
    """Files to read: the given files, and every readable file under the given folders, sorted.
    Symlinked folders are followed once each; a symlink loop, a broken link or a folder that cannot
    be listed is reported in `problems` (file and reason) and skipped."""
    problems = problems if problems is not None else Problems()
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(_walk(p, problems)))
        elif p.is_file():
            if not p.name.endswith(SUFFIXES):
                raise BaichuanError(f"{p}: unsupported input type (expected one of {', '.join(SUFFIXES)})")
            out.append(p)
        else:
            raise BaichuanError(f"{p}: no such file or directory")
    if not out:
        raise BaichuanError(f"no input files under {', '.join(map(str, paths))}")
    for suffixes, module in ((PARQUET_SUFFIXES, "pyarrow"), ((".zst",), "zstandard")):
        needing = [f for f in out if f.name.endswith(suffixes)]
        if needing:
            try:
                __import__(module)
            except ImportError:
                raise BaichuanError(f"{needing[0]}: reading it needs {module}: pip install 'baichuan[data]'") from None
    return out


def _walk(root: Path, problems: Problems) -> Iterator[Path]:
    """Input files under `root`, each folder (by its real path) listed once."""
    listed: set[Path] = set()
    stack = [(root, ())]  # (folder, real paths of the folders above it)
    while stack:
        folder, above = stack.pop()
        real = folder.resolve()
        if real in above:
            problems("symlink_loop", str(folder), f"leads back to {real}")
            continue
        if real in listed:
            problems("listed_twice", str(folder), f"{real} is read once, under its first name")
            continue
        listed.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            problems("unreadable_input", str(folder), e.strerror or type(e).__name__)
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_dir():
                    stack.append((path, (*above, real)))
                elif entry.is_file():
                    if entry.name.endswith(SUFFIXES):
                        yield path
                elif entry.is_symlink():
                    os.stat(path)  # raises for a broken link or a loop; anything else is not a file
            except OSError as e:
                reason = "symlink_loop" if e.errno == errno.ELOOP else "unreadable_input"
                problems(reason, str(path), e.strerror or type(e).__name__)


def _open_binary(path: Path):
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        import zstandard
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def read_file(path: Path, spec: ReadSpec, problems: Problems) -> Iterator[Document]:
    """Documents of one file; problems are counted in `problems` (one count per dropped unit)."""
    name = path.name
    source = spec.source or name.split(".")[0]
    try:
        if name.endswith(PARQUET_SUFFIXES):
            yield from _read_parquet(path, spec, source, problems)
        elif name.endswith(TXT_SUFFIXES):
            yield from _read_txt(path, spec, source, problems)
        else:
            yield from _read_jsonl(path, spec, source, problems)
    except (OSError, EOFError, ValueError) as e:  # bad compression, truncated archive, unreadable file
        problems("unreadable_file", str(path), f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - zstd/pyarrow raise their own types; the run must go on
        problems("unreadable_file", str(path), f"{type(e).__name__}: {e}")


def _make_doc(record: dict, spec: ReadSpec, source: str, where: str, problems: Problems) -> Document | None:
    text = record.get(spec.text_field)
    if text is None:
        problems(f"missing_field:{spec.text_field}", where)
        return None
    if not isinstance(text, str):
        problems(f"not_a_string:{spec.text_field}", where, type(text).__name__)
        return None
    if not text.strip():
        problems("empty_text", where)
        return None
    doc_id = record.get(spec.id_field) if spec.id_field else None
    fields = spec.meta_fields if spec.meta_fields is not None else [
        k for k in record if k not in (spec.text_field, spec.id_field)]
    meta = {k: record[k] for k in fields if k in record}
    if spec.source:  # a source named in the config wins over the record's own field
        meta["source"] = spec.source
    meta.setdefault("source", source)
    return Document(text=text, id=str(doc_id) if doc_id is not None else where, meta=meta)


def _bad_byte(e: UnicodeDecodeError, unit: str) -> str:
    """Where the undecodable bytes are, counted from 1 like the line numbers."""
    return f"byte {e.start + 1} of the {unit}, counting from 1"


def _read_jsonl(path: Path, spec: ReadSpec, source: str, problems: Problems) -> Iterator[Document]:
    with _open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue  # blank lines are not records
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems("invalid_utf8", where, _bad_byte(e, "line"))
                continue
            try:
                record = json.loads(text.removeprefix("\ufeff") if lineno == 1 else text)  # a BOM opens the file
            except json.JSONDecodeError as e:
                problems("bad_json", where, e.msg)
                continue
            if not isinstance(record, dict):
                problems("not_an_object", where, type(record).__name__)
                continue
            doc = _make_doc(record, spec, source, where, problems)
            if doc is not None:
                yield doc


def _read_parquet(path: Path, spec: ReadSpec, source: str, problems: Problems) -> Iterator[Document]:
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if spec.text_field not in names:
        problems(f"missing_field:{spec.text_field}", str(path), f"columns: {', '.join(names[:10])}")
        return
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            doc = _make_doc(record, spec, source, f"{path}:row {row}", problems)
            if doc is not None:
                yield doc


def _read_txt(path: Path, spec: ReadSpec, source: str, problems: Problems) -> Iterator[Document]:
    with _open_binary(path) as f:
        head = f.peek(8192)[:8192] if hasattr(f, "peek") else b""
        if b"\x00" in head:
            problems("binary_file", str(path))
            return
        if spec.txt_unit == "file":
            data = f.read(spec.max_txt_bytes + 1)
            if len(data) > spec.max_txt_bytes:
                problems("file_too_large", str(path), f"> {spec.max_txt_bytes} bytes; use txt_unit=paragraph")
                return
            yield from _txt_doc(data, path, 1, spec, source, problems)
            return
        block, start = [], 1
        for lineno, raw in enumerate(f, 1):
            if spec.txt_unit == "line":
                yield from _txt_doc(raw, path, lineno, spec, source, problems, blank_ok=True)
                continue
            if raw.strip():
                if not block:
                    start = lineno
                block.append(raw)
            elif block:
                yield from _txt_doc(b"".join(block), path, start, spec, source, problems)
                block = []
        if block:
            yield from _txt_doc(b"".join(block), path, start, spec, source, problems)


def _txt_doc(data: bytes, path: Path, lineno: int, spec: ReadSpec, source: str, problems: Problems,
             blank_ok: bool = False) -> Iterator[Document]:
    where = f"{path}:{lineno}"
    if b"\x00" in data:
        problems("binary_content", where)
        return
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        problems("invalid_utf8", where, _bad_byte(e, "file" if spec.txt_unit == "file" else spec.txt_unit))
        return
    if not text.strip():
        if not blank_ok:
            problems("empty_text", where)
        return
    yield Document(text=text.rstrip("\n") if spec.txt_unit != "file" else text, id=where,
                   meta={"source": source})
