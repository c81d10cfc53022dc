"""Helpers shared by the metrics: explanations as flat rows, perturbation tensors, rank correlation."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import torch

from ..errors import InputError
from ..inputs import InputSet
from ..result import Attribution

TensorOrDict = Union[torch.Tensor, Mapping[str, torch.Tensor]]
Explanation = Union[Attribution, torch.Tensor, Mapping[str, torch.Tensor]]
Explainer = Callable[..., Explanation]
MethodSpec = Union[str, Explainer]


def explainer(method: MethodSpec) -> Explainer:
    """A registered method name or a callable ``(model, inputs, target, **params) -> Attribution | values``."""
    if isinstance(method, str):
        from ..methods import REGISTRY

        return REGISTRY.get(method).fn
    if callable(method):
        return method
    raise InputError("method", f"expected a method name or a callable, got {type(method).__name__}")


def checked(result: Any) -> Explanation:
    if isinstance(result, (Attribution, torch.Tensor, Mapping)):
        return result
    raise InputError("method", f"the explanation must be an Attribution or values, got {type(result).__name__}")


def values_of(explanation: Explanation) -> TensorOrDict:
    return explanation.values if isinstance(explanation, Attribution) else explanation


def flat_values(explanation: Explanation, inputs: InputSet, argument: str = "attribution") -> torch.Tensor:
    """Attribution values as ``[batch, features]`` rows in the inputs' layout."""
    values = values_of(explanation)
    if isinstance(values, torch.Tensor):
        if inputs.named:
            raise InputError(argument, f"expected a mapping of values for the named inputs {list(inputs.names)}")
        parts = [values]
    elif isinstance(values, Mapping):
        if list(values) != list(inputs.names):
            raise InputError(argument, f"expected values for inputs {list(inputs.names)}, got {list(values)}")
        parts = [values[n] for n in inputs.names]
    else:
        raise InputError(argument, f"expected an Attribution, a tensor or a mapping, got {type(values).__name__}")
    for part, (name, x) in zip(parts, inputs.tensors.items()):
        if not isinstance(part, torch.Tensor) or tuple(part.shape) != tuple(x.shape):
            shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
            raise InputError(argument, f"values for {name!r} must have the input's shape {tuple(x.shape)}, got {shape}")
    return torch.cat([p.detach().reshape(inputs.batch, -1) for p in parts], dim=1).to(inputs.device, inputs.dtype)


def perturbation_rows(
    perturbations: Any, inputs: InputSet, n_samples: int, argument: str = "perturbations"
) -> torch.Tensor:
    """User-given perturbations ``[n_samples, *input.shape]`` (or a mapping per input) as ``[n, batch, features]``."""
    if isinstance(perturbations, torch.Tensor):
        if inputs.named:
            raise InputError(argument, "named inputs need a mapping of perturbations, one per input")
        parts = {next(iter(inputs.names)): perturbations}
    elif isinstance(perturbations, Mapping) and list(perturbations) == list(inputs.names):
        parts = dict(perturbations)
    else:
        raise InputError(argument, f"expected a tensor (or a mapping per input {list(inputs.names)})")
    rows = []
    for name, x in inputs.tensors.items():
        p = parts[name]
        if not isinstance(p, torch.Tensor) or tuple(p.shape) != (n_samples, *x.shape):
            got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise InputError(argument, f"expected shape {(n_samples, *x.shape)} for {name!r}, got {got}")
        rows.append(p.detach().to(inputs.device, inputs.dtype).reshape(n_samples, inputs.batch, -1))
    return torch.cat(rows, dim=2)


def _ranks(row: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 with ties sharing their average rank (as Spearman's coefficient needs)."""
    _, inverse, counts = torch.unique(row, sorted=True, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    average = first.double() + (counts.double() - 1) / 2
    ranked: torch.Tensor = average[inverse]
    return ranked


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (``[batch, n]`` each); ties averaged."""
    ra = torch.stack([_ranks(r) for r in a.double()])
    rb = torch.stack([_ranks(r) for r in b.double()])
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(torch.finfo(torch.float64).tiny)
    corr: torch.Tensor = (ra * rb).sum(dim=1) / den
    return corr
