"""Language identification by script statistics: "zh", "en" or "other" (step "langid").

The pipeline only keeps Chinese and English, so a three-way label is enough, and script statistics
get it right without a model: Chinese is the only language written mostly in Han characters
without kana, and the only Latin-script language we must tell apart is English.

Content is measured in *word-equivalents* so mixed text is judged by what carries the meaning,
not by raw character counts (an English word is ~5 characters, a Han character is one):
  - a Han character counts HAN_WEIGHT = 0.6 words. Chinese words average ~1.6 characters, and
    zh–en parallel corpora run ~1.6-1.8 Han characters per English word, so one character is about
    0.55-0.6 of a word. A Chinese sentence with English terms ("我们用 PyTorch 训练 Transformer
    模型") stays zh: 7 Han characters weigh 4.2 against 2 English words;
  - CJK punctuation counts PUNCT_WEIGHT = 0.2: it is evidence of Chinese typesetting, not content;
  - a run of Latin letters counts 1 (one word); so does a run of letters of any other alphabet
    (Cyrillic, Greek, Arabic, Hangul syllable blocks, ...), which count as "other";
  - Japanese: when kana make up at least KANA_SHARE = 10% of the Han+kana characters (and there
    are at least 3), the text is Japanese and its Han characters count as "other" too. Chinese
    text borrows the odd の from Japanese; running Japanese is 30-70% kana.
Digits, symbols and emoji count nothing: numbers-only or emoji-only text has no language.

The label is the class with the largest share (ties: zh, en, other); `score` is that share.
When Latin words carry the most weight, they are English only if they read as English:
  - code is not English: when the characters {}[]<>=;_\\ (rare in prose, everywhere in code and
    markup) are at least CODE_SHARE = 5% of the non-space characters, the Latin content is
    "other". English prose and Markdown score 0-1%, C/JS/HTML 6-20%; Python scores ~5% but
    fails the next test. Parentheses, | and * are left out: wiki tables and citations use them;
  - at least STOP_SHARE = 8% of them must be English function words (running English is
    ~40-50%, Early Modern English such as the KJV and Shakespeare too; French, German, Spanish,
    Indonesian score 0-5%). If they fail and the text has Han characters, they are terms inside
    Chinese sentences ("我们使用 PyTorch 和 CUDA 训练 Transformer 模型，batch size 设为 256": 8
    English words and not one "the" or "of") and count as Chinese; if they fail without Han
    characters and there are at least STOP_MIN_WORDS = 20 of them (fewer is too little
    evidence: "Hello world"), the text is another Latin-script language.
Re-assigned Latin content moves to "zh" or "other" and the shares are recomputed.
"""

from __future__ import annotations

import re

from baichuan.data.document import Document
from baichuan.data.text import CJK_IDEOGRAPHS, CJK_PUNCT, KANA, count_runs, non_space_len

HAN_WEIGHT = 0.6
PUNCT_WEIGHT = 0.2
KANA_SHARE = 0.10
KANA_MIN = 3
STOP_MIN_WORDS = 20
STOP_SHARE = 0.08
CODE_SHARE = 0.05

_HAN = re.compile(f"[{CJK_IDEOGRAPHS}]+")
_CJK_PUNCT = re.compile(f"[{CJK_PUNCT}]+")
_KANA = re.compile(f"[{KANA}]+")
# anything but Latin letters, ASCII/Latin-1 symbols and general punctuation (dashes, quotes)
_BEYOND_LATIN = re.compile(r"[^\x00-\u024f\u2000-\u206f]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+")
# letters of every other script (Hangul included); [^\W\d_] is "a letter" in Python's re
_OTHER_WORD = re.compile(
    rf"[^\W\d_A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f{CJK_IDEOGRAPHS}{KANA}]+")
_CODE_SYMBOLS = re.compile(r"[{}\[\]<>=;_\\]+")
# Frequent English function words, modern and Early Modern (thou, thee, hath, ...). Short words
# that are also common in other Latin-script languages (a, i, o, en, die, de, in, on) are left out.
EN_FUNCTION_WORDS = frozenset("""
the be to of and that have with this for not you he she it they we his her its their our your
from by at as but or if was were is are been has had will would shall should can could may
might must do does did what which who whom when where there here then than them these those
an all any some no so up out about into over after before through because very just also more
most such only other how my me him us
thou thee thy thine hath doth art ye unto shalt wilt
""".split())

_LABELS = ("zh", "en", "other")


def script_units(text: str) -> tuple[float, float, float, list[str]]:
    """(zh, latin, other) content in word-equivalents, and the lower-cased Latin words (for the
    English checks)."""
    if text.isascii() or not _BEYOND_LATIN.search(text):   # no other script to count: one scan
        latin_words = _LATIN_WORD.findall(text.lower())
        return 0.0, float(len(latin_words)), 0.0, latin_words
    han = count_runs(_HAN, text)
    punct = count_runs(_CJK_PUNCT, text) if han else 0
    kana = count_runs(_KANA, text)
    latin_words = _LATIN_WORD.findall(text.lower())
    other = float(len(_OTHER_WORD.findall(text)))
    zh = HAN_WEIGHT * han + PUNCT_WEIGHT * punct
    if kana >= KANA_MIN and kana >= KANA_SHARE * (han + kana):
        other += zh + HAN_WEIGHT * kana
        zh = 0.0
    else:
        other += HAN_WEIGHT * kana
    return zh, float(len(latin_words)), other, latin_words


def function_word_share(latin_words: list[str]) -> float:
    """Share of the (lower-cased) Latin words that are English function words."""
    if not latin_words:
        return 0.0
    return sum(map(EN_FUNCTION_WORDS.__contains__, latin_words)) / len(latin_words)   # C-level loop


def looks_like_code(text: str) -> bool:
    code = count_runs(_CODE_SYMBOLS, text)
    return code > 0 and code >= CODE_SHARE * non_space_len(text)


def detect_language(text: str) -> tuple[str, float]:
    """("zh" | "en" | "other", share of the content in that class); ("other", 0.0) without content."""
    zh, en, other, latin_words = script_units(text)
    if en and en >= zh and en >= other:
        if looks_like_code(text):
            other, en = other + en, 0.0
        elif function_word_share(latin_words) < STOP_SHARE:
            if zh:                                     # terms inside Chinese sentences
                zh, en = zh + en, 0.0
            elif len(latin_words) >= STOP_MIN_WORDS:   # another Latin-script language
                other, en = other + en, 0.0
    total = zh + en + other
    if total == 0:
        return "other", 0.0
    shares = (zh / total, en / total, other / total)
    best = max(range(3), key=lambda i: (shares[i], -i))
    return _LABELS[best], round(shares[best], 4)


class LangId:
    """Step: set doc.meta["lang"] and doc.meta["lang_score"]; drop languages not in `keep` with the
    reason "lang_other" (or "lang_zh" / "lang_en" when one of those is not kept)."""

    name = "langid"

    def __init__(self, keep: tuple[str, ...] = ("zh", "en")):
        self.keep = tuple(keep)

    def __call__(self, doc: Document):
        lang, score = detect_language(doc.text)
        doc.meta["lang"] = lang
        doc.meta["lang_score"] = score
        return doc if lang in self.keep else f"lang_{lang}"
