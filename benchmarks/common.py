"""What the benchmarks share: the peer they compare against (HF transformers' LlamaForCausalLM of
our shape) and the timed training-step loop."""

from __future__ import annotations

import time

import torch


def timed(step, steps: int, warmup: int, device) -> tuple[float, float | None]:
    """(seconds per call of `step` after `warmup` untimed calls, peak GB allocated on CUDA or None)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return (time.perf_counter() - t) / steps, peak


def hf_llama(cfg, device, dtype=torch.float32, state: dict | None = None, max_len: int | None = None):
    """LlamaForCausalLM with SDPA attention, initialized directly on `device` in `dtype` (a 7B
    model built in fp32 on the host and then cast would take a minute and 28 GB); with `state` (our
    state_dict) it holds the same weights, W_pack split into q/k/v."""
    from transformers import LlamaConfig, LlamaForCausalLM
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                         max_position_embeddings=max(cfg.max_len, max_len or 0), rms_norm_eps=cfg.rms_norm_eps,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(hf_cfg)
    finally:
        torch.set_default_dtype(previous)
    if state is not None:
        H, sd = cfg.hidden_size, {}
        for k, v in state.items():
            if k.endswith("W_pack.weight"):
                base = k[:-len("W_pack.weight")]
                sd[base + "q_proj.weight"], sd[base + "k_proj.weight"], sd[base + "v_proj.weight"] = v.split(H)
            else:
                sd[k] = v
        model.load_state_dict(sd, strict=False)
    return model
