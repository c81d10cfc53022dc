"""Guided Integrated Gradients (Kapishnikov et al. 2021): a path chosen by the model.

From the baseline, each step moves the features with the smallest absolute gradient (a
``fraction`` of them) towards the input until the L1 distance to the input has shrunk by
``1/steps`` of the total; features are kept within ``max_dist`` (in α) of the straight line.
The attribution is the Riemann sum of ``gradient ⊙ displacement`` along that path, so it sums
to ``f(x) - f(baseline)`` up to the discretisation error (reported in ``delta``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping

import torch

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_count
from ..errors import InputError
from ..inputs import Inputs, as_input_set
from ..paths import PathStep, path_sum
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import Points, Setup, evaluate, flat, prepare, result

DEFAULT_STEPS = 200
DEFAULT_FRACTION = 0.25
DEFAULT_MAX_DIST = 0.02
_CLOSE = 1e-9


def check_guided(steps: int, fraction: float, max_dist: float) -> None:
    check_count("steps", steps, 1)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise InputError("fraction", f"expected a share of features in (0, 1], got {fraction!r}")
    if isinstance(max_dist, bool) or not isinstance(max_dist, (int, float)) or not 0 <= max_dist <= 1:
        raise InputError("max_dist", f"expected a distance in α within [0, 1], got {max_dist!r}")


def advance(
    x: torch.Tensor,
    end: torch.Tensor,
    start: torch.Tensor,
    grad: torch.Tensor,
    step: int,
    steps: int,
    fraction: float,
    max_dist: float,
) -> torch.Tensor:
    """One Guided IG step of one example (flat float64 vectors): the next point on the path."""
    alpha = (step + 1) / steps
    low, high = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    span = end - start
    x_low, x_high = start + span * low, start + span * high
    goal = float(span.abs().sum()) * (1 - alpha)
    moving = span != 0
    grad = grad.clone()
    x = x.clone()
    while True:
        # A feature's own α; features without range count as done.
        own = torch.where(
            moving, (x - start) / torch.where(moving, span, torch.ones_like(span)), torch.full_like(x, high)
        )
        x = torch.where(own < low, x_low, x)
        current = float((x - end).abs().sum())
        if math.isclose(goal, current, rel_tol=_CLOSE, abs_tol=_CLOSE):
            return x
        grad[x == x_high] = math.inf
        size = grad.abs()
        threshold = size.kthvalue(int(math.floor(fraction * (size.numel() - 1))) + 1).values
        chosen = (size <= threshold) & (grad != math.inf)
        room = float(((x - x_high).abs() * chosen).sum())
        if room <= 0:
            # Nothing left to move (only reachable through rounding): stop the step here.
            return x
        gamma = (current - goal) / room
        if gamma <= 0:
            return x
        if gamma > 1:
            x = torch.where(chosen, x_high, x)
        else:
            return torch.where(chosen, x + gamma * (x_high - x), x)


def guided_path(
    setup: Setup, baselines: Mapping[str, torch.Tensor], steps: int, fraction: float, max_dist: float
) -> Iterator[PathStep]:
    """Walk the guided path of every example; yields the gradient and displacement of each step."""
    inputs = setup.inputs
    end = inputs.flat().double()
    start = flat(baselines).double()
    x = start.clone()
    still = end.eq(start).all(dim=1)
    for step in range(steps):
        grads = torch.zeros_like(x)
        scores = torch.zeros(inputs.batch, dtype=torch.float64, device=inputs.device)
        points = inputs.unflat(x.to(inputs.dtype))
        for block, evaluated in evaluate(setup.engine, [Points(points, setup.example)]):
            grads[evaluated.example] = flat(block.grads).double()
            scores[evaluated.example] = block.scores.double()
        after = torch.stack(
            [
                x[e] if still[e] else advance(x[e], end[e], start[e], grads[e], step, steps, fraction, max_dist)
                for e in range(inputs.batch)
            ]
        )
        yield PathStep(setup.example, scores, grads, after - x)
        x = after


def guided_ig(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    baseline: BaselineSpec = "zeros",
    steps: int = DEFAULT_STEPS,
    fraction: float = DEFAULT_FRACTION,
    max_dist: float = DEFAULT_MAX_DIST,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Attribution:
    """Guided IG: integrate along a path that first moves the features the score is least sensitive to.

    Args:
        baseline: the path's start, any baseline spec accepted by ``integrated_gradients``.
        steps: path steps (one gradient per example each; steps are sequential).
        fraction: share of the features, by smallest |gradient|, moved in each inner iteration.
        max_dist: how far (in α) a feature may run ahead of or lag behind the straight line;
            0 gives the straight-line (IG) path, 1 leaves the path unconstrained.
        batch_size: examples per forward/backward pass; memory_budget, forward_kwargs: as for
            ``integrated_gradients``.
        seed: seed of the "uniform" baseline.
    """
    check_guided(steps, fraction, max_dist)
    input_set = as_input_set(inputs)
    baselines = make_baselines(input_set, baseline, seed=seed)
    setup = prepare(
        model, input_set, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    values = path_sum(input_set, guided_path(setup, baselines, steps, fraction, max_dist)).to(input_set.dtype)
    score_baseline = setup.engine.scores(baselines, setup.example)
    params = {"steps": steps, "fraction": fraction, "max_dist": max_dist}
    return result(
        setup,
        values,
        method="guided_ig",
        params=params,
        steps=steps,
        baseline=baselines,
        score_baseline=score_baseline,
        path=True,
    )
