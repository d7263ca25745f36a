"""Heuristic quality filters (steps "gopher", "c4", "chinese", "repetition").

Each rule is one named drop reason; each threshold is a constructor argument. English rules follow
Gopher (Rae et al. 2021, "Scaling Language Models", appendix A1.1 and table A1) and C4 (Raffel et
al. 2020, "Exploring the Limits of Transfer Learning", section 2.2), with their published values
as defaults; the Chinese rules are ours, with the reasoning next to each default.

The steps dispatch on doc.meta["lang"] (set by LangId; detected on the fly when missing):
GopherFilter and C4Filter judge English only, ChineseFilter Chinese only, and RepetitionFilter
both (word n-grams for English, character n-grams for Chinese). Other documents pass unchanged.

The defaults were checked on the bundled corpus (verse, drama, scripture, classical poetry, news,
reviews; tests/test_data_steps.py bounds the drop rate per source). Where a published rule would
destroy legitimate text it is adapted, and the docstring says so: C4's line rules apply only to
documents laid out like extracted web text; repeated short lines (speaker names, poem authors) do
not count towards the duplicate-line share; Chinese n-grams are scaled to carry as much text as
English word n-grams. Legitimately repetitive text still trips Gopher's n-gram rules at its
published thresholds (about 7% of KJV chapters, 2-4% of classical Chinese collections).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from baichuan.data.document import Document
from baichuan.data.langid import detect_language
from baichuan.data.ngrams import codepoints, iter_ngram_hashes
from baichuan.data.text import (CJK_PUNCT, cjk_count, count_runs, has_sentences, non_space_len, split_lines,
                                split_paragraphs, words)
from baichuan.errors import BaichuanError


def doc_lang(doc: Document) -> str:
    """doc.meta["lang"], or the detected language when LangId has not run."""
    lang = doc.meta.get("lang")
    return lang if lang else detect_language(doc.text)[0]


# == Gopher quality rules (English) ===============================================================
GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# A bullet: the usual list glyphs, or "-", "*", "+" followed by a space (Markdown lists).
_BULLET_LINE = re.compile(r"^\s*(?:[•●○◦■□▪▫◆◇►▸‣⁃∙·]|[-*+]\s)", re.MULTILINE)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.MULTILINE)
# A whitespace-delimited token without a single letter ("|", "---", "42", "$$").
_NON_ALPHA_TOKEN = re.compile(r"(?<!\S)[^\sA-Za-z\u00c0-\u024f]+(?!\S)")


class GopherFilter:
    """Step: Gopher's document quality rules for English; other languages pass.

    Defaults are Gopher's: 50-100,000 words, mean word length 3-10 characters, at most 0.1 "#" or
    ellipsis per word, at most 90% of lines starting with a bullet, at most 30% ending with an
    ellipsis, at least 80% of words containing a letter, and at least 2 of the 8 stop words
    the/be/to/of/and/that/have/with. Words are whitespace tokens, except for the mean length
    (punctuation stripped, so "end." is 3 characters).
    """

    name = "gopher"

    def __init__(self, min_words: int = 50, max_words: int = 100_000, min_mean_word_len: float = 3.0,
                 max_mean_word_len: float = 10.0, max_symbol_word_ratio: float = 0.1,
                 max_bullet_lines: float = 0.9, max_ellipsis_lines: float = 0.3,
                 min_alpha_words: float = 0.8, min_stop_words: int = 2,
                 stop_words: tuple[str, ...] = GOPHER_STOP_WORDS):
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_len, self.max_mean_word_len = min_mean_word_len, max_mean_word_len
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines, self.max_ellipsis_lines = max_bullet_lines, max_ellipsis_lines
        self.min_alpha_words, self.min_stop_words = min_alpha_words, min_stop_words
        self.stop_words = frozenset(stop_words)

    def __call__(self, doc: Document):
        if doc_lang(doc) != "en":
            return doc
        return self.check(doc.text) or doc

    def check(self, text: str) -> str | None:
        """The first failed rule's reason, or None."""
        n_tokens = len(text.split())
        if n_tokens < self.min_words:
            return "gopher_too_few_words"
        if n_tokens > self.max_words:
            return "gopher_too_many_words"
        ws = words(text)
        mean_len = sum(map(len, ws)) / len(ws) if ws else 0.0
        if not self.min_mean_word_len <= mean_len <= self.max_mean_word_len:
            return "gopher_word_length"
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols > self.max_symbol_word_ratio * n_tokens:
            return "gopher_symbol_ratio"
        n_lines = len(split_lines(text))
        if len(_BULLET_LINE.findall(text)) > self.max_bullet_lines * n_lines:
            return "gopher_bullet_lines"
        if len(_ELLIPSIS_LINE.findall(text)) > self.max_ellipsis_lines * n_lines:
            return "gopher_ellipsis_lines"
        if n_tokens - len(_NON_ALPHA_TOKEN.findall(text)) < self.min_alpha_words * n_tokens:
            return "gopher_alpha_words"
        if len(self.stop_words.intersection(map(str.lower, ws))) < self.min_stop_words:
            return "gopher_stop_words"
        return None


