"""C-Eval / CMMLU / MMLU accuracy of a model under one protocol: `run_eval`.

    from baichuan.eval.harness import run_eval
    from baichuan.eval.report import format_table
    from baichuan.eval.settings import EvalSettings
    results = run_eval(model, tokenizer, ["ceval", "mmlu"], data_dir=data_dir, settings=EvalSettings(shots=5))
    print(format_table(results))

`model` is anything with `model(input_ids) -> logits [B, T, vocab]`; a Baichuan model (or one with
the same `model.model` / `model.lm_head` split, e.g. quantized) gets the fast path: LM head on
the answer position only, and the few-shot block of a subject computed once (see scoring.py).
The protocols themselves (prompt strings, shots, answer tokens, truncation, averages) are data
in protocols.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from baichuan.errors import BaichuanError
from baichuan.eval.data import (
    LAYOUTS,
    LETTERS,
    Benchmark,
    list_subjects,
    load_benchmark,
)
from baichuan.eval.protocols import (
    LMEVAL_MMLU_GROUPS,
    LMEVAL_MMLU_MOVED,
    ContinuationEncoder,
    Template,
    build_prompt,
    fit_prompt,
    letter_ids,
    shot_order,
    subject_name,
    template,
)
from baichuan.eval.scoring import Request, model_device, score
from baichuan.eval.settings import EvalSettings, model_context

TASKS = tuple(LAYOUTS)


@dataclass
class Item:
    """One scored question: where its four choice scores come from (request, pick) pairs."""
    subject: str
    index: int
    gold: str
    refs: list[list[tuple[int, int]]]
    shots: int
    cut: int
    tokens: int


@dataclass
class Plan:
    requests: list[Request] = field(default_factory=list)
    prefixes: dict[str, list[int]] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)


def plan_benchmark(bench: Benchmark, t: Template, tokenizer, shots: int, context: int,
                   seed: int = EvalSettings.seed, progress: bool = False) -> Plan:
    """Prompts -> token ids -> forward requests, with the bookkeeping to turn picks back into choices."""
    plan = Plan()
    letters = letter_ids(t, tokenizer)
    conts = ContinuationEncoder(tokenizer) if letters is None else None
    limit = min(t.fit_limit or context, context)
    questions = [(s, i, q) for s in bench.subjects for i, q in enumerate(bench.questions[s])]
    chosen = [[bench.shots[s][j] for j in shot_order(t, len(bench.shots[s]), shots, seed, s, i)] for s, i, _ in questions]
    names = {s: subject_name(t, s, bench.names[s]) for s in bench.subjects}
    bulk = [None] * len(questions)
    if t.fit != "drop_longest_shot":  # whole prompts in bulk (SentencePiece threads); the few too long are refit
        texts = [build_prompt(t, names[s], c, q)[1] for (s, _, q), c in zip(questions, chosen)]
        bulk = tokenizer.encode_batch(texts) if hasattr(tokenizer, "encode_batch") else map(tokenizer.encode, texts)
    bar = tqdm(total=len(questions), desc=f"{bench.layout.title} prompts", unit="q", disable=not progress, leave=False)
    for (subject, index, q), shots_q, ids in zip(questions, chosen, bulk):
        fitted = fit_prompt(t, tokenizer, names[subject], shots_q, q, limit, ids)
        if fitted.prefix and fitted.prefix not in plan.prefixes:
            plan.prefixes[fitted.prefix] = tokenizer.encode(fitted.prefix)
        key = fitted.prefix or None
        if letters is not None:
            refs, cut = _letter_requests(plan, fitted.ids, letters, context, key)
        else:
            ctx = fitted.ids if fitted.text == fitted.text.rstrip() else conts.context_ids(fitted.text)
            refs, cut = _continuation_requests(plan, ctx, conts(fitted.text, ctx), context, key)
        plan.items.append(Item(subject, index, q.answer, refs, fitted.shots, cut, len(fitted.ids)))
        bar.update()
    bar.close()
    return plan


def _letter_requests(plan: Plan, ids: list[int], letters: list[int], context: int, key):
    """One request: the prompt, and each letter's token at its last position. A prompt still too
    long after dropping shots keeps its last `context` tokens (the model cannot see more)."""
    cut = max(0, len(ids) - context)
    ids = ids[cut:]
    plan.requests.append(Request(ids, [(len(ids) - 1, tid) for tid in letters], key))
    r = len(plan.requests) - 1
    return [[(r, c)] for c in range(len(letters))], cut


def _continuation_requests(plan: Plan, ctx: list[int], conts: list[list[int]], context: int, key):
    """lm-eval's loglikelihood requests: input (ctx + cont)[-(context+1):][:-1], the sum of the
    continuation tokens' log-probs. Choices whose inputs coincide (always, when every continuation
    is one token) share one request, so a question costs one forward."""
    by_input: dict[tuple, int] = {}
    refs, cut = [], 0
    for cont in conts:
        if not cont:
            raise BaichuanError("an answer continuation encodes to no tokens")
        whole = (ctx + cont)[-(context + 1):]
        cut = max(cut, len(ctx) + len(cont) - len(whole))
        inp = tuple(whole[:-1])
        if inp not in by_input:
            plan.requests.append(Request(list(inp), [], key))
            by_input[inp] = len(plan.requests) - 1
        r = by_input[inp]
        req = plan.requests[r]
        first = len(inp) - len(cont)
        mine = []
        for j, tid in enumerate(cont):
            if (first + j, tid) not in req.picks:
                req.picks.append((first + j, tid))
            mine.append((r, req.picks.index((first + j, tid))))
        refs.append(mine)
    return refs, cut


def _categories(bench: Benchmark, t: Template) -> dict[str, list[str]]:
    if t.categories == "lm-eval":
        return {s: [LMEVAL_MMLU_MOVED.get(s) or LMEVAL_MMLU_GROUPS[c] for c in cats]
                for s, cats in bench.categories.items()}
    return bench.categories


def summarize(per_subject: dict[str, tuple[int, int]], categories: dict[str, list[str]], headline: str) -> dict:
    """Subject, category and overall accuracy from (correct, total) per subject.

    micro: correct / questions over the group; macro: the mean of the subjects' accuracies.
    `acc` is the headline (the protocol's average). A subject may sit in two categories (CMMLU's
    "China specific" overlaps the others) and then counts in both."""
    subjects = {s: {"n": n, "correct": c, "acc": c / n, "categories": categories[s]}
                for s, (c, n) in per_subject.items()}

    def group(members):
        n = sum(subjects[s]["n"] for s in members)
        correct = sum(subjects[s]["correct"] for s in members)
        micro, macro = correct / n, sum(subjects[s]["acc"] for s in members) / len(members)
        return {"subjects": len(members), "n": n, "correct": correct, "acc_micro": micro, "acc_macro": macro,
                "acc": micro if headline == "micro" else macro}

    names = list(dict.fromkeys(c for s in subjects for c in categories[s]))
    cats = {c: group([s for s in subjects if c in categories[s]]) for c in names}
    return {**group(list(subjects)), "subjects": subjects, "categories": cats}


def evaluate_benchmark(model, tokenizer, bench: Benchmark, *, settings: EvalSettings = EvalSettings()) -> dict:
    """One loaded benchmark's accuracy (summarize) with the record of how it was scored."""
    protocol, shots = settings.protocol, settings.shots
    t = template(protocol, bench.layout.name)
    context = settings.context or model_context(model)
    started = time.time()
    plan = plan_benchmark(bench, t, tokenizer, shots, context, settings.seed, settings.progress)
    planned = time.time()
    logps = score(model, plan.requests, plan.prefixes, batch_tokens=settings.batch_tokens,
                  share_prefix=settings.share_prefix, progress=settings.progress, desc=bench.layout.title)
    per_subject: dict[str, list[int]] = {s: [0, 0] for s in bench.subjects}
    predictions = []
    for item in plan.items:
        scores = [sum(logps[r][k] for r, k in refs) for refs in item.refs]
        pred = LETTERS[scores.index(max(scores))]   # ties: the first, as np.argmax
        per_subject[item.subject][0] += pred == item.gold
        per_subject[item.subject][1] += 1
        if settings.keep_predictions:
            predictions.append({"subject": item.subject, "index": item.index, "gold": item.gold, "pred": pred,
                                "logprobs": scores, "shots": item.shots, "cut": item.cut})
    out = summarize({s: tuple(v) for s, v in per_subject.items()}, _categories(bench, t), t.aggregate)
    lengths = [it.tokens for it in plan.items]
    out.update({
        "benchmark": bench.layout.title, "split": bench.layout.eval_split, "protocol": protocol,
        "template": t.source, "headline": t.aggregate, "shots": shots,
        "answer_tokens": _describe_answer_tokens(t, tokenizer, plan),
        "prompts": {"mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths),
                    "fewer_shots": sum(it.shots < shots for it in plan.items),
                    "left_truncated": sum(it.cut > 0 for it in plan.items),
                    "forwards": len(plan.requests)},
        "data": {"files": dict(sorted(bench.files.items())), "sha256": bench.checksum},
        "seconds": {"prompts": planned - started, "scoring": time.time() - planned},
    })
    if settings.keep_predictions:
        out["predictions"] = predictions
    return out


