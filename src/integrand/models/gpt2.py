"""GPT-2: ``transformer.h.N`` blocks, fused ``c_attn`` query/key/value projection (Conv1D), ``c_proj`` outputs."""

from .family import Family

FAMILY = Family(
    name="gpt2",
    block_types=("GPT2Block",),
    attention="attn",
    attn_out="attn.c_proj",
    mlp="mlp",
    qkv="attn.c_attn",
    embedding="wte",
)