# == C4 rules (English) ===========================================================================
_TERMINAL = (".", "!", "?", '"', "”", "'", "’")   # C4: period, !, ?, end quotation mark
_CONTINUATION = (",", ";", ":")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]{5}")   # a Chinese sentence inside an English document
_CLOSING = ")]"
_ANY_END = _TERMINAL + _CONTINUATION + tuple(_CLOSING)
# everything up to the last sentence end inside a line (greedy, so the last one)
_UP_TO_LAST_END = re.compile(r".*[.!?][\"”’')\]]*(?=\s)")
_CITATION = re.compile(r"\[(?:\d+|citation needed|edit)\]", re.IGNORECASE)
# lines C4 removes: "javascript" (enable-JavaScript warnings) and policy notices
_NOTICE = re.compile(r"javascript|terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies",
                     re.IGNORECASE)
_LOREM = re.compile(r"lorem ipsum", re.IGNORECASE)
_MANY_NEWLINES = re.compile(r"\n{3,}")


class C4Filter:
    """Step: C4's cleaning (Raffel et al. 2020) for English; other languages pass.

    Line level (the document comes back modified):
      - citation markers [1], [citation needed], [edit] are removed;
      - lines mentioning "javascript" or a cookie/privacy/terms-of-use notice are removed;
      - line rules: lines with fewer than `min_line_words` (5) words, or not ending in terminal
        punctuation (. ! ? or a closing quote), are removed. Two departures from C4:
          * `line_rules="auto"` (default) applies them only to documents that look like extracted
            web text: at least `min_web_share` (50%) of the characters on lines of at least
            `web_line_words` (15) words (one paragraph per line), or at least `min_fragment_share`
            (50%) of the lines being fragments, i.e. under `min_line_words` words with no
            punctuation at the end (menus, link lists, tag clouds). Verse, drama and hard-wrapped
            prose are neither; the rules would delete most of them (every speaker name, every
            enjambed verse line). On the bundled corpus this selects 98% of the KJV, all the
            Britannica prose, Milton's prose, and no play or poem (their fragment share is at
            most 40%: act headings, dramatis personae). True/False force the rules on/off;
          * with `allow_continuation` (default True) a line of >= `min_line_words` words ending in
            , ; : also stays: it is a sentence going on in the next line (the KJV's verses end
            that way), whereas menus, buttons and headings never end so;
          * a line that ends in a fragment after complete sentences ("... of the year. Read more",
            or a paragraph cut off by the extractor) is cut back to its last sentence end instead
            of being dropped whole.
        Closing brackets after the final mark are allowed ("(see above.)").
    Document level: "lorem ipsum" anywhere -> "c4_lorem_ipsum"; a "{" anywhere -> "c4_curly_brace"
    (C4's way of removing code; `drop_curly_brace`); nothing left -> "c4_empty"; fewer than
    `min_sentences` (3) sentences left -> "c4_too_few_sentences".
    C4's "bad words" list is not included (use a keyword filter of your own if you need it).
    """

    name = "c4"

    def __init__(self, line_rules: bool | str = "auto", min_line_words: int = 5, min_sentences: int = 3,
                 web_line_words: int = 15, min_web_share: float = 0.5, min_fragment_share: float = 0.5,
                 allow_continuation: bool = True,
                 drop_curly_brace: bool = True, langs: tuple[str, ...] = ("en",)):
        if line_rules not in (True, False, "auto"):
            raise BaichuanError(f"c4: line_rules must be true, false or \"auto\", not {line_rules!r}")
        self.line_rules, self.min_line_words, self.min_sentences = line_rules, min_line_words, min_sentences
        self.web_line_words, self.min_web_share = web_line_words, min_web_share
        self.min_fragment_share = min_fragment_share
        self.allow_continuation, self.drop_curly_brace, self.langs = allow_continuation, drop_curly_brace, tuple(langs)

    def looks_like_web_text(self, lines: list[str]) -> bool:
        """One paragraph per line, or mostly fragments (see the class docstring)."""
        total = long = fragments = n_lines = 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            n_lines += 1
            total += len(line)
            n_words = len(line.split(None, self.web_line_words))
            if n_words >= self.web_line_words:
                long += len(line)
            elif n_words < self.min_line_words and not line.endswith(_ANY_END):
                fragments += 1
        return n_lines > 0 and (long >= self.min_web_share * total or fragments >= self.min_fragment_share * n_lines)

    def clean_line(self, line: str) -> str | None:
        """The line as C4's line rules leave it (maybe cut back to its last sentence end), or None.
        A Chinese line stays: the rules count space-separated words and Latin sentence marks."""
        if _CJK_RUN.search(line):
            return line
        if len(line.split(None, self.min_line_words)) < self.min_line_words:
            return None
        end = line.rstrip(_CLOSING)
        if end.endswith(_TERMINAL) or (self.allow_continuation and end.endswith(_CONTINUATION)):
            return line
        m = _UP_TO_LAST_END.match(line)
        if m and len(m.group().split(None, self.min_line_words)) >= self.min_line_words:
            return m.group()
        return None

    def __call__(self, doc: Document):
        if doc_lang(doc) not in self.langs:
            return doc
        text = doc.text
        if _LOREM.search(text):
            return "c4_lorem_ipsum"
        if self.drop_curly_brace and "{" in text:
            return "c4_curly_brace"
        if "[" in text:
            text = _CITATION.sub("", text)
        lines = text.split("\n")
        line_rules = self.line_rules if self.line_rules != "auto" else self.looks_like_web_text(lines)
        if line_rules or _NOTICE.search(text):
            kept = []
            for line in lines:
                line = line.rstrip()
                if not line:
                    kept.append("")   # blank lines keep the paragraph structure
                elif _NOTICE.search(line):
                    continue
                elif not line_rules:
                    kept.append(line)
                else:
                    cleaned = self.clean_line(line)
                    if cleaned is not None:
                        kept.append(cleaned)
            text = "\n".join(kept).strip()
            if "\n\n\n" in text:
                text = _MANY_NEWLINES.sub("\n\n", text)
        if not text.strip():
            return "c4_empty"
        if not has_sentences(text, self.min_sentences):
            return "c4_too_few_sentences"
        return doc if text == doc.text else replace(doc, text=text)


