"""`baichuan export` (a model directory as GGUF) and `baichuan import` (a GGUF as a model directory)."""

from __future__ import annotations

from pathlib import Path


def add_export_arguments(p) -> None:
    from baichuan.gguf import OUTTYPES
    p.add_argument("model", help="a model directory: released, trained here, or imported")
    p.add_argument("--format", choices=["gguf"], default="gguf", help="the file format to write (default: gguf)")
    p.add_argument("--outtype", choices=OUTTYPES, default="f16",
                   help="f32/f16/bf16 are written here; q8_0, q4_0, q4_k_m by llama.cpp's quantizer "
                        "(needs llama-cpp-python) (default: f16)")
    p.add_argument("--out", help="the .gguf file (default: MODEL-OUTTYPE.gguf beside the model)")
    p.add_argument("--tokenizer", help="tokenizer.model or its folder (default: the model directory's)")


def run_export(args) -> None:
    from baichuan.gguf.export import export_gguf
    model = Path(args.model)
    out = Path(args.out) if args.out else model.resolve().parent / f"{model.resolve().name}-{args.outtype}.gguf"
    r = export_gguf(model, out, args.outtype, tokenizer=args.tokenizer)
    print(f"wrote {r.path} ({r.bytes / 1e6:,.1f} MB, llama.cpp architecture {r.arch!r}, {r.outtype}) "
          f"in {r.seconds:.1f} s, peak RSS {r.peak_rss_mb:,.0f} MB")
    print(f"Ollama: ollama create {model.resolve().name} -f {r.modelfile}")


def add_import_arguments(p) -> None:
    p.add_argument("gguf", help="a Baichuan-family GGUF file (from `baichuan export` or llama.cpp's converter)")
    p.add_argument("--out", required=True, help="the model directory to write")


def run_import(args) -> None:
    from baichuan.gguf.importer import import_gguf
    out = import_gguf(args.gguf, args.out)
    print(f"wrote {out}")
