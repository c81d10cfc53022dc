"""Saliency: the plain gradient of the target at the input (Simonyan et al. 2014)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import InputError
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import input_gradients, prepare, result


def saliency(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    absolute: bool = False,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Vanilla gradient ∂target/∂x at the input (optionally its absolute value).

    Args:
        absolute: return ``|∂f/∂x|`` as in the original saliency maps (Captum's default);
            the signed gradient (the default here) is what the local-linear view of the method fits.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    if not isinstance(absolute, bool):
        raise InputError("absolute", f"expected a bool, got {absolute!r}")
    setup = prepare(
        model, inputs, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    grads, _ = input_gradients(setup)
    values = grads.abs() if absolute else grads
    return result(setup, values, method="saliency", params={"absolute": absolute}, steps=1)
