"""Tiny T5 and BART models, and an obviously-correct per-target attribution loop for encoder-decoder models.

For each target token separately, the oracle runs the model on the source embeddings and on the
embeddings of that target's own decoder prefix (decoder start token + earlier targets), passed as
``inputs_embeds`` / ``decoder_inputs_embeds``: no hooks, no shared passes, no batching, no padding.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

PAD, BOS, EOS = 1, 2, 3  # ids of <pad>, <s>, </s> in the oracle's word tokenizer


def tiny_t5(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",  # T5 v1.1 / Flan-T5: smooth, so quadrature error is controllable
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    model = T5ForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.decoder_start_token_id = PAD
    return model


_BART_FAMILY: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 64,
    "init_std": 0.1,
    "scale_embedding": True,
    "dropout": 0.0,
    "pad_token_id": PAD,
    "eos_token_id": EOS,
    "forced_eos_token_id": None,
}
"""Configuration shared by the tiny BART and Marian models (Marian is BART-shaped)."""


def tiny_bart(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> Any:
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    # scale_embedding: BART's embedding module scales its own output; the override must keep that.
    config = BartConfig(vocab_size=vocab, **_BART_FAMILY, bos_token_id=BOS, decoder_start_token_id=EOS)
    model = BartForConditionalGeneration(config).to(dtype).eval()
    model.generation_config.forced_eos_token_id = None
    return model


def tiny_marian(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> Any:
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    # scale_embedding: Marian scales outside the embedding module, on the source side only for input_ids.
    config = MarianConfig(vocab_size=vocab, decoder_vocab_size=vocab, **_BART_FAMILY, decoder_start_token_id=PAD)
    model = MarianMTModel(config).to(dtype).eval()
    model.generation_config.forced_eos_token_id = None
    return model


def seq2seq_attribution(
    model: Any,
    source: list[int],
    start: int,
    targets: list[int],
    score: Callable[[torch.Tensor, int], torch.Tensor],
    baseline: torch.Tensor,
    fixed: int,
    method: str = "integrated_gradients",
    steps: int = 16,
    source_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, n_source + T] attribution of each target (to source tokens, then decoder inputs) and its score.

    ``score(logits [vocab], target_id) -> scalar``; IG uses the Gauss-Legendre rule. ``baseline`` is a
    vector ``[hidden]`` at every interpolated position; the first ``fixed`` source positions and the
    decoder start token keep their real embedding. ``source_scale`` multiplies the source embeddings and
    baseline before they are passed (Marian scales ``inputs_embeds`` in its decoder but not in its encoder).
    """
    emb = model.get_input_embeddings()
    n, n_t = len(source), len(targets)
    out = torch.zeros(n_t, n + n_t, dtype=torch.float64)
    scores = torch.zeros(n_t, dtype=torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    with torch.no_grad():
        x_src = emb(torch.tensor([source]))[0] * source_scale
    for k in range(n_t):
        with torch.no_grad():
            x_dec = emb(torch.tensor([[start, *targets[:k]]]))[0]
        x = torch.cat([x_src, x_dec])
        b = baseline.to(x).expand_as(x).clone()
        b[:n] *= source_scale
        b[:fixed] = x[:fixed]
        b[n] = x[n]

        def grad_at(e: torch.Tensor, target: int = targets[k]) -> tuple[torch.Tensor, torch.Tensor]:
            e = e.detach().requires_grad_(True)
            logits = model(inputs_embeds=e[None, :n], decoder_inputs_embeds=e[None, n:], use_cache=False).logits
            s = score(logits[0, -1], target)
            (g,) = torch.autograd.grad(s, e)
            return s.detach(), g

        s_in, g_in = grad_at(x)
        scores[k] = s_in
        cols = n + k + 1
        if method == "saliency":
            out[k, :cols] = g_in.norm(dim=-1)
        elif method == "input_x_gradient":
            out[k, :cols] = (g_in * x).sum(dim=-1)
        else:
            for a, w in zip((nodes + 1) / 2, weights / 2):
                _, g = grad_at(b + float(a) * (x - b))
                out[k, :cols] += float(w) * (g * (x - b)).sum(dim=-1).double()
    return out, scores
