"""ModelConfig, the named presets, and the one place that maps it to and from HF `config.json`.

The released checkpoints name their architecture only implicitly (class name + hidden size), so
reading a config follows the rule vLLM uses (spec §1):
  - `BaiChuanForCausalLM` (capital C)               -> Baichuan-7B: RoPE, plain head
  - `BaichuanForCausalLM` and hidden_size == 4096    -> Baichuan2-7B: RoPE (fp32 rotation)
  - `BaichuanForCausalLM` and any other hidden size  -> Baichuan-13B / Baichuan2-13B: ALiBi
  - vocab_size == 125696                             -> Baichuan 2: NormHead
Configs we write also carry explicit `position_embedding` and `norm_head` fields, which take
precedence when present, so small models of any shape round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from baichuan.errors import BaichuanError

BAICHUAN2_VOCAB = 125696
USER_TOKEN_ID = 195
ASSISTANT_TOKEN_ID = 196


@dataclass
class ModelConfig:
    vocab_size: int = 64000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_layers: int = 32
    num_heads: int = 32
    max_len: int = 4096                 # model_max_length / max_position_embeddings
    position: str = "rope"              # "rope" | "alibi"
    rope_theta: float = 10000.0
    rope_fp32: bool = False             # Baichuan2-7B rotates q/k in fp32; Baichuan-7B in the activation dtype
    # ALiBi bias form. "relative" (default): slope*(j-i), the form Baichuan2-13B trains with; it
    # matches the fp32 reference logits and keeps the most recent keys precise in bf16.
    # "absolute": slope*j (j = key index), the released eval-mode bias; equal to "relative" in exact
    # arithmetic (softmax ignores a per-row constant) but up to +-8 off in bf16 at j~3400, which is
    # what HF bf16 runs of the 13B models compute (spec §3.3). Choose it to reproduce those numbers.
    alibi: str = "relative"
    norm_head: bool = False             # Baichuan 2: lm_head rows L2-normalized
    z_loss_weight: float = 0.0          # Baichuan 2 max-z loss weight (2e-4 in the report, 0 released)
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    # LLaMA-family checkpoints (LLaMA-2, Yi): grouped-query attention (None: one KV head per query
    # head, as every Baichuan model), a head tied to the embeddings, and the tensor names and
    # config.json they are stored with ("baichuan" or "llama"; checkpoint.py maps the names)
    num_kv_heads: int | None = None
    tie_word_embeddings: bool = False
    family: str = "baichuan"
    name: str = field(default="", compare=False)  # preset or source, for banners only

    def __post_init__(self):
        problems = []
        if self.position not in ("rope", "alibi"):
            problems.append(f"position must be 'rope' or 'alibi', got {self.position!r}")
        if self.alibi not in ("absolute", "relative"):
            problems.append(f"alibi must be 'absolute' or 'relative', got {self.alibi!r}")
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "max_len"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) <= 0:
                problems.append(f"{f} must be a positive integer, got {getattr(self, f)!r}")
        if not problems and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not problems and self.position == "rope" and self.head_dim % 2:
            problems.append(f"RoPE needs an even head_dim, got {self.head_dim}")
        if not problems and (not isinstance(self.kv_heads, int) or self.kv_heads <= 0
                             or self.num_heads % self.kv_heads):
            problems.append(f"num_kv_heads {self.num_kv_heads!r} must divide num_heads {self.num_heads}")
        if self.family not in ("baichuan", "llama"):
            problems.append(f"family must be 'baichuan' or 'llama', got {self.family!r}")
        elif self.family == "llama" and (self.position != "rope" or self.norm_head):
            problems.append("a llama-family model has RoPE and a plain head")
        elif self.family == "baichuan" and (self.kv_heads != self.num_heads or self.tie_word_embeddings):
            problems.append("grouped-query attention and tied embeddings are stored in the llama layout "
                            "(family='llama'); Baichuan's own config.json has no field for them")
        if problems:
            raise BaichuanError("invalid model config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def qkv_rows(self) -> tuple[int, int, int]:
        """Rows of Q, K and V in the fused W_pack weight (K and V are smaller with grouped-query attention)."""
        return self.hidden_size, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self, embeddings: bool = True) -> int:
        h, i, v, n = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        per_layer = h * sum(self.qkv_rows) + h * h + 3 * h * i + 2 * h
        total = n * per_layer + h + v * h  # layers + final norm + lm_head
        return total + (v * h if embeddings and not self.tie_word_embeddings else 0)

    def describe(self) -> str:
        """One line naming what this config is, for banners."""
        kind = self.position + ("+normhead" if self.norm_head else "") + \
            (f"+gqa{self.kv_heads}" if self.kv_heads != self.num_heads else "") + \
            ("+tied" if self.tie_word_embeddings else "") + (" (llama layout)" if self.family == "llama" else "")
        return (f"{self.name or 'baichuan'}: {self.num_params() / 1e6:,.1f}M params, {self.num_layers} layers, "
                f"hidden {self.hidden_size}, {self.num_heads} heads, vocab {self.vocab_size}, {kind}")

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs/token, the PaLM convention: 6*N_matmul + 12*L*d*S (lm_head counted)."""
        n_matmul = self.num_params(embeddings=False) - self.num_layers * 2 * self.hidden_size - self.hidden_size
        return 6 * n_matmul + 12 * self.num_layers * self.hidden_size * seq_len


