"""The one integrator: every straight-line path integral of the package, by a fixed rule or to a tolerance.

Evaluation protocol. A caller describes its integrand by one function
``evaluate(rows [P], alphas [P]) -> (contributions [P, T, F], scores [P, T])``: at the point ``alphas[p]``
(float64, in [0, 1]) of row ``rows[p]``'s path, the contribution of each feature ``F`` to each target score
``T`` (gradient times path velocity) and the target scores themselves. Input, layer and neuron IG are the
case ``T = 1``; generation attribution has one target per generated token, all sharing a row's points.

``fixed`` weights the contributions at a quadrature rule's nodes. ``adaptive`` controls the error of
every row to ``tol * |f(x) - f(baseline)| + atol`` in two phases:

1. Nested Clenshaw-Curtis rules (levels 2, 4, 8, 16, 32: 3, 5, 9, 17, 33 points, each level reusing all
   earlier ones). The raw per-feature estimate ``CC(n) - CC(n/2)`` measures the coarser rule's error; the
   error of ``CC(n)`` is extrapolated from two levels as ``e_n * min(1, e_n / e_(n/2))``, which holds for
   geometric (analytic integrand) and algebraic convergence alike, from 17 points on (``EXTRAPOLATE_FROM``);
   below, the raw estimate stands. A row whose estimate stops shrinking
   by ``SHRINK`` per level has a kink or a jump and moves on, keeping its evaluations at 0, 1/2 and 1.
2. Order-aware bisection. Each interval holds five equally spaced evaluations: Simpson's rule on the
   interval (coarse) and on its halves (fine). ``|fine - coarse|`` is the fine rule's error times
   ``2^p - 1`` for a rule converging at order ``p``: 1 across a jump (ReLU gradients), 2 across a kink,
   4 where smooth. The order is observed, not assumed: after a split, the children's summed estimate
   against the parent's is ``2^-p``; it may rise by at most 1 per generation and starts at 1. Intervals
   above an equal share of the budget are split (four new evaluations each), worst first.

Both phases also check the completeness residual ``f(1) - f(0) - sum(estimate)``, exact information
since every forward pass gives the scores for free. Errors below the rounding-noise floor
(``noise_floor``) count as converged: a tolerance below it cannot be certified in the dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import convergence
from .paths import accumulate
from .progress import Bar
from .quadrature import Rule, clenshaw_curtis_level, interleave_level

Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(rows [P] long, alphas [P] float64) -> (contributions [P, T, F], scores [P, T]), in order."""

CLENSHAW_CURTIS = "clenshaw-curtis"
BISECTION = "clenshaw-curtis+bisection"

LEVELS = (2, 4, 8, 16, 32)
SHRINK = 0.5
"""A row goes on to the next level only if every target's error estimate at least halved.

Lenient on purpose: from 5 to 9 nodes the estimates of the GPT-2-like benchmark model shrank by
only 0.05-0.3 per target (pre-asymptotic) and then by ~1e-3 from 9 to 17; a row that should have
left costs at most the points of the last level."""

EXTRAPOLATE_FROM = 16
"""The first level whose error is extrapolated from the last two; below it the raw estimate stands.

At 5 and 9 points a kinked integrand is pre-asymptotic: a ReLU MLP's 9-point estimate, extrapolated
from the 5-point one, claimed 1.6e-3 where the true error was 1.3e-2 (tests/test_one_tol.py)."""

NOISE_ULPS = 16.0
"""Rounding-noise floor in units of ``eps(dtype) * (|f(x)| + |f(b)| + sum_j int |v_j|)`` (``noise_floor``).

Measured in float32 on the GPT-2-like benchmark model (6 layers): with a tolerance far below
rounding, both estimates levelled off at <= 3 units, and float32 vs float64 at the same nodes
differed by <= 3 units. 16 leaves a margin of ~5; deeper models can be noisier (up to ~40 units
were seen on SmolLM2-135M), and a floor set too low only costs steps, never a wrong claim."""

MAX_ORDER = 4.0
"""Simpson's order on smooth integrands; the highest order an interval's error estimate may assume."""
POINTS_PER_SPLIT = 4
_COARSE = np.array([1.0, 0.0, 4.0, 0.0, 1.0]) / 6.0  # Simpson on [a, b]
_FINE = np.array([1.0, 4.0, 2.0, 4.0, 1.0]) / 12.0  # Simpson on [a, m] and [m, b]


