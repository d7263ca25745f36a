"""Training settings: `TrainConfig`, and the command-line flags of `baichuan train / sft / dpo`
made from it. Every field says what it is for, which group of flags it belongs to and which tasks
use it, so each command's `--help` shows its own flags only, each explained. Light on purpose (no
torch): building the command line must not take seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from baichuan.errors import BaichuanError

TASKS = ("pretrain", "sft", "dpo")
FINE_TUNING = ("sft", "dpo")


def _f(default, help: str, group: str, tasks: tuple[str, ...] = TASKS, **kw):
    """A TrainConfig field with its flag's help text, group and the tasks that use it."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, "group": group, "tasks": tasks, **kw})


DATA, BATCH, OPTIM, SPEED, LOGS, TUNE, EXPORT = (
    "data and model", "batch and schedule", "optimizer", "precision and speed", "logging, checkpoints, resume",
    "fine-tuning", "export")


@dataclass
class TrainConfig:
    data: str = field(metadata={"help": "pretrain: token shards (tokens.json from `baichuan data run`); "
                                        "sft: chat JSONL; dpo: prompt/chosen/rejected JSONL", "group": DATA,
                                "tasks": TASKS})
    task: str = _f("pretrain", "what to train: pretrain, sft or dpo (`python -m baichuan.train`; the commands "
                               "are `baichuan train`, `sft` and `dpo`)", DATA, ())
    out: str = _f("out/train", "run folder: checkpoints/, metrics.jsonl, loss.png, model/", DATA)
    preset: str = _f("small", "model size to pretrain from scratch: tiny, small, 100m, 1b, baichuan-7b, ... "
                              "(ignored with --init-from)", DATA, ("pretrain",))
    model: dict = _f(dict, 'JSON: model config overrides, e.g. \'{"num_layers": 4, "max_len": 2048}\'', DATA, json=True)
    init_from: str | None = _f(None, "a model directory to start from (continued pretraining, sft, dpo)", DATA)
    tokenizer: str | None = _f(None, "tokenizer.model or folder to export with the model (default: --init-from's, "
                                     "or the one the shards were made with)", DATA)
    val_data: dict = _f(dict, 'JSON: held-out token shard folders by name, e.g. \'{"zh": "out/zh", "en": "out/en"}\'',
                        DATA, json=True)
    seq_len: int = _f(512, "tokens per training sequence", BATCH)
    batch_size: int = _f(8, "sequences per GPU (or process) per micro-step", BATCH)
    grad_accum: int = _f(1, "micro-steps per optimizer step; the global batch is batch-size x processes x this",
                         BATCH)
    steps: int = _f(1000, "optimizer steps in all (a resumed run stops here too)", BATCH)
    lr: float = _f(3e-4, "peak learning rate", BATCH)
    min_lr_ratio: float = _f(0.1, "final learning rate as a share of --lr", BATCH)
    warmup: int = _f(100, "linear warm-up steps", BATCH)
    schedule: str = _f("cosine", "decay after the warm-up: cosine, linear or constant", BATCH)
    weight_decay: float = _f(0.1, "AdamW weight decay (matrices only)", OPTIM)
    betas: tuple = _f((0.9, 0.95), "JSON: AdamW betas, e.g. [0.9, 0.95]", OPTIM, json=True)
    grad_clip: float = _f(1.0, "global gradient-norm clip (0: off)", OPTIM)
    z_loss_weight: float | None = _f(None, "Baichuan 2's max-z loss weight (default: the model config's; the report "
                                           "used 2e-4)", OPTIM)
    dtype: str = _f("auto", "compute dtype: auto (bf16 on GPUs that have it, else fp32), bfloat16 or float32", SPEED)
    compile: bool = _f(False, "torch.compile the model", SPEED)
    activation_checkpointing: bool = _f(False, "recompute activations in backward (less memory, ~30%% slower)", SPEED)
    seed: int = _f(0, "seed for the weights, the data order and dropout", SPEED)
    log_every: int = _f(10, "steps between progress lines (and metrics.jsonl records)", LOGS)
    eval_every: int = _f(200, "steps between held-out evaluations", LOGS)
    eval_batches: int = _f(20, "batches per held-out evaluation", LOGS)
    ckpt_every: int = _f(500, "steps between checkpoints", LOGS)
    keep: int = _f(3, "checkpoints kept (0: all)", LOGS)
    resume: str = _f("auto", "auto (the latest checkpoint under --out), never, or a checkpoint path", LOGS)
    spike_sigma: float = _f(6.0, "skip a step whose loss is this many standard deviations above the recent mean",
                            LOGS)
    max_skips: int = _f(10, "consecutive skipped steps after which the run stops", LOGS)
    export: bool = _f(True, "write --out/model at the end (--no-export: checkpoints only)", EXPORT)
    export_only: bool = _f(False, "write the latest checkpoint under --out as a model directory, and stop", EXPORT)
    lora: dict | None = _f(None, 'JSON: train LoRA adapters only, e.g. \'{"r": 8, "alpha": 16}\' (\'{}\': defaults)',
                           TUNE, json=True)
    quantize_base: str | None = _f(None, "QLoRA: int4 (or int4:GROUP) base weights under the adapters; needs --lora",
                                   TUNE)
    on_long: str = _f("skip", "a conversation longer than seq-len + 1 tokens: skip or truncate", TUNE, FINE_TUNING)
    on_error: str = _f("skip", "a malformed line: skip (reported and counted) or refuse", TUNE, FINE_TUNING)
    dpo_beta: float = _f(0.1, "DPO's beta (strength of the preference against the reference model)", TUNE, ("dpo",))

    def __post_init__(self):
        """Every setting checked before any work (a bad schedule name used to surface after the warmup)."""
        if self.task not in TASKS:
            raise BaichuanError(f"task must be pretrain, sft or dpo, got {self.task!r}")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise BaichuanError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {self.dtype!r}")
        if self.lora is not None:
            self.lora = lora_settings(self.lora)
        if self.quantize_base and self.lora is None:
            raise BaichuanError("quantize_base (QLoRA) trains adapters only: give lora settings too "
                                "(--lora '{}' for the defaults)")
        if self.on_long not in ("skip", "truncate") or self.on_error not in ("skip", "refuse"):
            raise BaichuanError("on_long must be skip or truncate; on_error must be skip or refuse")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise BaichuanError(f"schedule must be cosine, linear or constant, got {self.schedule!r}")
        for name in ("seq_len", "batch_size", "grad_accum", "steps", "log_every", "eval_every", "eval_batches",
                     "ckpt_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise BaichuanError(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        if self.keep < 0 or self.warmup < 0 or not self.lr > 0 or not self.dpo_beta > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise BaichuanError("keep and warmup must be >= 0, lr and dpo_beta > 0, min_lr_ratio in [0, 1]")

    def global_batch(self, world: int) -> int:
        return self.batch_size * world * self.grad_accum


JSON_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("json"))


