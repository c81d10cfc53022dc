"""Input × gradient (Shrikumar et al. 2016): the first-order Taylor term of each feature."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import input_gradients, prepare, result


def input_x_gradient(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Input times gradient, ``x ⊙ ∂target/∂x``.

    On a model that is linear with no bias this is exact (it sums to f(x) − f(0)); in general it
    is the one-step right-Riemann version of Integrated Gradients from the zero baseline.

    Args:
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    setup = prepare(
        model, inputs, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    grads, _ = input_gradients(setup)
    return result(setup, setup.inputs.flat() * grads, method="input_x_gradient", params={}, steps=1)
