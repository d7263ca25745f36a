"""The `baichuan` command: one subcommand per stage, each a thin call into the modules.

    baichuan speedrun                       the main job on the bundled corpus
    baichuan tokenizer train FILES... --out DIR [--vocab-size 64000]
    baichuan tokenizer report [--tokenizer NAME=PATH ...]
    baichuan generate MODEL "prompt"        one completion (streams)
    baichuan chat MODEL                     multi-turn chat in the terminal
    baichuan info MODEL                     what a model directory holds

A user error prints one line `error: ...` and exits 1; `--debug` (or BAICHUAN_DEBUG=1) shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from baichuan.errors import BaichuanError, bounded


def _device(name: str | None) -> str:
    import torch
    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_model_and_tokenizer(path: str, device: str | None, dtype: str | None):
    import torch

    from baichuan.checkpoint import is_model_dir, load_pretrained
    from baichuan.tokenizer import Tokenizer
    if not Path(path).is_dir():
        raise BaichuanError(f"{path}: no such model directory")
    if not is_model_dir(path):
        raise BaichuanError(f"{path}: not a model directory (needs config.json and weights)")
    tok = Tokenizer.load(path)
    model = load_pretrained(path, device=_device(device), dtype=getattr(torch, dtype) if dtype else None)
    return model, tok


def _runtime(model) -> str:
    """What chat and generate run with (the engine, eager, as generate_ids makes it)."""
    from baichuan.quant.linear import describe_precision
    return f"{describe_precision(model)}, {next(model.parameters()).device.type} decode eager"


def _sampling(args, model_dir: str, tok):
    from baichuan.config import load_generation_config
    from baichuan.generate import SamplingParams
    gen = load_generation_config(model_dir)
    return SamplingParams.from_generation_config(
        gen, eos_token_ids=tuple(dict.fromkeys((gen.eos_token_id, *tok.stop_ids))),
        max_new_tokens=args.max_new_tokens, temperature=args.temperature or None, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, stop=args.stop or None, seed=args.seed,
        do_sample=False if args.greedy or args.temperature == 0 else None)  # temperature 0 is greedy, as in the API


# -------------------------------------------------------------------------------- subcommands

def cmd_generate(args) -> None:
    from baichuan.generate import stream_text
    model, tok = _load_model_and_tokenizer(args.model, args.device, args.dtype)
    params = _sampling(args, args.model, tok)
    ids = tok.encode_prompt(args.prompt)
    print(f"{model.cfg.describe()} | {_runtime(model)}", file=sys.stderr)
    room = model.cfg.max_len - len(ids)
    if args.max_new_tokens and args.max_new_tokens > room > 0:
        print(f"note: the {model.cfg.max_len}-token context leaves room for {room} new tokens", file=sys.stderr)
    for piece in stream_text(model, tok, ids, params):
        print(piece, end="", flush=True)
    print()


def cmd_chat(args) -> None:
    from baichuan.generate import stream_text
    from baichuan.tokenizer import chat_template_for, fit_chat
    model, tok = _load_model_and_tokenizer(args.model, args.device, args.dtype)
    params = _sampling(args, args.model, tok)
    if args.max_new_tokens is None and params.max_new_tokens > model.cfg.max_len // 2:
        # the default (Baichuan 2's 2048) must leave room for the conversation in a short context
        params = dataclasses.replace(params, max_new_tokens=model.cfg.max_len // 2)
    if args.max_new_tokens is not None and args.max_new_tokens > model.cfg.max_len - 2:
        raise BaichuanError(f"--max-new-tokens {args.max_new_tokens} leaves no room for a message in the "
                            f"{model.cfg.max_len}-token context")
    template = args.template or chat_template_for(tok)
    if args.system and template == "baichuan":
        raise BaichuanError("--system needs the baichuan2 chat template: Baichuan-13B-Chat's format has no "
                            "system prompt")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"{model.cfg.describe()} | {_runtime(model)} | template {template} | /reset clears, /exit or "
              "Ctrl-D quits")
    while True:
        try:
            line = input("user> " if interactive else "")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        try:  # without --max-new-tokens a long message takes room from the reply; with it, it is refused
            ids, max_new = fit_chat(tok, messages, template, params.max_new_tokens, model.cfg.max_len,
                                    shrink=args.max_new_tokens is None, length_name="--max-new-tokens")
        except BaichuanError as e:
            print(f"error: {e}; the message was not sent", file=sys.stderr)
            messages.pop()
            continue
        print("assistant> " if interactive else "", end="", flush=True)
        reply = []
        for piece in stream_text(model, tok, ids, dataclasses.replace(params, max_new_tokens=max_new)):
            reply.append(piece)
            print(piece, end="", flush=True)
        print()
        messages.append({"role": "assistant", "content": "".join(reply)})


def cmd_info(args) -> None:
    from baichuan.checkpoint import weight_files
    from baichuan.config import load_config, load_generation_config
    from baichuan.quant import read_quantization_config
    if not Path(args.model).is_dir():
        raise BaichuanError(f"{args.model}: not a model directory")
    cfg = load_config(args.model)
    files = weight_files(Path(args.model))
    print(cfg.describe())
    print(f"weights: {len(files)} file(s), {sum(f.stat().st_size for f in files) / 1e9:.2f} GB")
    qc = read_quantization_config(args.model)
    if qc:
        group = f", groups of {qc['group_size']}, {'symmetric' if qc['symmetric'] else 'asymmetric'}" \
            if qc["bits"] == 4 else ""
        print(f"quantized: int{qc['bits']} weight-only{group}; modules {', '.join(qc.get('modules') or [])}")
    print(f"generation defaults: {load_generation_config(args.model).to_dict()}")


def cmd_tokenizer_train(args) -> None:
    from baichuan.tokenizer import train_tokenizer
    tok = train_tokenizer(args.files, args.out, vocab_size=args.vocab_size, normalization=args.normalization,
                          input_sentence_size=args.input_sentence_size, character_coverage=args.character_coverage)
    print(f"wrote {Path(args.out) / 'tokenizer.model'} ({tok.vocab_size} pieces)")


def _named_paths(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise BaichuanError(f"--tokenizer expects NAME=PATH, got {spec!r}")
        out[name] = path
    return out


def cmd_tokenizer_report(args) -> None:
    import json

    from baichuan import corpus
    from baichuan.eval.tokenizer_report import compression_report, format_report, reference_tokenizers
    from baichuan.tokenizer import Tokenizer
    specs = {**reference_tokenizers(args.baichuan_assets), **_named_paths(args.tokenizer or [])}
    if not specs:
        raise BaichuanError("no tokenizer to report on: pass --tokenizer NAME=PATH or --baichuan-assets DIR")
    toks = {name: Tokenizer.load(path) for name, path in specs.items()}
    texts = {lang: list(corpus.iter_texts(lang=lang, split="heldout")) for lang in ("zh", "en")}
    rows = compression_report(toks, texts)
    print(format_report(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def cmd_speedrun(args) -> None:
    from baichuan.speedrun import run
    run(out_dir=Path(args.out), profile=args.preset, baichuan_assets=args.baichuan_assets, workers=args.workers,
        steps=args.steps, evaldata=args.evaldata)


def cmd_data_run(args) -> None:
    from baichuan.data import pipeline
    overrides = {"output": args.out, "tokenizer": args.tokenizer, "executor": args.executor, "workers": args.workers,
                 "format": args.format}
    if args.config:
        cfg = pipeline.load_config(args.config, inputs=args.inputs or None, **overrides)
    else:
        if not args.inputs or not args.out:
            raise BaichuanError("baichuan data run: give INPUTS and --out, or --config FILE")
        raw = {"inputs": args.inputs, **{k: v for k, v in overrides.items() if v is not None}}
        if args.text_field:
            raw["read"] = {"text_field": args.text_field}
        if args.no_dedup:
            raw["dedup"] = None
        cfg = pipeline.config_from_dict(raw, "command line")
    report = pipeline.run(cfg)
    print((Path(cfg.output) / "report.md").read_text(encoding="utf-8"))
    if report["unbalanced"]:
        raise BaichuanError(f"counts do not balance for {report['unbalanced']} (a bug; please report it)")


def cmd_data_train_quality(args) -> None:
    from baichuan.data.quality import train_quality_model
    train_quality_model(args.positives, args.negatives, args.out)
    print(f"wrote {args.out}")


def cmd_train(args) -> None:
    from baichuan.train.pretrain import config_from_args, train
    if args.command in ("sft", "dpo"):
        args.task = args.command  # (their parsers have no --task)
    train(config_from_args(args))


def cmd_serve(args) -> None:
    import torch

    from baichuan.infer.server import serve
    serve(args.model, host=args.host, port=args.port, api_key=args.api_key or os.environ.get("BAICHUAN_API_KEY"),
          max_batch=args.max_batch, max_queue=args.max_queue, max_len=args.max_len, device=args.device,
          dtype=getattr(torch, args.dtype) if args.dtype else None, model_name=args.name, index_dir=args.index,
          compile=args.compile)


def cmd_eval(args) -> None:
    from baichuan.eval.command import run
    run(args)


def cmd_quantize(args) -> None:
    from baichuan.config import load_config
    from baichuan.quant import default_out_dir, quantize_dir
    group = args.group_size
    if args.mode == "int8" and group is not None:
        raise BaichuanError("--group-size is for int4; int8 has one scale per output channel")
    if args.mode == "int4" and group is None:  # the largest group that divides every layer's inputs
        cfg = load_config(args.model)
        group = next((g for g in (128, 64, 32) if cfg.hidden_size % g == 0 and cfg.intermediate_size % g == 0), 128)
    group = group or 128
    out = args.out or default_out_dir(args.model, args.mode, group)
    quantize_dir(args.model, out, args.mode, group, True if args.symmetric else None, device=args.device,
                 lm_head=args.lm_head)
    print(f"wrote {out}")


def cmd_adapt(args) -> None:
    from baichuan.train.adapt import adapt
    opts = {k: getattr(args, k) for k in ("steps", "lr", "seq_len", "batch_size", "grad_accum", "warmup")
            if getattr(args, k) is not None}
    adapt(args.init_from, args.domain, args.general, args.out, replay=args.replay, vertical=args.vertical,
          evaldata=args.evaldata or os.environ.get("BAICHUAN_EVALDATA"), eval_limit=args.eval_limit,
          workers=args.workers, compile=args.compile, **opts)


def cmd_export(args) -> None:
    from baichuan.gguf.command import run_export
    run_export(args)


def cmd_import(args) -> None:
    from baichuan.gguf.command import run_import
    run_import(args)


def cmd_index(args) -> None:
    from baichuan.rag.command import run_index
    run_index(args)


def cmd_ask(args) -> None:
    from baichuan.rag.command import run_ask
    run_ask(args)


# ------------------------------------------------------------------------------------- parser

def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-new-tokens", type=int, help="longest reply (default: generation_config.json's, at most "
                                                        "half the context in chat)")
    p.add_argument("--temperature", type=bounded(float, 0), help="0 = greedy (default: generation_config.json's)")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens (default: generation_config.json's)")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (default: generation_config.json's)")
    p.add_argument("--repetition-penalty", type=float, help="HF-style penalty on tokens already in the text "
                                                            "(default: generation_config.json's)")
    p.add_argument("--greedy", action="store_true", help="argmax decoding (sampling off)")
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="seed for sampling (the same seed gives the same reply)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bf16 on CUDA and for int8/int4 directories, else fp32")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baichuan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("speedrun", help="the main job on the bundled corpus")
    p.add_argument("--out", default="out/speedrun", help="where everything lands (default: out/speedrun)")
    p.add_argument("--preset", default="cpu", help="cpu (2-core laptop, ~15 min) or gpu (~100M model on one GPU)")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--workers", type=int, default=2, help="data pipeline processes")
    p.add_argument("--evaldata", help="C-Eval/CMMLU/MMLU question folder for the final subset (or BAICHUAN_EVALDATA)")
    p.add_argument("--baichuan-assets", help="folder with baichuan1/ and baichuan2/ tokenizer.model "
                                             "to compare against (or set BAICHUAN_ASSETS)")
    p.set_defaults(func=cmd_speedrun)

    p = sub.add_parser("tokenizer", help="train or compare tokenizers")
    tsub = p.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    t = tsub.add_parser("train", help="SentencePiece BPE with Baichuan 2's recipe")
    t.add_argument("files", nargs="+", help="text files (.txt, .jsonl with a text field, .gz/.zst)")
    t.add_argument("--out", required=True, help="folder for tokenizer.model and its HF config")
    t.add_argument("--vocab-size", type=int, default=64000, help="pieces (default 64000, Baichuan-7B's; "
                                                                 "Baichuan 2 has 125696)")
    t.add_argument("--normalization", choices=["identity", "nmt_nfkc"], default="identity",
                   help="identity (Baichuan 2: text as it is) or nmt_nfkc (Baichuan 1) (default: identity)")
    t.add_argument("--input-sentence-size", type=int, default=10_000_000,
                   help="sentences SentencePiece samples for training (default 10,000,000)")
    t.add_argument("--character-coverage", type=bounded(float, 0.9, 1.0), default=0.9999,
                   help="share of characters the vocabulary must cover (default 0.9999, Baichuan 2's)")
    t.set_defaults(func=cmd_tokenizer_train)
    t = tsub.add_parser("report", help="tokens/char and bytes/token on the held-out zh/en text")
    t.add_argument("--tokenizer", action="append", help="NAME=PATH (repeatable)")
    t.add_argument("--baichuan-assets", help="folder with baichuan1/ and baichuan2/ tokenizer.model to compare "
                                             "against (or set BAICHUAN_ASSETS)")
    t.add_argument("--json", help="also write the rows as JSON here")
    t.set_defaults(func=cmd_tokenizer_report)

    p = sub.add_parser("data", help="clean, deduplicate, mix and tokenize a corpus")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = dsub.add_parser("run", help="run the pipeline on files/folders (or a TOML config)")
    d.add_argument("inputs", nargs="*", help="JSONL(.gz/.zst), parquet or .txt files, or folders of them")
    d.add_argument("--config", help="TOML file with the pipeline settings (see docs/data.md)")
    d.add_argument("--out", help="output folder")
    d.add_argument("--tokenizer", help="tokenizer.model (or folder) to write token shards with")
    d.add_argument("--executor", choices=["local", "pool", "ray"],
                   help="local (one process), pool (--workers processes) or ray (a Ray cluster) (default: local)")
    d.add_argument("--workers", type=int, help="processes for the pool executor")
    d.add_argument("--format", choices=["jsonl", "parquet"], help="format of the cleaned document shards")
    d.add_argument("--text-field", help="the JSON/parquet field holding the text (default: text)")
    d.add_argument("--no-dedup", action="store_true", help="skip near-duplicate removal")
    d.set_defaults(func=cmd_data_run)
    d = dsub.add_parser("train-quality", help="train the quality scorer from good and bad examples")
    d.add_argument("--positives", nargs="+", required=True, help="files of good text")
    d.add_argument("--negatives", nargs="+", required=True, help="files of text to filter out")
    d.add_argument("--out", required=True, help="where to write the scorer")
    d.set_defaults(func=cmd_data_train_quality)

    from baichuan.train.settings import add_args as add_train_args
    for name, task, what in (("train", "pretrain", "pretrain (one process; torchrun -m baichuan.train for many)"),
                             ("sft", "sft", "supervised fine-tuning on chat JSONL (full, --lora, or QLoRA with "
                                            "--quantize-base int4)"),
                             ("dpo", "dpo", "preference tuning (DPO) on prompt/chosen/rejected JSONL")):
        p = sub.add_parser(name, help=what, description=what)
        add_train_args(p, task)
        p.set_defaults(func=cmd_train)

    p = sub.add_parser("adapt", help="domain adaptation: continued pretraining with general-text replay")
    p.add_argument("--init-from", required=True, help="the model directory to adapt (its tokenizer is used)")
    p.add_argument("--domain", nargs="+", required=True, help="domain corpus files/folders")
    p.add_argument("--general", nargs="+", required=True, help="general corpus files/folders to replay")
    p.add_argument("--replay", type=float, default=0.2, help="share of general text per language (default 0.2)")
    p.add_argument("--vertical", default="medicine", help="medicine, education or law: the C-Eval subjects to report")
    p.add_argument("--evaldata", help="C-Eval folder for the before/after report (or BAICHUAN_EVALDATA)")
    p.add_argument("--eval-limit", type=int, help="questions per subject (default: all)")
    p.add_argument("--out", required=True, help="run folder (data, training run, adapted model, report)")
    p.add_argument("--workers", type=int, default=2, help="data pipeline processes (default 2)")
    for flag, conv, what in (("--steps", int, "training steps"), ("--lr", float, "peak learning rate"),
                             ("--seq-len", int, "tokens per sequence"), ("--batch-size", int, "sequences per step"),
                             ("--grad-accum", int, "micro-steps per optimizer step"),
                             ("--warmup", int, "warm-up steps")):
        p.add_argument(flag, type=conv, help=f"{what} (default: as `baichuan train` sets it for this model)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("generate", help="complete a prompt")
    p.add_argument("model")
    p.add_argument("prompt")
    _add_sampling(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="multi-turn chat in the terminal")
    p.add_argument("model")
    p.add_argument("--system", help="system text (the baichuan2 and jinja templates)")
    p.add_argument("--template", choices=["baichuan", "baichuan2", "jinja"],
                   help="default: the tokenizer's own chat_template (jinja) if it has one, else by its vocabulary")
    _add_sampling(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="OpenAI-compatible API and web chat for a model directory")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="default 8000")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set BAICHUAN_API_KEY)")
    p.add_argument("--max-batch", type=bounded(int, 1), default=8, help="requests decoded together (KV cache rows)")
    p.add_argument("--max-queue", type=bounded(int, 0), default=64, help="requests waiting beyond that; more get 503")
    p.add_argument("--max-len", type=bounded(int, 2), help="context per request (default: the model's)")
    p.add_argument("--name", help="model id in the API (default: the directory name)")
    p.add_argument("--compile", action="store_true", help="compile the decode step (CUDA graphs on GPUs); "
                                                          "compiled before serving starts")
    p.add_argument("--index", help="a document index (`baichuan index DIR`): enables POST /v1/ask and "
                                   "document search in the web chat")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bf16 on CUDA and for int8/int4 directories, else fp32")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("quantize", help="int8 / int4 weight-only copy of a model directory (streams shard by shard)")
    p.add_argument("model")
    p.add_argument("--mode", choices=["int8", "int4"], default="int8",
                   help="int8 per output channel or int4 group-wise (default: int8)")
    p.add_argument("--group-size", type=int, choices=[32, 64, 128], help="int4 group (default: largest that fits)")
    p.add_argument("--symmetric", action="store_true", help="int4 without zero points (default: asymmetric)")
    p.add_argument("--lm-head", action="store_true", help="quantize the LM head too (not in Baichuan's releases; "
                                                          "helps most on CPUs and small models)")
    p.add_argument("--out", help="default: MODEL-int8 / MODEL-int4-gN beside the model")
    p.add_argument("--device", help="where to quantize (default: cuda if available)")
    p.set_defaults(func=cmd_quantize)

    from baichuan.eval import command as eval_command
    p = sub.add_parser("eval", help="C-Eval / CMMLU / MMLU, bits per byte, tokenizer report")
    eval_command.add_arguments(p)
    p.set_defaults(func=cmd_eval)

    from baichuan.gguf import command as gguf_command
    p = sub.add_parser("export", help="a model directory as one GGUF file for llama.cpp / Ollama (streams)")
    gguf_command.add_export_arguments(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import", help="a Baichuan-family GGUF file as a model directory")
    gguf_command.add_import_arguments(p)
    p.set_defaults(func=cmd_import)

    from baichuan.rag import command as rag_command
    p = sub.add_parser("index", help="index a folder of documents for `baichuan ask` (BM25, incremental)")
    rag_command.add_index_arguments(p)
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("ask", help="answer a question from indexed documents, with citations")
    rag_command.add_ask_arguments(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("info", help="describe a model directory")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("BAICHUAN_DEBUG") == "1"
    try:
        args.func(args)
    except BaichuanError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
