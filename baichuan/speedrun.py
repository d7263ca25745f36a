"""The main job, end to end on the bundled corpus: `baichuan speedrun`.

    1. data       the bundled zh/en corpus through the data pipeline (clean, filter, dedup)
    2. tokenizer  SentencePiece BPE with Baichuan 2's recipe, trained on the cleaned text
    3. report     compression on held-out text, beside the released Baichuan tokenizers if you have them
    4. tokens     the cleaned corpus (and the held-out zh/en text) as token shards
    5. pretrain   a small Baichuan model (CPU: ~10 minutes; `--profile gpu`: ~100M parameters)
    6. samples    Chinese and English continuations from the trained model
    7. eval       validation loss and bits per byte per language against a unigram baseline

Everything lands under --out (default out/speedrun). A rerun resumes: finished data tasks and
training checkpoints are reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Training settings per profile. "cpu" is sized for a 2-core laptop to finish within 15 minutes
# (~2,000 tokens/s on the 11M-parameter `small` preset); "gpu" trains the ~100M `100m` preset.
PROFILES = {
    "cpu": dict(preset="small", vocab_size=16000, seq_len=256, batch_size=16, steps=300, lr=1e-3, warmup=30,
                eval_every=100, eval_batches=16),
    "gpu": dict(preset="100m", vocab_size=32000, seq_len=1024, batch_size=32, steps=3000, lr=6e-4, warmup=200,
                eval_every=500, eval_batches=32),
    # the test suite's end-to-end check: every stage, seconds not minutes
    "test": dict(preset="tiny", vocab_size=16000, seq_len=64, batch_size=4, steps=6, lr=1e-3, warmup=2,
                 eval_every=6, eval_batches=2),
}
SAMPLE_PROMPTS = ("床前明月光，", "子曰：", "To be, or not to be,", "And God said,")


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def run(out_dir: Path, profile: str = "cpu", baichuan_assets: str | None = None, workers: int = 2,
        steps: int | None = None) -> dict:
    import torch

    from baichuan import corpus
    from baichuan.checkpoint import load_pretrained
    from baichuan.data import pipeline
    from baichuan.data.writers import read_shard
    from baichuan.errors import BaichuanError
    from baichuan.eval.tokenizer_report import compression_report, format_report, reference_tokenizers
    from baichuan.generate import SamplingParams, generate
    from baichuan.tokenizer import Tokenizer, train_tokenizer
    from baichuan.train.pretrain import TrainConfig, train

    if profile not in PROFILES:
        raise BaichuanError(f"unknown speedrun profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    prof = dict(PROFILES[profile], **({"steps": steps} if steps else {}))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings, started = {}, time.time()
    executor = "pool" if workers > 1 else "local"

    t = _step("1/7 data: bundled corpus -> normalize, langid, quality filters, PII, dedup")
    data_cfg = dict(inputs=[str(f) for f in corpus.files(split="train")], output=str(out_dir / "data"),
                    executor=executor, workers=workers)
    report = pipeline.run(pipeline.config_from_dict(data_cfg), progress=False)
    print((out_dir / "data" / "report.md").read_text(encoding="utf-8").split("## Composition")[0])
    timings["data_s"] = time.time() - t

    t = _step(f"2/7 tokenizer: SentencePiece BPE, {prof['vocab_size']} pieces, Baichuan 2 recipe")
    text_file = out_dir / "tokenizer-train.txt"
    manifest = json.loads((out_dir / "data" / "manifest.json").read_text(encoding="utf-8"))
    with open(text_file, "w", encoding="utf-8") as f:
        for entry in manifest["docs"]:
            for doc in read_shard(out_dir / "data" / entry["file"]):
                f.write(doc.text + "\n")
    tok = train_tokenizer([text_file], out_dir / "tokenizer", vocab_size=prof["vocab_size"], progress=False)
    text_file.unlink()
    print(f"  wrote {out_dir / 'tokenizer' / 'tokenizer.model'}")
    timings["tokenizer_s"] = time.time() - t

    t = _step("3/7 compression on held-out text (tokens/char: lower is better)")
    toks = {"ours": tok, **{name: Tokenizer.load(p) for name, p in reference_tokenizers(baichuan_assets).items()}}
    if len(toks) == 1:
        print("  (pass --baichuan-assets DIR or set BAICHUAN_ASSETS to compare with the released tokenizers)")
    heldout = {lang: list(corpus.iter_texts(lang=lang, split="heldout")) for lang in ("zh", "en")}
    rows = compression_report(toks, heldout)
    print(format_report(rows))
    (out_dir / "tokenizer_report.md").write_text(format_report(rows), encoding="utf-8")
    (out_dir / "tokenizer_report.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    timings["report_s"] = time.time() - t

    t = _step("4/7 tokens: training corpus and held-out zh / en text as token shards")
    tok_dir = str(out_dir / "tokenizer")
    pipeline.run(pipeline.config_from_dict({**data_cfg, "tokenizer": tok_dir}), progress=False)
    val = {}
    for lang in ("zh", "en"):  # held out whole works: validation text the model never saw
        folder = out_dir / f"heldout-{lang}"
        pipeline.run(pipeline.config_from_dict(dict(
            inputs=[str(f) for f in corpus.files(lang=lang, split="heldout")], output=str(folder),
            tokenizer=tok_dir, steps=["normalize"], dedup=None)), progress=False)
        val[lang] = str(folder / "tokens")
    total = json.loads((out_dir / "data" / "tokens" / "tokens.json").read_text())["total_tokens"]
    print(f"  {total:,} training tokens; validation: " + ", ".join(
        f"{k} {json.loads((Path(v) / 'tokens.json').read_text())['total_tokens']:,}" for k, v in val.items()))
    timings["tokens_s"] = time.time() - t

    t = _step(f"5/7 pretrain: preset {prof['preset']!r}, {prof['steps']} steps")
    tcfg = TrainConfig(data=str(out_dir / "data" / "tokens"), out=str(out_dir / "train"), tokenizer=tok_dir,
                       val_data=val, preset=prof["preset"], seq_len=prof["seq_len"], batch_size=prof["batch_size"],
                       steps=prof["steps"], lr=prof["lr"], warmup=prof["warmup"], eval_every=prof["eval_every"],
                       eval_batches=prof["eval_batches"], log_every=max(1, prof["steps"] // 20),
                       ckpt_every=max(1, prof["steps"] // 3), compile=profile == "gpu")
    result = train(tcfg)
    timings["train_s"] = time.time() - t

    t = _step("6/7 samples from the trained model")
    model = load_pretrained(result["model_dir"], device="cuda" if torch.cuda.is_available() else "cpu")
    params = SamplingParams(max_new_tokens=40, do_sample=True, temperature=0.8, top_k=40, repetition_penalty=1.1,
                            seed=0, eos_token_ids=(tok.eos_id,))
    samples = {p: generate(model, tok, p, params) for p in SAMPLE_PROMPTS}
    for p, s in samples.items():
        print(f"  {p}{s}")
    timings["samples_s"] = time.time() - t

    _step("7/7 evaluation: held-out loss and bits per byte")
    from baichuan.train.pretrain import unigram_baseline
    from baichuan.data.shards import open_shards
    train_shards = open_shards(tcfg.data)
    table = ["| text | model loss | unigram loss | model bits/byte |", "|---|---:|---:|---:|"]
    evals = {}
    for lang, folder in val.items():
        base = unigram_baseline(train_shards, open_shards(folder), tok.vocab_size)
        ev = result["val"][lang]
        evals[lang] = {**ev, "unigram_loss": base}
        table.append(f"| held-out {lang} | {ev['loss']:.3f} | {base:.3f} | {ev['bpb']:.3f} |")
    print("\n".join(table))
    timings["total_s"] = time.time() - started
    summary = {"profile": profile, "data": {"unbalanced": report["unbalanced"]}, "vocab_size": tok.vocab_size,
               "train": {k: result[k] for k in ("steps", "final_loss", "seconds")}, "eval": evals,
               "samples": samples, "timings": {k: round(v, 1) for k, v in timings.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\ndone in {timings['total_s'] / 60:.1f} min; everything is under {out_dir}/")
    return summary
