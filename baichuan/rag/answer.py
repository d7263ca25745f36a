"""`baichuan ask`: retrieve passages, fit them into the prompt, let the model answer, keep the
citations that point at real passages.

    a = answer("谁为关公刮骨疗毒？", index, generate_fn, tokenizer, max_len=1024, max_new_tokens=256)
    a.text, a.citations        # "华佗[1]。", [Source(n=1, passage=Passage(file="sanguo.txt", ...), ...)]
    a.to_dict()                # the JSON of `baichuan ask --json` and POST /v1/ask

`generate_fn(prompt_ids, max_new_tokens) -> str` is the model: `model_generate_fn` wraps a loaded
model, tests pass a fake; the server calls `prepare` and `finish` around its own engine. Nothing
else here knows how text is generated.

The prompt is the model's own chat format (build_chat_input): for Baichuan 2 a system message with
the instructions and the numbered passages, then the question as the user turn; Baichuan 1's
format has no system role, so the same text leads the user turn. Instructions are Chinese or
English by the question's language.

Refusals. When retrieval finds nothing relevant the answer is "我不知道" / "I don't know" and
the model is not called: no passage shares a term with the question, or the best passage holds
less than `min_coverage` of the question's term weight (IDF). Otherwise the instructions tell the
model to say so itself when the passages do not contain the answer.

The context budget is max_len - max_new_tokens. Passages go in by rank while they fit; one that
does not fit is cut to its longest run of leading sentences that does, else left out (a later,
shorter one may still fit). A question that does not fit even without passages is an error naming the
lengths, not a silently truncated prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from baichuan.data.text import split_sentences
from baichuan.errors import BaichuanError
from baichuan.rag.passages import Passage
from baichuan.rag.terms import question_language
from baichuan.tokenizer import build_chat_input, chat_template_for

IDK = {"zh": "我不知道。", "en": "I don't know."}
INSTRUCTIONS = {
    "zh": ("请只根据下面编号的资料回答用户的问题，并在用到的资料后用方括号标出它的编号，例如[1]或[2][3]。"
           "如果资料里没有答案，只回答：我不知道。"),
    "en": ("Answer the user's question using only the numbered passages below. After each statement, cite "
           "the passages it comes from by number in square brackets, such as [1] or [2][3]. If the passages "
           "do not contain the answer, reply only: I don't know."),
}
PASSAGES_HEADING = {"zh": "资料：", "en": "Passages:"}
QUESTION_LABEL = {"zh": "问题：", "en": "Question: "}
# Calibrated on the bundled QA set (benchmarks/rag.py): every answerable question's best passage
# covers more than this; most questions about things the corpus never mentions cover less.
MIN_COVERAGE = 0.3
SNIPPET_CHARS = 160

_CITE = re.compile(r"[\[［【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]］】]")
_IDK_SAID = re.compile(r"我不知道|i\s+don[’']?t\s+know|i\s+do\s+not\s+know", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """A passage as the prompt numbers it, [n]; what the answer's citations point at."""
    n: int
    passage: Passage
    text: str             # what the prompt holds: the passage, or its leading sentences when it did not fit
    score: float          # its search score
    row: int              # its row in Index.passages

    @property
    def snippet(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"

    def to_json(self) -> dict:
        """As the answer's "used_passages" (and the server's streamed "passages") show it."""
        p = self.passage
        return {"n": self.n, "file": p.file, "doc": p.doc, "passage": p.n, "score": round(self.score, 4),
                "start": p.start, "end": p.start + len(self.text), "truncated": self.text != p.text,
                "row": self.row, "snippet": self.snippet}

    def citation_json(self) -> dict:
        """As the answer's "citations" show it: the fields of `to_json` that name the source."""
        d = self.to_json()
        return {k: d[k] for k in ("n", "file", "doc", "passage", "score", "snippet", "row")}


@dataclass
class Answer:
    text: str
    citations: list[Source] = field(default_factory=list)   # the sources the text cites, by first citation
    sources: list[Source] = field(default_factory=list)     # every passage in the prompt, numbered from 1
    refused: bool = False
    reason: str | None = None
    prompt_tokens: int = 0
    lang: str = "en"

    def to_dict(self) -> dict:
        return {"answer": self.text, "citations": [c.citation_json() for c in self.citations],
                "used_passages": [s.to_json() for s in self.sources], "refused": self.refused,
                "reason": self.reason, "prompt_tokens": self.prompt_tokens, "lang": self.lang}


@dataclass
class Prepared:
    """All that comes before generation: the prompt and its numbered sources, or, when nothing
    relevant was found, `refusal`, the final answer (then nothing is generated)."""
    lang: str
    ids: list[int] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    refusal: Answer | None = None


def retrieve(index, question: str, top_k: int = 5, min_coverage: float = MIN_COVERAGE):
    """(hits, reason): hits is empty when nothing relevant was found, and reason says why."""
    if not index.query_terms(question):
        return [], "the question has no searchable words"
    hits = index.search(question, k=top_k)
    if not hits:
        return [], "no passage shares a word with the question"
    if hits[0].coverage < min_coverage:
        return [], f"the best passage covers {hits[0].coverage:.0%} of the question's terms (< {min_coverage:.0%})"
    return hits, None


def is_unanswerable(index, question: str, top_k: int = 5, min_coverage: float = MIN_COVERAGE, **_) -> bool:
    return not retrieve(index, question, top_k, min_coverage)[0]


# ---------------------------------------------------------------------------------- the prompt

def _messages(lang: str, blocks: list[str], question: str, template: str) -> list[dict]:
    context = INSTRUCTIONS[lang] + "\n\n" + PASSAGES_HEADING[lang] + "\n" + "\n\n".join(blocks)
    if template == "baichuan":   # Baichuan 1 chat: no system role
        return [{"role": "user", "content": context + "\n\n" + QUESTION_LABEL[lang] + question}]
    return [{"role": "system", "content": context}, {"role": "user", "content": question}]


def _prompt_ids(tok, lang, blocks, question, template) -> list[int]:
    # No truncation here (huge model_max_length): the budget is checked by the caller, so the
    # released builders' silent left-truncation can never cut into the instructions.
    return build_chat_input(tok, _messages(lang, blocks, question, template), template=template,
                            max_new_tokens=0, model_max_length=1 << 30)


def _block(n: int, p: Passage, text: str) -> str:
    return f"[{n}] ({p.label})\n{text.strip()}"


def build_prompt(question: str, hits, tok, *, max_len: int, max_new_tokens: int, template: str | None = None,
                 lang: str | None = None) -> tuple[list[int], list[Source]]:
    """(prompt ids, the passages it holds, numbered from 1). Raises BaichuanError when the question
    with the instructions alone exceeds max_len - max_new_tokens.

    Every candidate is measured by encoding the whole prompt with it (tokens can merge across a
    join, so per-block counts would only be estimates); a prompt is a few thousand tokens and
    SentencePiece encodes that in well under a millisecond."""
    lang = lang or question_language(question)
    template = template or chat_template_for(tok)
    budget = max_len - max_new_tokens
    ids = _prompt_ids(tok, lang, [], question, template)
    if len(ids) > budget:
        raise BaichuanError(f"the question is too long: with the instructions the prompt needs {len(ids)} tokens, "
                            f"but the context has {budget} ({max_len} - max_new_tokens {max_new_tokens})")
    blocks: list[str] = []
    used: list[Source] = []
    for h in hits:
        n, p = len(blocks) + 1, h.passage
        text, fitted = p.text, None
        candidate = _prompt_ids(tok, lang, blocks + [_block(n, p, text)], question, template)
        if len(candidate) <= budget:
            fitted = candidate
        else:                                   # the longest run of leading sentences that fits
            sentences = split_sentences(text)
            for k in range(len(sentences) - 1, 0, -1):
                text = "".join(sentences[:k]).strip()
                candidate = _prompt_ids(tok, lang, blocks + [_block(n, p, text)], question, template)
                if len(candidate) <= budget:
                    fitted = candidate
                    break
        if fitted is None:
            continue                            # nothing of it fits; a shorter one further down might
        ids = fitted
        blocks.append(_block(n, p, text))
        used.append(Source(n, p, text, h.score, h.index))
    return ids, used


# ------------------------------------------------------------------------------- the answer

def keep_citations(text: str, count: int) -> tuple[str, list[int]]:
    """Drop citation markers that point at no passage (outside 1..count), normalize the rest to
    [n][m], and return the cited numbers in order of first appearance."""
    cited: list[int] = []

    def repl(m: re.Match) -> str:
        valid = [n for n in (int(x) for x in re.findall(r"\d+", m.group(1))) if 1 <= n <= count]
        for n in valid:
            if n not in cited:
                cited.append(n)
        return "".join(f"[{n}]" for n in valid)

    return _CITE.sub(repl, text), cited


def prepare(question: str, index, tokenizer, *, top_k: int = 5, max_new_tokens: int = 256,
            max_len: int | None = None, template: str | None = None, min_coverage: float = MIN_COVERAGE) -> Prepared:
    """Everything before generation: the prompt, or the refusal when nothing relevant was found.
    The server calls this and then `finish` around its own engine; `answer` does both around a
    generate_fn."""
    if not isinstance(question, str) or not question.strip():
        raise BaichuanError("question: expected a non-empty string")
    if top_k < 1:
        raise BaichuanError(f"top_k must be >= 1, got {top_k}")
    lang = question_language(question)
    max_len = max_len or tokenizer.model_max_length
    template = template or chat_template_for(tokenizer)
    # the length check comes first: a question that can never fit is refused whatever is retrieved
    build_prompt(question, [], tokenizer, max_len=max_len, max_new_tokens=max_new_tokens, template=template, lang=lang)
    hits, reason = retrieve(index, question, top_k, min_coverage)
    if not hits:
        return Prepared(lang, refusal=Answer(IDK[lang], refused=True, reason=reason, lang=lang))
    ids, used = build_prompt(question, hits, tokenizer, max_len=max_len, max_new_tokens=max_new_tokens,
                             template=template, lang=lang)
    if not used:
        return Prepared(lang, refusal=Answer(IDK[lang], refused=True, reason="no retrieved passage fits in the context",
                                             lang=lang, prompt_tokens=len(ids)))
    return Prepared(lang, ids, used)


def finish(raw: str, prepared: Prepared) -> Answer:
    """The Answer for the model's text: citations that point at no passage dropped, the rest
    resolved to their sources."""
    text, cited = keep_citations(raw.strip(), len(prepared.sources))
    citations = [prepared.sources[n - 1] for n in cited]      # sources are numbered from 1, in order
    refused = not citations and bool(_IDK_SAID.search(text))
    return Answer(text or IDK[prepared.lang], citations, prepared.sources, refused=refused,
                  reason="the model said it does not know" if refused else None, prompt_tokens=len(prepared.ids),
                  lang=prepared.lang)


def answer(question: str, index, generate_fn, tokenizer, **kwargs) -> Answer:
    """Answer `question` from `index` with citations; see the module docstring. kwargs: top_k,
    max_new_tokens, max_len, template, min_coverage (as `prepare`)."""
    prepared = prepare(question, index, tokenizer, **kwargs)
    if prepared.refusal is not None:
        return prepared.refusal
    return finish(generate_fn(prepared.ids, kwargs.get("max_new_tokens", 256)), prepared)


def model_generate_fn(model, tokenizer, params=None):
    """generate_fn over a loaded model (one request at a time, greedy unless `params` say otherwise)."""
    from baichuan.generate import SamplingParams, generate
    base = params or SamplingParams(eos_token_ids=(tokenizer.eos_id,))

    def fn(prompt_ids: list[int], max_new_tokens: int) -> str:
        return generate(model, tokenizer, prompt_ids, replace(base, max_new_tokens=max_new_tokens))
    return fn
