"""`baichuan index` and `baichuan ask`: the CLI adds both with `add_index_arguments` /
`add_ask_arguments` and calls `run_index` / `run_ask`.

    baichuan index notes/                          # -> notes/.baichuan-index (incremental)
    baichuan ask "谁为关公刮骨疗毒？" --index notes/ --model MODEL
    baichuan ask "..." --index notes/ --retrieve-only   # the passages, no model
"""

from __future__ import annotations

import json
import os
import sys

from baichuan.errors import BaichuanError, bounded
from baichuan.flags import add_device_arguments
from baichuan.rag.passages import MAX_CHARS, OVERLAP_CHARS
from baichuan.rag.terms import MODES


def add_index_arguments(p) -> None:
    p.add_argument("docs", help="folder of .txt/.md/.html/.jsonl documents")
    p.add_argument("--out", help="index folder (default DOCS/.baichuan-index)")
    p.add_argument("--analyzer", choices=MODES, default="jieba",
                   help="Chinese terms: jieba search-mode words (default) or character bigrams")
    p.add_argument("--t2s", action="store_true", help="map traditional to simplified characters first (OpenCC)")
    p.add_argument("--no-stem", action="store_true", help="keep English words unstemmed")
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help="passage size in characters")
    p.add_argument("--overlap-chars", type=int, default=OVERLAP_CHARS, help="overlap between passages")
    p.add_argument("--embed", help="dense index too: 'auto' (a locally installed model) or a "
                                   "sentence-transformers model folder")
    p.add_argument("--embed-languages", help="question languages the dense side serves, e.g. zh,en "
                                             "(default: en for 'auto', an English model; zh,en for a folder)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that split and segment files (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_index(args) -> None:
    from baichuan.rag.build import build_index
    from baichuan.rag.terms import Analyzer
    report = build_index(args.docs, args.out, analyzer=Analyzer(args.analyzer, t2s=args.t2s, stem=not args.no_stem),
                         max_chars=args.max_chars, overlap_chars=args.overlap_chars, embed=args.embed,
                         embed_languages=args.embed_languages.split(",") if args.embed_languages else None,
                         workers=args.workers,
                         progress=not args.quiet)
    print(report.summary())
    if report.bytes_read and report.seconds:
        print(f"read {report.bytes_read / 1e6:.1f} MB at {report.bytes_read / 1e6 / report.seconds:.2f} MB/s")


def add_ask_arguments(p) -> None:
    p.add_argument("question")
    p.add_argument("--index", required=True, help="an index folder, or the documents folder it was built in")
    p.add_argument("--model", help="model directory that writes the answer")
    p.add_argument("--retrieve-only", action="store_true", help="show the retrieved passages, no model")
    p.add_argument("--top-k", type=bounded(int, 1, 100), default=5, help="passages retrieved (default 5)")
    p.add_argument("--max-new-tokens", type=bounded(int, 1), default=256, help="longest answer (default 256)")
    p.add_argument("--min-coverage", type=bounded(float, 0, 1), help="refuse below this share of the question's term weight")
    p.add_argument("--json", action="store_true", help="print the answer, citations and passages as JSON")
    add_device_arguments(p)


def run_ask(args) -> None:
    from baichuan.rag.answer import MIN_COVERAGE, answer, model_generate_fn, retrieve
    from baichuan.rag.index import load_index
    if not args.model and not args.retrieve_only:
        raise BaichuanError("ask: give --model MODEL to answer, or --retrieve-only to see the passages")
    index = load_index(args.index)
    min_coverage = MIN_COVERAGE if args.min_coverage is None else args.min_coverage
    if args.retrieve_only:
        hits, reason = retrieve(index, args.question, args.top_k, min_coverage)
        if args.json:
            passages = [{"rank": h.rank, "score": h.score, "coverage": h.coverage, **h.passage.to_json()} for h in hits]
            print(json.dumps({"passages": passages, "reason": reason}, ensure_ascii=False, indent=1))
            return
        if not hits:
            print(f"nothing relevant: {reason}")
        for h in hits:
            print(f"[{h.rank}] {h.passage.label}  score {h.score:.2f}  coverage {h.coverage:.0%}")
            print("    " + h.passage.text.strip().replace("\n", "\n    "))
        return

    model, tok, params = _load(args)
    result = answer(args.question, index, model_generate_fn(model, tok, params), tok, top_k=args.top_k,
                    max_new_tokens=args.max_new_tokens, max_len=model.cfg.max_len, min_coverage=min_coverage)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return
    print(result.text)
    if result.citations:
        print("\nsources:")
        for c in result.citations:
            print(f"[{c.n}] {c.passage.label}: {c.snippet}")
    elif result.refused and result.reason:
        print(f"({result.reason})", file=sys.stderr)


def _load(args):
    from baichuan.config import load_generation_config
    from baichuan.infer.sampling import SamplingParams
    from baichuan.runtime import load_model_and_tokenizer
    model, tok = load_model_and_tokenizer(args.model, args.device, args.dtype)
    # answers from passages: greedy, with the model's own repetition penalty
    params = SamplingParams.from_request(load_generation_config(args.model), tok.stop_ids, temperature=0.0,
                                         max_new_tokens=args.max_new_tokens)
    return model, tok, params
