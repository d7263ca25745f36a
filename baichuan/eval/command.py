"""`baichuan eval`: multiple choice, bits per byte and the tokenizer report behind one command.

    baichuan eval MODEL --tasks ceval,cmmlu,mmlu --shots 5 [--protocol lm-eval|baichuan|official]
    baichuan eval MODEL --tasks bpb --text held-out.txt docs.jsonl
    baichuan eval MODEL --tasks tokenizer [--text FILES] [--baichuan-assets DIR]
    baichuan eval MODEL --tasks ceval,mmlu --subjects computer_network,virology --limit 20 --out out/eval

The CLI adds the subcommand with `add_arguments(parser)` and calls `run(args)`; speedrun and adapt
call `evaluate(...)` with a model already in memory. How to evaluate is one `EvalSettings`
(settings.py), whose defaults are the flags' defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from baichuan.errors import BaichuanError, bounded
from baichuan.eval.settings import EvalSettings
from baichuan.flags import add_device_arguments

MC_TASKS = ("ceval", "cmmlu", "mmlu")
ALL_TASKS = MC_TASKS + ("bpb", "tokenizer")

# A short, category-spread subset for the end of `baichuan speedrun` (C-Eval val and MMLU test).
SPEEDRUN_SUBJECTS = {
    "ceval": ["computer_network", "college_economics", "modern_chinese_history", "physician"],
    "mmlu": ["high_school_physics", "high_school_macroeconomics", "world_religions", "nutrition"],
}


def bundled_texts() -> dict[str, list[str]]:
    """The bundled corpus's held-out zh and en documents (whole works never trained on)."""
    from baichuan import corpus
    return {f"held-out {lang}": list(corpus.iter_texts(lang=lang, split="heldout")) for lang in ("zh", "en")}


def file_texts(paths) -> dict[str, list[str]]:
    from baichuan.eval.bpb import expand_paths, read_texts
    return {str(p): read_texts(p) for p in expand_paths(paths)}


def evaluate(model, tokenizer, tasks=MC_TASKS, *, settings: EvalSettings = EvalSettings(), data_dir=None,
             texts: dict[str, list[str]] | None = None, model_name: str | None = None,
             skip_missing_data: bool = False) -> dict:
    """Multiple-choice tasks (run_eval) and "bpb" over `texts` ({name: documents}; default: the
    bundled held-out text) in one results dict, which `report.format_table` prints.
    With skip_missing_data, no evaluation data (no --data, no BAICHUAN_EVALDATA) skips the
    multiple-choice tasks with a note in results["skipped"] instead of failing."""
    from baichuan.eval.bpb import bits_per_byte
    from baichuan.eval.data import resolve_data_dir
    from baichuan.eval.harness import run_eval

    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        raise BaichuanError(f"unknown task {unknown[0]!r}; choose from {', '.join(ALL_TASKS)}")
    mc = [t for t in tasks if t in MC_TASKS]
    results: dict = {"protocol": settings.protocol, "shots": settings.shots, "model": model_name, "tasks": {}}
    if mc:
        try:
            data_dir = resolve_data_dir(data_dir)
        except BaichuanError as e:
            if not skip_missing_data:
                raise
            results["skipped"] = {"tasks": mc, "reason": str(e)}
            mc = []
    if mc:
        results = run_eval(model, tokenizer, mc, data_dir=data_dir, settings=settings, model_name=model_name)
    if "bpb" in tasks:
        texts = texts if texts is not None else bundled_texts()
        # bpb keeps its own batch size: settings.batch_tokens sizes the multiple-choice scorer
        results["bpb"] = {name: bits_per_byte(model, tokenizer, docs, context=settings.context,
                                              max_tokens=settings.bpb_max_tokens, progress=settings.progress,
                                              desc=name)
                          for name, docs in texts.items()}
    return results


