"""The one definition of how a Baichuan model maps onto GGUF: architecture, tensor names and
shapes, the RoPE row order, and the keys this package adds to remember what GGUF cannot say."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baichuan.config import ModelConfig

ROPE_ARCH = "llama"
ALIBI_ARCH = "refact"

# Our own keys: what a round trip needs back that the llama.cpp keys do not hold.
KEY_NORM_HEAD = "baichuan.norm_head"    # the head was a NormHead (written normalized)
KEY_ROPE_FP32 = "baichuan.rope_fp32"    # Baichuan2-7B rotates q/k in fp32
KEY_ALIBI = "baichuan.alibi"            # "relative" or "absolute" (equal in exact arithmetic)
KEY_SENTENCEPIECE = "baichuan.sentencepiece_model"  # the tokenizer.model bytes, for an exact import

# per layer, in file order: GGUF name -> the directory's tensor (Baichuan layout: q/k/v are row
# ranges of W_pack; LLaMA layout: q/k/v_proj of their own)
LAYER = (("attn_norm", "input_layernorm.weight"), ("attn_q", "self_attn.W_pack.weight"),
         ("attn_k", "self_attn.W_pack.weight"), ("attn_v", "self_attn.W_pack.weight"),
         ("attn_output", "self_attn.o_proj.weight"), ("ffn_norm", "post_attention_layernorm.weight"),
         ("ffn_gate", "mlp.gate_proj.weight"), ("ffn_up", "mlp.up_proj.weight"), ("ffn_down", "mlp.down_proj.weight"))
QKV = ("attn_q", "attn_k", "attn_v")


@dataclass(frozen=True)
class Entry:
    gguf: str                 # the GGUF tensor name
    source: str               # the tensor of the model directory it comes from
    offset: int               # its first row there (q/k/v inside W_pack)
    shape: tuple[int, ...]    # numpy shape [rows, cols] as stored in the GGUF

    @property
    def kind(self) -> str:
        return self.gguf.split(".")[-2]


def arch(cfg: ModelConfig) -> str:
    return ROPE_ARCH if cfg.position == "rope" else ALIBI_ARCH


def plan(cfg: ModelConfig) -> list[Entry]:
    """Every GGUF tensor, in file order, with where it comes from in a directory of `cfg`."""
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    rows = dict(zip(QKV, cfg.qkv_rows))
    offsets = dict(zip(QKV, (0, rows["attn_q"], rows["attn_q"] + rows["attn_k"])))
    shapes = {"attn_norm": (h,), "ffn_norm": (h,), "attn_output": (h, h), "ffn_gate": (f, h), "ffn_up": (f, h),
              "ffn_down": (h, f)} | {g: (rows[g], h) for g in QKV}
    out = [Entry("token_embd.weight", "model.embed_tokens.weight", 0, (v, h))]
    for i in range(cfg.num_layers):
        for g, ours in LAYER:
            source, offset = f"model.layers.{i}.{ours}", 0
            if g in QKV:
                if cfg.family == "llama":
                    source = f"model.layers.{i}.self_attn.{g[-1]}_proj.weight"
                else:
                    offset = offsets[g]
            out.append(Entry(f"blk.{i}.{g}.weight", source, offset, shapes[g]))
    out.append(Entry("output_norm.weight", "model.norm.weight", 0, (h,)))
    if not cfg.tie_word_embeddings:  # a tied head is left out: llama.cpp then uses token_embd, as HF does
        out.append(Entry("output.weight", "lm_head.weight", 0, (v, h)))
    return out


def rope_rows_to_gguf(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """q or k rows [H*d, in]: per head, rotate-half order (i, i + d/2) -> adjacent pairs (2i, 2i + 1)."""
    rows, cols = w.shape
    return w.reshape(num_heads, 2, rows // num_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def rope_rows_from_gguf(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The inverse of `rope_rows_to_gguf`."""
    rows, cols = w.shape
    return w.reshape(num_heads, rows // num_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def gguf_rows(cfg: ModelConfig, entry: Entry, source: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows [start, stop) of the fp32 tensor stored as `entry`, from its source tensor. For q/k of
    a RoPE model, start and stop must be whole heads."""
    w = source[entry.offset + start:entry.offset + stop].float()
    if entry.kind in ("attn_q", "attn_k") and cfg.position == "rope":
        w = rope_rows_to_gguf(w, (stop - start) // cfg.head_dim)
    elif entry.gguf == "output.weight" and cfg.norm_head:
        w = torch.nn.functional.normalize(w, dim=-1)
    return w
