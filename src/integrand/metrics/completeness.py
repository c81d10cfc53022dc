"""Completeness: do the attributions add up to ``f(x) - f(baseline)``?"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..errors import InputError
from ..inputs import as_input_set
from ..methods.perturb import Scorer
from ..result import Attribution
from ..targets import TargetSpec
from ._common import flat_values


def completeness(
    model: Callable[..., Any],
    attribution: Attribution,
    target: TargetSpec = None,
    *,
    relative: bool = True,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """``(f(x) - f(b)) - sum(values)`` per example, re-evaluated on the model (not read from ``delta``).

    With ``relative`` the error is divided by ``|f(x) - f(b)|``. ``target`` must be the one the
    attribution was computed for (``None``: the argmax class at the input).
    """
    if not isinstance(attribution, Attribution):
        raise InputError("attribution", f"expected an Attribution, got {type(attribution).__name__}")
    if attribution.baseline is None:
        raise InputError("attribution", f"{attribution.method} has no baseline, so completeness is undefined")
    inputs = as_input_set(attribution.inputs, "attribution.inputs")
    base = as_input_set(attribution.baseline, "attribution.baseline")
    scorer = Scorer(model, inputs, target, forward_kwargs, None, None)
    score_input, score_base = scorer.inputs_and(base.tensors)
    gap = score_input - score_base
    delta = gap - flat_values(attribution, inputs).sum(dim=1)
    if not relative:
        return delta
    return delta.abs() / gap.abs().clamp_min(torch.finfo(gap.dtype).tiny)
