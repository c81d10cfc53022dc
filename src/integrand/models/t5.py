"""T5 encoder-decoder: self-attention in sub-layer 0, the feed-forward in the block's last sub-layer.

The gate exists in gated-activation T5 variants (``wi_0``/``wi_1``); plain ``DenseReluDense`` has none.
"""

from .family import Family, Gate

FAMILY = Family(
    name="t5",
    block_types=("T5Block",),
    attention="layer.0.SelfAttention",
    attn_out="layer.0.SelfAttention.o",
    mlp="layer.-1.DenseReluDense",
    q="layer.0.SelfAttention.q",
    k="layer.0.SelfAttention.k",
    v="layer.0.SelfAttention.v",
    gate=Gate(act="layer.-1.DenseReluDense.act", up="layer.-1.DenseReluDense.wi_1", down="layer.-1.DenseReluDense.wo"),
    embedding="shared",
)
