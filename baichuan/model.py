"""The Baichuan decoder, math only: Baichuan-7B, Baichuan-13B, Baichuan2-7B and Baichuan2-13B.

One module tree whose parameter names are the released tensor names (spec §2), so a state dict
moves between this model and a released checkpoint with no renaming:

    model.embed_tokens.weight
    model.layers.{i}.input_layernorm.weight
    model.layers.{i}.self_attn.W_pack.weight        fused [Q;K;V], head-major rows (K, V: kv_heads heads)
    model.layers.{i}.self_attn.o_proj.weight
    model.layers.{i}.post_attention_layernorm.weight
    model.layers.{i}.mlp.{gate,up,down}_proj.weight
    model.norm.weight
    lm_head.weight                                  raw (un-normalized) rows for NormHead models

LLaMA-family checkpoints (LLaMA-2, Yi) are the same math with two config fields: grouped-query
attention (`num_kv_heads` < `num_heads`: K and V have fewer heads, each shared by a group of query
heads) and a head tied to the embeddings; checkpoint.py maps their q/k/v_proj names onto W_pack.

No files, devices, parallelism or quantization here: those are applied from outside
(`checkpoint.load_pretrained`, the training and inference stages). Build on the meta device and
call `init_weights()`, the one place where parameters get values:

    with torch.device("meta"):
        model = Baichuan(cfg)
    materialize(model, "cpu")   # model.to_empty(device="cpu"), lighter
    model.init_weights()
"""

from __future__ import annotations

import math
import mmap

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from baichuan.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x):
        # Variance and scaling in fp32, cast back before the weight multiply: the released code
        # and HF-LLaMA do the same, and it is what makes bf16 logits match theirs.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight.to(x.dtype)


# ------------------------------------------------------------------------------------ positions

