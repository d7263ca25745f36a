"""Grammar-constrained decoding: JSON objects, JSON schemas and tool calls, with llguidance.

Why llguidance (measured on this project's 2-core VM, Baichuan 2's 125,696-id vocabulary): a
single wheel with no dependencies (xgrammar 0.2.9 pulls transformers, triton and kernels beside
torch), JSON schema with $ref, anyOf, enums, bounds and string lengths, Lark grammars that embed
schemas (the tool-call format), and a per-token mask in tens of microseconds on the CPU
(`benchmarks/structured.py` prints the cost per token against unconstrained decoding).

How it runs: a request's `SamplingParams.grammar` is a compiled `Grammar`; the engine gives each
request its own matcher (`Grammar.start`), writes the matcher's mask of allowed ids into the
row's bitmask before every step (`fill_masks`), and the sampler sets every other logit to -inf on
the device (sampling.py). Each sampled token advances the matcher; once the grammar is complete
only EOS is allowed. Compiling is bounded (llguidance's fuel limits, and `Grammars.compile`'s
time limit) and cached per grammar.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from baichuan.errors import BaichuanError
from baichuan.toolcalls import CALL_CLOSE, CALL_OPEN

CACHE_SIZE = 64            # compiled grammars kept, least recently used dropped
COMPILE_SECONDS = 5.0      # a grammar that takes longer to compile is refused
MAX_CALLS = 8              # tool calls in one reply: weights that never stop calling stop here
MARKER = re.compile(r"^<[^<>\s]+>$")  # a user-defined piece that names a token rather than writes text
# JSON laid out as Python's json.dumps writes it (", " and ": ", no other whitespace): one layout,
# so the model cannot stall in endless blanks, and the one toolcalls.py and the chat templates write
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(BaichuanError):
    """A schema or grammar that cannot be used (invalid, unsupported, too large or too slow)."""


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise BaichuanError("structured output needs llguidance: pip install 'baichuan[serve]'") from None
    return llguidance


def token_bytes(tok, vocab: int) -> list[bytes]:
    """Each id's bytes as the model writes them, for `vocab` ids (the model's; ids past the
    tokenizer's are empty). Control and unknown pieces, and user-defined pieces that look like
    markers (`<reserved_N>`, whose first two are Baichuan's role tokens) are marked special, their
    name after a 0xFF byte (llguidance's convention), so no grammar of text ever allows them;
    other user-defined pieces ("\\n", digits, "，" in tokenizers trained here) are text."""
    proto = tok.proto()
    kinds = proto.SentencePiece
    out = []
    for i in range(vocab):
        if i >= tok.vocab_size:
            out.append(b"")
            continue
        piece = proto.pieces[i]
        marker = piece.type == kinds.USER_DEFINED and MARKER.match(piece.piece)
        if piece.type in (kinds.CONTROL, kinds.UNKNOWN) or marker:
            out.append(b"\xff" + piece.piece.encode("utf-8"))
        else:
            out.append(tok.piece_bytes(i))
    return out


@dataclass(frozen=True, eq=False)
class Grammar:
    """A compiled grammar; every request constrained by it starts from a copy of `matcher`."""
    source: str
    matcher: object  # llguidance.LLMatcher in its start state

    def start(self):
        return self.matcher.deep_copy()


class Grammars:
    """The llguidance tokenizer of one model (built by the first compile: about a second for
    125,696 ids) and its compiled grammars (an LRU cache)."""

    def __init__(self, tok, vocab: int, stop_ids: tuple[int, ...]):
        self.tok, self.vocab, self.stop_ids = tok, vocab, tuple(stop_ids)
        self.cache: OrderedDict[str, Grammar] = OrderedDict()
        self.lock = threading.Lock()
        self.tokenizer = self.limits = None

    def _build(self) -> None:
        llg = _llguidance()
        pieces = token_bytes(self.tok, self.vocab)

        class Wrapped:  # what llguidance.TokenizerWrapper reads
            eos_token_id, bos_token_id, tokens = self.stop_ids[0], self.tok.bos_id, pieces
            special_token_ids = [i for i, b in enumerate(pieces) if b.startswith(b"\xff")]
            # llguidance expects an encoding to decode back to exactly the bytes given
            __call__ = staticmethod(lambda data, sp=self.tok.without_dummy_prefix:
                                    sp.encode(data.decode("utf-8", errors="replace")))

        self.tokenizer = llg.LLTokenizer(llg.TokenizerWrapper(Wrapped()), n_vocab=self.vocab,
                                         eos_token=list(self.stop_ids))
        # bounds on the work of compiling and of each token's mask (llguidance's fuel)
        self.limits = llg.LLParserLimits(initial_lexer_fuel=2_000_000, step_lexer_fuel=400_000,
                                         max_grammar_size=200_000, verbose_errors=False)

    def compile(self, source: str, seconds: float = COMPILE_SECONDS) -> Grammar:
        """The compiled grammar of llguidance grammar text `source` (cached). Raises GrammarError
        for a grammar llguidance refuses or one that takes over `seconds` to compile."""
        with self.lock:
            if source in self.cache:
                self.cache.move_to_end(source)
                return self.cache[source]
            if self.tokenizer is None:
                self._build()
        llg = _llguidance()
        t0 = time.monotonic()
        matcher = llg.LLMatcher(self.tokenizer, source, log_level=0, limits=self.limits)
        if matcher.is_error():
            raise GrammarError(_short(matcher.get_error()))
        matcher.deep_copy().compute_bitmask()  # builds the lexer's first states: part of compiling
        if time.monotonic() - t0 > seconds:
            raise GrammarError(f"the grammar took {time.monotonic() - t0:.1f} s to compile; the limit is {seconds} s")
        grammar = Grammar(source, matcher)
        with self.lock:
            self.cache[source] = grammar
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        return grammar



_executor = None


def fill_masks(matchers: list[tuple[object, int]], bitmask) -> None:
    """The allowed ids of each (matcher, row) into row `row` of `bitmask` (int32 [rows, words],
    on the CPU, bit i of word w allowing id 32 w + i), computed on llguidance's threads."""
    global _executor
    from llguidance.torch import fill_next_token_bitmask_par
    if _executor is None:
        _executor = _llguidance().LLExecutor()
    fill_next_token_bitmask_par(_executor, matchers, bitmask)


def _short(error: str) -> str:
    return error.strip().splitlines()[0][:500] if error.strip() else "the grammar is not valid"


# ------------------------------------------------------------------------ grammar sources

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")  # name -> schema
_SCHEMA_LISTS = ("anyOf", "oneOf", "prefixItems")                         # [schema]
_SCHEMA_ONE = ("items", "additionalProperties", "contains", "propertyNames")  # schema


def closed(schema):
    """`schema` with every object that does not say otherwise closed to the properties it names
    (`additionalProperties: false`), as OpenAI's strict mode requires of every schema: an open
    object would let the model add keys, and weights that never close one, keys forever. It
    walks the keywords that hold schemas (not `allOf`, `not` or conditionals, whose parts are
    not whole objects on their own)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [closed(sub) for sub in out[key]]
    for key in _SCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = closed(out[key])
    if (out.get("type") == "object" or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def json_grammar(schema: dict | None) -> str:
    """Any JSON object (`schema` None: `response_format` json_object), or JSON valid against
    `schema` (closed: see `closed`), as llguidance grammar text. Raises GrammarError for a schema
    it cannot read."""
    llg = _llguidance()
    try:
        return llg.LLMatcher.grammar_from_json_schema(closed(schema) if schema is not None else {"type": "object"},
                                                       defaults=JSON_OPTIONS)
    except ValueError as e:
        raise GrammarError(_short(str(e))) from None


def _lark_json(schema: dict) -> str:
    return "%json " + json.dumps(schema, ensure_ascii=False)


def tool_grammar(functions: list[dict], choice: str, reply_schema: dict | None = None,
                 parallel: bool = True) -> str:
    """The replies `tool_choice` allows, as a Lark grammar: `choice` "auto" (text, or calls of
    any function), "none" (text only), "required" (calls), or a function's name (one call of it);
    one call at most unless `parallel`, else up to MAX_CALLS. Each call is written as
    toolcalls.format_call writes it, its arguments following its function's parameter schema
    (closed, a JSON root of its own, so its `$ref`s resolve). Text is any reply that does not
    start with a call, or JSON of `reply_schema` when a response_format asks for one
    (`reply_schema` {}: any JSON object)."""
    if choice not in ("auto", "none", "required"):
        functions = [f for f in functions if f["name"] == choice]
    rules = []
    for i, f in enumerate(functions):
        head = json.dumps(CALL_OPEN + '{"name": ' + json.dumps(f["name"]) + ', "arguments": ')
        params = {**closed(f["parameters"]), "x-guidance": JSON_OPTIONS}
        rules.append(f"call_{i}: {head} {_lark_json(params)} {json.dumps('}' + CALL_CLOSE)}")
    rules.append("call: " + " | ".join(f"call_{i}" for i in range(len(functions))))
    rules.append(f"calls: call (\"\\n\" call)~0..{MAX_CALLS - 1}" if parallel else "calls: call")
    text = "TEXT" if reply_schema is None else _lark_json(
        {**(closed(reply_schema) or {"type": "object"}), "x-guidance": JSON_OPTIONS})
    # blanks before a call still make a call (toolcalls.parse_calls strips them), so text may not start so
    rules.append(f"TEXT: /(?s:.*)/ & ~/(?s:\\s*{_regex_literal(CALL_OPEN)}.*)/")
    start = {"auto": f"start: {text} | calls", "none": f"start: {text}", "required": "start: calls"}
    rules.insert(0, start.get(choice, "start: call"))
    return _llguidance().LLMatcher.grammar_from_lark("\n".join(rules))


def _regex_literal(s: str) -> str:
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}/" else c for c in s)
