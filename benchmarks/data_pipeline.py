"""Data pipeline throughput on the bundled corpus: MB/s per core for each step, and end to end
for each executor (one process, a local process pool, a local Ray instance).

    python benchmarks/data_pipeline.py [--workers 2] [--out out/bench/data_pipeline.json]

Per-step numbers run every step over every document in one process (UTF-8 MB of the step's
input per second of that step's time). End-to-end numbers run `baichuan.data.pipeline.run` (clean,
document-level dedup, tokenization) from scratch and divide the input's UTF-8 MB by wall time x
workers. The machine's other load shows up in both; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from baichuan import corpus
from baichuan.data import pipeline
from baichuan.data.document import Document


def per_step(steps_spec: list[dict]) -> list[dict]:
    steps = pipeline.build_steps(steps_spec)
    docs = [Document(text=d["text"], id=d["id"], meta={"source": d["source"]}) for d in corpus.iter_documents()]
    timing = {s.name: [0.0, 0] for s in steps}
    for doc in docs:
        for step in steps:
            t = time.perf_counter()
            out = step(doc)
            timing[step.name][0] += time.perf_counter() - t
            timing[step.name][1] += len(doc.text.encode("utf-8"))
            if isinstance(out, str):
                break
            doc = out
    return [{"step": name, "mb": b / 1e6, "seconds": s, "mb_per_s": b / 1e6 / s} for name, (s, b) in timing.items()]


def end_to_end(executor: str, workers: int, tokenizer: str, tmp: Path) -> dict:
    out = tmp / f"run-{executor}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = pipeline.config_from_dict(dict(inputs=[str(f) for f in corpus.files()], output=str(out),
                                         tokenizer=tokenizer, executor=executor, workers=workers))
    mb = sum(len(t.encode("utf-8")) for t in corpus.iter_texts()) / 1e6
    if executor == "ray":  # Ray's start-up is a one-off per cluster, not per run
        import ray
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    t = time.perf_counter()
    pipeline.run(cfg, progress=False)
    wall = time.perf_counter() - t
    n = 1 if executor == "local" else workers
    return {"executor": executor, "workers": n, "mb": mb, "seconds": wall, "mb_per_s": mb / wall,
            "mb_per_s_per_core": mb / wall / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="out/bench/data_pipeline.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        steps = per_step([{"name": n} for n in pipeline.DEFAULT_STEPS])
        print("| step | MB | s | MB/s (1 core) |\n|---|---:|---:|---:|")
        for r in steps:
            print(f"| {r['step']} | {r['mb']:.1f} | {r['seconds']:.2f} | {r['mb_per_s']:.1f} |")
        from baichuan.tokenizer import train_tokenizer
        text = tmp / "tok.txt"
        text.write_text("\n".join(t for _, t in zip(range(1500), corpus.iter_texts())), encoding="utf-8")
        train_tokenizer([text], tmp / "tok", vocab_size=16000, progress=False)
        runs = [end_to_end(ex, args.workers, str(tmp / "tok"), tmp) for ex in ("local", "pool", "ray")]
        print("\n| executor | workers | MB | s | MB/s | MB/s per core |\n|---|---:|---:|---:|---:|---:|")
        for r in runs:
            print(f"| {r['executor']} | {r['workers']} | {r['mb']:.1f} | {r['seconds']:.1f} | {r['mb_per_s']:.2f} "
                  f"| {r['mb_per_s_per_core']:.2f} |")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"steps": steps, "end_to_end": runs}, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
