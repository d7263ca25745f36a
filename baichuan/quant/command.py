"""`baichuan quantize`: an int8 / int4 weight-only copy of a model directory (see the package
docstring for the format)."""

from __future__ import annotations

from baichuan.errors import BaichuanError


def add_quantize_arguments(p) -> None:
    p.add_argument("model", help="model directory (bf16 or fp32)")
    p.add_argument("--mode", choices=["int8", "int4"], default="int8",
                   help="int8 per output channel or int4 group-wise (default: int8)")
    p.add_argument("--group-size", type=int, choices=[32, 64, 128],
                   help="int4 input columns per scale (default: the largest that divides every layer)")
    p.add_argument("--symmetric", action="store_true", help="int4 without zero points (default: asymmetric)")
    p.add_argument("--lm-head", action="store_true", help="quantize the LM head too (not in Baichuan's releases; "
                                                          "helps most on CPUs and small models)")
    p.add_argument("--out", help="default: MODEL-int8 / MODEL-int4-gN beside the model")
    p.add_argument("--device", help="where to quantize (default: cuda if available)")


def run_quantize(args) -> None:
    from baichuan.config import load_config
    from baichuan.quant import default_out_dir, largest_group, quantize_dir
    if args.mode == "int8" and args.group_size is not None:
        raise BaichuanError("--group-size is for int4; int8 has one scale per output channel")
    group = args.group_size or (largest_group(load_config(args.model)) if args.mode == "int4" else 128)
    out = args.out or default_out_dir(args.model, args.mode, group)
    quantize_dir(args.model, out, args.mode, group, True if args.symmetric else None, device=args.device,
                 lm_head=args.lm_head)
    print(f"wrote {out}")
