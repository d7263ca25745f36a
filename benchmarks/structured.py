"""What grammar-constrained decoding costs per token: the same model and engine, decoding free and
constrained to a JSON schema, at batch 1 and 16, in one run; and llguidance's mask alone. Then
the prefix cache: time to first token of a 50-token question after a 2,000-token shared prefix,
with and without it.

    python benchmarks/structured.py                       # Baichuan 2's tokenizer (125,696 ids) from ../shared
    python benchmarks/structured.py --tokenizer DIR --shape small --new 128 --compile

The model has random weights in the shape given, with the tokenizer's vocabulary (the mask's cost
grows with it). Rows decode greedily, then sample at temperature 1; free rows ignore EOS,
constrained rows stop when their JSON is complete, so each side is timed per generated token.
Every constrained reply is checked to parse and validate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jsonschema
import torch

from baichuan.config import preset
from baichuan.infer.engine import Engine
from baichuan.infer.sampling import SamplingParams
from baichuan.infer.structured import Grammars, closed, fill_masks, json_grammar
from baichuan.model import build
from baichuan.tokenizer import Tokenizer

SHARED_B2 = Path(__file__).resolve().parents[1].parent / "shared" / "baichuan-assets" / "baichuan2"
# long enough replies to time: a list of records, strings bounded so random weights finish them
SCHEMA = {"type": "object", "required": ["items"], "properties": {"items": {
    "type": "array", "minItems": 8, "maxItems": 8, "items": {
        "type": "object", "required": ["城市", "name", "count", "ok"],
        "properties": {"城市": {"enum": ["北京", "上海", "广州", "深圳"]}, "name": {"type": "string", "maxLength": 6},
                       "count": {"type": "integer", "minimum": 0, "maximum": 9999}, "ok": {"type": "boolean"}}}}}}


def decode(engine: Engine, prompt: list[int], params: list[SamplingParams]) -> tuple[float, list]:
    """(seconds, requests) to run all of `params` together from `prompt` until each is done."""
    t = time.perf_counter()
    reqs = [engine.submit(prompt, p) for p in params]
    while not all(r.done for r in reqs):
        engine.step()
    return time.perf_counter() - t, reqs


def mask_cost(grammars: Grammars, grammar, replies: list[list[int]]) -> float:
    """Microseconds llguidance takes per token to compute a row's mask, replaying the replies."""
    mask = torch.full((1, -(-grammars.vocab // 32)), -1, dtype=torch.int32)
    n, t = 0, time.perf_counter()
    for reply in replies:
        matcher = grammar.start()
        for token in reply:
            fill_masks([(matcher, 0)], mask)
            matcher.consume_token(token)
            n += 1
    return (time.perf_counter() - t) / max(n, 1) * 1e6


def first_token_seconds(engine: Engine, prompt: list[int]) -> float:
    t = time.perf_counter()
    req = engine.submit(prompt, SamplingParams(max_new_tokens=1, eos_token_ids=(-1,)))
    while not req.done:
        engine.step()
    return time.perf_counter() - t


def prefix_ttft(model, vocab: int, prefix: int = 2000, question: int = 50, runs: int = 3) -> dict:
    """Best-of-`runs` time to first token of prefix + a new question, without and with the cache
    (warmed by an earlier request with the same prefix and another question)."""
    g = torch.Generator().manual_seed(1)
    shared = torch.randint(3, vocab, (prefix,), generator=g).tolist()
    questions = [torch.randint(3, vocab, (question,), generator=g).tolist() for _ in range(runs + 1)]
    out = {}
    for name, nbytes in (("without", 0), ("with", 4 << 30)):
        engine = Engine(model, max_batch=1, max_len=prefix + question + 64, prefix_cache_bytes=nbytes)
        first_token_seconds(engine, shared + questions[-1])  # computes (and, with the cache, stores) the prefix
        out[name] = min(first_token_seconds(engine, shared + q) for q in questions[:runs])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", default=str(SHARED_B2), help="a tokenizer directory or tokenizer.model")
    ap.add_argument("--shape", default="small", help="a model preset (random weights)")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--new", type=int, default=160, help="most new tokens per row")
    ap.add_argument("--compile", action="store_true", help="compile the decode step (both sides)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = Tokenizer.load(args.tokenizer)
    model = build(preset(args.shape, vocab_size=tok.vocab_size, max_len=1024)).eval()
    grammars = Grammars(tok, tok.vocab_size, tok.stop_ids)
    t = time.perf_counter()
    grammar = grammars.compile(json_grammar(SCHEMA))
    compile_ms = (time.perf_counter() - t) * 1e3  # the first compile also builds the llguidance tokenizer
    batches = [int(b) for b in args.batches.split(",")]
    engine = Engine(model, max_batch=max(batches), max_len=1024, compile=args.compile)
    prompt = tok.encode("请把下面的记录整理成 JSON：北京 3 家，上海 5 家。")
    rows, replies = [], []
    print(f"{args.shape}, vocab {tok.vocab_size}, {'compiled' if args.compile else 'eager'}, "
          f"{torch.get_num_threads()} threads; grammar compile {compile_ms:.0f} ms (first, with the tokenizer)")
    print(f"{'decode':>7} {'batch':>5} {'free ms/tok':>12} {'constrained ms/tok':>19} {'ratio':>6} {'valid':>6}")
    for kind, sampled in (("greedy", False), ("sampled", True)):
        free = [SamplingParams(max_new_tokens=args.new, do_sample=sampled, seed=i, eos_token_ids=(-1,))
                for i in range(max(batches))]
        bound = [SamplingParams(max_new_tokens=args.new * 4, do_sample=sampled, seed=i, grammar=grammar,
                                eos_token_ids=tok.stop_ids) for i in range(max(batches))]
        decode(engine, prompt, free)   # warm-up: compile, first touch of the cache
        decode(engine, prompt, bound)
        for b in batches:
            secs, reqs = decode(engine, prompt, free[:b])
            free_ms = secs / sum(len(r.tokens) for r in reqs) * 1e3
            secs, reqs = decode(engine, prompt, bound[:b])
            bound_ms = secs / sum(len(r.tokens) for r in reqs) * 1e3
            valid = 0
            for r in reqs:
                try:
                    jsonschema.validate(json.loads(tok.decode(r.tokens)), closed(SCHEMA))
                    valid += 1
                except (ValueError, jsonschema.ValidationError):
                    pass
            replies += [r.tokens for r in reqs]
            rows.append({"decode": kind, "batch": b, "free_ms_per_token": free_ms,
                         "constrained_ms_per_token": bound_ms, "ratio": bound_ms / free_ms, "valid": f"{valid}/{b}"})
            print(f"{kind:>7} {b:>5} {free_ms:>12.2f} {bound_ms:>19.2f} {bound_ms / free_ms:>6.2f} {valid:>4}/{b}")
    mask_us = mask_cost(grammars, grammar, replies)
    print(f"llguidance mask alone: {mask_us:.0f} us per token per row")
    ttft = prefix_ttft(model, tok.vocab_size)
    print(f"prefix cache, 2,000-token shared prefix + 50-token question: time to first token "
          f"{ttft['without'] * 1e3:.0f} ms without, {ttft['with'] * 1e3:.0f} ms with "
          f"({ttft['without'] / ttft['with']:.1f}x)")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "mask_us_per_token": mask_us, "grammar_compile_ms":
                                              compile_ms, "prefix_ttft_s": ttft}, indent=2))


if __name__ == "__main__":
    main()
