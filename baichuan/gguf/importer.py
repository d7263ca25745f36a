"""`baichuan import FILE.gguf --out DIR`: a Baichuan-family GGUF as a model directory.

Reads what `baichuan export` writes ("llama" for RoPE, "refact" for ALiBi) and what llama.cpp's
own converter writes for the released shapes ("baichuan": 32 layers RoPE, 40 layers ALiBi, the
head as released). Quantized tensors are dequantized (gguf-py's reference dequantizers) to fp32,
or to bf16 when the file stores them so; the SentencePiece model is rebuilt from the vocabulary.
Tensors are read from the memory-mapped file one at a time and written shard by shard.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from baichuan.checkpoint import atomic_dir, write_config_files, write_weights_streamed
from baichuan.config import BAICHUAN2_VOCAB, ModelConfig
from baichuan.errors import BaichuanError
from baichuan.gguf import format as fmt
from baichuan.gguf.export import require_gguf
from baichuan.tokenizer import Tokenizer

ARCHS = (fmt.ROPE_ARCH, fmt.ALIBI_ARCH, "baichuan")
SHARD_BYTES = 2 * 1024 ** 3


def _open(path: Path):
    gguf = require_gguf()
    if not path.is_file():
        raise BaichuanError(f"{path}: no such GGUF file")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - a bad header raises ValueError, IndexError, struct errors...
        raise BaichuanError(f"{path}: not a readable GGUF file (truncated or corrupt: "
                            f"{type(e).__name__}: {e})") from None


def _field(reader, path: Path, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise BaichuanError(f"{path}: metadata key {key!r} is missing")
        return default
    return field.contents()


def _float32(value) -> float:
    """A float32 field as the number it was written from (1e-06, not 9.999999974752427e-07)."""
    return float(str(np.float32(value)))


def read_config(reader, path: Path) -> ModelConfig:
    arch = _field(reader, path, "general.architecture")
    if arch not in ARCHS:
        raise BaichuanError(f"{path}: architecture {arch!r} is not a Baichuan model this package can import "
                            f"(expected one of {', '.join(ARCHS)})")
    heads = int(_field(reader, path, f"{arch}.attention.head_count"))
    kv_heads = int(_field(reader, path, f"{arch}.attention.head_count_kv", heads))
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    # a "llama" file that is not one of our Baichuan exports is a LLaMA-family model (LLaMA-2, Yi)
    llama = arch == fmt.ROPE_ARCH and fmt.KEY_NORM_HEAD not in reader.fields
    layers = int(_field(reader, path, f"{arch}.block_count"))
    vocab = len(_field(reader, path, "tokenizer.ggml.tokens"))
    if arch == "baichuan":  # llama.cpp's own rule for its Baichuan graph
        if layers not in (32, 40):
            raise BaichuanError(f"{path}: a llama.cpp 'baichuan' model of {layers} layers has no position code "
                                "in llama.cpp; only the released 32 (RoPE) and 40 (ALiBi) layer shapes are defined")
        position = "rope" if layers == 32 else "alibi"
    else:
        position = "rope" if arch == fmt.ROPE_ARCH else "alibi"
    baichuan2 = vocab == BAICHUAN2_VOCAB
    return ModelConfig(
        vocab_size=vocab, hidden_size=int(_field(reader, path, f"{arch}.embedding_length")),
        intermediate_size=int(_field(reader, path, f"{arch}.feed_forward_length")), num_layers=layers,
        num_heads=heads, max_len=int(_field(reader, path, f"{arch}.context_length", 4096)), position=position,
        rope_theta=_float32(_field(reader, path, f"{arch}.rope.freq_base", 10000.0)),
        rope_fp32=bool(_field(reader, path, fmt.KEY_ROPE_FP32, baichuan2)),
        alibi=str(_field(reader, path, fmt.KEY_ALIBI, "relative")),
        norm_head=bool(_field(reader, path, fmt.KEY_NORM_HEAD, baichuan2)),
        rms_norm_eps=_float32(_field(reader, path, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
        bos_token_id=int(_field(reader, path, "tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(_field(reader, path, "tokenizer.ggml.eos_token_id", 2)),
        pad_token_id=int(_field(reader, path, "tokenizer.ggml.padding_token_id", 0)),
        num_kv_heads=kv_heads, tie_word_embeddings=tied, family="llama" if llama else "baichuan", name=path.stem)


def read_tokenizer(reader, path: Path) -> Tokenizer:
    """The SentencePiece model: the one `baichuan export` stores whole, else rebuilt from the
    vocabulary (pieces, scores, types, the normalizer switches and table) as llama.cpp's
    converter writes it."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    if _field(reader, path, "tokenizer.ggml.model") != "llama":
        raise BaichuanError(f"{path}: tokenizer {_field(reader, path, 'tokenizer.ggml.model')!r} is not "
                            "SentencePiece ('llama'), which every Baichuan model uses")
    tokens = _field(reader, path, "tokenizer.ggml.tokens")
    stored = bytes(_field(reader, path, fmt.KEY_SENTENCEPIECE, []))
    if stored:
        tok = Tokenizer(stored, source=str(path))
        if [tok.piece(i) for i in range(tok.vocab_size)] != tokens:
            raise BaichuanError(f"{path}: the stored SentencePiece model does not match tokenizer.ggml.tokens")
        return tok
    scores = _field(reader, path, "tokenizer.ggml.scores", [0.0] * len(tokens))
    types = _field(reader, path, "tokenizer.ggml.token_type", [1] * len(tokens))
    proto = pb.ModelProto()
    for piece, score, kind in zip(tokens, scores, types, strict=True):
        proto.pieces.add(piece=piece, score=float(score), type=int(kind))
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = any(int(k) == pb.ModelProto.SentencePiece.BYTE for k in types)
    proto.trainer_spec.unk_id = int(_field(reader, path, "tokenizer.ggml.unknown_token_id", 0))
    proto.trainer_spec.bos_id = int(_field(reader, path, "tokenizer.ggml.bos_token_id", 1))
    proto.trainer_spec.eos_id = int(_field(reader, path, "tokenizer.ggml.eos_token_id", 2))
    proto.trainer_spec.pad_id = -1
    charsmap = bytes(_field(reader, path, "tokenizer.ggml.precompiled_charsmap", []))
    spec = proto.normalizer_spec
    spec.name = "nmt_nfkc" if charsmap else "identity"
    spec.precompiled_charsmap = charsmap
    spec.add_dummy_prefix = bool(_field(reader, path, "tokenizer.ggml.add_space_prefix", True))
    spec.remove_extra_whitespaces = bool(_field(reader, path, "tokenizer.ggml.remove_extra_whitespaces", False))
    spec.escape_whitespaces = True
    return Tokenizer(proto.SerializeToString(), source=str(path))


