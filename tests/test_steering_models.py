"""Tiny locally built models and a word-level tokenizer for the steering tests (plus checks of the builders)."""

from __future__ import annotations

from typing import Any

import torch

VOCABULARY = """
the capital of france is paris rome berlin madrid question answer : ? yes no true false a an
cat dog sky blue green red are what which who where color bright dark left right image shows
"""
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]


def word_tokenizer(add_bos: bool = True) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + VOCABULARY.split())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_llama(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 3, hidden: int = 32) -> Any:
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
    with torch.no_grad():  # random init is near-uniform; sharper weights make the checks meaningful
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model


def tiny_gpt2(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 3) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=32,
        n_layer=layers,
        n_head=4,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    return GPT2LMHeadModel(config).to(dtype).eval()


def test_tokenizer_and_models_build() -> None:
    tok = word_tokenizer()
    ids = tok("the capital of france is")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 6
    for model in (tiny_llama(len(tok)), tiny_gpt2(len(tok))):
        out = model(input_ids=torch.tensor([ids])).logits
        assert out.shape == (1, 6, len(tok)) and bool(torch.isfinite(out).all())
