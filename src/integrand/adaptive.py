"""Error-controlled path integration, per example: a spectral phase, then adaptive bisection.

Phase 1 (smooth integrands, e.g. GELU/tanh networks): nested Clenshaw-Curtis rules with 3, 5, 9
and 17 nodes, each level reusing every earlier evaluation. The per-feature error estimate is
``CC(N) - CC(N/2)`` (an over-estimate for a converging rule); together with the completeness
residual it decides convergence. An example leaves this phase for phase 2 as soon as the
estimate stops shrinking spectrally (a kink in the integrand), keeping its evaluations at 0,
1/2 and 1.

Phase 2 (kinks, e.g. ReLU and max-pool networks):
each example keeps its own set of intervals of [0, 1]. An interval holds the integrand
(gradient times input - baseline) at five nodes, which give a coarse Simpson estimate on
the whole interval and a fine one on its halves. Two error indicators drive refinement:

* the per-feature quadrature error ``fine - coarse`` (an over-estimate of the fine error; summed
  with signs over intervals it compares the two composite rules, the global per-feature estimate),
* the local completeness residual ``F(b) - F(a) - sum(fine)``, exact information since
  the forward pass gives F at every node for free.

While an example's summed feature error or its completeness error exceeds ``tol`` times
``|F(1) - F(0)|``, its intervals whose indicator exceeds an equal share of that budget
are bisected (four new gradient evaluations each, all earlier ones reused). ReLU networks
make the integrand piecewise constant: bisection then concentrates points at the kinks,
where a global high-order rule would converge slowly. Examples are refined independently;
each round evaluates the new points of all unconverged examples in one chunked batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .bisection import POINTS_PER_SPLIT, Intervals
from .engine import Engine
from .quadrature import clenshaw_curtis_level, interleave_level


@dataclass(frozen=True)
class AdaptiveResult:
    values: torch.Tensor  # [batch, features]
    steps: torch.Tensor  # [batch]
    converged: torch.Tensor  # [batch] bool
    quadrature_error: torch.Tensor  # [batch]: max over features of the summed error, relative


def _evaluate(
    engine: Engine,
    baselines: dict[str, torch.Tensor],
    diff: torch.Tensor,
    example: list[int],
    alpha: list[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrand rows and scores at the (example, alpha) points, in order."""
    device, dtype = diff.device, diff.dtype
    ex = torch.tensor(example, dtype=torch.long, device=device)
    al = torch.tensor(np.asarray(alpha, dtype=np.float64), device=device).to(dtype)
    rows, scores = [], []
    for block in engine.line(baselines, ex, al):
        grad = torch.cat([g.reshape(g.shape[0], -1) for g in block.grads.values()], dim=1)
        rows.append(grad * diff[block.example])
        scores.append(block.scores)
    return torch.cat(rows), torch.cat(scores)


SPECTRAL_LEVELS = (2, 4, 8, 16)
SPECTRAL_RATE = 0.125
"""Phase 1 goes on to the next level only if the error estimate shrank at least this much."""


@dataclass
class _Spectral:
    """Phase-1 state of one example: evaluations at the Clenshaw-Curtis nodes of the last level."""

    values: torch.Tensor  # [nodes, features]
    scores: torch.Tensor  # [nodes]
    estimate: torch.Tensor | None = None
    error: torch.Tensor | None = None


def _spectral_phase(
    engine: Engine,
    baselines: dict[str, torch.Tensor],
    diff: torch.Tensor,
    total: torch.Tensor,
    budget: list[float],
    magnitude: list[float],
    max_steps: int,
) -> tuple[list[_Spectral], list[bool]]:
    batch = diff.shape[0]
    first = SPECTRAL_LEVELS[0]
    nodes, _ = clenshaw_curtis_level(first, diff)
    values, scores = _evaluate(engine, baselines, diff, [b for b in range(batch) for _ in nodes], nodes * batch)
    n = len(nodes)
    states = [_Spectral(values[n * b : n * b + n], scores[n * b : n * b + n]) for b in range(batch)]
    done = [False] * batch
    active = list(range(batch))
    for previous, level in zip(SPECTRAL_LEVELS, SPECTRAL_LEVELS[1:]):
        active = [b for b in active if level + 1 <= max_steps]
        if not active:
            break
        fine_nodes, weights = clenshaw_curtis_level(level, diff)
        new_nodes = fine_nodes[1::2]  # the odd nodes are new; the even ones are the previous level's
        new_values, new_scores = _evaluate(
            engine, baselines, diff, [b for b in active for _ in new_nodes], new_nodes * len(active)
        )
        _, coarse_weights = clenshaw_curtis_level(previous, diff)
        still: list[int] = []
        for j, b in enumerate(active):
            st = states[b]
            rows = slice(j * len(new_nodes), (j + 1) * len(new_nodes))
            merged = interleave_level(st.values, new_values[rows])
            merged_scores = interleave_level(st.scores, new_scores[rows])
            estimate = weights @ merged
            error = estimate - coarse_weights @ st.values
            shrank = st.error is None or float(error.abs().max()) <= SPECTRAL_RATE * float(st.error.abs().max())
            states[b] = _Spectral(merged, merged_scores, estimate, error)
            completeness = abs(float(total[b] - estimate.sum()))
            allowed = max(budget[b], _noise_floor(magnitude[b], estimate))
            if float(error.abs().max()) <= allowed and completeness <= allowed:
                done[b] = True
            elif shrank:
                still.append(b)
        active = still
    return states, done