# == Chinese rules ================================================================================
# Boilerplate lines of Chinese web pages: navigation, share/follow prompts, copyright and
# disclaimer footers, editor bylines, ICP licence numbers. Matched only in short lines (see
# ChineseFilter), so a sentence that mentions 联系我们 or 免责声明 in passing stays.
# 点击 only in its prompt forms: 点击量 (click count) and 点击率 are ordinary news words.
ZH_BOILERPLATE = (
    "点击这里", "点击此处", "点击查看", "点击进入", "点击下载", "点击阅读", "点击链接", "点击图片", "点击播放",
    "点击购买", "点击咨询", "点击关注", "点击原文", "点击右上角", "点击上方", "点击下方", "点击蓝字",
    "扫码", "扫一扫", "扫描二维码", "长按识别", "关注公众号", "关注我们", "微信公众号", "版权所有",
    "版权声明", "免责声明", "联系我们", "上一篇", "下一篇", "返回顶部", "返回首页", "相关阅读", "相关文章",
    "热门推荐", "责任编辑", "本文来源", "转载请注明", "分享到", "在线客服", "ICP备", "公网安备", "Copyright",
    "copyright", "COPYRIGHT", "All rights reserved", "All Rights Reserved", "©",
)
# Gambling, porn, fake-invoice and fake-certificate spam: phrases that rarely occur in legitimate
# prose, and then not densely (see spam_per_kchar). Ambiguous words are left out or narrowed:
# 彩票 alone is lottery news (only 彩票开奖), 办证 alone is a government office (办证大厅).
ZH_SPAM = (
    "博彩", "赌场", "六合彩", "时时彩", "百家乐", "彩票开奖", "开奖结果", "网上赌博", "真人娱乐", "娱乐城",
    "老虎机", "代开发票", "发票代开", "代开增值税", "办假证", "代办证件", "刻章办证", "一夜情", "约炮", "裸聊",
    "援交", "成人视频", "毛片", "三级片", "无码",
)
_ASCII_PUNCT = ".,!?;:'\"()\\[\\]\\-/"
_PUNCT = re.compile(f"[{CJK_PUNCT}{_ASCII_PUNCT}]+")
# symbols: not a letter/digit/CJK (those are \w), not whitespace, not punctuation
_SYMBOL = re.compile(f"[^\\w\\s{CJK_PUNCT}{_ASCII_PUNCT}]+|_+")
_URL = re.compile(r"(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
_LONG_DIGITS = re.compile(r"\d{8,}")


def _alternation(phrases) -> re.Pattern:
    # case-sensitive on purpose: re.IGNORECASE makes a literal alternation ~20x slower
    return re.compile("|".join(map(re.escape, sorted(phrases, key=len, reverse=True))))


class ChineseFilter:
    """Step: rules for Chinese documents; other languages pass.

    In order (counts are over non-whitespace characters):
      - boilerplate lines (short lines, <= `max_boilerplate_line` = 40 characters, containing one
        of ZH_BOILERPLATE) are removed -> modified; if they were more than `max_boilerplate_lines`
        (50%) of the lines -> "zh_boilerplate". Longer lines that merely mention them stay;
      - fewer than `min_chars` (50) characters -> "zh_too_short" (one or two sentences: short
        reviews pass, stubs and titles do not);
      - CJK ideographs below `min_cjk_ratio` (30%) -> "zh_cjk_ratio" (tables, lists of numbers,
        pages of Latin markup with a Chinese title; LangId already weighed mixed content);
      - symbols (emoji, ★■→, #$%&*+<=>@^|~_) above `max_symbol_ratio` (10%) -> "zh_symbol_ratio";
      - punctuation below `min_punct_ratio` (1%) -> "zh_punct_low" (keyword stuffing, tag clouds:
        running Chinese has 8-20%, classical poetry ~15%) or above `max_punct_ratio` (50%) ->
        "zh_punct_high";
      - at least `spam_min_hits` (3) ZH_SPAM occurrences and at least `spam_per_kchar` (2) per
        1,000 characters -> "zh_spam" (a news report on a gambling crackdown says 赌场 a few
        times in a long article; a spam page repeats its keywords densely);
      - characters in URLs and 8+-digit runs above `max_url_digit_ratio` (20%) -> "zh_url_digits".
    Repeated lines and character n-grams are RepetitionFilter's job.
    """

    name = "chinese"

    def __init__(self, min_chars: int = 50, min_cjk_ratio: float = 0.3, max_symbol_ratio: float = 0.1,
                 min_punct_ratio: float = 0.01, max_punct_ratio: float = 0.5, spam_min_hits: int = 3,
                 spam_per_kchar: float = 2.0, max_url_digit_ratio: float = 0.2, max_boilerplate_line: int = 40,
                 max_boilerplate_lines: float = 0.5, boilerplate: tuple[str, ...] = ZH_BOILERPLATE,
                 spam: tuple[str, ...] = ZH_SPAM):
        self.min_chars, self.min_cjk_ratio, self.max_symbol_ratio = min_chars, min_cjk_ratio, max_symbol_ratio
        self.min_punct_ratio, self.max_punct_ratio = min_punct_ratio, max_punct_ratio
        self.spam_min_hits, self.spam_per_kchar = spam_min_hits, spam_per_kchar
        self.max_url_digit_ratio = max_url_digit_ratio
        self.max_boilerplate_line, self.max_boilerplate_lines = max_boilerplate_line, max_boilerplate_lines
        self.boilerplate, self.spam = tuple(boilerplate), tuple(spam)
        self._boilerplate_re = _alternation(self.boilerplate)
        self._spam_re = _alternation(self.spam)

    def strip_boilerplate(self, text: str) -> tuple[str, int, int]:
        """(text without short boilerplate lines, lines removed, non-empty lines)."""
        if not self._boilerplate_re.search(text):
            return text, 0, 0
        kept, removed, total = [], 0, 0
        for line in text.split("\n"):
            s = line.strip()
            if s:
                total += 1
                if len(s) <= self.max_boilerplate_line and self._boilerplate_re.search(s):
                    removed += 1
                    continue
            kept.append(line)
        return "\n".join(kept).strip(), removed, total

    def __call__(self, doc: Document):
        if doc_lang(doc) != "zh":
            return doc
        text, removed, total = self.strip_boilerplate(doc.text)
        if removed and removed > self.max_boilerplate_lines * total:
            return "zh_boilerplate"
        reason = self.check(text)
        if reason:
            return reason
        return doc if text == doc.text else replace(doc, text=text)

    def check(self, text: str) -> str | None:
        """The first failed document rule's reason, or None (boilerplate lines already removed)."""
        n = non_space_len(text)
        if n < self.min_chars:
            return "zh_too_short"
        if cjk_count(text) < self.min_cjk_ratio * n:
            return "zh_cjk_ratio"
        if count_runs(_SYMBOL, text) > self.max_symbol_ratio * n:
            return "zh_symbol_ratio"
        punct = count_runs(_PUNCT, text)
        if punct < self.min_punct_ratio * n:
            return "zh_punct_low"
        if punct > self.max_punct_ratio * n:
            return "zh_punct_high"
        hits = len(self._spam_re.findall(text))
        if hits >= self.spam_min_hits and hits >= self.spam_per_kchar * n / 1000:
            return "zh_spam"
        url_chars = count_runs(_URL, text)
        if url_chars:
            text = _URL.sub(" ", text)   # digits inside URLs are counted once
        if url_chars + count_runs(_LONG_DIGITS, text) > self.max_url_digit_ratio * n:
            return "zh_url_digits"
        return None


# == Repetition (both languages) ==================================================================
GOPHER_TOP_NGRAM = {2: 0.20, 3: 0.18, 4: 0.16}
GOPHER_DUP_NGRAM = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
_SPACE = re.compile(r"\s+")


def duplicate_fractions(units: list[str]) -> tuple[float, float]:
    """(share of units that repeat an earlier one, share of characters in those repeats)."""
    seen: set[str] = set()
    dup = dup_chars = total_chars = 0
    for u in units:
        total_chars += len(u)
        if u in seen:
            dup += 1
            dup_chars += len(u)
        else:
            seen.add(u)
    return (dup / len(units), dup_chars / total_chars) if units and total_chars else (0.0, 0.0)


def top_ngram_fraction(h: np.ndarray, weights: np.ndarray, n: int, total: int) -> float:
    """Characters covered by the most frequent n-gram (its count x its length) over `total`;
    `h` holds the n-gram hashes of the sequence whose items weigh `weights` characters."""
    if len(h) < 2:
        return 0.0
    srt = np.sort(h)   # a plain sort: cheaper than np.unique's argsort
    bounds = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1], True])
    counts = np.diff(bounds)
    top = int(np.argmax(counts))
    if counts[top] < 2:
        return 0.0
    start = int(np.flatnonzero(h == srt[bounds[top]])[0])
    return float(counts[top] * weights[start:start + n].sum() / total)


