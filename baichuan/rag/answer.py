"""`baichuan ask`: retrieve passages, fit them into the prompt, let the model answer, keep the
citations that point at real passages.

    a = answer("谁为关公刮骨疗毒？", index, generate_fn, tokenizer, max_len=1024, max_new_tokens=256)
    a.text, a.citations        # "华佗[1]。", [{"n": 1, "file": ..., "passage": 11, "score": ..., "snippet": ...}]

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


@dataclass
class Answer:
    text: str
    citations: list[dict] = field(default_factory=list)       # n, file, doc, passage, score, snippet, row
    used_passages: list[dict] = field(default_factory=list)   # every passage in the prompt, numbered
    refused: bool = False
    reason: str | None = None
    prompt_tokens: int = 0
    lang: str = "en"

    def to_dict(self) -> dict:
        return {"answer": self.text, "citations": self.citations, "used_passages": self.used_passages,
                "refused": self.refused, "reason": self.reason, "prompt_tokens": self.prompt_tokens,
                "lang": self.lang}


def passage_label(p: dict) -> str:
    return f"{p['file']}" + (f" {p['doc']}" if p.get("doc") else "") + f" #{p['n']}"


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


def _block(n: int, p: dict, text: str) -> str:
    return f"[{n}] ({passage_label(p)})\n{text.strip()}"


def build_prompt(question: str, hits, tok, *, max_len: int, max_new_tokens: int, template: str | None = None,
                 lang: str | None = None) -> tuple[list[int], list[dict]]:
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
    used: list[dict] = []
    for h in hits:
        n, p = len(blocks) + 1, h.passage
        text, fitted = p["text"], None
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
        used.append({"n": n, "file": p["file"], "doc": p.get("doc"), "passage": p["n"], "score": round(h.score, 4),
                     "start": p["start"], "end": p["start"] + len(text), "truncated": text != p["text"],
                     "row": h.index, "text": text})
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
            max_len: int | None = None, template: str | None = None, min_coverage: float = MIN_COVERAGE):
    """Everything before generation: (prompt ids, numbered passages, language), or the refusal
    Answer when nothing relevant was found. The server calls this and then `finish` around its
    own engine; `answer` does both around a generate_fn."""
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
        return Answer(IDK[lang], refused=True, reason=reason, lang=lang)
    ids, used = build_prompt(question, hits, tokenizer, max_len=max_len, max_new_tokens=max_new_tokens,
                             template=template, lang=lang)
    if not used:
        return Answer(IDK[lang], refused=True, reason="no retrieved passage fits in the context", lang=lang,
                      prompt_tokens=len(ids))
    return ids, used, lang


def finish(raw: str, ids: list[int], used: list[dict], lang: str) -> Answer:
    """The Answer for the model's text: citations that point at no passage dropped, the rest
    resolved to file and passage."""
    text, cited = keep_citations(raw.strip(), len(used))
    by_n = {u["n"]: u for u in used}
    citations = [{"n": n, "file": by_n[n]["file"], "doc": by_n[n]["doc"], "passage": by_n[n]["passage"],
                  "score": by_n[n]["score"], "snippet": _snippet(by_n[n]["text"]), "row": by_n[n]["row"]}
                 for n in cited]
    refused = not citations and bool(_IDK_SAID.search(text))
    return Answer(text or IDK[lang], citations, public_passages(used), refused=refused,
                  reason="the model said it does not know" if refused else None, prompt_tokens=len(ids), lang=lang)


def public_passages(used: list[dict]) -> list[dict]:
    """The numbered passages as shown to users: a snippet instead of the whole text."""
    return [{k: v for k, v in u.items() if k != "text"} | {"snippet": _snippet(u["text"])} for u in used]


def answer(question: str, index, generate_fn, tokenizer, **kwargs) -> Answer:
    """Answer `question` from `index` with citations; see the module docstring. kwargs: top_k,
    max_new_tokens, max_len, template, min_coverage (as `prepare`)."""
    prepared = prepare(question, index, tokenizer, **kwargs)
    if isinstance(prepared, Answer):
        return prepared
    ids, used, lang = prepared
    return finish(generate_fn(ids, kwargs.get("max_new_tokens", 256)), ids, used, lang)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def model_generate_fn(model, tokenizer, params=None):
    """generate_fn over a loaded model (one request at a time, greedy unless `params` say otherwise)."""
    from baichuan.generate import SamplingParams, generate
    base = params or SamplingParams(eos_token_ids=(tokenizer.eos_id,))

    def fn(prompt_ids: list[int], max_new_tokens: int) -> str:
        return generate(model, tokenizer, prompt_ids, replace(base, max_new_tokens=max_new_tokens))
    return fn
