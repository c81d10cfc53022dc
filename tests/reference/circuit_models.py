"""Tiny transformers for the circuit tests: a fully linear one, and random GPT-2 / Llama / BERT (float64)."""

from __future__ import annotations

import torch
from torch import nn

from integrand.circuits import Layout

D = torch.float64
VOCAB = 20


class LinearAttention(nn.Module):
    """Heads mix positions with fixed causal weights (no softmax), so the layer is affine in its input."""

    def __init__(self, d: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.v = nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)
        self.register_buffer("mix", torch.randn(heads, max_len, max_len).tril())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        v = self.v(x).view(b, t, self.heads, d // self.heads)
        out = torch.einsum("hij,bjhd->bihd", self.mix[:, :t, :t], v).reshape(b, t, d)
        return self.o_proj(out)


class LinearBlock(nn.Module):
    def __init__(self, d: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.attn = LinearAttention(d, heads, max_len)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class LinearLM(nn.Module):
    """Embedding, affine blocks with residual stream, affine unembedding: no nonlinearity anywhere."""

    def __init__(self, d: int = 8, heads: int = 2, layers: int = 2, max_len: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d)
        self.pos = nn.Parameter(torch.randn(max_len, d))
        self.blocks = nn.ModuleList(LinearBlock(d, heads, max_len) for _ in range(layers))
        self.unembed = nn.Linear(d, VOCAB)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def linear_lm(layers: int = 2, heads: int = 2) -> tuple[LinearLM, Layout]:
    torch.manual_seed(0)
    model = LinearLM(layers=layers, heads=heads).to(D).eval()
    layout = Layout(
        blocks=tuple(f"blocks.{i}" for i in range(layers)),
        attn_out=tuple(f"blocks.{i}.attn.o_proj" for i in range(layers)),
        mlp=tuple(f"blocks.{i}.mlp" for i in range(layers)),
        n_heads=heads,
    )
    return model, layout


def tiny_gpt2(layers: int = 2, bias: bool = True) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=layers, n_head=2, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, initializer_range=0.2,
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg).to(D).eval()
    if not bias:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
    return model


def tiny_llama(layers: int = 2) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=0, pad_token_id=0,
        initializer_range=0.2,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).to(D).eval()


def tiny_bert(layers: int = 2) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
        initializer_range=0.2,
    )  # fmt: skip
    return BertForMaskedLM(cfg).to(D).eval()


def token_pairs(n: int = 3, length: int = 6, changed: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean ids and corrupted ids that differ at position ``changed`` only."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, VOCAB, (n, length), generator=gen)
    corrupted = clean.clone()
    shift = torch.randint(1, VOCAB - 1, (n,), generator=gen)
    corrupted[:, changed] = 1 + (clean[:, changed] - 1 + shift) % (VOCAB - 1)
    return clean, corrupted
