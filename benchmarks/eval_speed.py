"""5-shot multiple-choice throughput: our batched scorer against an HF-transformers peer, one process.

    python benchmarks/eval_speed.py --device cpu --shape tiny     # CPU smoke run, < 1 minute
    python benchmarks/eval_speed.py                               # CUDA: Baichuan-7B shape, bf16, all three sets
    python benchmarks/eval_speed.py --tasks mmlu --compare 2000

Prompts are the lm-eval protocol's (5-shot, one forward per question) built from the real CSVs and
tokenized with Baichuan-7B's own tokenizer, so prompt lengths are the real ones; weights are random
(speed does not depend on them). Rows, all timed on the same questions:

  ours, shared prefix   score(): length-sorted batches packed to --batch-tokens, LM head on the answer
                        position only, each subject's 5-shot block run once through the KV cache
  ours, whole prompts   the same without the shared block
  hf peer               LlamaForCausalLM of the same shape (SDPA), driven the way lm-eval's HF backend
                        (HFLM._loglikelihood_tokens) does: sorted longest first, fixed --peer-batch-size,
                        right padding, full [B, T, vocab] logits and log-softmax, one forward per question
                        (its one-token-continuation grouping)

Then ours (shared prefix) over the whole split, the number that answers "how long is a 5-shot MMLU":
questions/s end to end (tokenization included) and against the compute floor
sum(2 * N * prompt tokens) / peak (docs: performance.md §6.7).

Data: --data, else $BAICHUAN_EVALDATA, else ../shared/evaldata. Tokenizer: --tokenizer, else
baichuan1/tokenizer.model under $BAICHUAN_ASSETS or ../shared/baichuan-assets. Neither may be
committed (licenses); for a remote GPU machine copy them under the git-ignored out/ and pass
--data out/evaldata --tokenizer out/baichuan1/tokenizer.model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from baichuan.config import preset
from baichuan.eval.data import list_subjects, load_benchmark
from baichuan.eval.harness import plan_benchmark
from baichuan.eval.protocols import template
from baichuan.eval.scoring import score
from baichuan.eval.settings import EvalSettings
from baichuan.model import build
from baichuan.tokenizer import Tokenizer
from baichuan.train.metrics import peak_flops
from common import hf_llama

REPO = Path(__file__).resolve().parents[1]
SHAPES = {  # limit: questions per subject in the whole-split run (None: all); the comparison runs
            # `compare` questions: the first `per_subject` of as many subjects as that takes
    "tiny": dict(preset="tiny", limit=1, compare=8, per_subject=4, peer_batch=4),
    "small": dict(preset="small", limit=10, compare=120, per_subject=10, peer_batch=8),
    "7b": dict(preset="baichuan-7b", limit=None, compare=2000, per_subject=35, peer_batch=16),
}


def default_path(env: str, *parts: str) -> Path:
    return Path(os.environ.get(env, REPO.parent / "shared" / parts[0])).joinpath(*parts[1:])


def peer_score(hf, requests, batch_size, device) -> list[list[float]]:
    """lm-eval HFLM-style: longest first, fixed batch, right padding, full-vocab log-softmax."""
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].tokens))
    out = [None] * len(requests)
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            T = len(requests[chunk[0]].tokens)
            ids = torch.zeros((len(chunk), T), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, :len(requests[i].tokens)] = torch.tensor(requests[i].tokens)
            logp = F.log_softmax(hf(ids.to(device)).logits, dim=-1)
            for row, i in enumerate(chunk):
                out[i] = [logp[row, p, t].item() for p, t in requests[i].picks]
    return out


def comparison_set(task, data, tok, context, n: int, per_subject: int):
    """The first `per_subject` questions of the first subjects, about n in all: a subject's
    questions share its 5-shot block as in a full run (MMLU test has 246 per subject on average)."""
    subjects = list_subjects(task, data)[:max(1, -(-n // per_subject))]
    return plan_benchmark(load_benchmark(task, data, subjects, per_subject), template("lm-eval", task), tok, 5, context)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat: int = 1):
    """(result, best wall time of `repeat` runs): a shared CPU machine has noisy neighbours."""
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return result, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shape", choices=list(SHAPES), help="default: 7b on CUDA, tiny on CPU")
    ap.add_argument("--tasks", default="mmlu,cmmlu,ceval")
    ap.add_argument("--limit", type=int, help="questions per subject for the full run (default: per shape)")
    ap.add_argument("--compare", type=int, help="questions in the three-way comparison (default: per shape)")
    ap.add_argument("--batch-tokens", type=int, default=EvalSettings.batch_tokens)
    ap.add_argument("--peer-batch-size", type=int)
    ap.add_argument("--data", default=str(default_path("BAICHUAN_EVALDATA", "evaldata")))
    ap.add_argument("--tokenizer", default=str(default_path("BAICHUAN_ASSETS", "baichuan-assets", "baichuan1",
                                                            "tokenizer.model")))
    ap.add_argument("--repeat", type=int, help="time each row as the best of N runs (default: 2 on CPU, 1 on CUDA)")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--out", default="out/bench/eval_speed.json")
    args = ap.parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    shape = SHAPES[args.shape or ("7b" if device.type == "cuda" else "tiny")]
    limit = args.limit if args.limit is not None else shape["limit"]
    compare_n = args.compare or shape["compare"]
    peer_bs = args.peer_batch_size or shape["peer_batch"]
    repeat = args.repeat or (1 if device.type == "cuda" else 2)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True

    tok = Tokenizer.load(args.tokenizer)
    cfg = preset(shape["preset"])
    cfg = cfg.replace(vocab_size=max(cfg.vocab_size, tok.vocab_size), max_len=4096)
    torch.manual_seed(0)
    model = build(cfg, device=device, dtype=dtype).eval()
    n_matmul = cfg.flops_per_token(0) / 6            # 2 * N_matmul per token forward, below
    peak = peak_flops(device)
    print(f"{device} {torch.cuda.get_device_name(device) if device.type == 'cuda' else ''} | {cfg.describe()} | "
          f"{str(dtype).removeprefix('torch.')} | tokenizer {args.tokenizer} ({tok.vocab_size})")

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    plans, compare = {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        plans[task] = plan_benchmark(load_benchmark(task, args.data, limit_per_subject=limit),
                                     template("lm-eval", task), tok, 5, cfg.max_len)
        plans[task].seconds = time.perf_counter() - t0
        compare[task] = comparison_set(task, args.data, tok, cfg.max_len, compare_n, shape["per_subject"])

    print(f"prompts built ({time.perf_counter() - started:.0f}s elapsed)", flush=True)
    # warm-up (kernels, allocator) on full-size batches of the first task
    first = plans[tasks[0]]
    score(model, first.requests[:256], first.prefixes, batch_tokens=args.batch_tokens, progress=False)

    rows = []
    for task in tasks:
        plan = plans[task]
        n = len(plan.items)
        tokens = sum(len(r.tokens) for r in plan.requests)
        _, t_score = timed(lambda plan=plan: score(model, plan.requests, plan.prefixes, batch_tokens=args.batch_tokens,
                                                   progress=False), device, repeat)
        floor = 2 * n_matmul * tokens / peak if peak else None
        rows.append({"task": task, "row": f"ours, shared prefix, whole split (limit {limit})", "questions": n,
                     "prompt_tokens": tokens, "plan_s": plan.seconds, "score_s": t_score,
                     "q_per_s": n / (plan.seconds + t_score), "q_per_s_model": n / t_score,
                     "floor_s": floor, "floor_over_measured": floor / t_score if floor else None})
        print(f"{task}: {n} questions, {tokens / n:.0f} tokens/prompt; tokenize {plan.seconds:.1f}s, "
              f"score {t_score:.1f}s" + (f" (floor {floor:.1f}s)" if floor else ""), flush=True)
        sub = compare[task]
        for name, share in (("ours, shared prefix", True), ("ours, whole prompts", False)):
            _, dt = timed(lambda sub=sub, share=share: score(model, sub.requests, sub.prefixes, share_prefix=share,
                                                             batch_tokens=args.batch_tokens, progress=False),
                          device, repeat)
            rows.append({"task": task, "row": name, "questions": len(sub.requests), "score_s": dt,
                         "q_per_s_model": len(sub.requests) / dt})
    if not args.skip_peer:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"peer ({time.perf_counter() - started:.0f}s elapsed)", flush=True)
        hf = hf_llama(cfg, device, dtype).eval()
        for task in tasks:
            reqs = compare[task].requests
            peer_score(hf, reqs[:peer_bs], peer_bs, device)  # warm-up
            _, dt = timed(lambda reqs=reqs: peer_score(hf, reqs, peer_bs, device), device, repeat)
            rows.append({"task": task, "row": f"hf peer (lm-eval HFLM style, batch {peer_bs})", "questions": len(reqs),
                         "score_s": dt, "q_per_s_model": len(reqs) / dt})

    print("\n| task | scorer | questions | model s | questions/s | ours shared / this |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ref = next((x for x in rows if x["task"] == r["task"] and x["row"] == "ours, shared prefix"), None)
        ratio = f"{ref['q_per_s_model'] / r['q_per_s_model']:.2f}x" if ref and "whole split" not in r["row"] else "-"
        print(f"| {r['task']} | {r['row']} | {r['questions']} | {r['score_s']:.2f} | {r['q_per_s_model']:.1f} | {ratio} |")
    for r in rows:
        if "whole split" in r["row"]:
            print(f"{r['task']}: end to end {r['q_per_s']:.1f} questions/s, {(r['plan_s'] + r['score_s']) / 60:.2f} min"
                  + (f"; compute floor {r['floor_s']:.1f}s, floor/measured {r['floor_over_measured']:.2f}"
                     if r["floor_s"] else ""))
    print(f"done in {time.perf_counter() - started:.0f}s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "shape": cfg.describe(), "dtype": str(dtype),
                               "batch_tokens": args.batch_tokens, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
