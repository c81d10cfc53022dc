"""Error-controlled path integration: globally adaptive Simpson bisection, per example.

Each example keeps its own set of intervals of [0, 1]. An interval holds the integrand
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

from .engine import Engine

_COARSE = (1.0 / 6.0, 0.0, 4.0 / 6.0, 0.0, 1.0 / 6.0)
_FINE = (1.0 / 12.0, 4.0 / 12.0, 2.0 / 12.0, 4.0 / 12.0, 1.0 / 12.0)
POINTS_PER_SPLIT = 4


@dataclass
class _Interval:
    a: float
    b: float
    values: torch.Tensor  # [5, features]: integrand at the five nodes
    scores: torch.Tensor  # [5]: target score at the five nodes

    def __post_init__(self) -> None:
        h = self.b - self.a
        coarse = h * torch.einsum("n,nd->d", self.values.new_tensor(_COARSE), self.values)
        self.fine = h * torch.einsum("n,nd->d", self.values.new_tensor(_FINE), self.values)
        self.signed_error = self.fine - coarse
        self.error = self.signed_error.abs()
        self.residual = float(self.scores[-1] - self.scores[0] - self.fine.sum())
        self.indicator = max(float(self.error.max()), abs(self.residual))

    def children_alphas(self) -> tuple[float, float, float, float]:
        h = self.b - self.a
        return (self.a + h / 8, self.a + 3 * h / 8, self.a + 5 * h / 8, self.a + 7 * h / 8)

    def split(self, new_values: torch.Tensor, new_scores: torch.Tensor) -> tuple[_Interval, _Interval]:
        v, s = self.values, self.scores
        mid = (self.a + self.b) / 2
        left = _Interval(
            self.a,
            mid,
            torch.stack([v[0], new_values[0], v[1], new_values[1], v[2]]),
            torch.stack([s[0], new_scores[0], s[1], new_scores[1], s[2]]),
        )
        right = _Interval(
            mid,
            self.b,
            torch.stack([v[2], new_values[2], v[3], new_values[3], v[4]]),
            torch.stack([s[2], new_scores[2], s[3], new_scores[3], s[4]]),
        )
        return left, right


@dataclass(frozen=True)
class AdaptiveResult:
    values: torch.Tensor  # [batch, features]
    steps: torch.Tensor  # [batch]
    converged: torch.Tensor  # [batch] bool
    quadrature_error: torch.Tensor  # [batch]: max over features of the summed error, relative


def _feature_error(parts: list[_Interval]) -> torch.Tensor:
    """Largest per-feature gap between the composite fine and coarse rules.

    This estimates the error of the coarse rule, so it over-estimates the error of the fine
    estimate that is returned; signs are kept so that errors of opposite sign in different
    intervals cancel as they do in the integral.
    """
    return torch.stack([p.signed_error for p in parts]).sum(dim=0).abs().max()


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


def integrate(
    engine: Engine,
    baselines: dict[str, torch.Tensor],
    diff: torch.Tensor,
    total: torch.Tensor,
    tol: float,
    atol: float,
    max_steps: int,
) -> AdaptiveResult:
    """Integrate each example's path to tolerance ``tol`` relative to ``|total|`` (= F(1) - F(0))."""
    batch = diff.shape[0]
    budget = (total.abs().double() * tol + atol).tolist()
    start = (0.0, 0.25, 0.5, 0.75, 1.0)
    values, scores = _evaluate(engine, baselines, diff, [b for b in range(batch) for _ in start], list(start) * batch)
    intervals = [[_Interval(0.0, 1.0, values[5 * b : 5 * b + 5], scores[5 * b : 5 * b + 5])] for b in range(batch)]
    steps = [len(start)] * batch
    active = list(range(batch))
    converged = [False] * batch
    while active:
        plan: list[tuple[int, list[int]]] = []
        for b in active:
            parts = intervals[b]
            worst = float(_feature_error(parts))
            estimate = sum(float(p.fine.sum()) for p in parts)
            completeness = abs(float(total[b]) - estimate)
            if worst <= budget[b] and completeness <= budget[b]:
                converged[b] = True
                continue
            room = (max_steps - steps[b]) // POINTS_PER_SPLIT
            if room < 1:
                continue
            share = budget[b] / len(parts)
            order = sorted(range(len(parts)), key=lambda i: -parts[i].indicator)
            chosen = [i for i in order if parts[i].indicator > share][:room] or order[:1]
            plan.append((b, chosen))
        if not plan:
            break
        example = [b for b, chosen in plan for _ in range(POINTS_PER_SPLIT * len(chosen))]
        alpha = [x for b, chosen in plan for i in chosen for x in intervals[b][i].children_alphas()]
        new_values, new_scores = _evaluate(engine, baselines, diff, example, alpha)
        cursor = 0
        for b, chosen in plan:
            parts = intervals[b]
            replaced: dict[int, tuple[_Interval, _Interval]] = {}
            for i in chosen:
                rows = slice(cursor, cursor + POINTS_PER_SPLIT)
                replaced[i] = parts[i].split(new_values[rows], new_scores[rows])
                cursor += POINTS_PER_SPLIT
            intervals[b] = [c for i, p in enumerate(parts) for c in replaced.get(i, (p,))]
            steps[b] += POINTS_PER_SPLIT * len(chosen)
        active = [b for b, _ in plan]
    out = torch.stack([torch.stack([p.fine for p in parts]).sum(dim=0) for parts in intervals])
    scale = (total.abs().double() + atol).clamp_min(torch.finfo(torch.float64).tiny)
    errors = torch.stack([_feature_error(parts) for parts in intervals])
    return AdaptiveResult(
        values=out,
        steps=torch.tensor(steps),
        converged=torch.tensor(converged),
        quadrature_error=(errors.double().cpu() / scale.cpu()),
    )
