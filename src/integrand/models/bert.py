"""BERT-like encoders (BERT, MiniLM, RoBERTa): attention.self.{query,key,value}; the MLP output is output.dense."""

from .family import Family

FAMILY = Family(
    name="bert",
    block_types=("BertLayer", "RobertaLayer"),
    attention="attention",
    attn_out="attention.output.dense",
    mlp="output.dense",
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    embedding="word_embeddings",
)
