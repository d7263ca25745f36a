"""Cut a document into passages: bounded, overlapping spans that start and end on paragraph or
sentence boundaries, for Chinese and English alike.

A passage is a pair of character offsets into the document text, so ``text[start:end]`` *is* the
passage: nothing is rewritten, and a citation can point back into the file exactly.

How the spans are chosen:
  1. Units. Paragraphs from `split_paragraphs` (blank-line blocks, or lines when the text has no
     blank line); a paragraph longer than `max_chars` is replaced by its sentences
     (`split_sentences`), and a sentence that is still too long (a line of Chinese with no
     terminator, a table row) is cut at the last comma or space before the limit.
  2. Packing. Consecutive units go into one passage while it stays within `max_chars`.
  3. Overlap. The next passage starts with the trailing units of the previous one, up to
     `overlap_chars`, so a fact stated across a unit boundary is still whole in some passage.
     Never the previous passage's first unit: every passage moves forward.

A `Passage` is one such span as the index keeps it: which file and document, its number within
the file, the offsets, and the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from baichuan.data.text import split_paragraphs, split_sentences
from baichuan.errors import BaichuanError

MAX_CHARS = 400
OVERLAP_CHARS = 80

# Where an over-long sentence may be cut, best first: after Chinese/ASCII commas and semicolons,
# then after any whitespace.
_SOFT_CUT = re.compile(r"[，、,;:：]|\s")


@dataclass(frozen=True, slots=True)   # slots: an index holds one per passage, often millions
class Passage:
    file: str             # relative to the documents folder, with forward slashes
    doc: str | None       # record id inside a .jsonl file (None for one-document files)
    n: int                # 1-based within the file
    start: int            # character offsets into the document text: text == doc_text[start:end]
    end: int
    text: str

    @property
    def label(self) -> str:
        """How passages are named to the model and to users: "file [doc] #n"."""
        return self.file + (f" {self.doc}" if self.doc else "") + f" #{self.n}"

    def to_json(self) -> dict:
        """One line of passages.jsonl, and a passage in `baichuan ask --retrieve-only --json`."""
        return {"file": self.file, "doc": self.doc, "n": self.n, "start": self.start, "end": self.end,
                "text": self.text}


def _hard_cut(start: int, end: int, text: str, limit: int) -> list[tuple[int, int]]:
    out = []
    while end - start > limit:
        window = text[start:start + limit]
        cut = max((m.end() for m in _SOFT_CUT.finditer(window)), default=0)
        if cut < limit // 4:           # no useful soft boundary: cut at the limit
            cut = limit
        out.append((start, start + cut))
        start += cut
    out.append((start, end))
    return out


def _trim(start: int, end: int, text: str) -> tuple[int, int]:
    """Shrink a span so it neither starts nor ends with whitespace (empty spans stay empty)."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + len(piece.rstrip()) if piece.strip() else start + lead


def units(text: str, max_chars: int = MAX_CHARS) -> list[tuple[int, int]]:
    """Non-empty paragraph / sentence / fragment spans of `text`, in order, none over max_chars."""
    out: list[tuple[int, int]] = []
    pos = 0
    for para in split_paragraphs(text):
        p_start, p_end = _trim(pos, pos + len(para), text)
        pos += len(para)
        if p_end <= p_start:
            continue
        if p_end - p_start <= max_chars:
            out.append((p_start, p_end))
            continue
        s_pos = p_start
        for sent in split_sentences(text[p_start:p_end]):
            s_start, s_end = _trim(s_pos, s_pos + len(sent), text)
            s_pos += len(sent)
            if s_end > s_start:      # a cut after a space leaves it at a fragment's end: trim
                out.extend(span for a, b in _hard_cut(s_start, s_end, text, max_chars)
                           if (span := _trim(a, b, text))[1] > span[0])
    return out


def split_passages(text: str, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS) -> list[tuple[int, int]]:
    """(start, end) character offsets of the passages of `text`; see the module docstring."""
    if max_chars < 20 or not 0 <= overlap_chars < max_chars:
        raise BaichuanError(f"passage size: need max_chars >= 20 and 0 <= overlap_chars < max_chars, "
                            f"got max_chars={max_chars}, overlap_chars={overlap_chars}")
    us = units(text, max_chars)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(us):
        first = i
        start, end = us[i]
        i += 1
        while i < len(us) and us[i][1] - start <= max_chars:
            end = us[i][1]
            i += 1
        spans.append((start, end))
        if i >= len(us):
            break
        # step back over trailing units that fit in the overlap, never to `first`, and only as
        # far as the next passage can still take a new unit after them (no passage is a subset)
        back, nxt_end = i, us[i][1]
        while (back - 1 > first and end - us[back - 1][0] <= overlap_chars
               and nxt_end - us[back - 1][0] <= max_chars):
            back -= 1
        i = back
    return spans
