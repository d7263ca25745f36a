"""BaichuanConfig: the config.json of a Baichuan model directory, for `AutoConfig` with
`trust_remote_code=True`.

Shipped inside model directories written by the `baichuan` package, next to modeling_baichuan.py
and tokenization_baichuan.py. Self-contained on purpose: it may import only transformers and the
standard library, because HF copies it into its module cache and imports it on its own.

The released checkpoints never say which position encoding or head they use; it follows from
the class name and the sizes. Explicit fields (written by the `baichuan` package) take
precedence; when they are absent, the released rule decides:
  - architectures ["BaiChuanForCausalLM"] (Baichuan-7B) or hidden_size 4096 (Baichuan2-7B) -> RoPE
  - any other hidden size (Baichuan-13B, Baichuan2-13B)                                    -> ALiBi
  - vocab_size 125696 (Baichuan 2)                                  -> NormHead, fp32 RoPE rotation
"""

from transformers import PretrainedConfig

BAICHUAN2_VOCAB_SIZE = 125696
BAICHUAN1_7B_ARCH = "BaiChuanForCausalLM"


class BaichuanConfig(PretrainedConfig):
    model_type = "baichuan"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=64000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        hidden_act="silu",
        model_max_length=None,
        max_position_embeddings=None,
        rms_norm_eps=1e-6,
        initializer_range=0.02,
        use_cache=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        position_embedding=None,
        norm_head=None,
        rope_theta=10000.0,
        rope_fp32=None,
        alibi_bias="relative",
        z_loss_weight=0.0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.hidden_act = hidden_act
        # Releases name the context length either way (13B: model_max_length only; 7B:
        # max_position_embeddings only; Baichuan2-7B: both). Keep both, filled from each other.
        length = model_max_length or max_position_embeddings or 4096
        self.model_max_length = model_max_length or length
        self.max_position_embeddings = max_position_embeddings or length
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.use_cache = use_cache

        architectures = kwargs.get("architectures") or []
        if position_embedding is None:
            rope = BAICHUAN1_7B_ARCH in architectures or hidden_size == 4096
            position_embedding = "rope" if rope else "alibi"
        if position_embedding not in ("rope", "alibi"):
            raise ValueError(f"position_embedding must be 'rope' or 'alibi', got {position_embedding!r}")
        if norm_head is None:
            norm_head = vocab_size == BAICHUAN2_VOCAB_SIZE
        if rope_fp32 is None:
            rope_fp32 = bool(norm_head)  # Baichuan 2 rotates in fp32, Baichuan 1 in the activation dtype
        if alibi_bias not in ("relative", "absolute"):
            raise ValueError(f"alibi_bias must be 'relative' or 'absolute', got {alibi_bias!r}")
        self.position_embedding = position_embedding
        self.norm_head = bool(norm_head)
        self.rope_theta = float(rope_theta)
        self.rope_fp32 = bool(rope_fp32)
        self.alibi_bias = alibi_bias
        self.z_loss_weight = float(z_loss_weight)

        # Token ids and tying go through the base class too: transformers 4.x sets them there (and
        # would reset tie_word_embeddings to True if it were not passed); 5.x keeps them as
        # ordinary attributes.
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        # Set again after the base class, whatever it did with them.
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings
