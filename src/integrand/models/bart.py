"""BART-like encoder-decoders (BART, Marian): ``self_attn.{q,k,v,out}_proj``; the MLP's output is ``fc2``."""

from .family import Family

FAMILY = Family(
    name="bart",
    block_types=("BartEncoderLayer", "BartDecoderLayer", "MarianEncoderLayer", "MarianDecoderLayer"),
    attention="self_attn",
    attn_out="self_attn.out_proj",
    mlp="fc2",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    embedding="shared",
)