NOISE_ULPS = 8
"""Errors below this many units of rounding of the quantities summed count as converged: a float32
completeness error cannot go below ~eps * (|F(x)| + |F(x')| + sum |attributions|), whatever ``tol`` asks."""


def _noise_floor(magnitude: float, estimate: torch.Tensor) -> float:
    eps = torch.finfo(estimate.dtype).eps
    return NOISE_ULPS * eps * (magnitude + float(estimate.abs().sum()))


def integrate(
    engine: Engine,
    baselines: dict[str, torch.Tensor],
    diff: torch.Tensor,
    total: torch.Tensor,
    tol: float,
    atol: float,
    max_steps: int,
    magnitude_of_scores: torch.Tensor | None = None,
) -> AdaptiveResult:
    """Integrate each example's path to tolerance ``tol`` relative to ``|total|`` (= F(1) - F(0)).

    ``magnitude_of_scores`` (|F(x)| + |F(baseline)| per example) sets the rounding-noise floor below
    which errors count as converged (default: ``|total|``).
    """
    if magnitude_of_scores is None:
        magnitude_of_scores = total
    batch = diff.shape[0]
    budget = (total.abs().double() * tol + atol).tolist()
    magnitude = magnitude_of_scores.abs().double().tolist()
    spectral, done = _spectral_phase(engine, baselines, diff, total, budget, magnitude, max_steps)
    steps = [int(st.values.shape[0]) for st in spectral]
    # Phase 2 starts from one interval [0, 1]: reuse the evaluations at 0, 1/2, 1, add 1/4 and 3/4.
    rest = [b for b in range(batch) if not done[b] and steps[b] + 2 <= max_steps]
    quarters = [0.25, 0.75]
    q_values, q_scores = (
        _evaluate(engine, baselines, diff, [b for b in rest for _ in quarters], quarters * len(rest))
        if rest
        else (diff[:0], total[:0])
    )
    intervals: dict[int, Intervals] = {}
    for j, b in enumerate(rest):
        st = spectral[b]
        picks = [0, (st.values.shape[0] - 1) // 2, st.values.shape[0] - 1]
        v, sc = st.values[picks], st.scores[picks]
        values = torch.stack([v[0], q_values[2 * j], v[1], q_values[2 * j + 1], v[2]])
        scores = torch.stack([sc[0], q_scores[2 * j], sc[1], q_scores[2 * j + 1], sc[2]])
        unit = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
        intervals[b] = Intervals.build(*unit, values[None], scores[None])
        steps[b] += 2
    active = list(rest)
    converged = list(done)
    while active:
        plan: list[tuple[int, torch.Tensor]] = []
        for b in active:
            parts = intervals[b]
            completeness = abs(float(total[b] - parts.estimate().sum()))
            allowed = max(budget[b], _noise_floor(magnitude[b], parts.estimate()))
            if parts.feature_error() <= allowed and completeness <= allowed:
                converged[b] = True
                continue
            room = (max_steps - steps[b]) // POINTS_PER_SPLIT
            if room >= 1:
                plan.append((b, parts.choose(budget[b], room)))
        if not plan:
            break
        alphas = [intervals[b].new_alphas(chosen) for b, chosen in plan]
        example = [b for (b, _), al in zip(plan, alphas) for _ in range(len(al))]
        new_values, new_scores = _evaluate(engine, baselines, diff, example, torch.cat(alphas).tolist())
        cursor = 0
        for b, chosen in plan:
            n = POINTS_PER_SPLIT * len(chosen)
            intervals[b] = intervals[b].split(chosen, new_values[cursor : cursor + n], new_scores[cursor : cursor + n])
            cursor += n
            steps[b] += n
        active = [b for b, _ in plan]
    scale = (total.abs().double() + atol).clamp_min(torch.finfo(torch.float64).tiny)
    out = torch.empty_like(diff)
    errors = torch.empty(batch, dtype=torch.float64)
    for b in range(batch):
        if b in intervals:
            out[b] = intervals[b].estimate()
            errors[b] = intervals[b].feature_error()
        else:
            st = spectral[b]
            assert st.estimate is not None and st.error is not None
            out[b] = st.estimate
            errors[b] = float(st.error.abs().max())
    return AdaptiveResult(
        values=out,
        steps=torch.tensor(steps),
        converged=torch.tensor(converged),
        quadrature_error=errors / scale.cpu(),
    )
