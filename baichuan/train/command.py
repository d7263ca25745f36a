"""The training commands: `train` (pretraining), `sft`, `dpo` and `adapt`.

train/sft/dpo share one trainer; their flags come from TrainConfig's field metadata
(train/settings.py), each command showing the flags its task uses. Each command is a pair,
`add_<name>_arguments(parser)` and `run_<name>(args)`, listed in cli.py's table.
"""

from __future__ import annotations

import os

from baichuan.train.settings import add_args


def _run_task(args, task: str) -> None:
    from baichuan.train.pretrain import config_from_args, train
    args.task = task  # each command is one task: its parser has no --task
    train(config_from_args(args))


def add_pretrain_arguments(p) -> None:
    add_args(p, "pretrain")


def run_pretrain(args) -> None:
    _run_task(args, "pretrain")


def add_sft_arguments(p) -> None:
    add_args(p, "sft")


def run_sft(args) -> None:
    _run_task(args, "sft")


def add_dpo_arguments(p) -> None:
    add_args(p, "dpo")


def run_dpo(args) -> None:
    _run_task(args, "dpo")


def add_adapt_arguments(p) -> None:
    p.add_argument("--init-from", required=True, help="the model directory to adapt (its tokenizer is used)")
    p.add_argument("--domain", nargs="+", required=True, help="domain corpus files/folders")
    p.add_argument("--general", nargs="+", required=True, help="general corpus files/folders to replay")
    p.add_argument("--replay", type=float, default=0.2, help="share of general text per language (default 0.2)")
    p.add_argument("--vertical", default="medicine", help="medicine, education or law: the C-Eval subjects to report")
    p.add_argument("--evaldata", help="C-Eval folder for the before/after report (or BAICHUAN_EVALDATA)")
    p.add_argument("--eval-limit", type=int, help="questions per subject (default: all)")
    p.add_argument("--out", required=True, help="run folder (data, training run, adapted model, report)")
    p.add_argument("--workers", type=int, default=2, help="data pipeline processes (default 2)")
    g = p.add_argument_group("training (defaults: as `baichuan train` sets them for this model)")
    for flag, conv, what in (("--steps", int, "training steps"), ("--lr", float, "peak learning rate"),
                             ("--seq-len", int, "tokens per sequence"), ("--batch-size", int, "sequences per step"),
                             ("--grad-accum", int, "micro-steps per optimizer step"),
                             ("--warmup", int, "warm-up steps")):
        g.add_argument(flag, type=conv, help=what)
    g.add_argument("--compile", action="store_true", help="torch.compile the model")


def run_adapt(args) -> None:
    from baichuan.train.adapt import adapt
    opts = {k: getattr(args, k) for k in ("steps", "lr", "seq_len", "batch_size", "grad_accum", "warmup")
            if getattr(args, k) is not None}
    adapt(args.init_from, args.domain, args.general, args.out, replay=args.replay, vertical=args.vertical,
          evaldata=args.evaldata or os.environ.get("BAICHUAN_EVALDATA"), eval_limit=args.eval_limit,
          workers=args.workers, compile=args.compile, **opts)
