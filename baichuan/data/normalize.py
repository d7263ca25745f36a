"""Unicode and whitespace normalization that is right for Chinese (step "normalize").

What `normalize_text` does, in order:
  1. line breaks: \\r\\n and \\r become \\n; so do the other line/paragraph separators (\\v, \\f, NEL
     U+0085, U+2028, U+2029), which mean "new line" wherever they occur;
  2. one `str.translate` pass:
     - full-width ASCII letters, digits and symbols (U+FF01-FF5E) become half-width
       (ＡＢＣ１２３ -> ABC123, ＠ -> @, ％ -> %, ．-> .), and the ideographic space U+3000 becomes " ";
     - EXCEPT the seven full-width marks that are Chinese *sentence punctuation*: ，！？：；（）.
       Chinese typography writes them full-width (as it does 。、“”《》, which are not in that block
       at all), so converting them would turn correct Chinese into mixed-width text;
     - C0/C1 control characters other than \\n and \\t are removed, as are zero-width characters
       (U+200B-200D, U+2060), the BOM/ZWNBSP U+FEFF and the soft hyphen U+00AD. Removing the ZWJ
       splits emoji sequences such as 👨‍👩‍👧 into separate emoji; that is acceptable for zh/en text;
     - other Unicode spaces (NBSP, U+2000-200A, U+202F, U+205F) become " ";
  3. whitespace: a run of spaces/tabs between two non-space characters becomes one space (leading
     indentation is kept: it is meaningful in code and poetry; ideographic-space indentation, the
     Chinese paragraph indent, went to ASCII spaces in step 2 and is kept as such), trailing
     spaces/tabs are stripped, 3+ newlines become 2, and the text is stripped at both ends;
  4. Unicode NFC (composed forms; NFKC is not used because it would also rewrite ，！？ and other
     compatibility characters we want to keep);
  5. optionally, traditional -> simplified Chinese with OpenCC's "t2s" configuration (texts with
     Han characters only; it runs before language identification, so Japanese kanji would be
     converted too: enable it for Chinese sources).

ASCII placeholders such as <EMAIL> (see pii.py) pass through unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from baichuan.data.document import Document
from baichuan.data.text import CJK_IDEOGRAPHS
from baichuan.errors import BaichuanError

# Full-width forms that stay full-width: the Chinese sentence punctuation inside U+FF01-FF5E.
KEEP_FULLWIDTH = "，！？：；（）"


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in range(0xFF01, 0xFF5F):
        if chr(cp) not in KEEP_FULLWIDTH:
            table[cp] = chr(cp - 0xFEE0)
    table[0x3000] = " "
    for cp in list(range(0x20)) + list(range(0x7F, 0xA0)):
        if chr(cp) not in "\n\t":
            table[cp] = None
    for ch in "\u000b\u000c\u0085\u2028\u2029":   # line separators survive as newlines (step 1)
        table[ord(ch)] = "\n"
    for ch in "\u200b\u200c\u200d\u2060\ufeff\u00ad":
        table[ord(ch)] = None
    for cp in [0xA0, 0x202F, 0x205F, *range(0x2000, 0x200B)]:
        table[cp] = " "
    return table


_TABLE = _build_table()
# Interior runs: 2+ spaces, or any run containing a tab, between two non-space characters.
_INNER_SPACE = re.compile(r"(?<=[^\s])(?: {2,}|[ \t]*\t[ \t]*)(?=[^\s])")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_NEWLINES = re.compile(r"\n{3,}")
_HAN = re.compile(f"[{CJK_IDEOGRAPHS}]")

_converters: dict[str, object] = {}   # per process: OpenCC objects are not picklable


def _opencc(config: str):
    conv = _converters.get(config)
    if conv is None:
        try:
            import opencc
        except ImportError:
            raise BaichuanError("traditional->simplified conversion needs OpenCC: pip install opencc") from None
        conv = _converters[config] = opencc.OpenCC(config)
    return conv


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese with OpenCC ("t2s": character and phrase tables)."""
    return _opencc("t2s").convert(text)


def normalize_text(text: str, t2s: bool = False) -> str:
    """Normalize one text as described in the module docstring."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_TABLE)
    if "  " in text or "\t" in text:
        text = _INNER_SPACE.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    text = text.strip()
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if t2s and not text.isascii() and _HAN.search(text):
        text = to_simplified(text)
    return text


class Normalize:
    """Step: normalize the text (never drops; an empty result is left for the filters to judge)."""

    name = "normalize"

    def __init__(self, t2s: bool = False):
        self.t2s = t2s
        if t2s:
            _opencc("t2s")   # fail at construction, not in a worker, when OpenCC is missing

    def __call__(self, doc: Document) -> Document:
        text = normalize_text(doc.text, t2s=self.t2s)
        # a new Document when the text changes, so the runner can still compare with its input
        return doc if text == doc.text else replace(doc, text=text)