def tokenizer_report(tokenizer, texts: dict[str, list[str]] | None = None, baichuan_assets: str | None = None,
                     name: str = "model") -> list[dict]:
    """The compression report (tokenizer_report.py) of the model's tokenizer beside the released
    Baichuan tokenizers when available; texts default to the bundled held-out zh/en."""
    from baichuan.eval.tokenizer_report import compression_report, reference_tokenizers
    from baichuan.tokenizer import Tokenizer
    if texts is None:
        texts = {lang: docs for lang, docs in zip(("zh", "en"), bundled_texts().values())}
    toks = {name: tokenizer, **{n: Tokenizer.load(p) for n, p in reference_tokenizers(baichuan_assets).items()}}
    return compression_report(toks, texts)


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(p) -> None:
    default = EvalSettings()
    p.add_argument("model", help="model directory: ours, a released Baichuan checkpoint, or a quantized one")
    p.add_argument("--tasks", default="ceval,cmmlu,mmlu",
                   help=f"comma-separated, from: {', '.join(ALL_TASKS)} (default: ceval,cmmlu,mmlu)")
    p.add_argument("--protocol", choices=("lm-eval", "baichuan", "official"), default=default.protocol,
                   help="lm-eval: lm-evaluation-harness ceval-valid/cmmlu/mmlu; baichuan: Baichuan's released "
                        "scripts (CMMLU: its official script); official: each benchmark's own script")
    p.add_argument("--shots", type=bounded(int, 0), default=default.shots,
                   help=f"few-shot examples per prompt (default {default.shots})")
    p.add_argument("--data", help="folder holding ceval/, cmmlu/, mmlu/ (default: $BAICHUAN_EVALDATA)")
    p.add_argument("--subjects", help="comma-separated subjects (default: all)")
    p.add_argument("--limit", type=bounded(int, 1), help="score only the first N questions of each subject")
    p.add_argument("--text", nargs="+", metavar="FILE", help="bpb / tokenizer: .txt or .jsonl (\"text\") files or "
                   "folders (default: the bundled held-out zh/en text)")
    p.add_argument("--max-tokens", type=bounded(int, 1), help="bpb: score whole documents up to about N tokens per text")
    p.add_argument("--context", type=bounded(int, 2), help="context length in tokens (default: the model's)")
    p.add_argument("--batch-tokens", type=bounded(int, 1), default=default.batch_tokens,
                   help=f"tokens per forward batch (default {default.batch_tokens})")
    p.add_argument("--seed", type=int, default=default.seed,
                   help="shot shuffle of the baichuan protocol's C-Eval prompts")
    p.add_argument("--no-share-prefix", action="store_true", help="run every prompt whole (no shared few-shot K/V)")
    add_device_arguments(p)
    p.add_argument("--baichuan-assets", help="tokenizer task: folder with baichuan1/ and baichuan2/ tokenizer.model")
    p.add_argument("--predictions", action="store_true", help="also write predictions.jsonl (with --out)")
    p.add_argument("--out", help="write results.json, results.md and results.png here")


def run(args) -> dict:
    import json

    from baichuan.data.writers import atomic_write_text
    from baichuan.eval.report import format_table, write_results
    from baichuan.eval.tokenizer_report import format_report
    from baichuan.runtime import load_model_and_tokenizer
    from baichuan.tokenizer import Tokenizer

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown or not tasks:
        raise BaichuanError(f"--tasks: unknown task {unknown[0] if unknown else ''!r}; choose from {', '.join(ALL_TASKS)}")
    if args.shots < 0:
        raise BaichuanError("--shots must be >= 0")
    path = Path(args.model)
    if not path.is_dir():
        raise BaichuanError(f"{path}: no such model directory")
    if args.predictions and not args.out:
        raise BaichuanError("--predictions needs --out (predictions.jsonl is written there)")
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()] if args.subjects is not None else None
    if subjects == []:
        raise BaichuanError("--subjects: no subject given")
    if args.out:  # checked before the model loads: a run must not end in an unwritable folder
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BaichuanError(f"--out {out}: cannot be a folder ({e.strerror})") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise BaichuanError(f"--out {out}: not writable")
    texts = file_texts(args.text) if args.text else None
    results: dict = {}
    if all(t == "tokenizer" for t in tasks):
        tokenizer = Tokenizer.load(path)
    else:
        model, tokenizer = load_model_and_tokenizer(path, args.device, args.dtype)
        settings = EvalSettings(protocol=args.protocol, shots=args.shots, subjects=subjects,
                                limit_per_subject=args.limit, context=args.context, batch_tokens=args.batch_tokens,
                                seed=args.seed, share_prefix=not args.no_share_prefix,
                                keep_predictions=args.predictions, bpb_max_tokens=args.max_tokens)
        results = evaluate(model, tokenizer, [t for t in tasks if t != "tokenizer"], settings=settings,
                           data_dir=args.data, texts=texts, model_name=str(path))
        print(format_table(results))
    if "tokenizer" in tasks:
        rows = tokenizer_report(tokenizer, texts, args.baichuan_assets, name=path.resolve().name)
        results["tokenizer"] = rows
        print(format_report(rows))
    if args.out:
        paths = write_results(results, args.out) if results.get("tasks") or results.get("bpb") else {}
        if "tokenizer" in results:
            paths["tokenizer"] = out / "tokenizer_report.json"
            atomic_write_text(paths["tokenizer"], json.dumps(results["tokenizer"], indent=1, ensure_ascii=False))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return results
