"""Held-out preference accuracy (whole-answer log-likelihoods) and perplexity, with and without steering."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import InputError
from ..models import logits_of
from .contrastive import sequence_logprobs
from .examples import Encoder
from .vector import SteeringVector


@dataclass(frozen=True)
class PreferenceScores:
    """Summed answer log-probabilities of each example: ``preferred[i]`` and ``dispreferred[i]``."""

    preferred: torch.Tensor
    dispreferred: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        return self.preferred - self.dispreferred

    @property
    def accuracy(self) -> float:
        """Share of examples whose preferred answer is strictly more likely."""
        return float((self.margins > 0).double().mean())

    @property
    def mean_margin(self) -> float:
        return float(self.margins.mean())


@dataclass(frozen=True)
class Evaluation:
    """Preference accuracy, mean log-likelihood margin and neutral-text perplexity, before and after steering."""

    accuracy_before: float
    accuracy_after: float
    margin_before: float
    margin_after: float
    perplexity_before: float | None
    perplexity_after: float | None
    n_examples: int
    strength: float
    layers: tuple[int, ...]


def preference_scores(
    model: Any, tokenizer: Any, examples: Sequence[Any], *, add_bos: bool | None = None, batch_size: int = 16
) -> PreferenceScores:
    """Log P(preferred | prompt) and log P(dispreferred | prompt) of every example, ``batch_size`` examples a pass."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
    encoder = Encoder(model, tokenizer, add_bos=add_bos)
    encoded = encoder.encode_all(examples)
    # Similar lengths share a pass: less right-padding to compute.
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].embeds.shape[0])
    out = []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [encoded[i] for i in order[start : start + batch_size]]
            answers = [a for e in chunk for a in (e.preferred, e.dispreferred)]
            prompts = [e.embeds for e in chunk for _ in range(2)]
            out.append(sequence_logprobs(model, prompts, answers, [encoder.embedding(a) for a in answers]))
    both = torch.empty(len(encoded), 2, dtype=out[0].dtype)
    both[torch.tensor(order)] = torch.cat(out).reshape(-1, 2).cpu()
    return PreferenceScores(both[:, 0].clone(), both[:, 1].clone())


def next_token_logprobs(model: Any, rows: Sequence[Sequence[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(token_t | tokens_<t)`` for t >= 1 of right-padded ``rows`` in one no-grad pass, and the mask of
    real tokens among those positions: both ``[len(rows), longest - 1]``."""
    longest = max(len(ids) for ids in rows)
    seq = torch.tensor([list(ids) + [0] * (longest - len(ids)) for ids in rows], device=device)
    mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in rows], device=device)
    with torch.no_grad():
        logits = logits_of(model(input_ids=seq, attention_mask=mask, use_cache=False))
        logp = logits[:, :-1].double().log_softmax(dim=-1).gather(-1, seq[:, 1:, None])[..., 0]
    return logp, mask[:, 1:].bool()


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str], *, add_bos: bool | None = None) -> float:
    """``exp`` of the mean next-token negative log-likelihood over all tokens of ``texts`` (BOS not scored)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise InputError("neutral", "expected a non-empty list of texts")
    encoder = Encoder(model, tokenizer, add_bos=add_bos)
    device = encoder.weight.device
    encoded = [encoder.token_ids(text, f"neutral[{i}]", prompt=True) for i, text in enumerate(texts)]
    for i, ids in enumerate(encoded):
        if len(ids) < 2:
            raise InputError(f"neutral[{i}]", "needs at least two tokens")
    logp, scored = next_token_logprobs(model, encoded, device)
    total = -float(logp[scored].sum())
    count = int(scored.sum())
    return math.exp(total / count)


def evaluate(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Any],
    vector: SteeringVector | None = None,
    *,
    strength: float = 1.0,
    layers: Sequence[int] | None = None,
    neutral: Sequence[str] | None = None,
    add_bos: bool | None = None,
) -> Evaluation:
    """Held-out preference accuracy and neutral perplexity without and with ``vector`` at ``strength``."""

    def measure(steered: bool) -> tuple[PreferenceScores, float | None]:
        context = vector.apply(model, strength, layers) if steered and vector is not None else nullcontext()
        with context:
            scores = preference_scores(model, tokenizer, examples, add_bos=add_bos)
            ppl = None if neutral is None else perplexity(model, tokenizer, neutral, add_bos=add_bos)
        return scores, ppl

    before, ppl_before = measure(False)
    after, ppl_after = measure(True) if vector is not None else (before, ppl_before)
    used = () if vector is None else (vector.layers if layers is None else tuple(sorted(layers)))
    return Evaluation(
        accuracy_before=before.accuracy,
        accuracy_after=after.accuracy,
        margin_before=before.mean_margin,
        margin_after=after.mean_margin,
        perplexity_before=ppl_before,
        perplexity_after=ppl_after,
        n_examples=int(before.preferred.shape[0]),
        strength=float(strength),
        layers=used,
    )
