"""How well tokenizers compress text, per language, as a Markdown table.

Baichuan-7B's README compares tokenizers by a "compression rate" (0.737 for Baichuan-7B versus
1.312 for LLaMA) measured on an unpublished, mostly Chinese corpus; the numbers only fit
tokens per character. So next to the per-language rows we add a "mix" row that weights
languages (zh:en = 3:1 by default), the closest comparable figure we can compute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from baichuan.errors import BaichuanError
from baichuan.tokenizer import Tokenizer

DEFAULT_MIX = {"zh": 3.0, "en": 1.0}
COLUMNS = ("tokenizer", "lang", "chars", "bytes", "tokens", "tokens_per_char", "bytes_per_token")


def compression_report(tokenizers: Mapping[str, Tokenizer], texts: Mapping[str, Sequence[str]],
                       mix: Mapping[str, float] | None = DEFAULT_MIX) -> list[dict]:
    """One row per (tokenizer, language) plus, when every language in `mix` is present, one
    weighted row per tokenizer whose counts are None (it describes a virtual corpus whose
    characters are split between languages in the `mix` proportions).

    Each text is encoded on its own, as a model would see it: Baichuan 1's dummy prefix adds a
    "▁" token to many texts, and that cost is part of what is measured.
    """
    if not tokenizers:
        raise BaichuanError("compression_report: no tokenizers given")
    stats = {}
    for lang, items in texts.items():
        items = list(items)
        chars = sum(len(t) for t in items)
        if chars == 0:
            raise BaichuanError(f"texts[{lang!r}]: no text to measure")
        stats[lang] = (items, chars, sum(len(t.encode("utf-8")) for t in items))
    use_mix = bool(mix) and all(lang in stats for lang in mix)

    rows = []
    for name, tok in tokenizers.items():
        per_char = {}
        for lang, (items, chars, nbytes) in stats.items():
            tokens = sum(len(ids) for ids in tok.encode_batch(items))
            per_char[lang] = (tokens / chars, nbytes / chars)
            rows.append({"tokenizer": name, "lang": lang, "chars": chars, "bytes": nbytes, "tokens": tokens,
                         "tokens_per_char": tokens / chars,
                         "bytes_per_token": nbytes / tokens if tokens else float("nan")})
        if use_mix:
            total = sum(mix.values())
            tpc = sum(w * per_char[lang][0] for lang, w in mix.items()) / total
            bpc = sum(w * per_char[lang][1] for lang, w in mix.items()) / total
            label = "mix " + ":".join(mix) + " = " + ":".join(f"{w:g}" for w in mix.values())
            rows.append({"tokenizer": name, "lang": label, "chars": None, "bytes": None, "tokens": None,
                         "tokens_per_char": tpc, "bytes_per_token": bpc / tpc if tpc else float("nan")})
    return rows


def format_report(rows: Sequence[Mapping]) -> str:
    """A Markdown table of compression_report rows (ratios to 3 decimals, '-' for no count)."""
    header = ["tokenizer", "lang", "chars", "bytes", "tokens", "tokens/char", "bytes/token"]

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 5) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def reference_tokenizers(assets: str | None) -> dict[str, str]:
    """The released Baichuan tokenizers, if the user has them (BAICHUAN_ASSETS or --baichuan-assets)."""
    root = assets or os.environ.get("BAICHUAN_ASSETS")
    if not root:
        return {}
    found = {name: Path(root) / sub / "tokenizer.model"
             for name, sub in (("baichuan1", "baichuan1"), ("baichuan2", "baichuan2"))}
    found = {k: str(v) for k, v in found.items() if v.exists()}
    if assets and not found:  # named on the command line: a wrong path must not pass unnoticed
        raise BaichuanError(f"--baichuan-assets {assets}: no baichuan1/tokenizer.model or "
                            "baichuan2/tokenizer.model there")
    return found
