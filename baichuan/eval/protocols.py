"""The prompt and scoring protocols, as data: one `Template` per (protocol, benchmark).

Read from the reference implementations (../shared/docs/eval-protocol.md has the sources):

  lm-eval    lm-evaluation-harness tasks `ceval-valid`, `cmmlu`, `mmlu` with --num_fewshot N:
             description + Σ(doc_to_text(shot) + " " + letter + "\\n\\n") + doc_to_text(doc), the first N dev
             rows, log-likelihood of the continuation " A".." D" (encode whole, then split), micro average,
             context left-truncated to the model's length.
  baichuan   what Baichuan reported: Baichuan-7B's evaluate_zh.py (C-Eval) and evaluate_mmlu.py (MMLU),
             and for CMMLU, which Baichuan scored with "each benchmark's official script", haonan-li/CMMLU's
             src/mp_utils.py + hf_causal_model.py. The next-token logit of each letter at the end of the
             prompt; C-Eval and CMMLU averaged over subjects (macro), MMLU over questions (micro).
  official   each benchmark's own script: C-Eval's (resources/tutorial.md, evaluators/llama.py), CMMLU's
             (as in `baichuan`), MMLU's hendrycks evaluate.py (Baichuan's prompt, scored on " A" like GPT-3's
             logprobs). The official C-Eval runs LLaMA with BOS; no protocol here adds BOS (Baichuan never does).

Every prompt has the shape

    header + Σ_shots(item_start + item(shot) + answer_gap + letter + shot_end) + item_start + item(test)
    item(q) = question_prefix + question + "\\nA. " + A + "\\nB. " + B + "\\nC. " + C + "\\nD. " + D + answer_cue
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from baichuan.errors import BaichuanError
from baichuan.eval.data import LETTERS, Question

# Baichuan-7B evaluate_zh.py's TASK2DESC equals C-Eval's own Chinese subject names except here.
BAICHUAN_CEVAL_NAMES = {"mao_zedong_thought": "毛泽东思想和中国特色社会主义理论概论"}

# lm-eval's MMLU groups (the `tag` of each mmlu_<subject>.yaml) rename hendrycks' categories and put
# anatomy under STEM where hendrycks' categories.py has it under "other" (subcategory "health").
LMEVAL_MMLU_GROUPS = {"STEM": "stem", "humanities": "humanities", "social sciences": "social_sciences",
                      "other (business, health, misc.)": "other"}
LMEVAL_MMLU_MOVED = {"anatomy": "stem"}


@dataclass(frozen=True)
class Template:
    source: str              # where the strings come from
    header: str              # formatted with name=
    subject_name: str        # "zh" (official Chinese name), "zh_baichuan", "words" (a b), "hendrycks" ( a b)
    answer_cue: str
    answer_gap: str = ""     # between the cue and a shot's letter (lm-eval's target_delimiter)
    shot_end: str = "\n\n"
    item_start: str = ""
    question_prefix: str = ""
    strip_question: bool = False
    shot_order: str = "first"        # "first": first k dev rows in file order; "shuffled": per question, seeded
    fit: str = "left_truncate"       # how a prompt longer than fit_limit is cut (see fit_prompt)
    fit_limit: int | None = None     # tokens; None: the model's context length
    scoring: str = "continuation"    # "continuation" (" A", lm-eval), "encoded_letter" (tok("A")[-1]), "vocab_letter"
    aggregate: str = "micro"         # the headline average: over questions (micro) or subjects (macro)
    categories: str = "official"     # "official", or "lm-eval" (MMLU groups as lm-eval defines them)


PROTOCOLS: dict[str, dict[str, Template]] = {
    "lm-eval": {
        "ceval": Template("lm-eval tasks/ceval/_default_ceval_yaml + ceval-valid_<subject>.yaml",
                          "以下是中国关于{name}的单项选择题，请选出其中的正确答案。\n\n", "zh",
                          answer_cue="\n答案：", answer_gap=" ", strip_question=True),
        "cmmlu": Template("lm-eval tasks/cmmlu/_default_template_yaml + cmmlu_<subject>.yaml",
                          "以下是关于{name}的单项选择题，请直接给出正确答案的选项。\n\n", "zh",
                          answer_cue="\n答案：", answer_gap=" ", strip_question=True),
        "mmlu": Template("lm-eval tasks/mmlu/default/_default_template_yaml + mmlu_<subject>.yaml",
                         "The following are multiple choice questions (with answers) about {name}.\n\n", "words",
                         answer_cue="\nAnswer:", answer_gap=" ", strip_question=True, categories="lm-eval"),
    },
    "baichuan": {
        # evaluate_zh.py (ab935aa6): no blank line between shots, no space after 答案：, question not stripped,
        # the dev rows shuffled for every question with no seed (here: seeded). The script never cuts a
        # prompt; C-Eval's tutorial says to drop shots when it overflows the model, which is done here.
        "ceval": Template("Baichuan-7B evaluation/evaluate_zh.py",
                          "以下是中国关于{name}考试的单项选择题，请选出其中的正确答案。\n", "zh_baichuan",
                          answer_cue="\n答案：", shot_end="", item_start="\n", shot_order="shuffled",
                          fit="drop_last_shot", scoring="encoded_letter", aggregate="macro"),
        # haonan-li/CMMLU src/mp_utils.py format_example/gen_prompt (max_length 2048) + hf_causal_model.py
        "cmmlu": Template("CMMLU official src/mp_utils.py + src/hf_causal_model.py",
                          "以下是关于{name}的单项选择题，请直接给出正确答案的选项。\n\n", "zh",
                          answer_cue="\n答案是：", question_prefix="题目：", fit="drop_longest_shot",
                          fit_limit=2048, scoring="vocab_letter", aggregate="macro"),
        # evaluate_mmlu.py = hendrycks evaluate.py: "about  abstract algebra" (format_subject adds a space
        # before every word), k reduced while the prompt is over 2048 tokens
        "mmlu": Template("Baichuan-7B evaluation/evaluate_mmlu.py",
                         "The following are multiple choice questions (with answers) about {name}.\n\n", "hendrycks",
                         answer_cue="\nAnswer:", answer_gap=" ", fit="drop_last_shot", fit_limit=2048,
                         scoring="encoded_letter"),
    },
}
PROTOCOLS["official"] = {
    # hkust-nlp/ceval resources/tutorial.md + code/evaluator_series/evaluators/llama.py: a blank line after
    # the header and between shots, tokenizer.encode(L)[0] read at the last position, subjects averaged
    "ceval": Template("C-Eval official resources/tutorial.md + evaluators/llama.py",
                      "以下是中国关于{name}考试的单项选择题，请选出其中的正确答案。\n\n", "zh",
                      answer_cue="\n答案：", fit="drop_last_shot", scoring="encoded_letter", aggregate="macro"),
    "cmmlu": PROTOCOLS["baichuan"]["cmmlu"],
    "mmlu": Template("hendrycks/test evaluate.py", PROTOCOLS["baichuan"]["mmlu"].header, "hendrycks",
                     answer_cue="\nAnswer:", answer_gap=" ", fit="drop_last_shot", fit_limit=2048),
}


def template(protocol: str, benchmark: str) -> Template:
    if protocol not in PROTOCOLS:
        raise BaichuanError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol][benchmark]


def subject_name(t: Template, subject: str, zh_name: str) -> str:
    if t.subject_name == "zh":
        return zh_name
    if t.subject_name == "zh_baichuan":
        return BAICHUAN_CEVAL_NAMES.get(subject, zh_name)
    if t.subject_name == "words":
        return subject.replace("_", " ")
    return "".join(" " + w for w in subject.split("_"))   # hendrycks format_subject


def render_item(t: Template, q: Question) -> str:
    """The question block, ending with the answer cue (no letter)."""
    text = q.question.strip() if t.strip_question else q.question
    options = "".join(f"\n{letter}. {option}" for letter, option in zip(LETTERS, q.options))
    return t.question_prefix + text + options + t.answer_cue


def render_shot(t: Template, q: Question) -> str:
    return t.item_start + render_item(t, q) + t.answer_gap + q.answer + t.shot_end


def shot_order(t: Template, pool_size: int, k: int, seed: int, subject: str, index: int) -> list[int]:
    """Which dev rows, in which order. evaluate_zh.py reshuffles the dev split for every question
    without a seed; a seeded per-question shuffle keeps that design and makes runs repeatable."""
    if k > pool_size:
        raise BaichuanError(f"{subject}: {k} shots asked for, but the dev split has {pool_size} questions")
    if t.shot_order == "shuffled":
        return random.Random(f"{seed}:{subject}:{index}").sample(range(pool_size), pool_size)[:k]
    return list(range(k))


def build_prompt(t: Template, name: str, shots: list[Question], test: Question) -> tuple[str, str]:
    """(prefix, prompt): the header and shots, and the whole prompt (prefix + the test item)."""
    prefix = t.header.format(name=name) + "".join(render_shot(t, s) for s in shots)
    return prefix, prefix + t.item_start + render_item(t, test)


@dataclass
class Fitted:
    prefix: str
    text: str
    ids: list[int]
    shots: int          # shots kept
    cut: int = 0        # tokens dropped from the left (only when nothing else was left to drop)


def fit_prompt(t: Template, tokenizer, name: str, shots: list[Question], test: Question, limit: int,
               ids: list[int] | None = None) -> Fitted:
    """Build the prompt and make it fit `limit` tokens the way the reference does.

    left_truncate      (lm-eval) the prompt is kept whole here; the scorer keeps its last `limit` tokens
    drop_last_shot     (evaluate_mmlu.py; C-Eval tutorial) while longer than the limit, drop the last shot
    drop_longest_shot  (CMMLU mp_utils.gen_prompt) token counts of header, test item and each shot are taken
                       separately; while the shots' sum is >= limit - (header + test), remove every shot of
                       the greatest length; if header + test alone exceed the limit, the prompt is the test
                       item alone
    `ids`, when given, are the tokens of the prompt with every shot (encoded in bulk by the caller).
    """
    if t.fit == "drop_longest_shot":
        header = t.header.format(name=name)
        end = t.item_start + render_item(t, test)
        fixed = len(tokenizer.encode(header)) + len(tokenizer.encode(end))
        if fixed > limit:
            return Fitted("", end, tokenizer.encode(end), 0)
        kept = [(s, len(tokenizer.encode(render_shot(t, s)))) for s in shots]
        while kept and sum(n for _, n in kept) >= limit - fixed:
            longest = max(n for _, n in kept)
            kept = [(s, n) for s, n in kept if n != longest]
        prefix, text = build_prompt(t, name, [s for s, _ in kept], test)
        return Fitted(prefix, text, tokenizer.encode(text), len(kept))
    k = len(shots)
    prefix, text = build_prompt(t, name, shots, test)
    ids = ids if ids is not None else tokenizer.encode(text)
    if t.fit == "drop_last_shot":
        while len(ids) > limit and k > 0:
            k -= 1
            prefix, text = build_prompt(t, name, shots[:k], test)
            ids = tokenizer.encode(text)
    return Fitted(prefix, text, ids, k)


# --------------------------------------------------------------------------- answer tokens

def letter_ids(t: Template, tokenizer) -> list[int] | None:
    """The token id read for each letter, for the letter-logit protocols (None for lm-eval's
    continuation scoring, which depends on the context: see ContinuationEncoder).

    encoded_letter: `tokenizer(L).input_ids[-1]` (Baichuan's scripts, no BOS): "A" -> 92343 for
                    Baichuan 2, "▁A" 703 for Baichuan 1 (its dummy prefix).
    vocab_letter:   `tokenizer.convert_tokens_to_ids(L)`, the bare piece "A" (CMMLU's script): 92343 / 31132.
    """
    if t.scoring == "encoded_letter":
        return [tokenizer.encode(L)[-1] for L in LETTERS]
    if t.scoring == "vocab_letter":
        return [tokenizer.id(L) for L in LETTERS]
    return None


def _newline_is_a_boundary(tokenizer) -> bool:
    """True when no token spans a newline and its neighbours: then the text before and after a
    newline tokenizes independently (BPE merges and unigram segments never cross it)."""
    sp = getattr(tokenizer, "sp", None)
    if sp is None:
        return False
    nl = sp.piece_to_id("\n")
    if sp.id_to_piece(nl) != "\n" or nl not in tokenizer.encode("a\nb"):
        return False
    return all("\n" not in sp.id_to_piece(i) or set(sp.id_to_piece(i)) == {"\n"} for i in range(sp.get_piece_size()))


class ContinuationEncoder:
    """lm-eval's `HFLM._encode_pair` for the four letters of one context.

    Trailing whitespace of the context moves onto the continuation; then
    cont = encode(context + " " + L)[len(encode(context)):]. That costs four extra encodes of the
    whole prompt per question. When newlines are token boundaries (checked once, from the
    vocabulary) the result only depends on the text after the context's last newline, so it is
    computed from that tail and cached (every prompt of a benchmark ends in the same "\\n答案：").
    """

    def __init__(self, tokenizer, delimiter: str = " "):
        self.tok, self.delimiter = tokenizer, delimiter
        self.local = _newline_is_a_boundary(tokenizer)
        self.cache: dict[str, list[list[int]]] = {}

    def context_ids(self, context: str) -> list[int]:
        return self.tok.encode(context.rstrip())

    def __call__(self, context: str, context_ids: list[int] | None = None) -> list[list[int]]:
        stripped = context.rstrip()
        moved = context[len(stripped):] + self.delimiter
        cut = stripped.rfind("\n")
        if self.local and cut >= 0:
            tail = stripped[cut:]
            if tail + moved not in self.cache:
                head = self.tok.encode(tail)
                self.cache[tail + moved] = [self.tok.encode(tail + moved + L)[len(head):] for L in LETTERS]
            return self.cache[tail + moved]
        ctx = context_ids if context_ids is not None else self.tok.encode(stripped)
        return [self.tok.encode(stripped + moved + L)[len(ctx):] for L in LETTERS]
