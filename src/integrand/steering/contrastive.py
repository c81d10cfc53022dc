"""Whole-answer log-likelihoods and contrastive IG on prompt embeddings.

The contrastive score of a prompt is ``log P(preferred | prompt) - log P(dispreferred | prompt)``
with each side summed over all answer tokens. It is a function of the prompt embeddings
alone, so IG runs through the library's one path integrator (``integrate_path``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..defaults import STEERING
from ..errors import InputError, ModelError
from ..inputs import InputSet
from ..integration import Integration
from ..methods.integrated_gradients import integrate_path
from ..models import logits_of
from ..result import Attribution
from .examples import Encoded


def _logits(model: Any, embeds: torch.Tensor, mask: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor:
    """Logits ``[rows, len(keep), vocab]`` at positions ``keep`` (only those go through the head when supported)."""
    try:
        out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False, logits_to_keep=keep)
        logits = logits_of(out)
        if logits.dim() == 3 and logits.shape[1] == keep.shape[0]:
            return logits
    except TypeError:
        pass
    out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
    logits = logits_of(out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[1] != embeds.shape[1]:
        raise ModelError("model", "expected logits [batch, sequence, vocab] from model(inputs_embeds=...)")
    return logits[:, keep]


def sequence_logprobs(
    model: Any,
    prompts: Sequence[torch.Tensor],
    answers: Sequence[torch.Tensor],
    tails: Sequence[torch.Tensor],
    *,
    logits_only: bool = False,
) -> torch.Tensor:
    """Summed log-probability of answer ``answers[i]`` (embeddings ``tails[i]``) after prompt ``prompts[i]``.

    One forward pass for all rows: sequences are right-padded, so every real token keeps
    the position it would have alone; only answer positions go through the head.
    ``logits_only``: sum the answer tokens' logits instead (no log-softmax), the score LRP explains.
    """
    lengths = [int(p.shape[0]) + int(a.shape[0]) for p, a in zip(prompts, answers)]
    longest = max(lengths)
    device = prompts[0].device
    seqs = [
        torch.cat([p, t.to(p.dtype), p.new_zeros(longest - n, p.shape[1])]) for p, t, n in zip(prompts, tails, lengths)
    ]
    mask = torch.stack([torch.arange(longest, device=device) < n for n in lengths]).long()
    # Logits at position j score token j + 1: the answer's tokens are scored from its prompt's last position on.
    starts = [int(p.shape[0]) - 1 for p in prompts]
    keep = torch.arange(min(starts), max(n - 1 for n in lengths), device=device)
    logits = _logits(model, torch.stack(seqs), None if bool(mask.all()) else mask, keep)
    if not bool(torch.isfinite(logits).all()):
        raise ModelError("model", "the model's logits are NaN or Inf")
    logp = logits if logits_only else logits.log_softmax(dim=-1)
    out = []
    for i, (start, answer) in enumerate(zip(starts, answers)):
        cols = torch.arange(answer.shape[0], device=device) + (start - int(keep[0]))
        out.append(logp[i, cols].gather(-1, answer[:, None].to(device))[:, 0].sum())
    return torch.stack(out)


def answer_logprobs(
    model: Any,
    prompts: torch.Tensor,
    answers: Sequence[torch.Tensor],
    tails: Sequence[torch.Tensor],
    *,
    logits_only: bool = False,
) -> torch.Tensor:
    """``[rows, len(answers)]``: each answer's summed log-probability after each row of ``prompts``."""
    rows = list(prompts.unbind(0))
    n = len(rows)
    flat = sequence_logprobs(
        model,
        rows * len(answers),
        [a for a in answers for _ in range(n)],
        [t for t in tails for _ in range(n)],
        logits_only=logits_only,
    )
    return flat.reshape(len(answers), n).T