def rope_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """cos/sin for the HF-LLaMA "rotate_half" layout, fp32, shaped [B, 1, T, head_dim]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device)
                                .float() / head_dim))
    freqs = positions[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos(), emb.sin()


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin, fp32: bool):
    if fp32:  # Baichuan2-7B: rotate in fp32, cast back (spec §3.2)
        xf = x.float()
        return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # Baichuan-7B / HF-LLaMA: in the activation dtype
    return x * cos + _rotate_half(x) * sin


def alibi_slopes(num_heads: int) -> list[float]:
    """The released `_get_interleave` slopes: geometric from 2^(-8/n) for a power of two n; for
    other n, the slopes of the largest power of two below n, then every other slope of 2n."""
    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return geometric(num_heads)
    below = 2 ** math.floor(math.log2(num_heads))
    return geometric(below) + alibi_slopes(2 * below)[0::2][: num_heads - below]


def alibi_bias(slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, form: str, dtype):
    """[B, H, T, S] additive bias in `dtype` for query slots q_pos [B, T] and key slots k_pos [S].
    Computed in fp32 and cast once, as released.

    "absolute": slope*k (the released eval bias; large values, lossy in bf16);
    "relative": slope*(k-q) (equal up to a per-row constant that softmax ignores)."""
    k = k_pos.float()[None, None, :]
    dist = k if form == "absolute" else k - q_pos.float()[:, :, None]
    return (slopes.float()[None, :, None, None] * dist[:, None]).to(dtype)


def attention_mask(cfg: ModelConfig, q_pos: torch.Tensor, S: int, key_mask, dtype, cached: bool, segments=None):
    """(attn_mask, is_causal) for SDPA, shared by all layers of one forward.

    Query t of row b sits in key slot q_pos[b, t] and sees the slots j <= q_pos[b, t] that
    `key_mask` [B, S] keeps and, for packed sequences, that carry the same `segments` [B, S] id
    (block-diagonal attention, as the released ALiBi code does with integer masks). A query always
    sees itself, so padded queries never get an all-masked row (which would turn into NaN and
    reach real tokens through the values).
    """
    if cfg.position == "rope" and key_mask is None and segments is None and not cached:
        return None, q_pos.shape[1] > 1  # flash / efficient kernels: plain causal
    k_pos = torch.arange(S, device=q_pos.device)
    diagonal = k_pos[None, None, :] == q_pos[:, :, None]
    allowed = k_pos[None, None, :] <= q_pos[:, :, None]  # [B, T, S]
    if key_mask is not None:
        allowed = (allowed & key_mask[:, None, :].bool()) | diagonal
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    allowed = allowed[:, None]
    if cfg.position == "rope":
        return allowed, False
    slopes = torch.tensor(alibi_slopes(cfg.num_heads), device=q_pos.device)
    bias = alibi_bias(slopes, q_pos, k_pos, cfg.alibi, dtype)
    return bias.masked_fill(~allowed, float("-inf")), False


# ------------------------------------------------------------------------------------- KV cache

def _zeros(shape: tuple, device, dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor. On the CPU, in pages of its own that the kernel maps lazily: memory becomes
    resident as slots are written, so rows a server never fills, slots past what its requests use
    and the rounding of a compiled engine's rows cost address space, not RAM (`torch.zeros`
    writes, and so keeps, every page). A tensor of its own per call, never a view of a shared
    buffer: compiled steps take each layer's cache as an input of its own (see KVCache)."""
    on_cpu = (torch.device(device) if device is not None else torch.get_default_device()).type == "cpu"
    if not on_cpu or not hasattr(mmap, "MAP_ANONYMOUS"):  # (Windows' mmap takes no flags)
        return torch.zeros(shape, device=device, dtype=dtype)
    pages = mmap.mmap(-1, max(1, math.prod(shape)) * dtype.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return torch.frombuffer(pages, dtype=dtype)[:math.prod(shape)].view(shape)  # keeps `pages` mapped


class KVCache:
    """Pre-allocated keys and values, one [B, heads, max_len, head_dim] tensor per layer, and how
    many slots of each row are filled (`lengths` [B]).

    A forward writes row b's T new keys at slots [lengths[b], lengths[b]+T), attends over the
    filled slots and advances `lengths` by T. Rows advance independently (continuous batching
    keeps requests of different lengths in one cache); `rows(a, b)` is a view on some rows. A view
    may attend over the first `span` slots only, when the caller knows no row needs more.

    Why one tensor per layer, written by index over the whole tensor: under torch.compile a write
    into a slice or a selected layer of a graph input is functionalized into a copy of that whole
    slice every step (a full layer of cache per layer); a write into an input itself is done in
    place."""

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch_size, cfg.kv_heads, max_len, cfg.head_dim)  # the KV heads only
        self.k = [_zeros(shape, device, dtype) for _ in range(cfg.num_layers)]
        self.v = [_zeros(shape, device, dtype) for _ in range(cfg.num_layers)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.start, self.stop, self.span, self.index = 0, batch_size, max_len, None

    @classmethod
    def view(cls, k: list, v: list, lengths: torch.Tensor, start: int, stop: int,
             span: int | None = None, index: torch.Tensor | None = None) -> "KVCache":
        """Rows [start, stop) of the per-layer tensors `k`, `v` (`lengths` holds those rows only),
        or the rows `index` where given, attending over the first `span` slots (default: all)."""
        view = cls.__new__(cls)
        view.k, view.v, view.lengths, view.start, view.stop, view.index = k, v, lengths, start, stop, index
        view.span = span or k[0].shape[2]
        return view

    @property
    def max_len(self) -> int:
        """The slots a forward attends over, and the bound on where it may write."""
        return self.span

    def rows(self, start: int, stop: int) -> "KVCache":
        return KVCache.view(self.k, self.v, self.lengths[start:stop], self.start + start, self.start + stop, self.span)

    def select(self, index: torch.Tensor, lengths: torch.Tensor, span: int) -> "KVCache":
        """Rows `index` (any order, each once) of this cache, filled to `lengths` (the view's own:
        the caller records them), attending over the first `span` slots. A forward over it reads
        each layer's rows gathered (a copy per layer) where `rows` reads a view."""
        return KVCache.view(self.k, self.v, lengths, 0, len(index), span, index + self.start)

    def update(self, layer: int, k, v, slots):
        """Write k, v [B, H, T, D] at `slots` [B, T]; return this layer's keys and values over the span."""
        index = self.index if self.index is not None else torch.arange(self.start, self.stop, device=k.device)
        rows = index[:, None].expand_as(slots)
        self.k[layer][rows, :, slots] = k.transpose(1, 2)
        self.v[layer][rows, :, slots] = v.transpose(1, 2)
        if self.index is not None:
            return self.k[layer][self.index, :, :self.span], self.v[layer][self.index, :, :self.span]
        return self.k[layer][self.start:self.stop, :, :self.span], self.v[layer][self.start:self.stop, :, :self.span]


# --------------------------------------------------------------------------------------- blocks

class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.cfg, self.layer_idx = cfg, layer_idx
        self.W_pack = nn.Linear(cfg.hidden_size, sum(cfg.qkv_rows), bias=False)
        self.o_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x, rope, mask, is_causal, cache: KVCache | None, slots=None):
        B, T, H = x.shape
        cfg = self.cfg
        if cfg.kv_heads == cfg.num_heads:
            q, k, v = self.W_pack(x).view(B, T, 3, cfg.num_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.W_pack(x).split(cfg.qkv_rows, dim=-1)
            q = q.view(B, T, cfg.num_heads, cfg.head_dim).transpose(1, 2)
            k, v = (t.view(B, T, cfg.kv_heads, cfg.head_dim).transpose(1, 2) for t in (k, v))
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin, cfg.rope_fp32), apply_rope(k, cos, sin, cfg.rope_fp32)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v, slots)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           enable_gqa=cfg.kv_heads != cfg.num_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, mask, is_causal, cache, slots=None):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, is_causal, cache, slots)
        return x + self.mlp(self.post_attention_layernorm(x))