def dup_ngram_fraction(h: np.ndarray, weights: np.ndarray, n: int, total: int) -> float:
    """Characters inside n-grams that repeat an earlier occurrence (overlaps counted once) over
    `total`. The first occurrence is not counted: a phrase said twice is one repeat.

    Monotone in n: a repeated (n+1)-gram is made of two repeated n-grams, so its characters are
    already covered at n. RepetitionFilter uses that to stop early.
    """
    if len(h) < 2:
        return 0.0
    order = np.argsort(h, kind="stable")   # equal hashes stay in text order: the first is first
    srt = h[order]
    starts = order[1:][srt[1:] == srt[:-1]]
    if len(starts) == 0:
        return 0.0
    edge = np.zeros(len(weights) + 1, dtype=np.int32)   # +1 where a repeat starts, -1 after it
    edge[starts] += 1
    edge[starts + n] -= 1
    covered = np.cumsum(edge[:-1]) > 0
    return float(weights[covered].sum() / total)


class RepetitionFilter:
    """Step: Gopher's repetition rules (Rae et al. 2021, table A1), for English and Chinese.

    Gopher's thresholds are the defaults: duplicate lines > 30% of lines or > 20% of characters,
    the same for paragraphs (only when the text has blank-line paragraphs; otherwise paragraphs
    are lines), the most frequent 2/3/4-gram covering > 20/18/16% of the characters, and repeated
    5..10-grams covering > 15..10%.

    How the shares are measured (the paper leaves the details open): n-gram shares are over the
    document's non-whitespace characters; an n-gram's characters are those of its tokens; a
    "duplicate" n-gram occurrence is one that repeats an earlier occurrence (the first is not
    counted), and characters covered by several overlapping duplicates count once.
    English n-grams are lower-cased whitespace tokens (weighted by their length). Chinese n-grams are
    characters (whitespace removed), with n scaled by `zh_chars_per_word` = 1.6 (the characters per
    English word of zh–en parallel text, see langid.HAN_WEIGHT) so a Chinese n-gram carries about
    as much text as an English one: 2/3/4 -> 3/5/6 and 5..10 -> 8..16 characters. With the
    unscaled n, 5 Han characters are one short phrase and ordinary news repeats such phrases
    (中华人民共和国) far beyond 15%.

    Speaker names in drama ("HAMLET.") and author lines of poem collections repeat by nature, so
    lines shorter than `min_line_chars` (10 characters) are left out of the duplicate-*line-count*
    share (with them 5% of Shakespeare's scenes fail it); the character share counts every line,
    so pages of repeated short menu items still add up there.
    """

    name = "repetition"

    def __init__(self, max_dup_lines: float = 0.3, max_dup_line_chars: float = 0.2,
                 max_dup_paras: float = 0.3, max_dup_para_chars: float = 0.2,
                 top_ngram: dict[int, float] | None = None, dup_ngram: dict[int, float] | None = None,
                 zh_chars_per_word: float = 1.6, min_line_chars: int = 10):
        self.max_dup_lines, self.max_dup_line_chars = max_dup_lines, max_dup_line_chars
        self.max_dup_paras, self.max_dup_para_chars = max_dup_paras, max_dup_para_chars
        # int() keys: a TOML config can only write {"2" = 0.2}
        self.top_ngram = {int(n): v for n, v in (GOPHER_TOP_NGRAM if top_ngram is None else top_ngram).items()}
        self.dup_ngram = {int(n): v for n, v in (GOPHER_DUP_NGRAM if dup_ngram is None else dup_ngram).items()}
        self.zh_chars_per_word, self.min_line_chars = zh_chars_per_word, min_line_chars

    def __call__(self, doc: Document):
        lang = doc_lang(doc)
        return self.check(doc.text, lang) or doc

    def check(self, text: str, lang: str) -> str | None:
        lines = split_lines(text)
        frac, _ = duplicate_fractions([s for s in lines if len(s) >= self.min_line_chars])
        if frac > self.max_dup_lines:
            return "rep_dup_lines"
        _, char_frac = duplicate_fractions(lines)
        if char_frac > self.max_dup_line_chars:
            return "rep_dup_line_chars"
        if "\n\n" in text:
            paras = [p.strip() for p in split_paragraphs(text) if p.strip()]
            frac, char_frac = duplicate_fractions(paras)
            if frac > self.max_dup_paras:
                return "rep_dup_paras"
            if char_frac > self.max_dup_para_chars:
                return "rep_dup_para_chars"
        if lang == "zh":
            ids = codepoints(_SPACE.sub("", text)).astype(np.uint64)
            weights = np.ones(len(ids), dtype=np.int64)
            scale = self.zh_chars_per_word
        else:
            ws = text.lower().split()   # whitespace tokens, as Gopher; 5x faster than a word regex
            ids = np.fromiter(map(hash, ws), dtype=np.int64, count=len(ws)).view(np.uint64)
            weights = np.fromiter(map(len, ws), dtype=np.int64, count=len(ws))
            scale = 1.0
        total = non_space_len(text)   # words' letters for English; punctuation counts in the total
        if len(ids) == 0:
            return None
        top = {round(n * scale): (n, limit) for n, limit in self.top_ngram.items()}
        for m, h in iter_ngram_hashes(ids, top):
            n, limit = top[m]
            if top_ngram_fraction(h, weights, m, total) > limit:
                return f"rep_top_{n}gram"
        dup = sorted((round(n * scale), n, limit) for n, limit in self.dup_ngram.items())
        sizes = [m for m, _, _ in dup]
        for i, (m, h) in enumerate(iter_ngram_hashes(ids, sizes)):
            _, n, limit = dup[i]
            frac = dup_ngram_fraction(h, weights, m, total)
            if frac > limit:
                return f"rep_dup_{n}gram"
            if frac <= min(lim for _, _, lim in dup[i:]):
                break   # larger n cannot cover more (monotone) and no later limit is lower
        return None
