"""The one definition of how a Baichuan model maps onto GGUF: architecture, tensor names and
shapes, the RoPE row order, and the keys this package adds to remember what GGUF cannot say."""

from __future__ import annotations

import torch

from baichuan.config import ModelConfig

ROPE_ARCH = "llama"
ALIBI_ARCH = "refact"

# Our own keys: what a round trip needs back that the llama.cpp keys do not hold.
KEY_NORM_HEAD = "baichuan.norm_head"    # the head was a NormHead (written normalized)
KEY_ROPE_FP32 = "baichuan.rope_fp32"    # Baichuan2-7B rotates q/k in fp32
KEY_ALIBI = "baichuan.alibi"            # "relative" or "absolute" (equal in exact arithmetic)
KEY_SENTENCEPIECE = "baichuan.sentencepiece_model"  # the tokenizer.model bytes, for an exact import

# per layer, in file order: GGUF name -> our tensor name (attn_q/k/v are slices of W_pack)
LAYER = (("attn_norm", "input_layernorm.weight"), ("attn_q", "self_attn.W_pack.weight"),
         ("attn_k", "self_attn.W_pack.weight"), ("attn_v", "self_attn.W_pack.weight"),
         ("attn_output", "self_attn.o_proj.weight"), ("ffn_norm", "post_attention_layernorm.weight"),
         ("ffn_gate", "mlp.gate_proj.weight"), ("ffn_up", "mlp.up_proj.weight"), ("ffn_down", "mlp.down_proj.weight"))
QKV = {"attn_q": 0, "attn_k": 1, "attn_v": 2}


def arch(cfg: ModelConfig) -> str:
    return ROPE_ARCH if cfg.position == "rope" else ALIBI_ARCH


def plan(cfg: ModelConfig) -> list[tuple[str, str, tuple[int, ...]]]:
    """(GGUF name, our source tensor, numpy shape [rows, cols]) of every tensor, in file order."""
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"attn_norm": (h,), "ffn_norm": (h,), "attn_q": (h, h), "attn_k": (h, h), "attn_v": (h, h),
              "attn_output": (h, h), "ffn_gate": (f, h), "ffn_up": (f, h), "ffn_down": (h, f)}
    out = [("token_embd.weight", "model.embed_tokens.weight", (v, h))]
    for i in range(cfg.num_layers):
        out += [(f"blk.{i}.{g}.weight", f"model.layers.{i}.{ours}", shapes[g]) for g, ours in LAYER]
    return out + [("output_norm.weight", "model.norm.weight", (h,)), ("output.weight", "lm_head.weight", (v, h))]


def rope_rows_to_gguf(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q or k rows [H*d, in]: per head, rotate-half order (i, i + d/2) -> adjacent pairs (2i, 2i + 1)."""
    rows, cols = w.shape
    return w.reshape(num_heads, 2, rows // num_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def rope_rows_from_gguf(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The inverse of `rope_rows_to_gguf`."""
    rows, cols = w.shape
    return w.reshape(num_heads, rows // num_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def gguf_rows(cfg: ModelConfig, gguf_name: str, source: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of the fp32 tensor stored under `gguf_name`, from our tensor `source`
    (W_pack for q/k/v). For q/k of a RoPE model, start and stop must be whole heads."""
    kind = gguf_name.split(".")[-2]
    if kind in QKV:
        offset = QKV[kind] * cfg.hidden_size
        w = source[offset + start:offset + stop].float()
        if kind != "attn_v" and cfg.position == "rope":
            w = rope_rows_to_gguf(w, (stop - start) // cfg.head_dim)
        return w
    w = source[start:stop].float()
    if gguf_name == "output.weight" and cfg.norm_head:
        w = torch.nn.functional.normalize(w, dim=-1)
    return w