class BaichuanModel(nn.Module):
    """Embeddings, decoder blocks and the final norm: input ids -> last hidden states."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        # left empty, as RMSNorm's weight is: init_weights gives every value. nn.Embedding's own
        # normal_ init, on the meta device, runs a Python reference that imports dynamo and sympy
        # (66 MB of RSS and a second of every load).
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size,
                                         _weight=torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, input_ids, position_ids=None, key_mask=None, cache: KVCache | None = None, segments=None):
        cfg = self.cfg
        B, T = input_ids.shape
        steps = torch.arange(T, device=input_ids.device)[None]
        if cache is None:
            slots, S = steps, T
        else:
            slots, S = cache.lengths[:, None] + steps, cache.max_len
            # on GPUs and under compile the engine guarantees room (a check here would sync / break the graph)
            if not input_ids.is_cuda and not torch.compiler.is_compiling() and int(slots.max()) >= S:
                raise ValueError(f"KV cache holds {S} positions; {int(cache.lengths.max())} used + {T} new do not fit")
        x = self.embed_tokens(input_ids)
        rope = None
        if cfg.position == "rope":
            rope = rope_tables(slots if position_ids is None else position_ids, cfg.head_dim, cfg.rope_theta)
        mask, is_causal = attention_mask(cfg, slots, S, key_mask, x.dtype, cached=cache is not None, segments=segments)
        for layer in self.layers:
            x = layer(x, rope, mask, is_causal, cache, slots)
        if cache is not None:
            cache.lengths += T
        return self.norm(x)


class NormHead(nn.Module):
    """Baichuan 2's lm_head: logits = h @ normalize(W, rows)^T.

    Training recomputes the normalization every step so gradients flow through it. Outside
    training the rows are normalized once, in place, and used as they are (as released, spec §3.4);
    checkpoints therefore hold raw rows until a model has run in eval mode. The weight's version
    counter tells when it was changed (loaded, trained) and needs normalizing again."""

    def __init__(self, hidden_size: int, vocab_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        self._normalized_version = None

    def effective_weight(self):
        if self.training:
            return F.normalize(self.weight, dim=-1)
        if torch.compiler.is_compiling():
            # a graph cannot guard on a version counter its own copy_ bumps (it would recompile at
            # every call): compiled callers normalize eagerly first (Engine does)
            return self.weight
        if self._normalized_version != self.weight._version:
            with torch.no_grad():
                self.weight.copy_(F.normalize(self.weight.float(), dim=-1).to(self.weight.dtype))
            self._normalized_version = self.weight._version
        return self.weight

    def forward(self, x):
        return F.linear(x, self.effective_weight())


class Baichuan(nn.Module):
    """Causal LM: `forward(input_ids) -> logits [B, T, vocab]`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = BaichuanModel(cfg)
        self.lm_head = (NormHead(cfg.hidden_size, cfg.vocab_size) if cfg.norm_head
                        else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False))
        self.chunk_loss = _chunk_loss  # training compiles it from outside (train/parallel.py)
        self.tie_weights()

    def tie_weights(self):
        """With tie_word_embeddings the head is the embedding matrix, one Parameter. Moving a model
        (`to_empty`, `to`) replaces each module's parameters separately, so movers call this again."""
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, position_ids=None, key_mask=None, cache: KVCache | None = None, segments=None,
                targets=None):
        """input_ids [B, T]; position_ids [B, T] (RoPE; default: the key slots, pass them for
        left-padded batches or packed sequences); key_mask [B, S] with False at padding (S = T, or
        the cache's max_len); cache for decoding; segments [B, T] ids of packed sequences, which
        attend only within themselves (no cache). With `targets` [B, T] (already shifted, -100 to
        ignore) the result is the loss of `lm_loss`, computed without materializing all logits."""
        hidden = self.model(input_ids, position_ids, key_mask, cache, segments)
        if targets is None:
            return self.lm_head(hidden)
        weight = self.lm_head.effective_weight() if isinstance(self.lm_head, NormHead) else self.lm_head.weight
        return chunked_lm_loss(hidden, weight, targets, self.cfg.z_loss_weight, chunk_fn=self.chunk_loss)

    @torch.no_grad()
    def init_weights(self):
        """Every parameter's initial value, in one place: N(0, initializer_range) for matrices,
        scaled by 1/sqrt(2*layers) for the two projections that write into the residual stream
        (GPT-2/Megatron practice, keeps the residual variance flat with depth), 1 for norms."""
        std = self.cfg.initializer_range
        for name, p in self.named_parameters():  # a tied head is the embedding, listed once
            if p.ndim == 1:
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.num_layers))
            else:
                nn.init.normal_(p, 0.0, std)


