"""Quantization: weight memory beside Baichuan's published GPU memory, the perplexity it costs, and
CPU decode speed.

    python benchmarks/quant_memory.py                        # memory table + perplexity (+ CUDA peaks on a GPU)
    python benchmarks/quant_memory.py --decode small 1b      # + CPU/GPU decode tokens/s for those presets
    python benchmarks/quant_memory.py --ppl-tokens 0         # memory only

Memory: exact bytes of every tensor a checkpoint holds, per preset and mode, counted from the
module shapes of a model built on the meta device (nothing allocated), in GiB, next to the GPU
memory Baichuan published (Baichuan-13B and Baichuan2 READMEs). Their bf16 figures are the weights
in GiB (plus, for Baichuan-13B, the released code's precomputed 40x4096x4096 bf16 ALiBi mask,
1.25 GiB), so GiB is the unit to compare in. With CUDA, also torch.cuda memory allocated after
building the model directly in its quantized form (random values, no bf16 copy on the way, as
`load_quantized` does) and the peak over that and one forward of a 16-token prompt.

Perplexity: the speedrun's trained model (out/speedrun/train/model) when it exists, else a random
tiny model on UTF-8 bytes, on the bundled held-out text (zh and en), fp32 against int8 and int4
(group 32/64/128, symmetric and asymmetric), and bf16 against the bf16 kernel paths.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from baichuan import quant
from baichuan.config import preset
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, KVCache, build

GIB = 1024 ** 3
PUBLISHED = {  # GPU memory in GB as published (bf16, 8-bit, 4-bit)
    "baichuan-13b": (26.0, 15.8, 9.7, "Baichuan-13B README: own int8/int4 quantizer"),
    "baichuan2-7b": (14.0, 8.0, 5.1, "Baichuan2 README: bitsandbytes LLM.int8 / NF4"),
    "baichuan2-13b": (25.9, 14.2, 8.6, "Baichuan2 README: bitsandbytes LLM.int8 / NF4"),
}
MODES = [("bf16", None, None, None), ("int8", "int8", 128, True), ("int4-g128", "int4", 128, False),
         ("int4-g64", "int4", 64, False), ("int4-g32", "int4", 32, False)]
SPEEDRUN_MODEL = Path("out/speedrun/train/model")


# ------------------------------------------------------------------------------------------ memory

def meta_model(cfg, mode, group_size, symmetric, dtype=torch.bfloat16):
    with torch.device("meta"):
        model = Baichuan(cfg)
    model.to(dtype=dtype)
    return quant.quantize(model, mode, group_size, symmetric) if mode else model


def weight_bytes(cfg, mode, group_size, symmetric) -> int:
    model = meta_model(cfg, mode, group_size, symmetric)
    dtypes = quant.checkpoint_dtypes(model) if mode else {}
    return sum(t.numel() * dtypes.get(k, t.dtype).itemsize for k, t in model.state_dict().items())


def cuda_memory(cfg, mode, group_size, symmetric, prompt_len=16) -> tuple[float, float]:
    """(GiB resident after loading, GiB peak over loading and one forward of `prompt_len` tokens).
    The model is materialized on the GPU directly in its final form (random values; no bf16 copy on
    the way, as `load_quantized` does), then switched to the int8/int4 kernels where torch has them."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    model = meta_model(cfg, mode, group_size, symmetric)
    model.to_empty(device="cuda")
    fill_random(model)
    model.eval()
    if mode:
        quant.use_kernels(model)
    resident = torch.cuda.memory_allocated() - start
    ids = torch.randint(0, cfg.vocab_size, (1, prompt_len), device="cuda")
    with torch.no_grad():
        model(ids)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - start
    del model, ids
    torch.cuda.empty_cache()
    return resident / GIB, peak / GIB


@torch.no_grad()
def fill_random(model, std=0.02):
    """Plausible values for every tensor: weights N(0, std), norms 1, int8 in [-127, 127], any
    nibble for int4, scales that give weights of about `std`."""
    for name, t in model.state_dict(keep_vars=True).items():
        if t.dtype == torch.int8:
            t.random_(-127, 128)
        elif t.dtype == torch.uint8:
            t.random_(0, 256)
        elif name.endswith(".scales"):
            t.fill_(std * 2 / (127 if t.ndim == 1 else 7))
        elif name.endswith(".zeros"):
            t.zero_()
        elif t.ndim == 1:
            t.fill_(1.0)
        else:
            t.normal_(0, std)


