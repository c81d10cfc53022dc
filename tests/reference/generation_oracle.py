"""Tiny causal LMs with word-level tokenizers, and an obviously-correct per-prefix attribution loop.

The oracle attributes each target token separately on its own prefix (the way Inseq does),
passing ``inputs_embeds`` straight to the model: no hooks, no shared passes, no batching.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

WORDS = [
    "the",
    "capital",
    "of",
    "france",
    "is",
    "paris",
    "lyon",
    "germany",
    "berlin",
    "italy",
    "rome",
    "a",
    "an",
    "and",
    "in",
    "on",
    "city",
    "country",
    "river",
    "big",
    "small",
    "red",
    "blue",
    "green",
    "cat",
    "dog",
    "sat",
    "mat",
    "hello",
    "world",
    "it",
    "was",
    "what",
    "where",
    "who",
    "when",
    "how",
    "i",
    "you",
    "we",
    "they",
    ",",
    ".",
    "?",
    "!",
    ":",
    "one",
    "two",
    "three",
    "four",
    "five",
    "of",
    "to",
    "north",
    "south",
    "east",
    "west",
    "sea",
    "mountain",
]
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]


def word_tokenizer(add_bos: bool, words: Sequence[str] | None = None) -> Any:
    """A word-level fast tokenizer over ``words`` (default WORDS); ``add_bos`` prepends <s> like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(list(SPECIALS) + list(WORDS if words is None else words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_gpt2(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 2, hidden: int = 32) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    return GPT2LMHeadModel(config).to(dtype).eval()


def tiny_llama(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 2, hidden: int = 32) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    with torch.no_grad():  # random init is near-uniform; sharper weights make the test meaningful
        for p in model.parameters():
            p.mul_(3.0) if p.dim() == 2 else None
    return model


def prefix_attribution(
    model: Any,
    ids: list[int],
    n_prompt: int,
    score: Callable[[torch.Tensor, int], torch.Tensor],
    baseline: int | torch.Tensor | None,
    fixed: int,
    method: str = "integrated_gradients",
    steps: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, L-1] attribution of each target token on its own prefix, and the scores at the input.

    ``score(logits [vocab], target_id) -> scalar``. IG uses the Gauss-Legendre rule. ``baseline`` is a
    token id, a vector ``[hidden]`` placed at every interpolated position, or None (zeros).
    """
    emb = model.get_input_embeddings()
    n_targets = len(ids) - n_prompt
    out = torch.zeros(n_targets, len(ids) - 1, dtype=torch.float64)
    scores = torch.zeros(n_targets, dtype=torch.float64)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    for k in range(n_targets):
        prefix = torch.tensor([ids[: n_prompt + k]])
        target = ids[n_prompt + k]
        with torch.no_grad():
            x = emb(prefix)[0]
            if baseline is None:
                b = torch.zeros_like(x)
            elif isinstance(baseline, torch.Tensor):
                b = baseline.to(x).expand_as(x).clone()
            else:
                b = emb(torch.full_like(prefix, baseline))[0]
            b[:fixed] = x[:fixed]

        def grad_at(e: torch.Tensor, target: int = target) -> tuple[torch.Tensor, torch.Tensor]:
            e = e.detach().requires_grad_(True)
            s = score(model(inputs_embeds=e[None]).logits[0, -1], target)
            (g,) = torch.autograd.grad(s, e)
            return s.detach(), g

        s_in, g_in = grad_at(x)
        scores[k] = s_in
        if method == "saliency":
            out[k, : n_prompt + k] = g_in.norm(dim=-1)
        elif method == "input_x_gradient":
            out[k, : n_prompt + k] = (g_in * x).sum(dim=-1)
        else:
            for a, w in zip((nodes + 1) / 2, weights / 2):
                _, g = grad_at(b + float(a) * (x - b))
                out[k, : n_prompt + k] += float(w) * (g * (x - b)).sum(dim=-1).double()
    return out, scores


def tiny_lm(kind: str) -> tuple[Any, Any]:
    """The tiny float64 test LMs with their tokenizers: "gpt2" (no BOS) or "llama" (BOS, like Llama's)."""
    if kind == "gpt2":
        tok = word_tokenizer(add_bos=False)
        return tiny_gpt2(len(tok)), tok
    tok = word_tokenizer(add_bos=True)
    return tiny_llama(len(tok)), tok