PRESETS: dict[str, ModelConfig] = {
    # tests: a few hundred thousand parameters, runs in milliseconds
    "tiny": ModelConfig(vocab_size=512, hidden_size=64, intermediate_size=192, num_layers=2, num_heads=4,
                        max_len=256, name="tiny"),
    # CPU training in minutes (~11M parameters with a 16k vocab; ~2,000 tokens/s on 2 cores)
    "small": ModelConfig(vocab_size=16000, hidden_size=256, intermediate_size=704, num_layers=4, num_heads=4,
                         max_len=1024, name="small"),
    # one GPU in minutes (~110M parameters with a 32k vocab)
    "100m": ModelConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_layers=12, num_heads=12,
                        max_len=2048, name="100m"),
    # one GPU, ~1.1B parameters
    "1b": ModelConfig(vocab_size=64000, hidden_size=2048, intermediate_size=5504, num_layers=16, num_heads=16,
                      max_len=4096, name="1b"),
    "baichuan-7b": ModelConfig(name="baichuan-7b"),
    "baichuan-13b": ModelConfig(hidden_size=5120, intermediate_size=13696, num_layers=40, num_heads=40,
                                position="alibi", name="baichuan-13b"),
    "baichuan2-7b": ModelConfig(vocab_size=BAICHUAN2_VOCAB, rope_fp32=True, norm_head=True, name="baichuan2-7b"),
    "baichuan2-13b": ModelConfig(vocab_size=BAICHUAN2_VOCAB, hidden_size=5120, intermediate_size=13696,
                                 num_layers=40, num_heads=40, position="alibi", norm_head=True, name="baichuan2-13b"),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise BaichuanError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ---------------------------------------------------------------------------------------------
# config.json (HF) <-> ModelConfig. Field names below are the released ones (spec §1).

_ARCH_V1_7B = "BaiChuanForCausalLM"
_ARCH = "BaichuanForCausalLM"
LLAMA_ARCHS = ("LlamaForCausalLM", "YiForCausalLM")


def from_hf_dict(d: dict, source: str = "config.json") -> ModelConfig:
    def need(key):
        if key not in d:
            raise BaichuanError(f"{source}: missing field {key!r}")
        return d[key]

    archs = d.get("architectures") or []
    arch = archs[0] if archs else None
    if arch in LLAMA_ARCHS or d.get("model_type") in ("llama", "Yi"):
        return _from_llama_dict(d, source, need)
    if d.get("model_type") not in ("baichuan", None) or arch not in (_ARCH_V1_7B, _ARCH):
        raise BaichuanError(
            f"{source}: unknown architecture {arch!r} (model_type {d.get('model_type')!r}); "
            f"expected {_ARCH_V1_7B} or {_ARCH} with model_type 'baichuan', or {' / '.join(LLAMA_ARCHS)}")
    hidden = need("hidden_size")
    vocab = need("vocab_size")
    max_len = d.get("model_max_length") or d.get("max_position_embeddings")
    if max_len is None:
        raise BaichuanError(f"{source}: missing field 'model_max_length' (or 'max_position_embeddings')")
    # explicit fields (written by us) first, then the release's implicit rule
    position = d.get("position_embedding") or ("rope" if arch == _ARCH_V1_7B or hidden == 4096 else "alibi")
    norm_head = d.get("norm_head", vocab == BAICHUAN2_VOCAB)
    try:
        return ModelConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=need("intermediate_size"),
            num_layers=need("num_hidden_layers"), num_heads=need("num_attention_heads"), max_len=int(max_len),
            position=position, rope_theta=float(d.get("rope_theta", 10000.0)),
            rope_fp32=bool(d.get("rope_fp32", norm_head)),  # Baichuan 2 <=> NormHead
            alibi=d.get("alibi_bias", "relative"), norm_head=bool(norm_head),
            z_loss_weight=float(d.get("z_loss_weight", 0.0)),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            initializer_range=float(d.get("initializer_range", 0.02)),
            pad_token_id=d.get("pad_token_id", 0), bos_token_id=d.get("bos_token_id", 1),
            eos_token_id=d.get("eos_token_id", 2), name=Path(source).parent.name)
    except BaichuanError as e:
        raise BaichuanError(f"{source}: {e}") from None