def _dequantize(tensor, path: Path) -> torch.Tensor:
    gguf = require_gguf()
    kind = tensor.tensor_type
    try:
        data = gguf.quants.dequantize(tensor.data, kind)
    except NotImplementedError:
        raise BaichuanError(f"{path}: tensor {tensor.name!r} has type {kind.name}, which gguf-py cannot "
                            "dequantize; re-export the model as f16, bf16, q8_0, q4_0 or q4_k_m") from None
    shape = tuple(int(n) for n in reversed(tensor.shape))
    out = torch.from_numpy(np.array(data, dtype=np.float32).reshape(shape))  # a copy: the file is mapped read-only
    return out.to(torch.bfloat16) if kind == gguf.GGMLQuantizationType.BF16 else out


def _dir_tensors(reader, path: Path, cfg: ModelConfig, arch: str, dtype: torch.dtype):
    """(name, tensor in `dtype`) of the directory to write, in file order: W_pack assembled from
    attn_q/k/v in the Baichuan layout, q/k/v_proj of their own in the LLaMA one. q/k rows are in
    llama.cpp's RoPE pair order in "llama" files and in llama.cpp's converter's "baichuan" ones
    (which reorders them for ALiBi models too: harmless there, as q and k move alike)."""
    tensors = {t.name: t for t in reader.tensors}
    entries = fmt.plan(cfg)
    for e in entries:
        if e.gguf not in tensors:
            raise BaichuanError(f"{path}: tensor {e.gguf!r} is missing")
        found = tuple(int(n) for n in reversed(tensors[e.gguf].shape))
        if found != e.shape:
            raise BaichuanError(f"{path}: tensor {e.gguf!r} has shape {list(found)}, expected {list(e.shape)} "
                                "from the file's own metadata")
    fused: list[torch.Tensor] = []
    for e in entries:
        t = _dequantize(tensors[e.gguf], path).to(dtype)
        if e.kind in ("attn_q", "attn_k") and arch != fmt.ALIBI_ARCH:
            t = fmt.rope_rows_from_gguf(t, e.shape[0] // cfg.head_dim)
        if e.source.endswith("W_pack.weight"):
            fused.append(t)
            if len(fused) == 3:
                yield e.source, torch.cat(fused)
                fused = []
        else:
            yield e.source, t


def import_gguf(path: str | os.PathLike, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """Write the GGUF file `path` as a model directory `out_dir` (atomically), tokenizer included.
    The weights are bf16 when the file stores every matrix as BF16, else fp32."""
    from tqdm import tqdm
    path, out_dir = Path(path), Path(out_dir)
    reader = _open(path)
    cfg = read_config(reader, path)
    tok = read_tokenizer(reader, path)
    arch = _field(reader, path, "general.architecture")
    matrices = [t for t in reader.tensors if len(t.shape) == 2]
    dtype = torch.bfloat16 if all(t.tensor_type.name == "BF16" for t in matrices) else torch.float32
    sizes = {}
    for e in fmt.plan(cfg):
        rows = sum(cfg.qkv_rows) if e.source.endswith("W_pack.weight") else e.shape[0]
        sizes[e.source] = rows * int(np.prod(e.shape[1:])) * dtype.itemsize
    with atomic_dir(out_dir) as tmp:
        tensors = tqdm(_dir_tensors(reader, path, cfg, arch, dtype), total=len(sizes), desc="import", unit="tensor",
                       disable=not progress)
        write_weights_streamed(tmp, tensors, sizes, SHARD_BYTES)
        write_config_files(tmp, cfg, dtype)
        tok.save(tmp)
    return out_dir
