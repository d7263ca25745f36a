"""GGUF in and out: the single-file format of llama.cpp, Ollama, LM Studio and everything on ggml.

llama.cpp's own "baichuan" graph picks the position code by depth (32 layers RoPE, 40 ALiBi, any
other depth none) and ignores NormHead, so a Baichuan model of another shape, or any Baichuan 2
model, runs wrongly there. We write each family as the general graph that computes it exactly:

  RoPE  (Baichuan-7B, Baichuan2-7B)    -> "llama":  RMSNorm, SwiGLU, RoPE at any depth; W_pack is
        split into attn_q/k/v and the q/k rows of each head are reordered from our rotate-half
        pairs (i, i + d/2) to llama.cpp's adjacent pairs (2i, 2i + 1)
  ALiBi (Baichuan-13B, Baichuan2-13B)  -> "refact": RMSNorm, SwiGLU, ALiBi with max bias 8, whose
        slopes (2^-8/n geometric, topped up by every other slope of 2n) are Baichuan's, and whose
        bias slope*(j - i) is our relative form

and Baichuan 2's NormHead is folded in (the head written is the normalized one). format.py holds
the mapping, export.py writes files, template.py the chat templates carried inside them.
"""

FLOAT_TYPES = ("f32", "f16", "bf16")
QUANT_FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}  # outtype -> llama.cpp's llama_ftype (include/llama.h)
OUTTYPES = FLOAT_TYPES + tuple(QUANT_FTYPES)