def _from_llama_dict(d: dict, source: str, need) -> ModelConfig:
    """LLaMA-2 / Yi config.json (LlamaForCausalLM, or Yi's first YiForCausalLM)."""
    if d.get("hidden_act", "silu") != "silu":
        raise BaichuanError(f"{source}: hidden_act {d['hidden_act']!r} is not supported (SwiGLU with silu only)")
    for key in ("attention_bias", "mlp_bias"):
        if d.get(key):
            raise BaichuanError(f"{source}: field {key!r} is true; models with biases are not supported")
    # transformers 5 writes `rope_parameters` {rope_theta, rope_type}; 4.x `rope_theta` and `rope_scaling`
    rope = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    if scaling:
        raise BaichuanError(f"{source}: RoPE scaling {scaling!r} is not supported (plain RoPE only)")
    theta = d.get("rope_theta", rope.get("rope_theta", 10000.0))
    heads = need("num_attention_heads")
    if d.get("head_dim") not in (None, need("hidden_size") // heads):
        raise BaichuanError(f"{source}: head_dim {d['head_dim']} is not hidden_size / num_attention_heads")
    try:
        return ModelConfig(
            vocab_size=need("vocab_size"), hidden_size=need("hidden_size"), intermediate_size=need("intermediate_size"),
            num_layers=need("num_hidden_layers"), num_heads=heads, num_kv_heads=d.get("num_key_value_heads", heads),
            max_len=int(need("max_position_embeddings")), position="rope", rope_theta=float(theta),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)), initializer_range=float(d.get("initializer_range", 0.02)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)), family="llama",
            pad_token_id=d.get("pad_token_id") if isinstance(d.get("pad_token_id"), int) else 0,
            bos_token_id=d.get("bos_token_id", 1), eos_token_id=d.get("eos_token_id", 2), name=Path(source).parent.name)
    except BaichuanError as e:
        raise BaichuanError(f"{source}: {e}") from None


def to_hf_dict(cfg: ModelConfig, torch_dtype: str = "bfloat16") -> dict:
    """A config.json Baichuan loaders accept. The class name is chosen so that loaders which infer
    the architecture (vLLM) infer the right one where the release's rule can express it."""
    if cfg.family == "llama":
        return {"architectures": [LLAMA_ARCHS[0]], "model_type": "llama", "vocab_size": cfg.vocab_size,
                "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
                "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
                "num_key_value_heads": cfg.kv_heads, "hidden_act": "silu", "max_position_embeddings": cfg.max_len,
                "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta, "rope_scaling": None,
                "attention_bias": False, "mlp_bias": False, "initializer_range": cfg.initializer_range,
                "pad_token_id": cfg.pad_token_id, "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id,
                "tie_word_embeddings": cfg.tie_word_embeddings, "use_cache": True, "torch_dtype": torch_dtype}
    arch = _ARCH if (cfg.position == "alibi" or cfg.norm_head) else _ARCH_V1_7B
    d = {
        "architectures": [arch],
        "model_type": "baichuan",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "hidden_act": "silu",
        "model_max_length": cfg.max_len,
        "max_position_embeddings": cfg.max_len,
        "rms_norm_eps": cfg.rms_norm_eps,
        "initializer_range": cfg.initializer_range,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": torch_dtype,
        # explicit fields: ignored by other loaders, authoritative for ours
        "position_embedding": cfg.position,
        "norm_head": cfg.norm_head,
        "rope_theta": cfg.rope_theta,
        "rope_fp32": cfg.rope_fp32,
        "alibi_bias": cfg.alibi,
        "z_loss_weight": cfg.z_loss_weight,
    }
    return d


def load_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        raise BaichuanError(f"{file}: not found (is {path} a model directory?)")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaichuanError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BaichuanError(f"{file}: expected a JSON object")
    return from_hf_dict(d, str(file))


@dataclass
class GenerationConfig:
    """generation_config.json; defaults are Baichuan2-Chat's released values (spec §5.3)."""
    max_new_tokens: int = 2048
    do_sample: bool = True
    temperature: float = 0.3
    top_k: int = 5
    top_p: float = 0.85
    repetition_penalty: float = 1.05
    user_token_id: int = USER_TOKEN_ID
    assistant_token_id: int = ASSISTANT_TOKEN_ID
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationConfig":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d


def load_generation_config(model_dir: str | Path) -> GenerationConfig:
    """Released defaults when the file is absent (base models ship none): greedy, 64 tokens."""
    file = Path(model_dir) / "generation_config.json"
    if not file.exists():
        return GenerationConfig(max_new_tokens=64, do_sample=False, repetition_penalty=1.0)
    try:
        gen = GenerationConfig.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as e:
        raise BaichuanError(f"{file}: invalid generation config ({e})") from None
    for f in dataclasses.fields(GenerationConfig):
        value, kind = getattr(gen, f.name), {"int": int, "float": (int, float), "bool": bool}.get(f.type)
        if kind and (not isinstance(value, kind) or (isinstance(value, bool) and f.type != "bool")):
            raise BaichuanError(f"{file}: field {f.name!r} must be {'a number' if f.type == 'float' else f.type}, "
                                f"got {value!r}")
    return gen