def lora_settings(lora) -> dict:
    """--lora, checked: {} takes add_lora's defaults (r 8, alpha 16, dropout 0.05, all targets)."""
    from baichuan.train.lora import TARGETS
    allowed = {"r", "alpha", "dropout", "targets"}
    if not isinstance(lora, dict) or set(lora) - allowed:
        raise BaichuanError(f"--lora must be a JSON object with any of {sorted(allowed)}, got {json.dumps(lora)}")
    r, alpha, dropout, targets = (lora.get(k) for k in ("r", "alpha", "dropout", "targets"))
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise BaichuanError(f"--lora: r must be a whole number >= 1, got {json.dumps(r)}")
    for name, v in (("alpha", alpha), ("dropout", dropout)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise BaichuanError(f"--lora: {name} must be a number >= 0, got {json.dumps(v)}")
    if dropout is not None and dropout >= 1:
        raise BaichuanError(f"--lora: dropout must be below 1, got {dropout}")
    if targets is not None and (not isinstance(targets, list) or not targets
                                or not all(isinstance(t, str) and t in TARGETS for t in targets)):
        raise BaichuanError(f"--lora: targets must be a non-empty list of {', '.join(TARGETS)}, "
                            f"got {json.dumps(targets)}")
    return lora


def add_args(p: argparse.ArgumentParser, task: str | None = None) -> None:
    """The flags of TrainConfig's fields that `task` uses (all with task None), in their groups."""
    p.add_argument("--config", help="TOML file with these settings (flags given here override it)")
    groups = {}
    for f in dataclasses.fields(TrainConfig):
        if task is not None and task not in f.metadata["tasks"]:
            continue
        group = groups.get(f.metadata["group"]) or groups.setdefault(f.metadata["group"],
                                                                       p.add_argument_group(f.metadata["group"]))
        flag, default = "--" + f.name.replace("_", "-"), _default(f)
        help_text = f.metadata["help"] + ("" if default is None else f" (default: {default})")
        if f.metadata.get("json"):
            group.add_argument(flag, metavar="JSON", help=help_text)
        elif f.type == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
        else:
            conv = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            group.add_argument(flag, type=conv if "None" not in str(f.type) else _or_none(conv), help=help_text)


def _default(f: dataclasses.Field):
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return None if value is dataclasses.MISSING or value is None or value in ({}, ()) else value


def _or_none(conv):
    return lambda s: None if s.lower() == "none" else conv(s)


def config_from_args(args) -> TrainConfig:
    import tomllib
    raw = {}
    if getattr(args, "config", None):
        try:
            raw = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BaichuanError(f"{args.config}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise BaichuanError(f"{args.config}: invalid TOML ({e})") from None
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is None:
            continue
        if f.name in JSON_FIELDS:
            try:
                v = json.loads(v)
            except json.JSONDecodeError as e:
                raise BaichuanError(f"--{f.name.replace('_', '-')}: not JSON ({e})") from None
        raw[f.name] = v
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise BaichuanError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    saved = Path(raw["out"]) / "config.json" if raw.get("out") else None
    if raw.get("export_only") and "data" not in raw and saved and saved.is_file():  # the run's own settings, as it saved them
        try:
            kept = {f.name for f in dataclasses.fields(TrainConfig)} - {"resume", "export", "export_only"}
            raw = {**{k: v for k, v in json.loads(saved.read_text(encoding="utf-8")).items() if k in kept}, **raw}
        except (json.JSONDecodeError, AttributeError) as e:
            raise BaichuanError(f"{saved}: not a saved training config ({e})") from None
    if "data" not in raw:
        raise BaichuanError("training needs --data (token shards from `baichuan data run`, or chat JSONL for sft/dpo)")
    return TrainConfig(**raw)
