"""Weight-only int8 / int4 quantization: a module swap with a one-line forward, and its own checkpoint.

As Baichuan-13B did (spec §6.1), only the five Linear layers of every decoder block are quantized:
W_pack, o_proj, gate_proj, up_proj, down_proj. Embeddings, norms and lm_head keep the model's dtype,
unless `lm_head=True` (`baichuan quantize --lm-head`) quantizes the LM head too (its effective,
normalized rows for NormHead models; "modules" then ends with "lm_head").

    Int8Linear  per output channel, symmetric: scale = row absmax / 127, q = round(w / scale);
                y = F.linear(x, q) * scale                     (the row scale commutes with the matmul)
    Int4Linear  groups of 32/64/128 input columns, q in 0..15, w = (q - 8) * scale + zero;
                asymmetric by default (scale = (max - min) / 15, zero = min + 8 * scale), symmetric
                with zero = 0 and scale = absmax / 7; y = F.linear(x, dequantized w)

Asymmetric int4 is the default because it measured better at every group size on the speedrun
model (`benchmarks/quant_memory.py`): weight error 8.9% vs 10.7% (g64) and 7.8% vs 9.7% (g32), and
a lower KL from the fp32 model's next-token distribution on held-out zh and en text (perplexity
moves by less than 0.2% either way there). It spreads 16 levels over [min, max] instead of 15 over
[-absmax, absmax], for 2 more bytes per group. `w = (q - 8) * scale + zero` is the convention
torch's int4 kernels (tinygemm) use, so their scales-and-zeros come straight from ours.

A quantized model is saved as its own HF-style directory (name it for the mode, e.g.
`Baichuan2-7B-int4-g128`): config.json gains

    "quantization_config": {"quant_method": "baichuan-wo", "bits": 4, "group_size": 128,
                            "symmetric": false, "modules": ["self_attn.W_pack", ...]}

and each quantized layer stores, instead of `.weight`:

    model.layers.{i}.<module>.qweight   int8 [out, in]  |  uint8 [out, in/2], column 2j in the low nibble
                             .scales    float32 [out]   |  bfloat16 [out, in/group]
                             .zeros                     |  bfloat16 [out, in/group] (asymmetric only)

int8 scales stay fp32 (one per row, negligible; a bf16 scale would add a per-row error as large as
the rounding itself). int4 scales and zeros are bf16 as in gpt-fast/torchao (0.25 bit per weight at
g128 instead of 0.5), and q is computed with the already-rounded values, so rounding them costs
nothing: every element stays within scale/2 of the original.

`quantize_dir` converts a directory shard by shard (a 13B model never has to fit in memory), and
`load_quantized` builds the model on meta, swaps the modules and streams the shards in, as
`checkpoint.load_pretrained` does. `use_kernels` switches layers to matmul kernels for bf16
activations after checking each layer shape against the reference path: on a CPU with AVX-512 VNNI
this project's own (baichuan.kernels: int8 in the stored layout for a few rows, int4 in a CPU
layout of the same bytes for every row count), else torch's packed int8/int4 kernels (CPU and
CUDA). A model on baichuan.kernels still saves (the int4 bytes are put back in checkpoint order).
"""

import importlib

# The names below load on first use (PEP 562), so the command line can list `quantize` without
# importing torch.
_WHERE = {
    "baichuan.quant.files": ("checkpoint_dtypes", "default_out_dir", "load_quantized", "quantize_dir",
                             "read_quantization_config", "save_quantized"),
    "baichuan.quant.linear": ("GROUP_SIZES", "MODES", "MODULES", "QUANT_METHOD", "Int4Linear", "Int8Linear",
                              "dequantize_int4", "largest_group", "pack_int4", "quantization_config", "quantize",
                              "quantize_int4", "quantize_int8", "quantize_weight", "unpack_int4", "use_kernels"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'baichuan.quant' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