def _describe_answer_tokens(t: Template, tokenizer, plan: Plan) -> dict:
    """Which token(s) were scored for each letter (first question's, for continuations), for the record."""
    ids = letter_ids(t, tokenizer)
    if ids is not None:
        return {"scoring": t.scoring, "ids": dict(zip(LETTERS, ids))}
    item = plan.items[0]
    conts = [[plan.requests[r].picks[k][1] for r, k in refs] for refs in item.refs]
    return {"scoring": "continuation", "ids": dict(zip(LETTERS, conts)),
            "single_token": all(len(c) == 1 for c in conts)}


def _subjects_per_task(tasks, subjects, data_dir) -> dict:
    """{task: subjects or None (all)}. A list applies to every task: each task keeps the names it
    has, a task with none of them is left out, and a name no task has is an error."""
    if subjects is None:
        return dict.fromkeys(tasks)
    if isinstance(subjects, dict):
        return {t: subjects.get(t) for t in tasks}
    wanted = list(subjects)
    known = {t: set(list_subjects(t, data_dir)) for t in tasks}
    missing = [s for s in wanted if not any(s in k for k in known.values())]
    if missing:
        raise BaichuanError(f"subject {missing[0]!r} is in none of the tasks {', '.join(tasks)}")
    return {t: [s for s in wanted if s in known[t]] for t in tasks if any(s in known[t] for s in wanted)}


