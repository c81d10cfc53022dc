"""Text attribution: token and word scores for sequence classifiers, and the embedded default text models."""

from __future__ import annotations

from .tokenizers import CallableTokenizer, Encoding, HFTokenizer, TextTokenizer, as_text_tokenizer

__all__ = ["CallableTokenizer", "Encoding", "HFTokenizer", "TextTokenizer", "as_text_tokenizer"]
