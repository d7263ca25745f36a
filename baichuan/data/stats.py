"""Per-step, per-language counts: what each step saw, kept, dropped (and why) and modified.

The invariant every report can be checked against: for each step and language,
kept + dropped == seen. "modified" is a subset of kept (the text changed).
"""

from __future__ import annotations

import json
from collections import defaultdict


class Stats:
    def __init__(self):
        # step -> lang -> counter name -> value; counter names: seen, kept, modified, dropped,
        # dropped:<reason>, chars_in, chars_out
        self.data: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        self.order: list[str] = []

    def add(self, step: str, lang: str, key: str, n: int = 1) -> None:
        if step not in self.order:
            self.order.append(step)
        self.data[step][lang][key] += n

    def seen(self, step: str, lang: str, chars: int) -> None:
        self.add(step, lang, "seen")
        self.add(step, lang, "chars_in", chars)

    def kept(self, step: str, lang: str, chars: int, modified: bool = False) -> None:
        self.add(step, lang, "kept")
        self.add(step, lang, "chars_out", chars)
        if modified:
            self.add(step, lang, "modified")

    def dropped(self, step: str, lang: str, reason: str, n: int = 1) -> None:
        self.add(step, lang, "dropped", n)
        self.add(step, lang, f"dropped:{reason}", n)

    def merge(self, other: "Stats") -> "Stats":
        for step in other.order:
            for lang, counters in other.data[step].items():
                for key, n in counters.items():
                    self.add(step, lang, key, n)
        return self

    def to_dict(self) -> dict:
        return {step: {lang: dict(sorted(c.items())) for lang, c in sorted(self.data[step].items())}
                for step in self.order}

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        s = cls()
        for step, langs in d.items():
            for lang, counters in langs.items():
                for key, n in counters.items():
                    s.add(step, lang, key, n)
        return s

    def unbalanced(self) -> list[str]:
        """Steps/languages where kept + dropped != seen (should be empty; the read step, which
        counts dropped units it never saw as documents, is balanced by construction)."""
        bad = []
        for step in self.order:
            for lang, c in self.data[step].items():
                if c.get("seen", 0) and c.get("kept", 0) + c.get("dropped", 0) != c["seen"]:
                    bad.append(f"{step}/{lang}")
        return bad

    def markdown(self) -> str:
        lines = ["| step | lang | seen | kept | modified | dropped | chars in | chars out | top drop reasons |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for step in self.order:
            for lang, c in sorted(self.data[step].items()):
                reasons = sorted(((k.split(":", 1)[1], n) for k, n in c.items() if k.startswith("dropped:")),
                                 key=lambda x: -x[1])
                top = ", ".join(f"{r} {n}" for r, n in reasons[:4])
                lines.append(f"| {step} | {lang} | {c.get('seen', 0)} | {c.get('kept', 0)} | {c.get('modified', 0)} "
                             f"| {c.get('dropped', 0)} | {c.get('chars_in', 0)} | {c.get('chars_out', 0)} | {top} |")
        return "\n".join(lines) + "\n"

    def save(self, path) -> None:
        from baichuan.data.writers import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False))