def noise_floor(magnitude: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The error level sums of this size cannot resolve: ``NOISE_ULPS * eps(dtype) * magnitude``.

    ``magnitude`` is ``|f(x)| + |f(b)|`` plus the absolute size of the contributions summed (the
    integral of ``sum_j |v_j|`` under error control, ``sum_j |attribution_j|`` for a fixed rule):
    ``f(x) - f(b)`` carries the rounding of both scores, and a weighted sum of contributions carries
    rounding that scales with their absolute size, not with their (possibly cancelling) sum.
    """
    return convergence.noise_floor(magnitude, dtype, NOISE_ULPS)


def judge_fixed(residual: torch.Tensor, total: torch.Tensor, magnitude: torch.Tensor, atol: float) -> torch.Tensor:
    """A fixed rule's ``converged`` [B, ...]: the completeness residual within ``DEFAULT_TOL * |total| + atol``,
    or below the noise floor of ``magnitude`` (``|f(x)| + |f(b)| + sum_j |attribution_j|``)."""
    floor = noise_floor(magnitude.detach(), magnitude.dtype)
    return convergence.within_tolerance(residual.detach(), total.detach(), None, float(atol), floor)


def fixed(
    evaluate: Evaluate, n_rows: int, rule: Rule, chunk: int, device: torch.device, bar: Bar | None = None
) -> torch.Tensor:
    """The rule's weighted sum of contributions per row, [B, T, F]; ``chunk`` points per ``evaluate`` call."""
    bar = bar or Bar()
    nodes = torch.tensor(rule.nodes, dtype=torch.float64, device=device)
    weights = torch.tensor(rule.weights, dtype=torch.float64, device=device)
    rows = torch.arange(n_rows, device=device).repeat_interleave(rule.steps)
    alphas, w = nodes.repeat(n_rows), weights.repeat(n_rows)
    out: torch.Tensor | None = None
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        contrib, _ = evaluate(rows[sl], alphas[sl])
        if out is None:
            out = contrib.new_zeros(n_rows, *contrib.shape[1:])
        accumulate(out, rows[sl], contrib, w[sl])
        del contrib  # not alive during the next chunk's forward/backward: peak memory
        bar.advance(int(rows[sl].shape[0]))
    assert out is not None
    return out


@dataclass(frozen=True)
class Outcome:
    """Error-controlled integrals of ``B`` rows with ``T`` targets each."""

    values: torch.Tensor  # [B, T, F]
    steps: torch.Tensor  # [B]
    converged: torch.Tensor  # [B, T]
    quadrature_error: torch.Tensor  # [B, T], relative to |total| + atol
    noise_floor: torch.Tensor  # [B, T], absolute (the score's units)
    at_noise_floor: torch.Tensor  # [B, T]: converged only because the budget was below the floor
    bisected: torch.Tensor  # [B] bool: the row went on to bisection

    def rules(self) -> list[str]:
        """The rule that produced each row's values."""
        return [BISECTION if b else CLENSHAW_CURTIS for b in self.bisected.tolist()]

    def rule(self) -> str:
        """One name for all rows: bisection if any row needed it."""
        return BISECTION if bool(self.bisected.any()) else CLENSHAW_CURTIS


class _Points:
    """``evaluate`` at lists of points, ``chunk`` points per call, counted on ``bar``."""

    def __init__(self, evaluate: Evaluate, chunk: int, device: torch.device, bar: Bar) -> None:
        self.evaluate, self.chunk, self.device, self.bar = evaluate, chunk, device, bar

    def __call__(self, rows: list[int], alphas: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.tensor(rows, dtype=torch.long, device=self.device)
        a = torch.tensor(np.asarray(alphas, dtype=np.float64), device=self.device)
        values, scores = [], []
        for start in range(0, r.shape[0], self.chunk):
            sl = slice(start, start + self.chunk)
            c, s = self.evaluate(r[sl], a[sl])
            values.append(c)
            scores.append(s)
            self.bar.advance(int(r[sl].shape[0]))
        return torch.cat(values), torch.cat(scores)


@dataclass
class _Spectral:
    """One row's Clenshaw-Curtis nodes (ascending) and its current estimate."""

    nodes: list[float]
    values: torch.Tensor  # [n, T, F]
    scores: torch.Tensor  # [n, T]
    estimate: torch.Tensor | None = None  # [T, F]
    error: torch.Tensor | None = None  # [T]: extrapolated feature error of ``estimate`` (max over features)
    raw_error: torch.Tensor | None = None  # [T]: |CC(n) - CC(n/2)|, max over features
    magnitude: torch.Tensor | None = None  # [T]: integral of sum_j |contribution_j|
    done: bool = False

    def floor(self) -> torch.Tensor:
        assert self.magnitude is not None
        return noise_floor(self.scores[0].abs() + self.scores[-1].abs() + self.magnitude, self.scores.dtype)


def _spectral_phase(points: _Points, total: torch.Tensor, budget: torch.Tensor, max_steps: int) -> list[_Spectral]:
    """Nested levels for every row; ``row.done`` when all its targets are within budget (or the floor)."""
    n_rows = total.shape[0]
    nodes, _ = clenshaw_curtis_level(LEVELS[0], total)
    v, s = points([b for b in range(n_rows) for _ in nodes], nodes * n_rows)
    n = len(nodes)
    states = [_Spectral(list(nodes), v[n * b : n * b + n], s[n * b : n * b + n]) for b in range(n_rows)]
    active = list(range(n_rows))
    for previous, level in zip(LEVELS, LEVELS[1:]):
        active = [b for b in active if level + 1 <= max_steps]
        if not active:
            break
        fine_nodes, weights = clenshaw_curtis_level(level, total)
        new_nodes = fine_nodes[1::2]  # the odd nodes are new; the even ones are the previous level's
        new_v, new_s = points([b for b in active for _ in new_nodes], new_nodes * len(active))
        _, coarse_weights = clenshaw_curtis_level(previous, total)
        still: list[int] = []
        k = len(new_nodes)
        for j, b in enumerate(active):
            st = states[b]
            values = interleave_level(st.values, new_v[j * k : (j + 1) * k])
            scores = interleave_level(st.scores, new_s[j * k : (j + 1) * k])
            estimate = torch.einsum("n,ntl->tl", weights, values)
            raw = (estimate - torch.einsum("n,ntl->tl", coarse_weights, st.values)).abs().amax(dim=1)
            magnitude = torch.einsum("n,ntl->t", weights, values.abs())
            row = _Spectral(fine_nodes, values, scores, estimate, raw, raw, magnitude)
            allowed = torch.maximum(budget[b], row.floor())
            if st.raw_error is not None:
                ratio = raw / st.raw_error.clamp_min(torch.finfo(raw.dtype).tiny)
                if level >= EXTRAPOLATE_FROM:
                    row.error = raw * ratio.clamp(max=1.0)
                shrank = bool(((ratio <= SHRINK) | (raw <= allowed)).all())
            else:
                shrank = True
            completeness = (total[b] - estimate.sum(dim=1)).abs()
            assert row.error is not None
            row.done = bool(((row.error <= allowed) & (completeness <= allowed)).all())
            states[b] = row
            if not row.done and shrank:
                still.append(b)
        active = still
    return states


@dataclass(frozen=True)
class _Intervals:
    """One row's intervals of [0, 1], in order, as tensors: bounds ``a, b`` [n] (float64), five equally
    spaced evaluations each (``values`` [n, 5, T, F], ``scores`` [n, 5, T]) and the observed order [n, T]."""

    a: torch.Tensor
    b: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    order: torch.Tensor
    fine: torch.Tensor  # [n, T, F]: Simpson on the two halves
    raw: torch.Tensor  # [n, T, F]: |fine - coarse|
    error: torch.Tensor  # [n, T, F]: raw / (2^order - 1)
    magnitude: torch.Tensor  # [n, T]: integral of sum_j |contribution_j| over the interval
    residual: torch.Tensor  # [n, T]: |f(b) - f(a) - sum(fine)|

    @classmethod
    def build(
        cls, a: torch.Tensor, b: torch.Tensor, values: torch.Tensor, scores: torch.Tensor, order: torch.Tensor
    ) -> _Intervals:
        h = (b - a).to(values)[:, None, None]
        fine = h * torch.einsum("k,nktl->ntl", values.new_tensor(_FINE), values)
        raw = (fine - h * torch.einsum("k,nktl->ntl", values.new_tensor(_COARSE), values)).abs()
        error = raw / (2.0**order - 1.0).to(raw)[:, :, None]
        magnitude = h[:, :, 0] * torch.einsum("k,nktl->nt", values.new_tensor(_FINE), values.abs())
        residual = (scores[:, -1] - scores[:, 0] - fine.sum(dim=2)).abs()
        return cls(a, b, values, scores, order, fine, raw, error, magnitude, residual)

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def summed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Estimate [T, F], feature error [T] (max over features) and noise floor [T] of the row."""
        first, last = self.scores[0, 0], self.scores[-1, -1]
        floor = noise_floor(first.abs() + last.abs() + self.magnitude.sum(dim=0), first.dtype)
        return self.fine.sum(dim=0), self.error.sum(dim=0).amax(dim=1), floor

    def choose(self, allowed: torch.Tensor, room: int) -> torch.Tensor:
        """Intervals to split: those above an equal share of the budget, worst first, at most ``room``."""
        worst = torch.maximum(self.error.amax(dim=2), self.residual)  # [n, T]
        indicator = (worst / allowed).amax(dim=1)
        order = torch.argsort(indicator, descending=True, stable=True)
        above = order[indicator[order] > 1.0 / len(self)]
        return (above if len(above) else order[:1])[:room]

    def children(self, chosen: torch.Tensor) -> list[float]:
        """The four new nodes of each chosen interval, in float64."""
        offsets = torch.tensor([1 / 8, 3 / 8, 5 / 8, 7 / 8], dtype=torch.float64, device=self.a.device)
        a, h = self.a[chosen], (self.b - self.a)[chosen]
        return (a[:, None] + h[:, None] * offsets).reshape(-1).tolist()

    def split(self, chosen: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> _Intervals:
        """Replace each chosen interval by its halves, given the evaluations at ``children(chosen)``."""
        m = len(chosen)
        x, y = self.values[chosen], self.scores[chosen]
        nv, ns = v.view(m, 4, *v.shape[1:]), s.view(m, 4, *s.shape[1:])
        left_v = torch.stack([x[:, 0], nv[:, 0], x[:, 1], nv[:, 1], x[:, 2]], dim=1)
        right_v = torch.stack([x[:, 2], nv[:, 2], x[:, 3], nv[:, 3], x[:, 4]], dim=1)
        left_s = torch.stack([y[:, 0], ns[:, 0], y[:, 1], ns[:, 1], y[:, 2]], dim=1)
        right_s = torch.stack([y[:, 2], ns[:, 2], y[:, 3], ns[:, 3], y[:, 4]], dim=1)
        a, b = self.a[chosen], self.b[chosen]
        mid = (a + b) / 2
        parent_order = self.order[chosen]
        halves = _Intervals.build(
            torch.cat([a, mid]), torch.cat([mid, b]), torch.cat([left_v, right_v]), torch.cat([left_s, right_s]),
            torch.cat([parent_order, parent_order]),
        )  # fmt: skip
        # The observed order: how much the split shrank the estimate, rising by at most 1 per generation.
        parent = self.raw[chosen].sum(dim=2).double()
        children = halves.raw.sum(dim=2).double()
        ratio = (children[:m] + children[m:]) / parent.clamp_min(1e-300)
        observed = -torch.log2(ratio.clamp_min(2.0**-MAX_ORDER))
        order = torch.minimum(observed, parent_order + 1.0).clamp(1.0, MAX_ORDER)
        halves = _Intervals.build(halves.a, halves.b, halves.values, halves.scores, torch.cat([order, order]))
        keep = torch.ones(len(self), dtype=torch.bool, device=self.a.device)
        keep[chosen] = False
        merged = [
            torch.cat([getattr(self, f)[keep], getattr(halves, f)]) for f in ("a", "b", "values", "scores", "order")
        ]
        rank = torch.argsort(merged[0])
        return _Intervals.build(*(t[rank] for t in merged))


def _within(estimate: torch.Tensor, error: torch.Tensor, total: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return (error <= allowed) & ((total - estimate.sum(dim=1)).abs() <= allowed)


def adaptive(
    evaluate: Evaluate,
    total: torch.Tensor,
    *,
    tol: float,
    atol: float,
    max_steps: int,
    chunk: int,
    valid: torch.Tensor | None = None,
    bar: Bar | None = None,
    unit: str = "targets",
) -> Outcome:
    """Integrate each row until every valid target is within ``max(tol * |total| + atol, noise floor)``.

    ``total`` [B, T] is ``f(x) - f(baseline)`` per row and target; ``valid`` [B, T] marks real targets
    (padding never blocks convergence). All targets of a row share its points; intervals are bisected
    by their worst target relative to that target's budget. ``bar`` counts the points and shows how
    many ``unit`` have converged after each round.
    """
    bar = bar or Bar()
    n_rows = total.shape[0]
    valid = torch.ones_like(total, dtype=torch.bool) if valid is None else valid.to(total.device)
    tiny = torch.finfo(total.dtype).tiny
    budget = (total.abs() * tol + atol).clamp_min(tiny)
    budget = torch.where(valid, budget, torch.full_like(budget, float("inf")))
    points = _Points(evaluate, chunk, total.device, bar)
    spectral = _spectral_phase(points, total, budget, max_steps)
    steps = [len(st.nodes) for st in spectral]
    converged = torch.zeros(total.shape, dtype=torch.bool)
    parts: dict[int, _Intervals] = {}
    n_valid = int(valid.sum())

    def note() -> None:
        done = sum(int(valid[b].sum()) for b in range(n_rows) if spectral[b].done)
        done += int((converged & valid.cpu())[list(parts)].sum()) if parts else 0
        bar.update(note=f"{done}/{n_valid} {unit} converged")

    # Phase 2 starts from one interval [0, 1]: reuse the evaluations at 0, 1/2, 1, add 1/4 and 3/4.
    rest = [b for b in range(n_rows) if not spectral[b].done and steps[b] + 2 <= max_steps]
    if rest:
        q_values, q_scores = points([b for b in rest for _ in (0, 1)], [0.25, 0.75] * len(rest))
        for j, b in enumerate(rest):
            st, mid = spectral[b], (len(spectral[b].nodes) - 1) // 2
            v, s = st.values, st.scores
            node_values = torch.stack([v[0], q_values[2 * j], v[mid], q_values[2 * j + 1], v[-1]])
            node_scores = torch.stack([s[0], q_scores[2 * j], s[mid], q_scores[2 * j + 1], s[-1]])
            first_order = torch.ones(1, total.shape[1], dtype=torch.float64, device=total.device)
            bounds = torch.zeros(1, dtype=torch.float64, device=total.device), torch.ones_like(first_order[:, 0])
            parts[b] = _Intervals.build(*bounds, node_values[None], node_scores[None], first_order)
            steps[b] += 2
    active = list(rest)
    note()
    while active:
        plan: list[tuple[int, torch.Tensor]] = []
        for b in active:
            estimate, error, floor = parts[b].summed()
            allowed = torch.maximum(budget[b], floor)
            ok = _within(estimate, error, total[b], allowed)
            converged[b] = ok.cpu()
            room = (max_steps - steps[b]) // POINTS_PER_SPLIT
            if bool(ok.all()) or room < 1:
                continue
            plan.append((b, parts[b].choose(allowed, room)))
        note()
        if not plan:
            break
        rows = [b for b, chosen in plan for _ in range(POINTS_PER_SPLIT * len(chosen))]
        alphas = [x for b, chosen in plan for x in parts[b].children(chosen)]
        v, s = points(rows, alphas)
        cursor = 0
        for b, chosen in plan:
            n = POINTS_PER_SPLIT * len(chosen)
            parts[b] = parts[b].split(chosen, v[cursor : cursor + n], s[cursor : cursor + n])
            cursor += n
            steps[b] += n
        active = [b for b, _ in plan]
    values, feature_error, floors, within_budget = [], [], [], []
    for b, st in enumerate(spectral):
        if b in parts:
            estimate, error, floor = parts[b].summed()
        else:
            assert st.estimate is not None and st.error is not None
            estimate, error, floor = st.estimate, st.error, st.floor()
            converged[b] = torch.full_like(converged[b], st.done)
        values.append(estimate)
        feature_error.append(error)
        floors.append(floor)
        within_budget.append(_within(estimate, error, total[b], budget[b]))
    scale = (total.abs() + atol).clamp_min(tiny)
    done = converged & valid.cpu()
    return Outcome(
        values=torch.stack(values),
        steps=torch.tensor(steps),
        converged=done,
        quadrature_error=(torch.stack(feature_error) / scale).cpu(),
        noise_floor=(torch.stack(floors) * valid).cpu(),
        at_noise_floor=done & ~torch.stack(within_budget).cpu(),
        bisected=torch.tensor([b in parts for b in range(n_rows)]),
    )
