"""BaichuanForCausalLM for `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`.

Shipped inside model directories written by the `baichuan` package, next to configuration_baichuan.py
and tokenization_baichuan.py. Self-contained on purpose: HF copies this file into its module cache
and imports it there, so it may import only torch, transformers, the standard library and its
sibling configuration file. The math is that of `baichuan.model` (tests compare the two logit for
logit); it covers the four released families:

  Baichuan-7B     RoPE, rotation in the activation dtype, plain lm_head
  Baichuan2-7B    RoPE, rotation in fp32 (`rope_fp32`), NormHead
  Baichuan-13B    ALiBi with the interleaved slopes, plain lm_head
  Baichuan2-13B   ALiBi, NormHead

Tensor names are the released ones (model.embed_tokens, model.layers.N.self_attn.W_pack, o_proj,
mlp.gate_proj/up_proj/down_proj, input_layernorm, post_attention_layernorm, model.norm, lm_head),
so released checkpoints load too. Attention is torch SDPA; the KV cache is a transformers `Cache`
(DynamicCache by default), so `generate` works, with left-padded batches included.

transformers versions (tests/test_hf_versions.py runs the remote-code tests under the oldest
declared, a middle and the newest release). Only public API is used; what changed under us:
  4.45  oldest supported: `Cache`/`DynamicCache` and `GenerationMixin` as used here exist.
  4.56  DynamicCache takes the model config (earlier: no arguments).
  5.0   config token ids and tying are plain attributes (configuration_baichuan.py).
  5.25  the cache argument and output field are named `cache`: generate passes `cache=` and reads
        `outputs["cache"]` (earlier: `past_key_values`). Both names are accepted here, and outputs
        are built with the name the installed release declares.

ALiBi bias form (`config.alibi_bias`): "relative" is slope*(j-i), "absolute" is slope*j, the
released eval-mode bias. They are equal up to a per-row constant that softmax ignores, but the
absolute one is large (~3400 at j=4095) and loses precision in bf16/fp16 (spec §3.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_baichuan import BaichuanConfig

# the output field that carries the cache: `cache` from transformers 5.25, `past_key_values` before
CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def _cache_argument(past_key_values, kwargs):
    """The KV cache a forward was given, under either name (`cache` from 5.25, else `past_key_values`)."""
    cache = kwargs.pop("cache", None)
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the KV cache as `cache` or as `past_key_values`, not both")
    return past_key_values if cache is None else cache


class BaichuanRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # statistics and scaling in fp32, cast back before the weight multiply (as released)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight.to(x.dtype)


# --------------------------------------------------------------------------------------- positions

def _rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float):
    """fp32 cos/sin [B, 1, T, head_dim] in the "rotate_half" layout (both halves share frequencies)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=position_ids.device).float() / head_dim
    inv_freq = 1.0 / (theta ** exponents)
    angles = position_ids[..., None].float() * inv_freq
    angles = torch.cat((angles, angles), dim=-1)[:, None]
    return angles.cos(), angles.sin()


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _apply_rope(x, cos, sin, fp32: bool):
    if fp32:  # Baichuan2-7B rotates in fp32 and casts back
        xf = x.float()
        return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # Baichuan-7B: in the activation dtype
    return x * cos + _rotate_half(x) * sin


def alibi_slopes(num_heads: int) -> list[float]:
    """Per-head ALiBi slopes: a geometric series from 2^(-8/n) when n is a power of two; otherwise
    the series of the largest power of two below n, topped up with every other slope of twice
    that size (the interleaved recipe the 40-head 13B models use)."""
    def series(n):
        first = 2.0 ** (-8.0 / n)
        return [first ** (k + 1) for k in range(n)]

    if math.log2(num_heads).is_integer():
        return series(num_heads)
    base = 2 ** math.floor(math.log2(num_heads))
    return series(base) + alibi_slopes(2 * base)[0::2][: num_heads - base]


