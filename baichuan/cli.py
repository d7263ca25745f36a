"""baichuan: clean a corpus, train a tokenizer and a model, evaluate, quantize and serve it.

    baichuan speedrun                       the main job on the bundled corpus
    baichuan data run INPUTS --out DIR      clean, filter, deduplicate and tokenize a corpus
    baichuan tokenizer train FILES --out DIR
    baichuan train | sft | dpo | adapt      pretrain, fine-tune, prefer, adapt to a domain
    baichuan eval MODEL                     C-Eval / CMMLU / MMLU, bits per byte
    baichuan quantize MODEL --mode int4     int8 / int4 copy
    baichuan export | import                GGUF for llama.cpp / Ollama, and back
    baichuan generate | chat | serve MODEL  run it: one completion, a terminal chat, an OpenAI API
    baichuan index DIR; baichuan ask        search-augmented answers with citations

A stage module declares each of its commands as `add_<name>_arguments(parser)` and
`run_<name>(args)`; COMMANDS below says which module and name. Stage modules import torch and
their work only inside `run_*`, so `--help` answers at once. A user error prints one line
`error: ...` and exits 1; `--debug` (or BAICHUAN_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from baichuan.errors import BaichuanError

GROUPS = {  # commands of two words: the first word's help
    "tokenizer": "train or compare tokenizers",
    "data": "clean, deduplicate, mix and tokenize a corpus",
}

COMMANDS = (
    # command             declared in                  name         what it does
    ("speedrun",          "baichuan.speedrun",         "speedrun",  "the main job on the bundled corpus"),
    ("data run",          "baichuan.data.command",     "pipeline",  "run the pipeline on files/folders (or a TOML "
                                                                    "config)"),
    ("data train-quality", "baichuan.data.command",    "quality",   "train the quality scorer from good and bad "
                                                                    "examples"),
    ("tokenizer train",   "baichuan.data.command",     "tokenizer", "SentencePiece BPE with Baichuan 2's recipe"),
    ("tokenizer report",  "baichuan.data.command",     "report",    "tokens/char and bytes/token on the held-out "
                                                                    "zh/en text"),
    ("train",             "baichuan.train.command",    "pretrain",  "pretrain (one process; torchrun -m "
                                                                    "baichuan.train for many)"),
    ("sft",               "baichuan.train.command",    "sft",       "supervised fine-tuning on chat JSONL (full, "
                                                                    "--lora, or QLoRA with --quantize-base int4)"),
    ("dpo",               "baichuan.train.command",    "dpo",       "preference tuning (DPO) on prompt/chosen/"
                                                                    "rejected JSONL"),
    ("adapt",             "baichuan.train.command",    "adapt",     "domain adaptation: continued pretraining with "
                                                                    "general-text replay"),
    ("eval",              "baichuan.eval.command",     "",          "C-Eval / CMMLU / MMLU, bits per byte, tokenizer "
                                                                    "report"),
    ("quantize",          "baichuan.quant.command",    "quantize",  "int8 / int4 weight-only copy of a model "
                                                                    "directory (streams shard by shard)"),
    ("export",            "baichuan.gguf.command",     "export",    "a model directory as one GGUF file for "
                                                                    "llama.cpp / Ollama (streams)"),
    ("import",            "baichuan.gguf.command",     "import",    "a Baichuan-family GGUF file as a model "
                                                                    "directory"),
    ("generate",          "baichuan.infer.command",    "generate",  "complete a prompt"),
    ("chat",              "baichuan.infer.command",    "chat",      "multi-turn chat in the terminal"),
    ("serve",             "baichuan.infer.command",    "serve",     "OpenAI-compatible API and web chat for a model "
                                                                    "directory"),
    ("index",             "baichuan.rag.command",      "index",     "index a folder of documents for `baichuan ask` "
                                                                    "(BM25, incremental)"),
    ("ask",               "baichuan.rag.command",      "ask",       "answer a question from indexed documents, with "
                                                                    "citations"),
    ("info",              "baichuan.infer.command",    "info",      "describe a model directory"),
)


def _functions(module: str, name: str):
    """The module's `add_<name>_arguments` and `run_<name>` (`add_arguments` and `run` for no name)."""
    m = importlib.import_module(module)
    return (getattr(m, f"add_{name}_arguments" if name else "add_arguments"),
            getattr(m, f"run_{name}" if name else "run"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baichuan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups = {}
    for command, module, name, what in COMMANDS:
        first, _, second = command.partition(" ")
        where = sub
        if second:
            if first not in groups:
                g = sub.add_parser(first, help=GROUPS[first], description=GROUPS[first])
                groups[first] = g.add_subparsers(dest=f"{first}_command", required=True, metavar="ACTION")
            where, command = groups[first], second
        add_arguments, run = _functions(module, name)
        p = where.add_parser(command, help=what, description=what)
        add_arguments(p)
        p.set_defaults(func=run)
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