class ContrastiveScore:
    """``prompt embeddings [points, P, hidden] -> log P(preferred) - log P(dispreferred)`` per point."""

    def __init__(self, model: Any, embedding: torch.nn.Module, example: Encoded, logits_only: bool = False) -> None:
        self.model = model
        self.embedding = embedding
        self.example = example
        self.logits_only = logits_only
        self.__name__ = (
            "logit(preferred) - logit(dispreferred)" if logits_only else "log P(preferred) - log P(dispreferred)"
        )

    def __call__(self, prompts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            # Answer tokens are constants of the path: no graph through their embedding lookups.
            answers = (self.example.preferred, self.example.dispreferred)
            tails = [self.embedding(a).detach() for a in answers]
        both = answer_logprobs(self.model, prompts, answers, tails, logits_only=self.logits_only)
        return both[:, 0] - both[:, 1]


def contrastive_ig(
    model: Any,
    embedding: torch.nn.Module,
    example: Encoded,
    *,
    integration: Integration | None = None,
    steps: int | None = None,
    rule: str | None = None,
    tol: float | None = None,
    max_steps: int | None = None,
    atol: float | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
) -> Attribution:
    """IG of the contrastive whole-answer score from the example's baseline to its prompt embeddings.

    ``integration``, or the shorthand keywords over ``defaults.STEERING`` (16 Gauss-Legendre points).
    ``values`` is ``[1, P, hidden]``; ``values.sum(-1)`` are the token attributions and
    ``delta`` the completeness error. Fixed positions equal their baseline and get zero.
    """
    inputs = InputSet({"input": example.embeds[None]}, named=False)
    return integrate_path(
        ContrastiveScore(model, embedding, example),
        inputs,
        {"input": example.baseline[None]},
        None,
        integration=Integration.from_kwargs(
            integration,
            default=STEERING,
            steps=steps,
            rule=rule,
            tol=tol,
            max_steps=max_steps,
            atol=atol,
            batch_size=batch_size,
            memory_budget=memory_budget,
        ),  # fmt: skip
        forward_kwargs=None,
        method="contrastive_integrated_gradients",
        extra_params={"fixed": example.fixed, "score": "log P(preferred) - log P(dispreferred)"},
    )


@dataclass(frozen=True)
class TokenScores:
    """One-pass token attributions of a contrastive score: ``values`` [P, hidden] and their completeness."""

    values: torch.Tensor
    score: float
    relative_error: float
    converged: bool


def one_pass_attribution(
    model: Any, embedding: torch.nn.Module, example: Encoded, method: str, tol: float
) -> TokenScores:
    """Contrastive token attributions from one forward and one backward pass.

    ``"lrp"``: AttnLRP relevance (embedding x rewired gradient) of the answer *logit* contrast
    ``sum logit(preferred) - sum logit(dispreferred)``; it has no baseline, so the relevance of the prompt
    *and the answer tokens* (inputs of the later answer positions) should sum to the score itself, and
    ``converged`` is judged at ``circuits.lrp.LRP_TOL``; ``values`` are the prompt's part. ``"input_x_gradient"``:
    gradient x (input - baseline) of the log-probability contrast, judged like a one-point IG at ``tol``
    against ``score(input) - score(baseline)``.
    """
    from ..circuits.lrp import ATTNLRP, LRP_TOL, lrp_layout, lrp_rules

    lrp = method == "lrp"
    score_fn = ContrastiveScore(model, embedding, example, logits_only=lrp)
    answers = (example.preferred, example.dispreferred)
    with torch.no_grad():
        tails = [embedding(a).detach().requires_grad_(lrp) for a in answers]
    x = example.embeds[None].detach().clone().requires_grad_(True)
    rules = lrp_rules(model, lrp_layout(model), ATTNLRP) if lrp else nullcontext()
    with rules, torch.enable_grad():
        both = answer_logprobs(model, x, answers, tails, logits_only=lrp)
        score = both[:, 0] - both[:, 1]
        # LRP: the answer tokens are inputs of their later positions' logits, so they take relevance too.
        grads = torch.autograd.grad(score.sum(), [x, *tails] if lrp else [x])
    score = score.detach()
    with torch.no_grad():
        if lrp:
            values = grads[0][0] * example.embeds
            total = float(values.double().sum()) + sum(float((g * t).double().sum()) for g, t in zip(grads[1:], tails))
            explained = float(score[0])
        else:
            values = grads[0][0] * (example.embeds - example.baseline)
            total = float(values.double().sum())
            explained = float(score[0]) - float(score_fn(example.baseline[None])[0])
    error = abs(explained - total) / max(abs(explained), torch.finfo(torch.float64).tiny)
    return TokenScores(values.detach(), float(score[0]), error, error <= (LRP_TOL if lrp else tol))


def occlusion_attribution(
    model: Any, embedding: torch.nn.Module, example: Encoded, *, batch_size: int | None = None
) -> tuple[torch.Tensor, float]:
    """Leave-one-out occlusion of the contrastive score: ``(values [P], score at the prompt)``.

    ``values[i] = score(prompt) - score(prompt with token i's embedding set to its baseline)``, the same
    baseline the GrAInS fit masks with (``example.baseline``). Fixed positions equal their baseline and
    get zero. Every occluded prompt is one row of a no-grad batch (``batch_size`` rows per pass,
    default 16). Exact: no integration, so no completeness error.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
    score_fn = ContrastiveScore(model, embedding, example)
    n = int(example.embeds.shape[0])
    positions = torch.arange(example.fixed, n, device=example.embeds.device)
    values = example.embeds.new_zeros(n)
    chunk = 16 if batch_size is None else batch_size
    with torch.no_grad():
        score = score_fn(example.embeds[None].detach())[0]
        for start in range(0, int(positions.shape[0]), chunk):
            pos = positions[start : start + chunk]
            rows = example.embeds.detach()[None].repeat(int(pos.shape[0]), 1, 1)
            rows[torch.arange(int(pos.shape[0]), device=rows.device), pos] = example.baseline[pos].to(rows.dtype)
            values[pos] = score - score_fn(rows)
    return values, float(score)