def _attention_mask(config, q_pos, S: int, key_mask, dtype, batch: int):
    """(attn_mask, is_causal) for SDPA, shared by every layer of one forward.

    q_pos [T]: the cache slots of this forward's queries; the keys are slots 0..S-1. A query sees
    the slots up to its own that `key_mask` [B, S] (the 2-D attention_mask) keeps, and always
    itself, so a padding query never gets an all-masked row (NaN that would spread)."""
    T = q_pos.shape[0]
    if config.position_embedding == "rope" and key_mask is None:
        if S == T:
            return None, T > 1  # plain causal: lets SDPA pick its fused kernels
        if T == 1:
            return None, False  # one new token sees the whole cache
    k_pos = torch.arange(S, device=q_pos.device)
    allowed = k_pos[None, :] <= q_pos[:, None]  # [T, S]
    if key_mask is not None:
        if key_mask.dim() != 2 or key_mask.shape != (batch, S):
            raise ValueError(f"attention_mask must be 2-D [batch, past + new] = [{batch}, {S}], "
                             f"got {list(key_mask.shape)}")
        diagonal = k_pos[None, :] == q_pos[:, None]
        allowed = (allowed[None] & key_mask[:, None, :].bool()) | diagonal[None]  # [B, T, S]
    else:
        allowed = allowed[None]
    allowed = allowed[:, None]  # [B or 1, 1, T, S]
    if config.position_embedding == "rope":
        return allowed, False
    slopes = torch.tensor(alibi_slopes(config.num_attention_heads), device=q_pos.device)
    if config.alibi_bias == "absolute":
        distance = k_pos.float()[None, None, :]  # [1, 1, S]
    else:
        distance = (k_pos[None, :] - q_pos[:, None]).float()[None]  # [1, T, S]
    # computed in fp32 and cast once to the activation dtype, as released
    bias = (slopes.float()[None, :, None, None] * distance[:, None]).to(dtype)  # [1, H, T or 1, S]
    return bias.masked_fill(~allowed, float("-inf")), False


# ------------------------------------------------------------------------------------------ blocks

class BaichuanAttention(nn.Module):
    def __init__(self, config: BaichuanConfig, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.W_pack = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)  # [Q; K; V]
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x, cos_sin, mask, is_causal, cache: Cache | None):
        B, T, H = x.shape
        q, k, v = self.W_pack(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cos_sin is not None:
            cos, sin = cos_sin
            q = _apply_rope(q, cos, sin, self.config.rope_fp32)
            k = _apply_rope(k, cos, sin, self.config.rope_fp32)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H))


class BaichuanMLP(nn.Module):
    def __init__(self, config: BaichuanConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class BaichuanDecoderLayer(nn.Module):
    def __init__(self, config: BaichuanConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = BaichuanRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = BaichuanAttention(config, layer_idx)
        self.post_attention_layernorm = BaichuanRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = BaichuanMLP(config)

    def forward(self, x, cos_sin, mask, is_causal, cache):
        x = x + self.self_attn(self.input_layernorm(x), cos_sin, mask, is_causal, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class NormHead(nn.Module):
    """Baichuan 2's lm_head: logits = h @ normalize(W, rows)^T.

    Training normalizes on every forward (gradients flow through it). Otherwise the rows are
    normalized once, in place, and reused; checkpoints hold raw rows. The tensor remembers the
    version it was normalized at, so loading or training new values triggers it again."""

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))

    def forward(self, x):
        w = self.weight
        if self.training:
            return F.linear(x, F.normalize(w, dim=-1))
        if getattr(w, "_baichuan_normalized_at", None) != w._version:
            with torch.no_grad():
                w.copy_(F.normalize(w.float(), dim=-1).to(w.dtype))
            w._baichuan_normalized_at = w._version
        return F.linear(x, w)


# -------------------------------------------------------------------------------------------- models

class BaichuanPreTrainedModel(PreTrainedModel):
    config_class = BaichuanConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["BaichuanDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _supports_sdpa = True
    _supports_cache_class = True  # transformers 4.x: generate may hand us a Cache object

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding, NormHead)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, BaichuanRMSNorm):
            nn.init.ones_(module.weight)


