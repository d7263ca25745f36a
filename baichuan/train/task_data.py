"""What each task trains on: token shards (pretraining) or chat / preference JSONL (SFT, DPO),
the tokenizer that goes with them, and the objective over that data."""

from __future__ import annotations

import json
from pathlib import Path

from baichuan.data.loader import TokenLoader
from baichuan.data.shards import open_shards
from baichuan.data.writers import sha256_file
from baichuan.errors import BaichuanError
from baichuan.train.settings import TrainConfig


def tokenizer_path(cfg: TrainConfig) -> str | None:
    """--tokenizer, else the --init-from model's, else (pretraining) the one `baichuan data run`
    recorded making the shards with, so the exported model carries it."""
    if cfg.tokenizer or cfg.init_from or cfg.task != "pretrain":
        return cfg.tokenizer or cfg.init_from
    try:
        recorded = json.loads((Path(cfg.data).parent / "manifest.json").read_text(encoding="utf-8"))["config"]["tokenizer"]
        made_with = open_shards(cfg.data).manifest.get("tokenizer_sha256")
    except (OSError, ValueError, KeyError, TypeError, BaichuanError):
        return None
    # as recorded (absolute, or relative to where data ran): only if it is still the file the shards were made with
    return recorded if isinstance(recorded, str) and made_with and _sha256(recorded) == made_with else None


def _sha256(tokenizer: str) -> str | None:
    from baichuan.tokenizer import model_file
    file = model_file(tokenizer)
    return sha256_file(file) if file.is_file() else None


def check_shards_tokenizer(cfg: TrainConfig, shards) -> None:
    """Token ids mean nothing with another tokenizer: refuse a --tokenizer or --init-from model
    whose tokenizer.model is not the one the shards were made with (tokens.json records it). A
    tokenizer found through `tokenizer_path` matches by construction."""
    given, made_with = cfg.tokenizer or cfg.init_from, shards.manifest.get("tokenizer_sha256")
    used = _sha256(given) if given and made_with else None
    if used and used != made_with:
        raise BaichuanError(f"{given} (tokenizer sha256 {used[:12]}…) is not the tokenizer the shards in "
                            f"{shards.folder} were made with (sha256 {made_with[:12]}…); pass that one with --tokenizer")


def data_vocab(cfg: TrainConfig) -> int:
    """The vocabulary size the data's token ids come from: the shards', or the tokenizer's."""
    if cfg.task == "pretrain":
        shards = open_shards(cfg.data)
        check_shards_tokenizer(cfg, shards)
        return shards.manifest["vocab_size"]
    path = tokenizer_path(cfg)
    if not path:
        raise BaichuanError(f"{cfg.task} needs a tokenizer: give --tokenizer or --init-from a model directory")
    from baichuan.tokenizer import Tokenizer
    return Tokenizer.load(path).vocab_size


def make_objective(cfg: TrainConfig, mc, model, rank: int, world: int, device, amp):
    """(objective, tokens per sequence, a line describing the data) for the task."""
    from baichuan.train.objectives import DPOObjective, LMObjective, PackedLoader
    if cfg.task == "pretrain":
        shards = open_shards(cfg.data)
        loader = TokenLoader(shards, cfg.seq_len, cfg.batch_size, rank, world, cfg.seed)
        total = shards.manifest["total_tokens"]
        return LMObjective(loader), cfg.seq_len, \
            f"{total:,} tokens in {len(shards.files)} shard(s)"
    from baichuan.tokenizer import Tokenizer
    from baichuan.train.chat_data import load_chats, load_pairs, pack
    tok = Tokenizer.load(tokenizer_path(cfg))
    if cfg.task == "sft":
        examples, report = load_chats(cfg.data, tok, cfg.seq_len + 1, cfg.on_long, cfg.on_error, tok.eos_id)
        arrays = pack(examples, cfg.seq_len, pad_id=mc.pad_token_id)
        loader = PackedLoader(arrays, cfg.batch_size, rank, world, cfg.seed)
        learned = int((arrays["labels"][:, 1:] != -100).sum())
        return LMObjective(loader), cfg.seq_len, \
            (f"{report.summary()}; packed into {loader.total} rows of {cfg.seq_len + 1}, {learned:,} tokens learned"
             f"{report.dropped_lines()}")
    arrays, report = load_pairs(cfg.data, tok, cfg.seq_len, cfg.on_long, cfg.on_error, tok.eos_id)
    objective = DPOObjective(model, arrays, cfg.batch_size, rank, world, cfg.seed, cfg.dpo_beta, device, amp)
    return objective, 2 * cfg.seq_len, f"{report.summary()}; reference log-probs computed once{report.dropped_lines()}"
