"""Quantized model directories in and out: save, quantize a directory shard by shard, load.

The layout is that of `checkpoint.save_pretrained` (config.json, generation_config.json, safetensors
shards + index, tokenizer files), with the quantized tensors and `quantization_config` described in
`baichuan.quant`. Writing reuses checkpoint.py's sharding and atomic-rename helpers; reading reuses
its shard list, tensor reader and streaming `load_weights`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from baichuan.checkpoint import (
    IGNORED_SUFFIXES,
    Assembler,
    _iter_tensors,
    _write_json,
    atomic_dir,
    load_weights,
    weight_files,
    write_generation_config,
    write_index,
    write_shard,
    write_weights,
)
from baichuan.config import GenerationConfig, load_config, to_hf_dict
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, materialize
from baichuan.runtime import checked_device, default_device, model_dtype
from baichuan.quant.linear import (
    GROUP_SIZES,
    LM_HEAD,
    MODULES,
    QUANT_METHOD,
    QUANTIZED,
    Int4Linear,
    Int8Linear,
    _check_mode,
    _targets,
    quantization_config,
    quantize,
    quantize_weight,
    use_kernels,
)

TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenization_baichuan.py")


# ---------------------------------------------------------------------------------------- saving

def _write_config(tmp: Path, cfg, qc: dict, dtype: torch.dtype) -> None:
    _write_json(tmp / "config.json", to_hf_dict(cfg, torch_dtype=str(dtype).removeprefix("torch."))
                | {"quantization_config": qc})


STORAGE_DTYPES = {(Int8Linear, "scales"): torch.float32, (Int4Linear, "scales"): torch.bfloat16,
                  (Int4Linear, "zeros"): torch.bfloat16}


def checkpoint_state(model: Baichuan) -> dict[str, torch.Tensor]:
    """The tensors a quantized model saves: its state dict, with int4 layers that hold
    baichuan.kernels' CPU layout written back in the checkpoint's (the same bytes, reordered)."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if isinstance(m, Int4Linear) and m.cpu_gemv:
            state.update({f"{name}.{k}": v for k, v in m.checkpoint_tensors().items()})
    return state


def checkpoint_dtypes(model: Baichuan, dtype: torch.dtype | None = None,
                      state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.dtype]:
    """The dtype each tensor of `state` (default: `checkpoint_state(model)`) is saved in: quantized
    layers' tensors in their checkpoint dtypes (even after a model.to(dtype)), the rest in `dtype`
    (default: the embedding's)."""
    dtype = dtype or model.model.embed_tokens.weight.dtype
    quant = {name: type(m) for name, m in model.named_modules() if isinstance(m, QUANTIZED)}
    out = {}
    for k, v in (state if state is not None else checkpoint_state(model)).items():
        prefix, _, field = k.rpartition(".")
        out[k] = STORAGE_DTYPES.get((quant[prefix], field), v.dtype) if prefix in quant else dtype
    return out


def save_quantized(model: Baichuan, out_dir: str | Path, tokenizer=None,
                   generation_config: GenerationConfig | None = None, dtype: torch.dtype | None = None,
                   max_shard_bytes: int = 2 * 1024 ** 3) -> Path:
    """Write a quantized model as an HF-style directory (atomically, like `save_pretrained`).
    Quantized tensors go in their checkpoint dtypes; the rest in `dtype` (default: the model's)."""
    out_dir = Path(out_dir)
    qc = quantization_config(model)
    if qc is None:
        raise BaichuanError("the model is not quantized; call quantize() first, or use checkpoint.save_pretrained")
    if any(isinstance(m, Int4Linear) and m.packed is not None for m in model.modules()):
        raise BaichuanError("int4 layers were switched to torch's kernel layout by use_kernels() and cannot be saved; "
                            "save before use_kernels(), or load the model again with kernels=False")
    state = checkpoint_state(model)  # int4 layers on baichuan.kernels: reordered once, here
    dtypes = checkpoint_dtypes(model, dtype, state)
    if model.cfg.tie_word_embeddings and "lm_head.weight" in state:
        del state["lm_head.weight"]  # the embedding (a quantized head is stored as its own tensors)
    with atomic_dir(out_dir) as tmp:
        write_weights(tmp, state, dtypes, max_shard_bytes)
        _write_config(tmp, model.cfg, qc, dtypes["model.embed_tokens.weight"])
        write_generation_config(tmp, model.cfg, generation_config)
        if tokenizer is not None:
            tokenizer.save(tmp)
    return out_dir


