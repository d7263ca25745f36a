"""Text -> search terms, the same way for passages and questions, Chinese and English.

Text is NFKC-normalized and case-folded first (the bundled news writes ＣＤＭＡ and ３１ in
full-width forms; a user types CDMA and 31), then cut into runs of CJK ideographs and runs of
letters/digits:
  - an English (or any non-CJK) word is one term, lower-cased, with a possessive 's dropped and
    stop words left out; no stemming;
  - a CJK run is segmented by `mode`: "jieba" (jieba's search-engine segmentation: every word of
    its default dictionary plus the shorter dictionary words inside it, so 刮骨疗毒 yields 刮骨,
    疗毒 and 刮骨疗毒 and matches text that says only 刮骨; no HMM, whose guesses at unknown
    words glue names to verbs, e.g. 李肃用), or "bigram" (every overlapping character pair; a
    lone character is kept as itself). Function words (的, 了, 什么, ...) are left out in both.
With `stem` (default on), English words are reduced by the Snowball stemmer (PyStemmer), so
"marry" finds "married".
With `t2s`, traditional characters are mapped to simplified first (OpenCC), so a question typed in
simplified characters finds 國破山河在 in the bundled 全唐诗.

Which mode and t2s an index was built with is stored in its manifest; questions are analyzed the
same way. `benchmarks/rag.py` measures the modes on the bundled QA set (docs/rag.md).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache

from baichuan.data.text import CJK_IDEOGRAPHS, cjk_count, non_space_len
from baichuan.errors import BaichuanError

MODES = ("jieba", "bigram")

# a word: letters/digits other than CJK ideographs (those form their own runs), inner apostrophes kept
_RUN = re.compile(rf"(?P<cjk>[{CJK_IDEOGRAPHS}]+)|(?P<word>[^\W_{CJK_IDEOGRAPHS}]+(?:['’][^\W_{CJK_IDEOGRAPHS}]+)*)")

# Short lists on purpose: BM25's IDF already discounts frequent words; these are the ones that
# would otherwise count as "matched" when deciding whether anything relevant was found.
EN_STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have he her his how i
if in into is it its me my no not of on or our she so than that the their them then there these they this to
was we were what when where which who whom whose why with would you your""".split())
ZH_STOP = frozenset("""的 了 是 在 和 与 及 也 都 而 之 其 或 就 吗 呢 吧 啊 么 呀 谁 哪 哪里 哪些 哪个 什么 怎么 怎样
如何 为何 为什么 多少 几 几个 有 没有 这 那 这个 那个 他 她 它 我 你 们 他们 被 把 给 对 从 向 于 以 为 中 上 下 个 请 问
时候 之后 后 前 时""".split())


@dataclass(frozen=True)
class Analyzer:
    mode: str = "jieba"
    t2s: bool = False
    stem: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise BaichuanError(f"analyzer mode {self.mode!r} is unknown; choose one of {', '.join(MODES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def terms(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).casefold()
        if self.t2s:
            text = _opencc().convert(text)
        out: list[str] = []
        for m in _RUN.finditer(text):
            run = m.group("cjk")
            if run is None:
                word = m.group("word")
                if word.endswith(("'s", "’s")):
                    word = word[:-2]
                if word not in EN_STOP:
                    out.append(_stemmer()(word) if self.stem else word)
            elif self.mode == "jieba":
                out += [w for w in _jieba().lcut_for_search(run, HMM=False) if w not in ZH_STOP]
            elif len(run) == 1:
                if run not in ZH_STOP:
                    out.append(run)
            else:
                out += [run[i:i + 2] for i in range(len(run) - 1)]
        return out


def question_language(text: str) -> str:
    """'zh' when CJK ideographs make up at least a fifth of the non-space characters, else 'en'."""
    n = cjk_count(text)
    return "zh" if n and n >= 0.2 * non_space_len(text) else "en"


def analyzer_from(d: dict, source: str) -> Analyzer:
    try:
        return Analyzer(mode=d["mode"], t2s=bool(d.get("t2s", False)), stem=bool(d.get("stem", False)))
    except (KeyError, TypeError):
        raise BaichuanError(f"{source}: field 'analyzer' must be an object with 'mode'") from None


@lru_cache(maxsize=1)
def _jieba():
    try:
        import jieba
    except ImportError:
        raise BaichuanError("Chinese word segmentation needs jieba: pip install 'baichuan[rag]' "
                            "(or use --analyzer bigram)") from None
    jieba.setLogLevel(logging.WARNING)   # it prints its dictionary loading otherwise
    return jieba


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer
    except ImportError:
        raise BaichuanError("English stemming needs PyStemmer: pip install 'baichuan[rag]' "
                            "(or use --no-stem)") from None
    return lru_cache(maxsize=1 << 16)(Stemmer.Stemmer("english").stemWord)


@lru_cache(maxsize=1)
def _opencc():
    try:
        import opencc
    except ImportError:
        raise BaichuanError("traditional -> simplified mapping needs opencc: pip install 'baichuan[data]'") from None
    return opencc.OpenCC("t2s")
