"""Tiny locally built models and a word-level tokenizer for the steering tests (plus checks of the builders)."""

from __future__ import annotations

from typing import Any

import torch

from .reference import generation_oracle as oracle

VOCABULARY = """
the capital of france is paris rome berlin madrid question answer : ? yes no true false a an
cat dog sky blue green red are what which who where color bright dark left right image shows
"""


def word_tokenizer(add_bos: bool = True) -> Any:
    return oracle.word_tokenizer(add_bos, VOCABULARY.split())


def tiny_llama(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 3, hidden: int = 32) -> Any:
    return oracle.tiny_llama(vocab, dtype, seed, layers=layers, hidden=hidden)


def tiny_gpt2(vocab: int, dtype: torch.dtype = torch.float64, seed: int = 0, layers: int = 3) -> Any:
    return oracle.tiny_gpt2(vocab, dtype, seed, layers=layers)


def test_tokenizer_and_models_build() -> None:
    tok = word_tokenizer()
    ids = tok("the capital of france is")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 6
    for model in (tiny_llama(len(tok)), tiny_gpt2(len(tok))):
        out = model(input_ids=torch.tensor([ids])).logits
        assert out.shape == (1, 6, len(tok)) and bool(torch.isfinite(out).all())
