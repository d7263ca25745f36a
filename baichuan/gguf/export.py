"""`baichuan export MODEL_DIR --format gguf`: a model directory as one GGUF file, streamed.

Tensors are read, converted and written one at a time (the file's header is laid out from the
config first), so exporting a 13B model holds one tensor in memory, not the model. Float types
are written here; quantized ones are llama.cpp's own quantizer (through llama-cpp-python) run on
a lossless intermediate, so they are exactly what `llama-quantize` makes, mixed types of Q4_K_M
included. The file appears complete or not at all (written beside, then renamed), with an Ollama
Modelfile next to it.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from baichuan.checkpoint import WeightReader
from baichuan.config import ModelConfig, load_config, load_generation_config
from baichuan.errors import BaichuanError
from baichuan.gguf import FLOAT_TYPES, OUTTYPES, QUANT_FTYPES
from baichuan.gguf import format as fmt
from baichuan.gguf.template import jinja_chat_template, ollama_template
from baichuan.tokenizer import Tokenizer


@dataclass
class ExportResult:
    path: Path
    arch: str
    outtype: str
    bytes: int
    seconds: float
    peak_rss_mb: float
    modelfile: Path


def require_gguf():
    try:
        import gguf
    except ImportError:
        raise BaichuanError("GGUF export needs the gguf package: pip install 'baichuan[gguf]'") from None
    return gguf


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise BaichuanError("quantized GGUF types come from llama.cpp's quantizer: pip install llama-cpp-python "
                            "(it builds llama.cpp, about 7 minutes on 2 cores), or export f16/bf16 and run "
                            "llama-quantize") from None
    return llama_cpp


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM on Linux: ru_maxrss would also count the image
    of the parent this process was forked from, as it was before exec."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check_source(model_dir: Path) -> None:
    from baichuan.quant import read_quantization_config
    qc = read_quantization_config(model_dir)
    if qc is not None:
        raise BaichuanError(f"{model_dir}: an int{qc['bits']} directory of this package has no "
                            "GGUF equivalent; export the full-precision directory it was made from with "
                            "--outtype q8_0 (for int8) or q4_k_m / q4_0 (for int4)")


def _ggml_type(shape: tuple[int, ...], outtype: str, gguf):
    """1-D tensors (the norms) stay fp32, as llama.cpp writes them."""
    if len(shape) == 1 or outtype == "f32":
        return gguf.GGMLQuantizationType.F32
    return {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16}[outtype]


def _numpy(cfg: ModelConfig, entry: fmt.Entry, source: torch.Tensor, ggml_type, gguf) -> np.ndarray:
    """The tensor as written, converted a block of rows at a time: a 13B head in fp32 would be 2.6 GB."""
    if len(entry.shape) == 1:
        return source.float().numpy()
    out = np.empty(entry.shape, dtype={gguf.GGMLQuantizationType.F32: np.float32,
                                       gguf.GGMLQuantizationType.F16: np.float16,
                                       gguf.GGMLQuantizationType.BF16: np.uint16}[ggml_type])
    block = cfg.head_dim * 64  # whole heads, as the RoPE row order needs
    for start in range(0, entry.shape[0], block):
        rows = fmt.gguf_rows(cfg, entry, source, start, min(start + block, entry.shape[0]))
        if ggml_type == gguf.GGMLQuantizationType.BF16:  # BF16 as its raw bits
            out[start:start + len(rows)] = rows.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        else:
            out[start:start + len(rows)] = rows.numpy()
    return out


def _metadata(w, gguf, cfg: ModelConfig, tok: Tokenizer, name: str, outtype: str) -> None:
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "bf16": gguf.LlamaFileType.MOSTLY_BF16}
    w.add_name(name)
    w.add_file_type(file_types[outtype])
    w.add_context_length(cfg.max_len)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.kv_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if cfg.position == "rope":
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_rope_freq_base(cfg.rope_theta)
    else:
        w.add_max_alibi_bias(8.0)  # llama.cpp's refact graph fixes 8; said here for other readers
    if cfg.family == "baichuan":  # their presence is what marks a Baichuan model in a "llama" file
        w.add_bool(fmt.KEY_NORM_HEAD, cfg.norm_head)
        w.add_bool(fmt.KEY_ROPE_FP32, cfg.rope_fp32)
        w.add_string(fmt.KEY_ALIBI, cfg.alibi)
    _vocab(w, gguf, tok)


def _vocab(w, gguf, tok: Tokenizer) -> None:
    """The SentencePiece model as llama.cpp's "llama" (SPM) vocabulary: pieces, scores and types
    (SentencePiece's type numbers are GGUF's), the special ids, and the normalizer's switches."""
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tok.model_proto)
    w.add_tokenizer_model("llama")
    w.add_token_list([p.piece for p in proto.pieces])
    w.add_token_scores([p.score for p in proto.pieces])
    w.add_token_types(_llama_cpp_types(proto))
    w.add_unk_token_id(tok.unk_id)
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.stop_ids[-1])  # EOS, or a chat template's own end marker (Yi-Chat's <|im_end|>)
    w.add_pad_token_id(tok.pad_id)
    w.add_add_bos_token(tok.add_bos)  # Baichuan prompts carry no BOS (spec §4); LLaMA's do
    w.add_add_eos_token(False)
    w.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    w.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    if proto.normalizer_spec.precompiled_charsmap:  # Baichuan 1's NFKC table (llama.cpp's SPM ignores it)
        w.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    w.add_chat_template(tok.chat_template or jinja_chat_template(tok))  # a LLaMA-family directory's own
    w.add_array(fmt.KEY_SENTENCEPIECE, tok.model_proto)


