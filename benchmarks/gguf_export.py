"""GGUF export: what each type costs in size and quality, and what exporting a released-size model
costs in memory. llama.cpp (llama-cpp-python) runs every file; nothing here is our own inference.

    python benchmarks/gguf_export.py --model out/speedrun/sft/model        # quality of each type
    python benchmarks/gguf_export.py --released-width baichuan2-13b        # streaming: peak RSS

Quality: the model is exported as f32, f16, bf16, q8_0, q4_0 and q4_k_m; llama.cpp scores the
held-out corpus text with each file; printed per type: file size, bits per weight, perplexity,
and the share of positions whose argmax equals the f32 file's; first, our own fp32 perplexity on
the same windows (the f32 file's should equal it).

Streaming: a released-format directory (pytorch_model-*.bin shards, bf16) of the given family's
full width and `--layers` layers (random weights, the released tokenizer from BAICHUAN_ASSETS) is
exported in a subprocess; printed: input size, output size, seconds, and the subprocess's peak
RSS against the size of its largest tensor and of the whole model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from baichuan import corpus
from baichuan.checkpoint import load_pretrained
from baichuan.config import preset, to_hf_dict
from baichuan.gguf import OUTTYPES
from baichuan.gguf.export import export_gguf
from baichuan.model import lm_loss
from baichuan.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]


def heldout_ids(tok: Tokenizer, n_tokens: int, ctx: int) -> list[list[int]]:
    """Windows of `ctx` tokens of held-out text, zh and en alternating, `n_tokens` in all."""
    streams = {lang: [i for t in corpus.iter_texts(lang=lang, split="heldout") for i in tok.encode(t) + [tok.eos_id]]
               for lang in ("zh", "en")}
    windows = []
    for k in range(n_tokens // ctx):
        s = streams["zh" if k % 2 == 0 else "en"]
        start = (k // 2) * ctx
        if start + ctx <= len(s):
            windows.append(s[start:start + ctx])
    return windows


def llama_scores(path: Path, windows: list[list[int]], ctx: int) -> tuple[float, list[np.ndarray]]:
    """(perplexity, argmax per window) of the GGUF at `path` on the windows, computed by llama.cpp."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=ctx, n_batch=ctx, n_threads=os.cpu_count(),
                          logits_all=True, verbose=False)
    nll, count, argmax = 0.0, 0, []
    for ids in windows:
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[:len(ids)], dtype=np.float64)
        logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        nll += float((logz[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]).sum())
        count += len(ids) - 1
        argmax.append(logits.argmax(-1))
    llm.close()
    return math.exp(nll / count), argmax


def quality(model_dir: Path, out: Path, n_tokens: int, ctx: int) -> list[dict]:
    tok = Tokenizer.load(model_dir)
    windows = heldout_ids(tok, n_tokens, ctx)
    model = load_pretrained(model_dir)
    with torch.no_grad():
        nll = sum(float(lm_loss(model(torch.tensor([w]))[0, :-1], torch.tensor(w[1:]))) * (len(w) - 1) for w in windows)
    ours = math.exp(nll / sum(len(w) - 1 for w in windows))
    print(f"ours (PyTorch, fp32): ppl {ours:9.3f} on {len(windows)} windows of {ctx} held-out tokens", flush=True)
    params = None
    rows, reference = [{"outtype": "ours-fp32", "perplexity": ours}], None
    for outtype in OUTTYPES:
        r = export_gguf(model_dir, out / f"model-{outtype}.gguf", outtype, progress=False)
        if params is None:
            import gguf
            params = sum(int(np.prod(t.shape)) for t in gguf.GGUFReader(r.path).tensors)
        ppl, argmax = llama_scores(r.path, windows, ctx)
        reference = reference or argmax
        agree = float(np.mean(np.concatenate([a == b for a, b in zip(argmax, reference)])))
        rows.append({"outtype": outtype, "bytes": r.bytes, "bits_per_weight": 8 * r.bytes / params,
                     "perplexity": ppl, "argmax_agreement_vs_f32": agree, "export_seconds": r.seconds})
        print(f"{outtype:7s} {r.bytes / 1e6:9.1f} MB  {8 * r.bytes / params:5.2f} bpw  ppl {ppl:9.3f}  "
              f"argmax = f32 on {100 * agree:5.1f}%  (export {r.seconds:.1f} s)", flush=True)
    return rows


