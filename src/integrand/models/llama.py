"""Llama-like decoders (Llama, SmolLM2, Mistral, Qwen2): separate q/k/v/o projections and a gated MLP."""

from .family import Family, Gate

FAMILY = Family(
    name="llama",
    block_types=("LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer"),
    attention="self_attn",
    attn_out="self_attn.o_proj",
    mlp="mlp",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    gate=Gate(act="mlp.act_fn", up="mlp.up_proj", down="mlp.down_proj"),
    embedding="embed_tokens",
)