def memory_table(cuda: bool) -> list[dict]:
    rows = []
    print("\n## Weight memory (GiB = 2^30 bytes)\n")
    head = "| preset | params | " + " | ".join(m[0] for m in MODES) + " | published bf16 / 8-bit / 4-bit | source |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for name in ("baichuan-7b", "baichuan-13b", "baichuan2-7b", "baichuan2-13b"):
        cfg = preset(name)
        sizes = {label: weight_bytes(cfg, mode, g, sym) / GIB for label, mode, g, sym in MODES}
        pub = PUBLISHED.get(name)
        print(f"| {name} | {cfg.num_params() / 1e9:.2f}B | " + " | ".join(f"{v:.2f}" for v in sizes.values())
              + f" | {' / '.join(map(str, pub[:3])) if pub else '-'} | {pub[3] if pub else '-'} |")
        rows.append({"preset": name, "weights_gib": sizes, "published_gb": pub[:3] if pub else None})
    if cuda:
        print(f"\n## CUDA memory, {torch.cuda.get_device_name()}: allocated after load / max_memory_allocated "
              "over load + one 16-token forward (GiB)\n")
        print("| preset | " + " | ".join(m[0] for m in MODES[:3]) + " | published |\n|---|---|---|---|---|")
        for row in rows:
            cfg = preset(row["preset"])
            mem = {}
            for label, mode, g, sym in MODES[:3]:
                try:
                    mem[label] = cuda_memory(cfg, mode, g, sym)
                except torch.cuda.OutOfMemoryError:
                    mem[label] = (float("nan"), float("nan"))
            row["cuda_gib"] = mem
            pub = row["published_gb"]
            print(f"| {row['preset']} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in mem.values())
                  + f" | {' / '.join(map(str, pub)) if pub else '-'} |")
    return rows


# -------------------------------------------------------------------------------------- perplexity

def heldout_windows(encode, lang, eos, max_tokens, seq_len):
    from baichuan.corpus import iter_texts
    ids = []
    for text in iter_texts(lang=lang, split="heldout"):
        ids += encode(text) + [eos]
        if len(ids) >= max_tokens + 1:
            break
    ids = torch.tensor(ids[: max_tokens + 1])
    n = (len(ids) - 1) // seq_len
    return ids[: n * seq_len + 1]


@torch.no_grad()
def perplexity_and_kl(model, base, ids, seq_len, batch=8) -> tuple[float, float]:
    """exp(mean NLL) over non-overlapping windows of `seq_len` tokens, and the mean per-token
    KL(base || model) of the next-token distributions (0 when `base` is None): far more sensitive
    than perplexity to a small change of the weights."""
    x, y = ids[:-1].view(-1, seq_len), ids[1:].view(-1, seq_len)
    nll = kl = 0.0
    for i in range(0, len(x), batch):
        logp = F.log_softmax(model(x[i:i + batch]).float(), dim=-1).flatten(0, 1)
        nll += F.nll_loss(logp, y[i:i + batch].flatten(), reduction="sum").item()
        if base is not None:
            ref = F.log_softmax(base(x[i:i + batch]).float(), dim=-1).flatten(0, 1)
            kl += F.kl_div(logp, ref, log_target=True, reduction="sum").item()
    return math.exp(nll / y.numel()), kl / y.numel()


