"""Step functions: plain functions of the next-token logits at each target position.

One registry serves two roles: the attributed score of each target token, and extra
scores logged per target token. A function receives a :class:`StepArgs` bundle whose
tensors have a leading row dimension (one row per integration point and target) and
returns one score per row. Contrastive scores are just more step functions.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import InputError


@dataclass(frozen=True)
class StepArgs:
    """What a step function sees: rows of next-token logits and the token ids they are scored against.

    ``contrast_ids`` holds the foil token of each row (``contrast=`` of the explainer) and
    ``contrast_logprobs`` the next-token log-distribution under a contrast prompt
    (``contrast_prompt=``); both are ``None`` when not given.
    """

    logits: torch.Tensor  # [rows, vocab]
    target_ids: torch.Tensor  # [rows]
    contrast_ids: torch.Tensor | None = None  # [rows]
    contrast_logprobs: torch.Tensor | None = None  # [rows, vocab], constant along the path


StepFunction = Callable[[StepArgs], torch.Tensor]
StepSpec = Union[str, StepFunction]


def _pick(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return values.gather(-1, ids[:, None].to(values.device))[:, 0]


def _need_contrast_ids(args: StepArgs, name: str) -> torch.Tensor:
    if args.contrast_ids is None:
        raise InputError("target", f"step function {name!r} needs contrast= (a foil token for each target token)")
    return args.contrast_ids


def logit(args: StepArgs) -> torch.Tensor:
    """The raw logit of the target token."""
    return _pick(args.logits, args.target_ids)


def probability(args: StepArgs) -> torch.Tensor:
    """Softmax probability of the target token."""
    return _pick(args.logits.softmax(dim=-1), args.target_ids)


def log_probability(args: StepArgs) -> torch.Tensor:
    """Log-probability of the target token."""
    return _pick(args.logits.log_softmax(dim=-1), args.target_ids)


def entropy(args: StepArgs) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution."""
    logp = args.logits.log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def contrast_logit_diff(args: StepArgs) -> torch.Tensor:
    """Logit of the target token minus the logit of the contrast (foil) token."""
    return _pick(args.logits, args.target_ids) - _pick(args.logits, _need_contrast_ids(args, "contrast_logit_diff"))


def contrast_prob_diff(args: StepArgs) -> torch.Tensor:
    """Probability of the target token minus probability of the contrast token."""
    probs = args.logits.softmax(dim=-1)
    return _pick(probs, args.target_ids) - _pick(probs, _need_contrast_ids(args, "contrast_prob_diff"))


def contrast_log_prob_diff(args: StepArgs) -> torch.Tensor:
    """log P(target) - log P(contrast): the contrastive target of Yin & Neubig (2022)."""
    logp = args.logits.log_softmax(dim=-1)
    return _pick(logp, args.target_ids) - _pick(logp, _need_contrast_ids(args, "contrast_log_prob_diff"))


def kl_divergence(args: StepArgs) -> torch.Tensor:
    """KL(P || Q) of the next-token distribution P to the distribution Q under the contrast prompt."""
    if args.contrast_logprobs is None:
        raise InputError("target", "step function 'kl_divergence' needs contrast_prompt= (a contrast distribution)")
    logp = args.logits.log_softmax(dim=-1)
    return (logp.exp() * (logp - args.contrast_logprobs.to(logp.dtype))).sum(dim=-1)


STEP_FUNCTIONS: dict[str, StepFunction] = {
    "logit": logit,
    "probability": probability,
    "log_probability": log_probability,
    "entropy": entropy,
    "contrast_logit_diff": contrast_logit_diff,
    "contrast_prob_diff": contrast_prob_diff,
    "contrast_log_prob_diff": contrast_log_prob_diff,
    "kl_divergence": kl_divergence,
}
"""Built-in step functions by name. The registry is explicit; pass a callable for anything else."""

DEFAULT_LOGGED: tuple[str, ...] = ("probability", "log_probability", "entropy")


def step_names() -> list[str]:
    return list(STEP_FUNCTIONS)


def resolve_step(spec: StepSpec, argument: str = "target") -> tuple[str, StepFunction]:
    """A step function and its display name from a registry name or a callable."""
    if isinstance(spec, str):
        if spec not in STEP_FUNCTIONS:
            close = difflib.get_close_matches(spec, list(STEP_FUNCTIONS), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                argument, f"unknown step function {spec!r}; expected one of {', '.join(STEP_FUNCTIONS)}.{hint}"
            )
        return spec, STEP_FUNCTIONS[spec]
    if callable(spec):
        return getattr(spec, "__name__", repr(spec)), spec
    raise InputError(argument, f"expected a step-function name or a callable, got {type(spec).__name__}")


def needs_contrast_ids(fn: StepFunction) -> bool:
    return fn in (contrast_logit_diff, contrast_prob_diff, contrast_log_prob_diff)


def needs_contrast_prompt(fn: StepFunction) -> bool:
    return fn is kl_divergence