def default_out_dir(src_dir: str | Path, mode: str, group_size: int = 128) -> Path:
    """Where `baichuan quantize` writes by default: beside the source, the mode in the name."""
    src = Path(src_dir)
    if src.name in ("", ".."):  # "." and ".." name no folder
        src = src.resolve()
    return src.parent / (f"{src.name}-int8" if mode == "int8" else f"{src.name}-int4-g{group_size}")


def _other_model(folder: Path) -> bool:
    """A model in `folder` that is not an earlier output of quantize_dir (full precision, or
    quantized by another tool), which a quantized copy must not replace."""
    try:
        qc = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, ValueError, AttributeError):  # no config.json, or not a model's: atomic_dir decides
        return False
    return not (isinstance(qc, dict) and qc.get("quant_method") == QUANT_METHOD)


def quantize_dir(src_dir: str | Path, out_dir: str | Path, mode: str = "int8", group_size: int = 128,
                 symmetric: bool | None = None, device=None, dtype: torch.dtype | None = None,
                 lm_head: bool = False) -> Path:
    """Quantize a model directory into a new one, one source shard at a time: each shard is read,
    its five Linear weights per block quantized on `device` (default: CUDA if available), and one
    output shard written, so memory peaks near one shard plus its output. Other tensors keep their
    dtype (or `dtype`). Tokenizer files and generation_config.json are copied."""
    src, out_dir = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        raise BaichuanError(f"{src}: not a directory")
    a, b = src.resolve(), out_dir.resolve()
    if a == b or a in b.parents or b in a.parents:  # the output replaces its folder: the source would be lost
        raise BaichuanError(f"{out_dir}: the output folder would replace the model being quantized ({src}); "
                            "choose another --out")
    if _other_model(out_dir):
        raise BaichuanError(f"{out_dir}: holds a model that a quantized copy would replace (only an earlier "
                            "output of `baichuan quantize` is replaced); choose another --out")
    cfg = load_config(src)
    if "quantization_config" in json.loads((src / "config.json").read_text(encoding="utf-8")):
        raise BaichuanError(f"{src / 'config.json'}: the model is already quantized (field 'quantization_config'); "
                            "quantize the bf16/fp32 model")
    symmetric = _check_mode(mode, group_size, symmetric)
    device = checked_device(default_device(device))
    with torch.device("meta"):  # the expected names and shapes; also checks group_size against every layer
        expected = quantize(Baichuan(cfg), mode, group_size, symmetric, lm_head=lm_head)
    linears = {f"{name}.weight": name for name, _, _ in _targets(expected, lm_head)}
    shapes = {f"{name}.weight": (m.out_features, m.in_features) for name, m in expected.named_modules()
              if isinstance(m, QUANTIZED)}
    shapes |= {k: tuple(v.shape) for k, v in expected.state_dict().items()
               if k.rpartition(".")[0] not in linears.values()}
    files = weight_files(src)
    seen, weight_map, total, out_dtype = set(), {}, 0, dtype
    assembler = Assembler(cfg, str(src))  # the llama layout's q/k/v_proj -> W_pack, ...
    if cfg.tie_word_embeddings and not lm_head:
        shapes.pop("lm_head.weight", None)  # the embedding; a quantized head would be its own tensor
    with atomic_dir(out_dir) as tmp:
        for i, file in enumerate(files, 1):
            tensors = {}
            for disk_name, disk_tensor in _iter_tensors(file):
                if disk_name.endswith(IGNORED_SUFFIXES):
                    continue
                for name, t in assembler.add(disk_name, disk_tensor):
                    if name not in shapes:
                        raise BaichuanError(f"{file}: unexpected tensor {disk_name!r}")
                    if tuple(t.shape) != shapes[name]:
                        raise BaichuanError(f"{file}: tensor {name!r} has shape {list(t.shape)}, "
                                            f"but config.json implies {list(shapes[name])}")
                    if name in linears:
                        t = t.to(device)
                        if name == f"{LM_HEAD}.weight" and cfg.norm_head:  # the effective (normalized) rows
                            t = F.normalize(t.float(), dim=-1).to(t.dtype)
                        q = quantize_weight(t, mode, group_size, symmetric)
                        tensors.update({f"{linears[name]}.{field}": v.cpu() for field, v in q.items()})
                    else:
                        out_dtype = out_dtype or t.dtype
                        tensors[name] = t.to(dtype) if dtype else t
                    seen.add(name)
            if tensors:
                total += write_shard(tmp, f"model-{i:05d}-of-{len(files):05d}.safetensors", tensors, weight_map)
            del tensors
        assembler.check_done()
        missing = [n for n in shapes if n not in seen]
        if missing:
            raise BaichuanError(f"{src}: {len(missing)} tensors missing from the checkpoint, first: {missing[0]!r}")
        write_index(tmp, weight_map, total)
        _write_config(tmp, cfg, quantization_config(expected), out_dtype or torch.bfloat16)
        for f in (*TOKENIZER_FILES, "generation_config.json"):
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
    return out_dir


