"""Attribution of language-model generations: every target token, one forward pass per point."""

from __future__ import annotations

from .comprehension import ComprehensionScore, comprehension
from .explainer import METHODS, GenerationExplainer
from .paraphrase import choose_paraphrase, paraphrases
from .result import GenerationAttribution
from .steps import STEP_FUNCTIONS, StepArgs, resolve_step, step_names

__all__ = [
    "ComprehensionScore",
    "comprehension",
    "choose_paraphrase",
    "paraphrases",
    "METHODS",
    "STEP_FUNCTIONS",
    "GenerationAttribution",
    "GenerationExplainer",
    "StepArgs",
    "resolve_step",
    "step_names",
]