def lm_loss(logits, targets, z_loss_weight: float = 0.0, ignore_index: int = -100):
    """Mean cross-entropy over the targets that are not `ignore_index` (targets aligned with logits,
    i.e. already shifted), plus Baichuan 2's max-z loss: weight * mean over all positions of
    (max logit)^2. A batch with no target at all gives a zero loss, not NaN."""
    logits = logits.float()
    flat_t = targets.reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_t, ignore_index=ignore_index, reduction="sum")
    loss = ce / (flat_t != ignore_index).sum().clamp(min=1)
    if z_loss_weight:
        loss = loss + z_loss_weight * logits.max(dim=-1).values.pow(2).mean()
    return loss


def _chunk_loss(h, weight, targets, z_loss_weight, ignore_index):
    """(sum of cross-entropy, sum of squared max logits) over one chunk of positions."""
    logits = F.linear(h, weight).float()
    ce = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    z = logits.max(dim=-1).values.pow(2).sum() if z_loss_weight else ce.new_zeros(())
    return ce, z


def chunked_lm_loss(hidden, weight, targets, z_loss_weight: float = 0.0, ignore_index: int = -100,
                    chunk_tokens: int = 4096, direct_limit: int = 1 << 28, chunk_fn=None):
    """lm_loss(hidden @ weight.T, targets) over chunks of positions, each recomputed in backward
    (activation checkpointing), so the [tokens, vocab] fp32 logits never exist at once: at 125,696
    vocab and 8k tokens they would take 4 GB, plus as much again for their gradient. Below
    `direct_limit` logits it computes them in one go (small models: the recompute would cost more).
    `chunk_fn` computes one chunk (default `_chunk_loss`; training passes a compiled copy)."""
    _chunk = chunk_fn or _chunk_loss
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)
    if h.shape[0] * weight.shape[0] <= direct_limit:  # logits under 1 GB in fp32: recomputing costs more than it saves
        ce, z = _chunk(h, weight, t, z_loss_weight, ignore_index)
        loss = ce / (t != ignore_index).sum().clamp(min=1)
        return loss + z_loss_weight * z / t.numel() if z_loss_weight else loss
    ce_sum = h.new_zeros((), dtype=torch.float32)
    z_sum = h.new_zeros((), dtype=torch.float32)
    for i in range(0, h.shape[0], chunk_tokens):
        ce, z = checkpoint(_chunk, h[i:i + chunk_tokens], weight, t[i:i + chunk_tokens], z_loss_weight,
                           ignore_index, use_reentrant=False)
        ce_sum, z_sum = ce_sum + ce, z_sum + z
    loss = ce_sum / (t != ignore_index).sum().clamp(min=1)
    if z_loss_weight:
        loss = loss + z_loss_weight * z_sum / t.numel()
    return loss


def materialize(model: nn.Module, device) -> nn.Module:
    """`model.to_empty(device=device)` for a model built on meta, without the Python reference that
    torch's empty_like takes for a meta tensor (it imports sympy and torch.fx's symbolic shapes:
    35 MB of RSS in a process that never compiles)."""
    return model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device))


def build(cfg: ModelConfig, device="cpu", dtype=torch.float32, init: bool = True) -> Baichuan:
    """A model on `device` in `dtype`, built on meta (no double allocation); initialized unless
    `init=False` (the caller will load weights)."""
    with torch.device("meta"):
        model = Baichuan(cfg)
    model.to(dtype=dtype)
    materialize(model, device)
    model.tie_weights()
    if init:
        model.init_weights()
    return model