def weight_error_table(load) -> list[dict]:
    """Relative RMS error of the dequantized weights over all quantized layers of the model."""
    model = load(torch.float32)
    weights = [getattr(p, a).weight.detach() for _, p, a in quant.linear._targets(model)]
    print("\n## Weight error: ||W - dequant(quant(W))|| / ||W|| over the five Linear layers of every block\n")
    print("| mode | symmetric | asymmetric |\n|---|---|---|")
    rows = []
    for mode, g in (("int8", 0), ("int4", 128), ("int4", 64), ("int4", 32)):
        errs = {}
        for sym in ((True,) if mode == "int8" else (True, False)):
            num = den = 0.0
            for w in weights:
                if mode == "int4" and w.shape[1] % g:
                    num, den = float("nan"), 1.0
                    break
                q = quant.quantize_weight(w, mode, g, sym)
                d = (q["qweight"].float() * q["scales"][:, None] if mode == "int8" else
                     quant.dequantize_int4(q["qweight"], q["scales"], q.get("zeros"), g))
                num += (w - d).pow(2).sum().item()
                den += w.pow(2).sum().item()
            errs["sym" if sym else "asym"] = math.sqrt(num / den)
        label = mode if mode == "int8" else f"int4 g{g}"
        cells = ["-" if k not in errs else "n/a (the group does not divide a layer)" if math.isnan(errs[k])
                 else f"{errs[k]:.3%}" for k in ("sym", "asym")]
        print(f"| {label} | " + " | ".join(cells) + " |")
        rows.append({"mode": label, "rel_rms_error": errs})
    return rows


def ppl_model():
    """(name, loader(dtype) -> fresh model, encode, eos)."""
    if (SPEEDRUN_MODEL / "config.json").exists():
        from baichuan.checkpoint import load_pretrained
        from baichuan.tokenizer import Tokenizer
        tok = Tokenizer.load(SPEEDRUN_MODEL)
        return (f"speedrun model ({SPEEDRUN_MODEL})", lambda dtype: load_pretrained(SPEEDRUN_MODEL, dtype=dtype),
                tok.encode, tok.eos_id)
    cfg = preset("tiny", vocab_size=512, hidden_size=128, intermediate_size=384)  # every group size fits

    def load(dtype):
        torch.manual_seed(0)
        return build(cfg).to(dtype).eval()
    return "random tiny model on UTF-8 bytes", load, lambda t: list(t.encode()), 2


def ppl_table(max_tokens, seq_len) -> dict:
    name, load, encode, eos = ppl_model()
    weight_rows = weight_error_table(load)
    data = {lang: heldout_windows(encode, lang, eos, max_tokens, seq_len) for lang in ("zh", "en")}
    print(f"\n## Held-out perplexity: {name}, {', '.join(f'{k} {len(v) - 1:,}' for k, v in data.items())} "
          f"tokens in windows of {seq_len}; KL = mean per-token KL(unquantized || quantized), nats\n")
    print("| weights | compute | zh ppl | en ppl | zh Δ | en Δ | zh KL | en KL | seconds |\n" + "|---" * 9 + "|")
    configs = [("fp32", torch.float32, None, 0, None, False), ("int8", torch.float32, "int8", 0, True, False)]
    for g in (128, 64, 32):
        for sym in (True, False):
            configs.append((f"int4 g{g} {'sym' if sym else 'asym'}", torch.float32, "int4", g, sym, False))
    configs += [("bf16", torch.bfloat16, None, 0, None, False), ("int8", torch.bfloat16, "int8", 0, True, True)]
    configs += [(f"int4 g{g} asym", torch.bfloat16, "int4", g, False, True) for g in (128, 64, 32)]
    rows, base_ppl, base_model = [], {}, {}
    for label, dtype, mode, g, sym, kernels in configs:
        model = load(dtype)
        try:
            if mode:
                quant.quantize(model, mode, g or 128, sym)
        except BaichuanError as e:  # e.g. the speedrun model's 704-wide MLP has no groups of 128
            print(f"| {label} | {str(dtype).removeprefix('torch.')} | n/a: {e} ||||||")
            continue
        n_kernel = quant.use_kernels(model) if kernels else 0
        base = base_model.get(dtype)
        t = time.perf_counter()
        res = {lang: perplexity_and_kl(model, base, ids, seq_len) for lang, ids in data.items()}
        dt = time.perf_counter() - t
        ppl, kl = {k: v[0] for k, v in res.items()}, {k: v[1] for k, v in res.items()}
        base_ppl.setdefault(dtype, ppl)
        base_model.setdefault(dtype, model)
        compute = str(dtype).removeprefix("torch.") + (f", kernels ({n_kernel} layers)" if kernels else "")
        delta = {k: 100 * (ppl[k] / base_ppl[dtype][k] - 1) for k in ppl}
        print(f"| {label} | {compute} | {ppl['zh']:.2f} | {ppl['en']:.2f} | {delta['zh']:+.2f}% | "
              f"{delta['en']:+.2f}% | {kl['zh']:.2e} | {kl['en']:.2e} | {dt:.0f} |")
        rows.append({"weights": label, "compute": compute, "ppl": ppl, "delta_pct": delta, "kl": kl, "seconds": dt})
    return {"model": name, "weight_error": weight_rows, "rows": rows}


