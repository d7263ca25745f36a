"""HF-style model directories in and out: the one place that defines their layout.

Reads what Baichuan released, unchanged: `config.json` (either class name, either length key),
sharded `pytorch_model-*.bin` + `pytorch_model.bin.index.json` (loaded with weights_only=True, never
unpickled as code), or safetensors shards + `model.safetensors.index.json`, or a single file of
either kind. Rotary `inv_freq` buffers found in Baichuan-7B files are ignored.

Writes: `config.json`, `generation_config.json`, `model-0000i-of-0000n.safetensors` +
`model.safetensors.index.json` with the released tensor names, the tokenizer files, and the HF
remote code (`baichuan/hf/*.py`, named by config.json's `auto_map`). The directory appears
complete or not at all (written beside, then renamed).

Loading streams one shard at a time into a model built on the meta device and materialized on the
target device, so host memory peaks near one shard plus the model, not two copies of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from baichuan import hf
from baichuan.config import GenerationConfig, load_config, to_hf_dict
from baichuan.data.writers import plain_mode, replace_dir
from baichuan.errors import BaichuanError
from baichuan.model import Baichuan, build
from baichuan.runtime import checked_device, model_dtype

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SAFE_SINGLE = "model.safetensors"
BIN_SINGLE = "pytorch_model.bin"
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(
        (path / f).exists() for f in (SAFE_INDEX, BIN_INDEX, SAFE_SINGLE, BIN_SINGLE))


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a model directory, in index order, every one checked to exist."""
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = model_dir / index_name
        if index.exists():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise BaichuanError(f"{index}: not a valid shard index ({e!r})") from None
            files = list(dict.fromkeys(weight_map.values()))
            missing = [f for f in files if not (model_dir / f).exists()]
            if missing:
                raise BaichuanError(f"{model_dir / missing[0]}: shard listed in {index_name} is missing"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            return [model_dir / f for f in files]
    for single in (SAFE_SINGLE, BIN_SINGLE):
        if (model_dir / single).exists():
            return [model_dir / single]
    raise BaichuanError(f"{model_dir}: no weights found (expected {SAFE_INDEX}, {BIN_INDEX}, "
                        f"{SAFE_SINGLE} or {BIN_SINGLE})")


def _open_shard(file: Path):
    """(tensor names, get(name)) of one shard; a tensor is read only when asked for."""
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        def get(name=None):
            # opened per tensor: safe_open maps the file, and every page a read touched stayed in this
            # process's RSS until the file closed (a 1B bf16 load peaked at 4.4 GB for 2.3 GB of weights)
            try:
                with safe_open(str(file), framework="pt", device="cpu") as handle:
                    return list(handle.keys()) if name is None else handle.get_tensor(name)
            except SafetensorError as e:
                raise BaichuanError(f"{file}: corrupt or truncated safetensors file ({e})") from None
        return get(), get
    try:  # mmap: tensors are paged in as they are copied, the shard is never held twice
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise BaichuanError(f"{file}: corrupt or truncated checkpoint ({e})") from None
        state = _torch_load(file)  # legacy (non-zip) serialization cannot be memory-mapped
    except Exception as e:  # noqa: BLE001 - pickle errors come in many types; all mean a bad file
        raise BaichuanError(f"{file}: cannot be read as a weights-only PyTorch checkpoint ({e})") from None
    if not isinstance(state, dict):
        raise BaichuanError(f"{file}: expected a dict of tensors, got {type(state).__name__}")
    return list(state), state.__getitem__


def _iter_tensors(file: Path):
    """(name, tensor) pairs of one shard, read lazily where the format allows."""
    names, get = _open_shard(file)
    for name in names:
        yield name, get(name)


class WeightReader:
    """The tensors of a model directory by name, in any order, one at a time: every shard is
    opened once and a tensor is read (safetensors) or paged in (.bin, memory-mapped) only when
    asked for, so a reader of a 13B model holds one tensor, not the model.

    With `once=True` each tensor is read at most once, and a shard is closed (its mapped pages
    released) as soon as all of its tensors have been read."""

    def __init__(self, model_dir: str | Path, once: bool = False):
        self.model_dir, self.once = Path(model_dir), once
        self._get: dict[str, tuple[Path, object]] = {}
        for file in weight_files(self.model_dir):
            names, get = _open_shard(file)
            self._get.update((n, (file, get)) for n in names if not n.endswith(IGNORED_SUFFIXES))

    def __contains__(self, name: str) -> bool:
        return name in self._get

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._get:
            raise BaichuanError(f"{self.model_dir}: tensor {name!r} is missing from the checkpoint")
        tensor = self._get[name][1](name)
        if self.once:  # the shard's handle goes with the last reference to it
            del self._get[name]
        return tensor

    def file_of(self, name: str) -> Path:
        return self._get[name][0]


def _torch_load(file):
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise BaichuanError(f"{file}: corrupt or truncated checkpoint ({e})") from None


_LLAMA_PART = re.compile(r"(model\.layers\.\d+\.)(?:self_attn\.([qkv])_proj|(ln1|ln2))\.weight")


class Assembler:
    """Checkpoint tensors, as they arrive, turned into ours: the llama layout's q/k/v_proj are
    fused into W_pack (rows Q, K, V) once all three have come, Yi's ln1/ln2 are renamed, a stored
    copy of a tied head is dropped. `add` returns the tensors of ours it completed."""

    def __init__(self, cfg, where: str):
        self.cfg, self.where, self.parts = cfg, where, {}

    def add(self, name: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        if self.cfg.family != "llama":
            return [(name, tensor)]
        if name == "lm_head.weight" and self.cfg.tie_word_embeddings:
            return []
        m = _LLAMA_PART.fullmatch(name)
        if m is None:
            return [(name, tensor)]
        prefix, part, norm = m.groups()
        if norm:
            return [(prefix + ("input_layernorm" if norm == "ln1" else "post_attention_layernorm") + ".weight", tensor)]
        rows = dict(zip("qkv", self.cfg.qkv_rows))[part]
        if tuple(tensor.shape) != (rows, self.cfg.hidden_size):
            raise BaichuanError(f"{self.where}: tensor {name!r} has shape {list(tensor.shape)}, but config.json "
                                f"implies {[rows, self.cfg.hidden_size]}")
        parts = self.parts.setdefault(prefix, {})
        parts[part] = tensor
        if len(parts) < 3:
            return []
        del self.parts[prefix]
        return [(prefix + "self_attn.W_pack.weight", torch.cat([parts["q"], parts["k"], parts["v"]]))]

    def check_done(self) -> None:
        for prefix, parts in self.parts.items():
            missing = sorted(set("qkv") - set(parts))
            raise BaichuanError(f"{self.where}: {prefix}self_attn.{missing[0]}_proj.weight is missing "
                                "from the checkpoint")


def disk_tensors(cfg, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict under the names a directory of `cfg.family` stores (the inverse of Assembler)."""
    if cfg.family != "llama":
        return state
    out = {}
    for name, t in state.items():
        if name.endswith("self_attn.W_pack.weight"):
            prefix = name[: -len("W_pack.weight")]
            out.update(zip((prefix + f"{p}_proj.weight" for p in "qkv"), t.split(cfg.qkv_rows)))
        elif not (name == "lm_head.weight" and cfg.tie_word_embeddings):
            out[name] = t
    return out


def load_weights(model: Baichuan, model_dir: str | Path) -> None:
    """Copy every tensor of `model_dir` into `model` (any device/dtype), shard by shard."""
    model_dir = Path(model_dir)
    params = dict(model.state_dict(keep_vars=True))
    if model.cfg.tie_word_embeddings:
        params.pop("lm_head.weight")  # the embedding
    loaded = set()
    assembler = Assembler(model.cfg, str(model_dir))
    for file in weight_files(model_dir):
        for disk_name, disk_tensor in _iter_tensors(file):
            if disk_name.endswith(IGNORED_SUFFIXES):
                continue
            for name, tensor in assembler.add(disk_name, disk_tensor):
                if name not in params:
                    hint = " (a bitsandbytes-quantized release; load the bf16 model instead)" \
                        if name.endswith((".quant_state", ".SCB")) or ".weight." in name else ""
                    raise BaichuanError(f"{file}: unexpected tensor {disk_name!r}{hint}")
                target = params[name]
                if tuple(tensor.shape) != tuple(target.shape):
                    raise BaichuanError(f"{file}: tensor {name!r} has shape {list(tensor.shape)}, "
                                        f"but config.json implies {list(target.shape)}")
                with torch.no_grad():
                    target.copy_(tensor)
                loaded.add(name)
    assembler.check_done()
    missing = [n for n in params if n not in loaded]
    if missing:
        raise BaichuanError(f"{model_dir}: {len(missing)} tensors missing from the checkpoint, "
                            f"first: {missing[0]!r}")


def load_pretrained(model_dir: str | Path, device="cpu", dtype: str | torch.dtype | None = None,
                    **config_overrides) -> Baichuan:
    """A model directory (ours or a Baichuan release) -> model in eval mode on `device`.

    dtype defaults to `runtime.model_dtype`'s choice (bf16 where native and for int8/int4
    directories, else fp32). `config_overrides` change non-shape fields, e.g. alibi="absolute" to reproduce the released
    bf16 numerics."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BaichuanError(f"{model_dir}: not a directory")
    cfg = load_config(model_dir)
    cfg_json = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    qc = cfg_json.get("quantization_config")
    if isinstance(qc, dict) and qc.get("quant_method") == "baichuan-wo":  # int8/int4 written by baichuan.quant
        from baichuan.quant import load_quantized
        dtype = model_dtype(checked_device(device), dtype, quantized=True)
        return load_quantized(model_dir, device=device, dtype=dtype, **config_overrides)
    if qc is not None:
        raise BaichuanError(f"{model_dir / 'config.json'}: field 'quantization_config' marks a "
                            "bitsandbytes-quantized release, which cannot be loaded; load the bf16 model")
    if config_overrides:
        cfg = cfg.replace(**config_overrides)
    device = checked_device(device)
    dtype = model_dtype(device, dtype)
    model = build(cfg, device=device, dtype=dtype, init=False)
    load_weights(model, model_dir)
    return model.eval()


# -------------------------------------------------------------------------------------- writing

def _shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """Names grouped in order into shards of at most `max_bytes` (a larger tensor gets its own)."""
    shards, current, size = [], [], 0
    for name, nbytes in sizes.items():
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def save_pretrained(model: Baichuan, out_dir: str | Path, tokenizer=None,
                    generation_config: GenerationConfig | None = None, dtype: torch.dtype | None = None,
                    max_shard_bytes: int = 2 * 1024 ** 3) -> Path:
    """Write `model` as an HF-style Baichuan directory; returns its path.

    The directory is assembled under a temporary name beside `out_dir` and renamed into place, so a
    crash leaves either the old directory or the new one, never a half-written one."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        state = disk_tensors(model.cfg, {k: v.detach() for k, v in model.state_dict().items()})
        dtype = dtype or next(iter(state.values())).dtype
        write_weights(tmp, state, dict.fromkeys(state, dtype), max_shard_bytes)
        write_config_files(tmp, model.cfg, dtype, generation_config)
        if tokenizer is not None:
            tokenizer.save(tmp)
    return out_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def atomic_dir(out_dir: Path, marker: str = "config.json"):
    """A temporary folder beside `out_dir` that replaces it on success and vanishes on failure.
    A non-empty `out_dir` without `marker` is not one of ours and is never overwritten."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BaichuanError(f"{out_dir}: exists and is not a folder; refusing to overwrite it")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / marker).exists():
        raise BaichuanError(f"{out_dir}: exists and is not a model directory; refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):  # left by a writer that was killed
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_shard(folder: Path, fname: str, tensors: dict[str, torch.Tensor], weight_map: dict) -> int:
    """One safetensors shard; records its tensors in `weight_map` and returns its bytes."""
    from safetensors.torch import save_file
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(folder / fname), metadata={"format": "pt"})
    plain_mode(folder / fname)
    weight_map.update(dict.fromkeys(tensors, fname))
    return sum(t.numel() * t.element_size() for t in tensors.values())


def write_index(folder: Path, weight_map: dict, total_bytes: int) -> None:
    _write_json(folder / SAFE_INDEX, {"metadata": {"total_size": total_bytes}, "weight_map": weight_map})


def write_weights(folder: Path, state: dict[str, torch.Tensor], dtypes: dict[str, torch.dtype],
                  max_shard_bytes: int) -> None:
    """`state` as shards of at most `max_shard_bytes` plus the index, each tensor moved to CPU and
    cast to its dtype one shard at a time (never a second copy of the whole model)."""
    sizes = {n: t.numel() * dtypes[n].itemsize for n, t in state.items()}
    write_weights_streamed(folder, ((n, state[n].to(device="cpu", dtype=dtypes[n])) for n in state), sizes,
                           max_shard_bytes)


def write_weights_streamed(folder: Path, tensors, sizes: dict[str, int], max_shard_bytes: int) -> None:
    """Tensors that arrive one at a time, as (name, tensor) in the order of `sizes` (their bytes),
    written as shards of at most `max_shard_bytes` plus the index: at most one shard is held."""
    groups = _shards(sizes, max_shard_bytes)
    weight_map, total, shard, done = {}, 0, {}, 0
    for name, tensor in tensors:
        shard[name] = tensor
        if done < len(groups) and name == groups[done][-1]:
            if list(shard) != groups[done]:
                raise ValueError(f"tensors arrived out of order: {list(shard)} for shard {groups[done]}")
            done += 1
            total += write_shard(folder, f"model-{done:05d}-of-{len(groups):05d}.safetensors", shard, weight_map)
            shard = {}
    if shard or done != len(groups):
        raise ValueError("the tensors that arrived are not the ones announced")
    write_index(folder, weight_map, total)


def write_config_files(folder: Path, cfg, dtype: torch.dtype, gen: GenerationConfig | None = None) -> None:
    """config.json and generation_config.json; a Baichuan directory also gets the remote code its
    config names (so HF's Auto classes open it with trust_remote_code=True; HF has LLaMA itself)."""
    d = to_hf_dict(cfg, torch_dtype=str(dtype).removeprefix("torch."))
    if cfg.family == "baichuan":
        d["auto_map"] = hf.CONFIG_AUTO_MAP
        hf.copy_code(folder)
    _write_json(folder / "config.json", d)
    write_generation_config(folder, cfg, gen)


def write_generation_config(folder: Path, cfg, gen: GenerationConfig | None = None) -> None:
    """Baichuan 2's defaults; max_new_tokens at most half the context (2048 of 4096 there)."""
    gen = gen or GenerationConfig(pad_token_id=cfg.pad_token_id, bos_token_id=cfg.bos_token_id,
                                  eos_token_id=cfg.eos_token_id, max_new_tokens=min(2048, cfg.max_len // 2))
    _write_json(folder / "generation_config.json", gen.to_dict())


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")



