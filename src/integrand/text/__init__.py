"""Text attribution: token and word scores for sequence classifiers, and the embedded default text models."""

from __future__ import annotations

from .explainer import TextExplainer, TruncationWarning
from .minilm import MiniLMSentiment, load_minilm_sentiment
from .result import TokenAttribution
from .tokenizers import CallableTokenizer, Encoding, HFTokenizer, TextTokenizer, as_text_tokenizer
from .toxicity import KerasWordTokenizer, ToxicityBiLSTM, load_toxicity

__all__ = [
    "CallableTokenizer",
    "Encoding",
    "HFTokenizer",
    "KerasWordTokenizer",
    "MiniLMSentiment",
    "TextExplainer",
    "TextTokenizer",
    "TokenAttribution",
    "ToxicityBiLSTM",
    "TruncationWarning",
    "as_text_tokenizer",
    "load_minilm_sentiment",
    "load_toxicity",
]
