"""Attribution-guided inference-time steering (GrAInS) and the mean-diff baseline.

``fit`` builds a :class:`SteeringVector` from preference examples; ``vector.apply(model,
strength)`` steers every forward pass (generation included) inside a context manager;
``evaluate`` measures held-out preference accuracy and neutral-text perplexity; ``behaviour`` and
``judges`` measure what steering does to generated text (sentiment, toxicity, politeness).
"""

from __future__ import annotations

from .contrastive import answer_logprobs, contrastive_ig
from .data import BEHAVIOURS, BehaviourSet, load_behaviour, load_preferences, neutral_texts, split
from .evaluate import Evaluation, PreferenceScores, evaluate, perplexity, preference_scores
from .examples import Encoder, Preference
from .fit import ATTRIBUTIONS, METHODS, REDUCERS, VARIANTS, fit, reduce_shifts
from .hooks import decoder_blocks
from .vector import SteeringVector

__all__ = [
    "ATTRIBUTIONS",
    "BEHAVIOURS",
    "BehaviourSet",
    "METHODS",
    "REDUCERS",
    "VARIANTS",
    "Encoder",
    "Evaluation",
    "Preference",
    "PreferenceScores",
    "SteeringVector",
    "answer_logprobs",
    "contrastive_ig",
    "decoder_blocks",
    "evaluate",
    "fit",
    "load_behaviour",
    "load_preferences",
    "neutral_texts",
    "perplexity",
    "preference_scores",
    "reduce_shifts",
    "split",
]
