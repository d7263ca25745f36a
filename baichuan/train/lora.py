"""LoRA (Hu et al. 2021) on the block's Linear layers, applied from outside the model.

Each chosen layer keeps its frozen weight under its released name and gains `lora_A` / `lora_B`
(rank r) plus a forward hook adding scale * B(A(dropout(x))), scale = alpha / r. The base can be a
plain Linear or a quantized one (QLoRA over the int4 weights of quant.py). Adapters are saved in
PEFT's layout (adapter_config.json + adapter_model.safetensors, keys
`base_model.model.<name>.lora_A.weight`), so PEFT loads them onto a Baichuan model too, and merged
into the weights on demand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn

from baichuan.errors import BaichuanError

TARGETS = ("W_pack", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _features(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if hasattr(module, "in_features") and hasattr(module, "out_features"):  # quantized Linear
        return module.in_features, module.out_features
    raise BaichuanError(f"LoRA needs a Linear layer, got {type(module).__name__}")


def _hook(module, inputs, output):
    x = inputs[0]
    delta = module.lora_B(module.lora_A(module.lora_dropout(x.to(module.lora_A.weight.dtype))))
    return output + (module.lora_scale * delta).to(output.dtype)


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.05,
             targets: tuple[str, ...] | list[str] = TARGETS) -> list[str]:
    """Freeze every parameter, add trainable adapters to the `targets` layers of every block;
    returns the adapted module names. A is Kaiming-initialized and B zero, so the model starts
    out unchanged."""
    unknown = set(targets) - set(TARGETS)
    if unknown or r < 1:
        raise BaichuanError(f"LoRA targets must be among {', '.join(TARGETS)} and r >= 1 "
                            f"(got {sorted(unknown)} / r={r})")
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in targets:
            continue
        fan_in, fan_out = _features(module)
        ref = next(p for p in model.parameters() if p.is_floating_point())
        module.lora_A = nn.Linear(fan_in, r, bias=False, device=ref.device, dtype=torch.float32)
        module.lora_B = nn.Linear(r, fan_out, bias=False, device=ref.device, dtype=torch.float32)
        nn.init.kaiming_uniform_(module.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(module.lora_B.weight)
        module.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        module.lora_dropout.train(module.training)  # an eval-mode model stays deterministic
        module.lora_scale = alpha / r
        module._lora_handle = module.register_forward_hook(_hook)
        names.append(name)
    model.lora_config = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": list(targets)}
    return names


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".lora_A." in k or ".lora_B." in k}


def save_adapter(model: nn.Module, out_dir: str | Path, base_model: str | None = None) -> Path:
    from safetensors.torch import save_file

    from baichuan.checkpoint import _write_json, atomic_dir
    from baichuan.data.writers import plain_mode
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, marker=ADAPTER_CONFIG) as tmp:
        tensors = {f"base_model.model.{k}": v.detach().float().cpu().contiguous()
                   for k, v in lora_state(model).items()}
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        plain_mode(tmp / ADAPTER_WEIGHTS)
        _write_json(tmp / ADAPTER_CONFIG, {"peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none",
                                           "fan_in_fan_out": False, "inference_mode": True,
                                           "base_model_name_or_path": base_model, **model.lora_config})
    return out_dir


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Add the adapter of `adapter_dir` (PEFT layout) to `model`."""
    from safetensors.torch import load_file
    adapter_dir = Path(adapter_dir)
    try:
        cfg = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    except FileNotFoundError as e:
        raise BaichuanError(f"{adapter_dir}: not a LoRA adapter folder ({e.filename} is missing)") from None
    if cfg.get("peft_type") != "LORA":
        raise BaichuanError(f"{adapter_dir / ADAPTER_CONFIG}: peft_type {cfg.get('peft_type')!r} is not LORA")
    add_lora(model, r=cfg["r"], alpha=cfg["lora_alpha"], dropout=0.0, targets=cfg["target_modules"])
    state = {k.removeprefix("base_model.model."): v for k, v in tensors.items()}
    own = lora_state(model)
    if set(state) != set(own):
        missing = sorted(set(own) - set(state))[:1] or sorted(set(state) - set(own))[:1]
        raise BaichuanError(f"{adapter_dir / ADAPTER_WEIGHTS}: does not match this model (first mismatch {missing})")
    model.load_state_dict(state, strict=False)
    return model


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its Linear weight (W += scale * B @ A) and remove it."""
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A"):
            continue
        if not isinstance(module, nn.Linear):
            raise BaichuanError(f"{name}: cannot merge into a {type(module).__name__}; load the unquantized base "
                                "model, add the adapter to it (load_adapter) and merge that")
        delta = module.lora_B.weight.float() @ module.lora_A.weight.float() * module.lora_scale
        module.weight += delta.to(module.weight.dtype)
        module._lora_handle.remove()
        for attr in ("lora_A", "lora_B", "lora_dropout", "lora_scale", "_lora_handle"):
            delattr(module, attr)
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model