def _llama_cpp_types(proto) -> list[int]:
    """SentencePiece's piece types (its numbers are GGUF's), but for one case. llama.cpp splits
    every user-defined piece out of the text before tokenizing and, for a tokenizer with a dummy
    prefix (Baichuan 1), starts the text after each with a "▁" that SentencePiece does not add:
    "1+1" would become 1 ▁+ 1. A one-character user-defined piece that no other piece contains
    (Baichuan 1's digits and CJK punctuation) is therefore written as a normal piece: nothing can
    merge with it, so it stays a token of its own, and no "▁" follows it. Longer ones (the chat
    role markers) stay user-defined."""
    types = [p.type for p in proto.pieces]
    if not proto.normalizer_spec.add_dummy_prefix:
        return types
    user, normal = proto.SentencePiece.USER_DEFINED, proto.SentencePiece.NORMAL
    longer = [p.piece for p in proto.pieces if p.type == normal and len(p.piece) > 1]
    for i, p in enumerate(proto.pieces):
        if p.type == user and len(p.piece) == 1 and not any(p.piece in other for other in longer):
            types[i] = normal
    return types


def _write_float(model_dir: Path, out: Path, cfg: ModelConfig, tok: Tokenizer, outtype: str, progress: bool) -> None:
    from tqdm import tqdm
    gguf = require_gguf()
    reader = WeightReader(model_dir, once=True)
    entries = fmt.plan(cfg)
    sources = {e.source: _stored_as(reader, e.source) for e in entries}
    missing = [name for name, stored in sources.items() if stored is None]
    if missing:  # before the file is begun
        raise BaichuanError(f"{model_dir}: tensor {missing[0]!r} is missing from the checkpoint")
    w = gguf.GGUFWriter(str(out), fmt.arch(cfg))
    _metadata(w, gguf, cfg, tok, model_dir.resolve().name, outtype)
    for e in entries:
        ggml_type = _ggml_type(e.shape, outtype, gguf)
        itemsize = 4 if ggml_type == gguf.GGMLQuantizationType.F32 else 2
        w.add_tensor_info(e.gguf, e.shape, np.dtype(np.float32 if itemsize == 4 else np.uint16),
                          int(np.prod(e.shape)) * itemsize, raw_dtype=ggml_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    cached: tuple[str, torch.Tensor] | None = None  # a source read once for all its entries (W_pack: q, k, v)
    for e in tqdm(entries, desc=f"export {outtype}", unit="tensor", disable=not progress):
        if cached is None or cached[0] != e.source:
            file = reader.file_of(sources[e.source])
            cached = None  # the last tensor (and, once all read, its shard) goes before the next is read
            cached = (e.source, reader[sources[e.source]])
            expected = (sum(cfg.qkv_rows), cfg.hidden_size) if e.source.endswith("W_pack.weight") else e.shape
            if tuple(cached[1].shape) != expected:
                raise BaichuanError(f"{file}: tensor {sources[e.source]!r} has shape {list(cached[1].shape)}, "
                                    f"but config.json implies {list(expected)}")
        w.write_tensor_data(_numpy(cfg, e, cached[1], _ggml_type(e.shape, outtype, gguf), gguf))
    w.close()


def _stored_as(reader: WeightReader, name: str) -> str | None:
    """The name a directory stores tensor `name` under: ours / HF's, or Yi's first release's ln1/ln2."""
    yi = name.replace("input_layernorm", "ln1").replace("post_attention_layernorm", "ln2")
    return next((n for n in (name, yi) if n in reader), None)


def _quantize(src: Path, out: Path, outtype: str) -> None:
    llama_cpp = _llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[outtype]
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0:
        raise BaichuanError(f"{src}: llama.cpp's quantizer failed with code {rc} (its log above says why)")


def _modelfile(path: Path, model_dir: Path, tok: Tokenizer, cfg: ModelConfig) -> Path:
    """An Ollama Modelfile beside the GGUF: `ollama create NAME -f THIS` registers the model."""
    gen = load_generation_config(model_dir)
    lines = [f"FROM ./{path.name}"]
    if tok.chat_template is None:  # a directory's own Jinja template: Ollama reads it from the GGUF
        lines.append(f'TEMPLATE """{ollama_template(tok)}"""')
    lines += [f'PARAMETER stop "{tok.piece(i)}"' for i in tok.stop_ids] + [f"PARAMETER num_ctx {cfg.max_len}"]
    if gen.do_sample:
        lines += [f"PARAMETER temperature {gen.temperature}", f"PARAMETER top_k {gen.top_k}",
                  f"PARAMETER top_p {gen.top_p}"]
    else:
        lines.append("PARAMETER temperature 0")
    lines.append(f"PARAMETER repeat_penalty {gen.repetition_penalty}")
    modelfile = path.with_suffix(".Modelfile")
    modelfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return modelfile


def export_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16",
                tokenizer: str | os.PathLike | None = None, progress: bool = True) -> ExportResult:
    """Write `model_dir` (any Baichuan family, ours or released) as one GGUF file `out`."""
    model_dir, out = Path(model_dir), Path(out)
    if outtype not in OUTTYPES:
        raise BaichuanError(f"--outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    if not model_dir.is_dir():
        raise BaichuanError(f"{model_dir}: not a model directory")
    if out.is_dir():
        raise BaichuanError(f"{out}: is a folder; --out names the .gguf file to write")
    _check_source(model_dir)
    cfg = load_config(model_dir)
    tok = Tokenizer.load(tokenizer or model_dir)
    if tok.vocab_size != cfg.vocab_size:
        raise BaichuanError(f"{tok.source}: {tok.vocab_size} pieces, but {model_dir / 'config.json'} says "
                            f"vocab_size {cfg.vocab_size}; pass the model's own tokenizer with --tokenizer")
    if outtype in QUANT_FTYPES:
        _llama_cpp()  # before any work
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    intermediate = out.with_name(f".{out.name}.float-{os.getpid()}")
    try:
        if outtype in FLOAT_TYPES:
            _write_float(model_dir, partial, cfg, tok, outtype, progress)
        else:  # from a float file in the weights' own precision: nothing is lost before the quantizer
            stored = WeightReader(model_dir)["model.norm.weight"].dtype
            float_type = {torch.bfloat16: "bf16", torch.float16: "f16"}.get(stored, "f32")
            _write_float(model_dir, intermediate, cfg, tok, float_type, progress)
            _quantize(intermediate, partial, outtype)
        os.replace(partial, out)
    finally:
        for f in (partial, intermediate):
            f.unlink(missing_ok=True)
    modelfile = _modelfile(out, model_dir, tok, cfg)
    return ExportResult(out, fmt.arch(cfg), outtype, out.stat().st_size, time.time() - started, _peak_rss_mb(),
                        modelfile)
