"""Prompt comprehension scores: which paraphrase of a prompt makes the model use all of its words.

Following the "Sorry, Come Again?" prompting idea: attribute the target to each paraphrase
with IG, normalise |attribution| over the prompt tokens, and rank the paraphrases by
statistics of that profile (a prompt whose words all carry attribution is "comprehended").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import InputError
from .explainer import GenerationExplainer
from .result import GenerationAttribution

STATISTICS: tuple[str, ...] = ("mean", "above", "minimum", "middle")


@dataclass(frozen=True)
class ComprehensionScore:
    """One paraphrase: its statistics (higher means more of the prompt is used) and its attribution."""

    paraphrase: str
    stats: dict[str, float]
    profile: torch.Tensor  # normalised |IG| per attributed prompt token, max = 1
    attribution: GenerationAttribution


def profile(result: GenerationAttribution) -> torch.Tensor:
    """|attribution| of the prompt tokens (fixed positions excluded) summed over targets, max-normalised."""
    start = len(result.fixed_positions)
    values = result.matrix[:, start : result.n_prompt].abs().sum(dim=0).double()
    peak = float(values.max())
    return values / peak if peak > 0 else values


def statistics(prof: torch.Tensor, threshold: float) -> dict[str, float]:
    """mean, share above ``threshold``, minimum, and the middle third's share of the total."""
    n = prof.numel()
    third = n // 3
    middle = prof[third : n - third] if n >= 3 else prof
    total = float(prof.sum())
    return {
        "mean": float(prof.mean()),
        "above": float((prof > threshold).double().mean()),
        "minimum": float(prof.min()),
        "middle": float(middle.sum()) / total if total > 0 else 0.0,
    }


def comprehension(
    model: Any,
    tokenizer: Any,
    paraphrases: Sequence[str],
    target: str,
    *,
    rank_by: str = "mean",
    threshold: float = 0.1,
    steps: int | None = None,
    tol: float | None = None,
    explainer: GenerationExplainer | None = None,
) -> list[ComprehensionScore]:
    """Score each paraphrase by its normalised |IG| profile for ``target``; best first by ``rank_by``."""
    if rank_by not in STATISTICS:
        raise InputError("rank_by", f"expected one of {', '.join(STATISTICS)}, got {rank_by!r}")
    if isinstance(paraphrases, str) or not paraphrases:
        raise InputError("paraphrases", "expected a non-empty list of prompt strings")
    if not 0 <= threshold < 1:
        raise InputError("threshold", f"expected a number in [0, 1), got {threshold!r}")
    gx = explainer or GenerationExplainer(model, tokenizer)
    results = gx(list(paraphrases), target=[target] * len(paraphrases), steps=steps, tol=tol)
    scores = []
    for text, res in zip(paraphrases, results):
        prof = profile(res)
        scores.append(ComprehensionScore(text, statistics(prof, threshold), prof, res))
    return sorted(scores, key=lambda s: -s.stats[rank_by])