class BaichuanModel(BaichuanPreTrainedModel):
    def __init__(self, config: BaichuanConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(BaichuanDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = BaichuanRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None, **kwargs):
        """attention_mask: 2-D [B, past + T], 0 at padding. position_ids [B, T] feed RoPE (generate
        derives them from the mask, which makes left padding work); ALiBi needs none: its bias
        depends on key-query distances, which padding on the left does not change."""
        past_key_values = _cache_argument(past_key_values, kwargs)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if past_key_values is not None and not isinstance(past_key_values, Cache):
            raise TypeError("past_key_values must be a transformers Cache (e.g. DynamicCache), not "
                            f"{type(past_key_values).__name__}")
        if past_key_values is not None and getattr(past_key_values, "is_compileable", False):
            raise ValueError("static (pre-allocated) caches are not supported; use DynamicCache")
        if use_cache and past_key_values is None:
            try:
                past_key_values = DynamicCache(config=self.config)
            except TypeError:  # transformers before 4.56 take no config
                past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        q_pos = torch.arange(past, past + T, device=x.device)

        cos_sin = None
        if self.config.position_embedding == "rope":
            pos = q_pos[None].expand(B, T) if position_ids is None else position_ids
            cos_sin = _rope_cos_sin(pos, self.config.hidden_size // self.config.num_attention_heads,
                                    self.config.rope_theta)
        mask, is_causal = _attention_mask(self.config, q_pos, past + T, attention_mask, x.dtype, B)

        hidden_states = [] if output_hidden_states else None
        for layer in self.layers:
            if hidden_states is not None:
                hidden_states.append(x)
            x = layer(x, cos_sin, mask, is_causal, past_key_values)
        x = self.norm(x)
        if hidden_states is not None:
            hidden_states.append(x)
        return BaseModelOutputWithPast(last_hidden_state=x, **{CACHE_FIELD: past_key_values if use_cache else None},
                                       hidden_states=tuple(hidden_states) if hidden_states is not None else None)


class BaichuanForCausalLM(BaichuanPreTrainedModel, GenerationMixin):
    def __init__(self, config: BaichuanConfig):
        super().__init__(config)
        self.model = BaichuanModel(config)
        self.lm_head = (NormHead(config.hidden_size, config.vocab_size) if config.norm_head
                        else nn.Linear(config.hidden_size, config.vocab_size, bias=False))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_hidden_states=None, return_dict=None,
                logits_to_keep=0, **kwargs):
        """labels [B, T] as input_ids (shifted here, -100 ignored). Baichuan 2's max-z loss,
        z_loss_weight * mean over all shifted positions of (max logit)^2, is added when the config
        sets a weight (the released value is 0)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=_cache_argument(past_key_values, kwargs), inputs_embeds=inputs_embeds,
                         use_cache=use_cache, output_hidden_states=output_hidden_states)
        hidden, cache = out.last_hidden_state, getattr(out, CACHE_FIELD)
        if isinstance(logits_to_keep, int):  # generate asks for the last position only
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)

        loss = None
        if labels is not None:
            shifted = logits[:, :-1].float()
            targets = labels[:, 1:].to(shifted.device)
            ce = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                 reduction="sum")
            loss = ce / (targets != -100).sum().clamp(min=1)  # no target at all: 0, not NaN
            if self.config.z_loss_weight:
                loss = loss + self.config.z_loss_weight * shifted.max(dim=-1).values.pow(2).mean()

        if return_dict is False:
            return tuple(v for v in (loss, logits, cache, out.hidden_states) if v is not None)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: cache}, hidden_states=out.hidden_states)


# save_pretrained copies this file (and its config's) only into directories of a class registered
# for an Auto class; from_pretrained registers it itself only from transformers 4.53 on.
BaichuanForCausalLM.register_for_auto_class("AutoModelForCausalLM")
