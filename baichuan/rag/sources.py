"""The documents of a folder: which files count, and the text of each (.txt, .md, .html, .jsonl).

A file that cannot be used is skipped with a reason (binary, not UTF-8, unreadable, too large,
no text) instead of stopping the run: one stray PDF in a folder of notes costs that file only.
The reasons are counted and shown by `baichuan index`.

Offsets of passages index `Doc.text`: for .txt and .md that is the file's decoded text (a BOM
dropped), for .jsonl the record's "text" field, for .html the text extracted here (reading the
file again gives the same text, so offsets stay valid for as long as the file is unchanged).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = {".txt": "text", ".md": "text", ".markdown": "text", ".html": "html", ".htm": "html",
            ".jsonl": "jsonl"}
MAX_FILE_BYTES = 64 * 1024 ** 2      # larger files are skipped: split them, or use the data pipeline
TEXT_FIELDS = ("text", "content")    # the first one a JSON line has is its text
ID_FIELDS = ("id", "title")


@dataclass
class Doc:
    doc: str | None      # record id inside a .jsonl file (None for one-document files)
    text: str


class Skip(Exception):
    """A file that is not indexed; the message is the reason shown to the user."""


def list_files(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Supported files under `root` (sorted, hidden files and folders left out), and
    (relative path, reason) for the other files."""
    found, other = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if suffix in SUFFIXES:
                found.append(path)
            else:
                other.append((path.relative_to(root).as_posix(), f"unsupported type {suffix or '(none)'}"))
    return found, other


def decode(data: bytes) -> str:
    """UTF-8 text of a file's bytes, or Skip naming the problem (binary, or where decoding failed)."""
    if b"\x00" in data[:8192]:
        raise Skip("binary (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Skip(f"not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_docs(path: Path, data: bytes) -> tuple[list[Doc], list[str]]:
    """The documents in one file's bytes, and notes on lines that were dropped (.jsonl)."""
    if len(data) > MAX_FILE_BYTES:
        raise Skip(f"too large ({len(data)} bytes; the limit is {MAX_FILE_BYTES})")
    kind = SUFFIXES[path.suffix.lower()]
    text = decode(data)
    notes: list[str] = []
    if kind == "jsonl":
        docs = _jsonl_docs(text, notes)
    elif kind == "html":
        docs = [Doc(None, html_text(text))]
    else:
        docs = [Doc(None, text)]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise Skip("no text" if not notes else f"no usable lines ({notes[0]})")
    return docs, notes


def _jsonl_docs(text: str, notes: list[str]) -> list[Doc]:
    docs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            notes.append(f"line {n}: not JSON ({e.msg})")
            continue
        field = next((f for f in TEXT_FIELDS if isinstance(record, dict) and isinstance(record.get(f), str)), None)
        if field is None:
            notes.append(f"line {n}: no string field {' or '.join(TEXT_FIELDS)}")
            continue
        ident = next((str(record[f]) for f in ID_FIELDS if record.get(f) not in (None, "")), f"line {n}")
        docs.append(Doc(ident, record[field]))
    return docs


# -- HTML ------------------------------------------------------------------------------------
# Elements whose content is not running text, and elements that end a line (so paragraphs,
# headings, list items and table rows come out as separate paragraphs for the splitter).
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe"}
_BLOCK_TAGS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
               "article", "header", "footer", "blockquote", "pre", "hr", "dt", "dd", "title", "main", "nav",
               "aside", "figcaption", "td", "th"}
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data.replace("\n", " "))


def html_text(source: str) -> str:
    """Visible text of an HTML page: one line per block element, blank line between blocks,
    runs of spaces collapsed. The page's <title> counts as text; scripts and styles do not."""
    parser = _Text()
    parser.feed(source)
    parser.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n")]
    return "\n\n".join(line for line in lines if line) + "\n"
