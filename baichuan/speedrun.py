"""The main job, end to end on the bundled corpus: `baichuan speedrun`.

    1. data       the bundled zh/en corpus through the data pipeline (clean, filter, dedup)
    2. tokenizer  SentencePiece BPE with Baichuan 2's recipe, trained on the cleaned text
    3. report     compression on held-out text, beside the released Baichuan tokenizers if you have them
    4. tokens     the cleaned corpus (and the held-out zh/en text) as token shards
    5. pretrain   a small Baichuan model (CPU: ~10 minutes; `--preset gpu`: ~100M parameters)
    6. sft        a short chat fine-tune on the bundled zh/en chat set (Baichuan 2 chat format)
    7. samples    continuations from the base model, and a two-turn chat with the chat model
    8. eval       held-out loss and bits per byte against a unigram baseline, and a short C-Eval / MMLU
                  subset (5-shot) when the question files are there (--evaldata or BAICHUAN_EVALDATA)

Everything lands under --out (default out/speedrun). A rerun resumes: finished data tasks and
training checkpoints are reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Training settings per profile. "cpu" is sized for a 2-core laptop to finish within 15 minutes
# (~2,000 tokens/s on the 11M-parameter `small` preset); "gpu" trains the ~100M `100m` preset.
# SFT rows are longer than pretraining's (same tokens per step): a conversation with tools lists
# their schemas first, 300-390 tokens in the cpu profile's 16k vocabulary.
PROFILES = {
    "cpu": dict(preset="small", vocab_size=16000, seq_len=256, batch_size=16, steps=280, lr=1e-3, warmup=30,
                eval_every=140, eval_batches=16, sft_steps=50, sft_lr=5e-4, sft_seq_len=512, sft_batch_size=8),
    "gpu": dict(preset="100m", vocab_size=32000, seq_len=1024, batch_size=32, steps=3000, lr=6e-4, warmup=200,
                eval_every=500, eval_batches=32, sft_steps=300, sft_lr=1e-4, sft_seq_len=1024, sft_batch_size=32),
    # the test suite's end-to-end check: every stage, seconds not minutes
    "test": dict(preset="tiny", vocab_size=16000, seq_len=64, batch_size=4, steps=6, lr=1e-3, warmup=2,
                 eval_every=6, eval_batches=2, sft_steps=3, sft_lr=1e-3, sft_seq_len=64, sft_batch_size=4),
}
SAMPLE_PROMPTS = ("床前明月光，", "子曰：", "To be, or not to be,", "And God said,")
CHAT_TURNS = ("床前明月光的下一句是什么？", "Who wrote Hamlet?")


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def run(out_dir: Path, profile: str = "cpu", baichuan_assets: str | None = None, workers: int = 2,
        steps: int | None = None, evaldata: str | None = None) -> dict:
    from baichuan import corpus
    from baichuan.checkpoint import load_pretrained
    from baichuan.data import pipeline
    from baichuan.data.writers import read_shard
    from baichuan.errors import BaichuanError
    from baichuan.eval.tokenizer_report import compression_report, format_report, reference_tokenizers
    from baichuan.generate import SamplingParams, generate
    from baichuan.runtime import default_device
    from baichuan.tokenizer import Tokenizer, build_chat_input, train_tokenizer
    from baichuan.train.pretrain import TrainConfig, train

    if profile not in PROFILES:
        raise BaichuanError(f"unknown speedrun profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    prof = dict(PROFILES[profile], **({"steps": steps} if steps else {}))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings, started = {}, time.time()
    executor = "pool" if workers > 1 else "local"

    t = _step("1/8 data: bundled corpus -> normalize, langid, quality filters, PII, dedup")
    data_cfg = dict(inputs=[str(f) for f in corpus.files(split="train")], output=str(out_dir / "data"),
                    executor=executor, workers=workers)
    report = pipeline.run(pipeline.config_from_dict(data_cfg), progress=False)
    print((out_dir / "data" / "report.md").read_text(encoding="utf-8").split("## Composition")[0])
    timings["data_s"] = time.time() - t

    t = _step(f"2/8 tokenizer: SentencePiece BPE, {prof['vocab_size']} pieces, Baichuan 2 recipe")
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

    t = _step("3/8 compression on held-out text (tokens/char: lower is better)")
    toks = {"ours": tok, **{name: Tokenizer.load(p) for name, p in reference_tokenizers(baichuan_assets).items()}}
    if len(toks) == 1:
        print("  (pass --baichuan-assets DIR or set BAICHUAN_ASSETS to compare with the released tokenizers)")
    heldout = {lang: list(corpus.iter_texts(lang=lang, split="heldout")) for lang in ("zh", "en")}
    rows = compression_report(toks, heldout)
    print(format_report(rows))
    (out_dir / "tokenizer_report.md").write_text(format_report(rows), encoding="utf-8")
    (out_dir / "tokenizer_report.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    timings["report_s"] = time.time() - t

    t = _step("4/8 tokens: training corpus and held-out zh / en text as token shards")
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

    t = _step(f"5/8 pretrain: preset {prof['preset']!r}, {prof['steps']} steps")
    tcfg = TrainConfig(data=str(out_dir / "data" / "tokens"), out=str(out_dir / "train"), tokenizer=tok_dir,
                       val_data=val, preset=prof["preset"], seq_len=prof["seq_len"], batch_size=prof["batch_size"],
                       steps=prof["steps"], lr=prof["lr"], warmup=prof["warmup"], eval_every=prof["eval_every"],
                       eval_batches=prof["eval_batches"], log_every=max(1, prof["steps"] // 20),
                       ckpt_every=max(1, prof["steps"] // 3), compile=profile == "gpu")
    result = train(tcfg)
    timings["train_s"] = time.time() - t

    t = _step(f"6/8 sft: {prof['sft_steps']} steps on the bundled chat set")
    chat_file = Path(corpus.__file__).parent / "chat" / "sft.jsonl"
    sft = train(TrainConfig(task="sft", data=str(chat_file), init_from=result["model_dir"], out=str(out_dir / "sft"),
                            seq_len=prof["sft_seq_len"], batch_size=prof["sft_batch_size"], steps=prof["sft_steps"],
                            lr=prof["sft_lr"], warmup=max(1, prof["sft_steps"] // 10), weight_decay=0.0,
                            log_every=max(1, prof["sft_steps"] // 6), ckpt_every=prof["sft_steps"],
                            eval_every=10 ** 9))
    timings["sft_s"] = time.time() - t

    t = _step("7/8 samples: the base model continues, the chat model answers in turns")
    device = default_device()
    model = load_pretrained(result["model_dir"], device=device)
    params = SamplingParams(max_new_tokens=40, do_sample=True, temperature=0.8, top_k=40, repetition_penalty=1.1,
                            seed=0, eos_token_ids=(tok.eos_id,))
    samples = {p: generate(model, tok, p, params) for p in SAMPLE_PROMPTS}
    for p, s in samples.items():
        print(f"  {p}{s}")
    chat_model = load_pretrained(sft["model_dir"], device=device)
    chat_params = SamplingParams(max_new_tokens=60, do_sample=False, repetition_penalty=1.05,
                                 eos_token_ids=(tok.eos_id,))
    dialog = []
    for question in CHAT_TURNS:
        dialog.append({"role": "user", "content": question})
        ids = build_chat_input(tok, dialog, max_new_tokens=60, model_max_length=chat_model.cfg.max_len)
        dialog.append({"role": "assistant", "content": generate(chat_model, tok, ids, chat_params)})
    for m in dialog:
        print(f"  {m['role']:>9}: {m['content']}")
    timings["samples_s"] = time.time() - t

    _step("8/8 evaluation: held-out loss and bits per byte")
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
    from baichuan.eval.command import SPEEDRUN_SUBJECTS, evaluate
    from baichuan.eval.report import format_table, write_results
    from baichuan.eval.settings import EvalSettings
    mc = evaluate(model, tok, ["ceval", "mmlu"], data_dir=evaldata, skip_missing_data=True,
                  settings=EvalSettings(subjects=SPEEDRUN_SUBJECTS, limit_per_subject=25, progress=False),
                  model_name="speedrun base model")
    if mc.get("skipped"):
        print(f"  C-Eval / MMLU subset skipped: {mc['skipped']['reason']}")
    else:
        print(format_table(mc))
        write_results(mc, out_dir / "eval")
        evals["mc"] = {task: r["acc"] for task, r in mc["tasks"].items()}
    timings["total_s"] = time.time() - started
    summary = {"profile": profile, "data": {"unbalanced": report["unbalanced"]}, "vocab_size": tok.vocab_size,
               "train": {k: result[k] for k in ("steps", "final_loss", "seconds")}, "eval": evals,
               "samples": samples, "chat": dialog, "chat_model": sft["model_dir"], "timings": {k: round(v, 1) for k, v in timings.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\ndone in {timings['total_s'] / 60:.1f} min; everything is under {out_dir}/")
    print(f"talk to the chat model:  baichuan chat {sft['model_dir']}")
    return summary


# ------------------------------------------------------------------------------ the command

def add_speedrun_arguments(p) -> None:
    p.add_argument("--out", default="out/speedrun", help="where everything lands (default: out/speedrun)")
    p.add_argument("--preset", default="cpu", help="cpu (an 11M model, sized for a 2-core laptop) or gpu "
                                                   "(the ~100M `100m` model on one GPU) (default: cpu)")
    p.add_argument("--steps", type=int, help="pretraining steps (default: the preset's)")
    p.add_argument("--workers", type=int, default=2, help="data pipeline processes (default 2)")
    p.add_argument("--evaldata", help="C-Eval/CMMLU/MMLU question folder for the final subset (or BAICHUAN_EVALDATA)")
    p.add_argument("--baichuan-assets", help="folder with baichuan1/ and baichuan2/ tokenizer.model "
                                             "to compare against (or set BAICHUAN_ASSETS)")


def run_speedrun(args) -> None:
    run(out_dir=Path(args.out), profile=args.preset, baichuan_assets=args.baichuan_assets, workers=args.workers,
        steps=args.steps, evaldata=args.evaldata)