def run_eval(model, tokenizer, tasks=TASKS, *, data_dir=None, settings: EvalSettings = EvalSettings(),
             model_name: str | None = None) -> dict:
    """Evaluate `model` on `tasks` (any of "ceval", "cmmlu", "mmlu") and return the results dict.

    settings.subjects: None (all), {task: [subjects]}, or a list applied to every task (a task with
    none of them is left out; a name that no task has is an error). model_name: for the record.
    """
    protocol, shots, limit_per_subject = settings.protocol, settings.shots, settings.limit_per_subject
    unknown = [t for t in tasks if t not in LAYOUTS]
    if unknown:
        raise BaichuanError(f"unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
    template(protocol, "mmlu")  # validates the protocol name before any work
    per_task = _subjects_per_task(tasks, settings.subjects, data_dir)
    was_training = getattr(model, "training", False)
    model.eval()
    started = time.time()
    context = settings.context or model_context(model)
    param = next(iter(model.parameters()), None)
    cfg = getattr(model, "cfg", None)
    results = {"protocol": protocol, "shots": shots, "model": model_name,
               "model_config": cfg.describe() if hasattr(cfg, "describe") else None,
               "device": str(model_device(model)),
               "dtype": str(param.dtype).removeprefix("torch.") if param is not None else None,
               "max_length": context, "limit_per_subject": limit_per_subject,  # lm-eval's name for the context
               "seed": settings.seed if protocol == "baichuan" else None, "tasks": {}}
    benches = {task: load_benchmark(task, data_dir, chosen, limit_per_subject) for task, chosen in per_task.items()}
    for bench in benches.values():  # all data is read and checked before the first question is scored
        few = next((s for s in bench.subjects if len(bench.shots[s]) < shots), None)
        if few is not None:
            raise BaichuanError(f"{bench.layout.title} {few}: {shots} shots asked for, but "
                                f"{bench.layout.file.format(split=bench.layout.shot_split, subject=few)} has "
                                f"{len(bench.shots[few])} questions")
    try:
        for task, bench in benches.items():
            results["tasks"][task] = evaluate_benchmark(model, tokenizer, bench, settings=settings)
    finally:
        model.train(was_training)
    questions = sum(r["n"] for r in results["tasks"].values())
    results["seconds"] = time.time() - started
    results["questions"] = questions
    results["questions_per_s"] = questions / results["seconds"] if results["seconds"] else None
    if torch.cuda.is_available() and results["device"].startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    return results