# ------------------------------------------------------------------------------------------ decode

def decode_model(cfg, mode, group_size, dtype, device, kernels):
    torch.manual_seed(0)
    model = build(cfg, device=device, dtype=dtype).eval()
    if mode:
        quant.quantize(model, mode, group_size, False if mode == "int4" else None)
        if kernels:
            quant.use_kernels(model)
    return model


@torch.no_grad()
def decode_speed(model, prompt_len=8, new_tokens=32) -> float:
    cfg, device = model.cfg, model.model.embed_tokens.weight.device
    cache = KVCache(cfg, batch_size=1, max_len=prompt_len + new_tokens + 1, device=device,
                    dtype=model.model.embed_tokens.weight.dtype)
    gen = torch.Generator(device).manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (1, prompt_len), device=device, generator=gen)
    tok = model(ids, cache=cache)[:, -1:].argmax(-1)
    tok = model(tok, cache=cache)[:, -1:].argmax(-1)  # warm-up step, not timed
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        tok = model(tok, cache=cache)[:, -1:].argmax(-1)
    tok.item()
    return (new_tokens - 1) / (time.perf_counter() - t)


def decode_table(presets, device, rounds=3) -> list[dict]:
    """Every variant of a preset is built first and timed in interleaved rounds (best of `rounds`),
    so a neighbour's load on a shared machine hits all of them alike."""
    print(f"\n## Decode speed, batch 1, {device}, {torch.get_num_threads()} threads, best of {rounds} "
          f"interleaved rounds (tokens/s)\n")
    variants = [("fp32", torch.float32, None, False), ("bf16", torch.bfloat16, None, False),
                ("int8 reference", torch.bfloat16, "int8", False), ("int8 kernel", torch.bfloat16, "int8", True),
                ("int4 reference", torch.bfloat16, "int4", False), ("int4 kernel", torch.bfloat16, "int4", True)]
    print("| preset | int4 group | " + " | ".join(v[0] for v in variants) + " |\n|" + "---|" * (len(variants) + 2))
    rows = []
    for name in presets:
        cfg = preset(name)
        # the largest group that divides every layer (the `small` preset's MLP is 704 wide: 64)
        g = next(g for g in (128, 64, 32) if cfg.hidden_size % g == 0 and cfg.intermediate_size % g == 0)
        models = {label: decode_model(cfg, mode, g, dtype, device, kernels) for label, dtype, mode, kernels in variants}
        speeds = dict.fromkeys(models, 0.0)
        for _ in range(rounds):
            for label, model in models.items():
                speeds[label] = max(speeds[label], decode_speed(model))
        del models
        print(f"| {name} ({cfg.num_params() / 1e6:,.0f}M) | {g} | " + " | ".join(f"{v:.1f}" for v in speeds.values())
              + " |")
        rows.append({"preset": name, "int4_group_size": g, "tokens_per_s": speeds})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ppl-tokens", type=int, default=16384, help="held-out tokens per language (0: skip)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--decode", nargs="*", default=[], metavar="PRESET", help="presets to time decoding for")
    ap.add_argument("--no-cuda", action="store_true", help="skip the CUDA memory measurement")
    ap.add_argument("--out", default="out/bench/quant_memory.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.no_cuda
    result = {"memory": memory_table(cuda)}
    if args.ppl_tokens:
        result["perplexity"] = ppl_table(args.ppl_tokens, args.seq_len)
    if args.decode:
        result["decode"] = decode_table(args.decode, "cuda" if torch.cuda.is_available() else "cpu")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