# --------------------------------------------------------------------------------------- loading

def read_quantization_config(model_dir: str | Path) -> dict | None:
    """config.json's `quantization_config`, checked; None when absent. A config that is not ours
    (bitsandbytes releases: Baichuan2-*-4bits) is refused with a clear error."""
    file = Path(model_dir) / "config.json"
    qc = json.loads(file.read_text(encoding="utf-8")).get("quantization_config")
    if qc is None:
        return None
    if not isinstance(qc, dict) or qc.get("quant_method") != QUANT_METHOD:
        method = qc.get("quant_method") if isinstance(qc, dict) else None
        raise BaichuanError(f"{file}: field 'quantization_config' (quant_method {method!r}) marks a "
                            "bitsandbytes-quantized release, which cannot be loaded; load the bf16 model, "
                            f"or quantize it here (quant_method {QUANT_METHOD!r})")
    bits, group_size, symmetric, modules = (qc.get(k) for k in ("bits", "group_size", "symmetric", "modules"))
    problems = []
    if bits not in (8, 4):
        problems.append(f"bits must be 8 or 4, got {bits!r}")
    elif bits == 4 and group_size not in GROUP_SIZES:
        problems.append(f"group_size must be one of {', '.join(map(str, GROUP_SIZES))}, got {group_size!r}")
    if not isinstance(symmetric, bool) or (bits == 8 and not symmetric):
        problems.append(f"symmetric must be true or false (true for 8 bits), got {symmetric!r}")
    if modules is not None and list(modules) not in (list(MODULES), [*MODULES, LM_HEAD]):
        problems.append(f"modules must be {list(MODULES)} (optionally + {LM_HEAD!r}), got {modules!r}")
    if problems:
        raise BaichuanError(f"{file}: invalid field 'quantization_config': " + "; ".join(problems))
    return qc


def load_quantized(model_dir: str | Path, device="cpu", dtype: torch.dtype | None = None,
                   kernels: bool | None = None, **config_overrides) -> Baichuan:
    """A directory written by `save_quantized` / `quantize_dir` -> quantized model in eval mode.

    Built on meta, modules swapped, materialized on `device` and filled shard by shard. `dtype` (of
    the activations, embeddings, norms and lm_head) defaults to `runtime.model_dtype(device)`: the
    full-precision reference on a CPU (`load_pretrained` asks for bf16);
    `kernels` (default: when dtype is bf16) calls `use_kernels` on the loaded model."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BaichuanError(f"{model_dir}: not a directory")
    cfg = load_config(model_dir)
    qc = read_quantization_config(model_dir)
    if qc is None:
        raise BaichuanError(f"{model_dir / 'config.json'}: no 'quantization_config'; this is not a quantized model "
                            "(use checkpoint.load_pretrained)")
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    device = checked_device(device)
    dtype = model_dtype(device, dtype)
    with torch.device("meta"):
        model = Baichuan(cfg)
    model.to(dtype=dtype)
    quantize(model, "int8" if qc["bits"] == 8 else "int4", qc.get("group_size") or 128, qc["symmetric"],
             lm_head=LM_HEAD in (qc.get("modules") or ()))
    materialize(model, device)
    model.tie_weights()
    load_weights(model, model_dir)
    model.eval()
    if kernels if kernels is not None else dtype == torch.bfloat16:
        use_kernels(model)
    return model
