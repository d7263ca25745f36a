"""The main job, end to end on the bundled corpus: `baichuan speedrun`.

Today: bundled zh/en corpus -> SentencePiece tokenizer (Baichuan 2 recipe) -> compression report
against the released Baichuan tokenizers (when you have them) -> a small Baichuan model written as
an HF-style directory, loaded back and sampled in Chinese and English. Later stages (data pipeline,
pretraining, SFT, evaluation) extend this same function.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

SAMPLE_PROMPTS = ("床前明月光，", "To be, or not to be,")


def _step(title: str):
    print(f"\n== {title}", flush=True)
    return time.time()


def run(out_dir: Path, preset_name: str = "small", vocab_size: int = 16000, baichuan_assets: str | None = None,
        device: str | None = None) -> dict:
    import torch

    from baichuan import corpus
    from baichuan.checkpoint import load_pretrained, save_pretrained
    from baichuan.config import preset
    from baichuan.eval.tokenizer_report import compression_report, format_report, reference_tokenizers
    from baichuan.generate import SamplingParams, generate
    from baichuan.model import build
    from baichuan.tokenizer import Tokenizer, train_tokenizer

    cfg = preset(preset_name)  # fail fast on an unknown preset, before any work
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out_dir.mkdir(parents=True, exist_ok=True)
    timings, started = {}, time.time()

    t = _step("1/4 corpus: bundled Chinese and English text")
    files = [corpus.write_text(out_dir / "corpus" / f"{lang}.train.txt", lang=lang, split="train")
             for lang in ("zh", "en")]
    for f in files:
        print(f"  {f}  {f.stat().st_size / 1e6:.1f} MB")
    timings["corpus_s"] = time.time() - t

    t = _step(f"2/4 tokenizer: SentencePiece BPE, {vocab_size} pieces, Baichuan 2 recipe")
    tok = train_tokenizer(files, out_dir / "tokenizer", vocab_size=vocab_size)
    print(f"  wrote {out_dir / 'tokenizer' / 'tokenizer.model'}")
    timings["tokenizer_s"] = time.time() - t

    t = _step("3/4 compression on held-out text (tokens/char lower is better)")
    toks = {"ours": tok}
    refs = reference_tokenizers(baichuan_assets)
    toks.update({name: Tokenizer.load(path) for name, path in refs.items()})
    if not refs:
        print("  (pass --baichuan-assets DIR or set BAICHUAN_ASSETS to compare with the released tokenizers)")
    texts = {lang: list(corpus.iter_texts(lang=lang, split="heldout")) for lang in ("zh", "en")}
    rows = compression_report(toks, texts)
    report = format_report(rows)
    print(report)
    (out_dir / "tokenizer_report.md").write_text(report, encoding="utf-8")
    (out_dir / "tokenizer_report.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
    timings["report_s"] = time.time() - t

    t = _step(f"4/4 model: preset {preset_name!r}, written as an HF-style Baichuan directory and sampled")
    cfg = cfg.replace(vocab_size=tok.vocab_size)
    print(f"  {cfg.describe()}")
    torch.manual_seed(0)
    model = build(cfg, device=device)
    model_dir = save_pretrained(model, out_dir / "model", tokenizer=tok)
    model = load_pretrained(model_dir, device=device)
    print(f"  wrote and reloaded {model_dir}")
    print("  (weights are untrained until the pretraining stage lands; samples show the path works)")
    params = SamplingParams(max_new_tokens=24, do_sample=True, temperature=0.8, top_k=50, seed=0,
                            eos_token_ids=(cfg.eos_token_id,))
    samples = {}
    for prompt in SAMPLE_PROMPTS:
        samples[prompt] = generate(model, tok, prompt, params)
        print(f"  {prompt!r} -> {samples[prompt]!r}")
    timings["model_s"] = time.time() - t

    timings["total_s"] = time.time() - started
    summary = {"out_dir": str(out_dir), "vocab_size": tok.vocab_size, "model": cfg.describe(),
               "samples": samples, "timings": {k: round(v, 1) for k, v in timings.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\ndone in {timings['total_s']:.0f} s; everything is under {out_dir}/")
    return summary
