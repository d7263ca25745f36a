"""The trained model out of a run: out/model as an HF-style Baichuan directory, and with LoRA the
adapter alone (PEFT layout) beside the model it was merged into."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch.distributed as dist

from baichuan.model import build
from baichuan.train.metrics import print0
from baichuan.train.settings import TrainConfig
from baichuan.train.setup import Run, initial_model
from baichuan.train.task_data import tokenizer_path


def export(cfg: TrainConfig, run: Run) -> dict:
    """Write out/model (rank 0 gathers the full weights); with LoRA, also out/adapter and the
    model with the adapter merged in (for QLoRA, into the unquantized base weights)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    from baichuan.checkpoint import save_pretrained
    out = Path(cfg.out)
    full = get_model_state_dict(run.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    paths = {"model_dir": str(out / "model")}
    if run.rank == 0:
        tok, path = None, tokenizer_path(cfg)  # (pretraining: reads the shards' manifest, hashes the file)
        if path:
            from baichuan.tokenizer import Tokenizer
            tok = Tokenizer.load(path)
        if cfg.lora is not None:
            from baichuan.train.lora import merge_lora, save_adapter
            # the trained adapters on the unquantized base (for QLoRA the int4 base is not merged into)
            model_out = initial_model(run.mc, dataclasses.replace(cfg, quantize_base=None))
            trained = full if not cfg.quantize_base else {k: v for k, v in full.items() if ".lora_" in k}
            model_out.load_state_dict(trained, strict=not cfg.quantize_base)
            paths["adapter_dir"] = str(save_adapter(model_out, out / "adapter",
                                                    base_model=str(Path(cfg.init_from).resolve())))
            merge_lora(model_out)
        else:
            model_out = build(run.mc, device="cpu", init=False)
            model_out.load_state_dict(full)
        save_pretrained(model_out.train(), out / "model", tokenizer=tok)
        print0(f"exported  {out / 'model'}" + (f" and {out / 'adapter'}" if cfg.lora is not None else ""))
    if dist.is_initialized():
        dist.barrier()
    return paths
