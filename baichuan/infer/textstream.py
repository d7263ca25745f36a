"""Token ids -> text deltas for streaming, in time linear in the output.

Decoding the whole list on every token costs O(n^2) over a reply (2,048 tokens: two million
token decodes per request, on the server's event loop). Instead each new token is decoded
together with the few tokens before it, twice (with and without it), and the difference is the new
text: SentencePiece drops a leading space at the start of a decode, and it does so in both, so
the difference is exact. A token that ends inside a multi-byte character (byte-fallback pieces)
yields nothing until the character is complete.

Stop strings are looked for only where they could newly appear (the new text and the longest
stop string's length before it), and text that could still turn out to be the start of a stop
string is held back until it cannot.
"""

from __future__ import annotations


class TextStream:
    def __init__(self, tokenizer, stop: list[str] | tuple[str, ...] = ()):
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.text = ""            # decoded so far (stable)
        self.sent = 0             # characters of `text` already handed out
        self._prefix = self._read = 0
        self.stopped = False      # a stop string was found: `text` ends before it

    def add(self, token: int) -> str:
        """Feed one token; returns the text that became final (may be "")."""
        if self.stopped:
            return ""
        self.ids.append(token)
        before = self.tokenizer.decode(self.ids[self._prefix:self._read])
        after = self.tokenizer.decode(self.ids[self._prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            start = max(0, len(self.text) - max(self.hold, 0))
            self.text += after[len(before):]
            self._prefix, self._read = self._read, len(self.ids)
            if self._find_stop(start):
                return self._take(len(self.text))
        return self._take(len(self.text) - self.hold)

    def finish(self) -> str:
        """The rest, held back or incomplete, once no token follows."""
        if not self.stopped and self._read < len(self.ids):
            before = self.tokenizer.decode(self.ids[self._prefix:self._read])
            start = max(0, len(self.text) - max(self.hold, 0))
            self.text += self.tokenizer.decode(self.ids[self._prefix:])[len(before):]
            self._read = len(self.ids)
            self._find_stop(start)
        return self._take(len(self.text))

    def _find_stop(self, start: int) -> bool:
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text, self.stopped = self.text[:min(hits)], True
        return bool(hits)

    def _take(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out = self.text[self.sent:upto]
        self.sent = upto
        return out
