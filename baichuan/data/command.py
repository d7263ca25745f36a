"""The corpus commands: `data run`, `data train-quality`, `tokenizer train` and `tokenizer report`.

Each command is a pair, `add_<name>_arguments(parser)` and `run_<name>(args)`, listed in cli.py's
table; the work is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path

from baichuan.errors import BaichuanError, bounded


# ---------------------------------------------------------------------------------- data run

def add_pipeline_arguments(p) -> None:
    p.add_argument("inputs", nargs="*", help="JSONL(.gz/.zst), parquet or .txt files, or folders of them")
    p.add_argument("--config", help="TOML file with the pipeline settings (see docs/data.md)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--tokenizer", help="tokenizer.model (or folder) to write token shards with")
    p.add_argument("--executor", choices=["local", "pool", "ray"],
                   help="local (one process), pool (--workers processes) or ray (a Ray cluster) (default: local)")
    p.add_argument("--workers", type=int, help="processes for the pool executor")
    p.add_argument("--format", choices=["jsonl", "parquet"], help="format of the cleaned document shards")
    p.add_argument("--text-field", help="the JSON/parquet field holding the text (default: text)")
    p.add_argument("--no-dedup", action="store_true", help="skip near-duplicate removal")


def run_pipeline(args) -> None:
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


# ------------------------------------------------------------------------ data train-quality

def add_quality_arguments(p) -> None:
    p.add_argument("--positives", nargs="+", required=True, help="files of good text")
    p.add_argument("--negatives", nargs="+", required=True, help="files of text to filter out")
    p.add_argument("--out", required=True, help="where to write the scorer")


def run_quality(args) -> None:
    from baichuan.data.quality import train_quality_model
    train_quality_model(args.positives, args.negatives, args.out)
    print(f"wrote {args.out}")


# --------------------------------------------------------------------------- tokenizer train

def add_tokenizer_arguments(p) -> None:
    p.add_argument("files", nargs="+", help="text files (.txt, .jsonl with a text field, .gz/.zst)")
    p.add_argument("--out", required=True, help="folder for tokenizer.model and its HF config")
    p.add_argument("--vocab-size", type=int, default=64000, help="pieces (default 64000, Baichuan-7B's; "
                                                                 "Baichuan 2 has 125696)")
    p.add_argument("--normalization", choices=["identity", "nmt_nfkc"], default="identity",
                   help="identity (Baichuan 2: text as it is) or nmt_nfkc (Baichuan 1) (default: identity)")
    p.add_argument("--input-sentence-size", type=int, default=10_000_000,
                   help="sentences SentencePiece samples for training (default 10,000,000)")
    p.add_argument("--character-coverage", type=bounded(float, 0.9, 1.0), default=0.9999,
                   help="share of characters the vocabulary must cover (default 0.9999, Baichuan 2's)")


def run_tokenizer(args) -> None:
    from baichuan.tokenizer import train_tokenizer
    tok = train_tokenizer(args.files, args.out, vocab_size=args.vocab_size, normalization=args.normalization,
                          input_sentence_size=args.input_sentence_size, character_coverage=args.character_coverage)
    print(f"wrote {Path(args.out) / 'tokenizer.model'} ({tok.vocab_size} pieces)")


# -------------------------------------------------------------------------- tokenizer report

def add_report_arguments(p) -> None:
    p.add_argument("--tokenizer", action="append", help="NAME=PATH (repeatable)")
    p.add_argument("--baichuan-assets", help="folder with baichuan1/ and baichuan2/ tokenizer.model to compare "
                                             "against (or set BAICHUAN_ASSETS)")
    p.add_argument("--json", help="also write the rows as JSON here")


def _named_paths(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise BaichuanError(f"--tokenizer expects NAME=PATH, got {spec!r}")
        out[name] = path
    return out


def run_report(args) -> None:
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