def released_dir(family: str, layers: int, out: Path) -> tuple[Path, int, int]:
    """A released-format directory (bf16 .bin shards, one per layer), written a tensor at a time;
    (path, total bytes, largest tensor bytes)."""
    cfg = preset(family, num_layers=layers)
    tok_name = "baichuan2" if cfg.vocab_size == 125696 else "baichuan1"
    assets = Path(os.environ.get("BAICHUAN_ASSETS", REPO.parent / "shared" / "baichuan-assets"))
    tok = Tokenizer.load(assets / tok_name / "tokenizer.model")
    d = out / f"{family}-{layers}l"
    d.mkdir(parents=True, exist_ok=True)
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    groups = [{"model.embed_tokens.weight": (v, h)}]
    for i in range(layers):
        p = f"model.layers.{i}."
        groups.append({p + "self_attn.W_pack.weight": (3 * h, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                       p + "mlp.down_proj.weight": (h, f), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    groups.append({"model.norm.weight": (h,), "lm_head.weight": (v, h)})
    weight_map, total, largest = {}, 0, 0
    g = torch.Generator().manual_seed(0)
    for k, group in enumerate(groups, 1):
        name = f"pytorch_model-{k:05d}-of-{len(groups):05d}.bin"
        shard = {n: (torch.randn(s, generator=g) * 0.02 if len(s) == 2 else torch.ones(s)).to(torch.bfloat16)
                 for n, s in group.items()}
        torch.save(shard, d / name)
        weight_map.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * 2 for t in shard.values())
        largest = max(largest, *(t.numel() * 2 for t in shard.values()))
        del shard
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                "weight_map": weight_map}))
    hf = to_hf_dict(cfg, torch_dtype="bfloat16")
    for key in ("position_embedding", "norm_head", "rope_fp32", "alibi_bias", "z_loss_weight"):  # as released
        hf.pop(key, None)
    (d / "config.json").write_text(json.dumps(hf))
    tok.save(d)
    return d, total, largest


def streaming(family: str, layers: int, outtype: str, out: Path) -> dict:
    d, total, largest = released_dir(family, layers, out)
    target = out / f"{d.name}-{outtype}.gguf"
    started = time.time()
    # a fresh process (its peak is its own VmHWM, see export._peak_rss_mb), as a user would run it
    code = ("import json, sys; from baichuan.gguf.export import export_gguf; "
            "r = export_gguf(sys.argv[1], sys.argv[2], sys.argv[3], progress=False); print(json.dumps(r.peak_rss_mb))")
    done = subprocess.run([sys.executable, "-c", code, str(d), str(target), outtype], check=True, cwd=REPO,
                          capture_output=True, text=True)
    peak = float(done.stdout.strip().splitlines()[-1]) * 1024 ** 2
    row = {"family": family, "layers": layers, "outtype": outtype, "input_bytes": total,
           "output_bytes": target.stat().st_size, "seconds": time.time() - started, "peak_rss_bytes": peak,
           "largest_tensor_bytes": largest}
    print(f"{family} x{layers} layers, {total / 1e9:.2f} GB bf16 -> {outtype} {row['output_bytes'] / 1e9:.2f} GB "
          f"in {row['seconds']:.0f} s; peak RSS {peak / 1e9:.2f} GB (largest tensor {largest / 1e9:.2f} GB, "
          f"whole model {total / 1e9:.2f} GB)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a trained model directory, for the quality table")
    ap.add_argument("--tokens", type=int, default=8192, help="held-out tokens scored per type")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--released-width", help="a family (baichuan2-13b, ...) for the streaming measurement")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--outtype", default="f16", help="for the streaming measurement")
    ap.add_argument("--out", default="out/bench-gguf")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if args.model:
        results["quality"] = quality(Path(args.model), out, args.tokens, args.ctx)
    if args.released_width:
        results["streaming"] = streaming(args.released_width, args.layers, args.outtype, out)
    if not results:
        ap.error("give --model and/or --released-width")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
