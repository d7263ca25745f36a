"""The unit the data pipeline streams, and the contract every per-document step follows.

A step is any callable with a `name` attribute that takes a Document and returns either
  - a Document (kept; the same object or a changed one; the runner counts it "modified" when its
    text differs from the input's), or
  - a str: the reason the document is dropped (short, snake_case, e.g. "too_short", "cjk_ratio").
Steps never count anything themselves: the runner records kept / dropped(reason) / modified per
step and per language (doc.meta["lang"], "unknown" before language identification), so that
for every step kept + dropped == seen.

Steps must be picklable (plain classes with simple attributes) because the executor ships them to
worker processes or to a Ray cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union


@dataclass
class Document:
    text: str
    id: str
    meta: dict = field(default_factory=dict)  # source, lang, url, anything the reader mapped

    @property
    def lang(self) -> str:
        return self.meta.get("lang", "unknown")

    def to_json(self) -> dict:
        return {"id": self.id, "text": self.text, "meta": self.meta}


StepResult = Union[Document, str]
Step = Callable[[Document], StepResult]
