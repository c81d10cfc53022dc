"""Gradients of every target token from one forward pass per integration point, and the path integrals.

A causal LM's logits at position ``p`` depend only on embeddings at positions ``<= p``. So
running the interpolated full sequence (prompt + all targets) at one ``alpha`` gives, at each
score position, exactly what the interpolated prefix alone would give: one forward per point
serves every target, followed by one backward per target on the retained graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import InputError, ModelError
from ..progress import Bar
from ..quadrature import Rule
from .runner import Batch, Runner
from .spectral import spectral_phase
from .steps import StepArgs, StepFunction

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(gradient [points, L, H], rows [points]) -> per-position contribution [points, L]."""


class Scorer:
    """Target scores ``[points, T]`` and their per-position gradient contributions, chunked."""

    def __init__(
        self,
        runner: Runner,
        batch: Batch,
        step_fn: StepFunction,
        contrast_ids: torch.Tensor | None,
        contrast_logprobs: torch.Tensor | None,
        chunk: int,
    ) -> None:
        self.runner = runner
        self.batch = batch
        self.step_fn = step_fn
        self.contrast_ids = contrast_ids
        self.contrast_logprobs = contrast_logprobs
        self.chunk = chunk

    def _columns(self, logits: list[torch.Tensor], rows: torch.Tensor, step_fn: StepFunction) -> list[torch.Tensor]:
        """One score tensor [points] per target column, zero where the target is padding."""
        cols = []
        for k, lk in enumerate(logits):
            args = StepArgs(
                logits=lk,
                target_ids=self.batch.target_ids[rows, k],
                contrast_ids=None if self.contrast_ids is None else self.contrast_ids[rows, k],
                contrast_logprobs=None if self.contrast_logprobs is None else self.contrast_logprobs[rows, k],
            )
            s = step_fn(args)
            if not isinstance(s, torch.Tensor) or s.shape != (rows.shape[0],):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(
                    "score", f"a step function must return one score per row ({rows.shape[0]},), got {got}"
                )
            valid = self.batch.valid[rows, k]
            if not bool(torch.isfinite(s[valid]).all()):
                raise ModelError("model", "the target score is NaN or Inf along the path")
            cols.append(s * valid)
        return cols

    def _score(self, logits: list[torch.Tensor], rows: torch.Tensor, step_fn: StepFunction) -> torch.Tensor:
        return torch.stack(self._columns(logits, rows, step_fn), dim=1)

    def scores(self, rows: torch.Tensor, embeds: torch.Tensor, step_fn: StepFunction | None = None) -> torch.Tensor:
        """Scores without gradients at given points (chunked)."""
        out = []
        with torch.no_grad():
            for start in range(0, rows.shape[0], self.chunk):
                r = rows[start : start + self.chunk]
                logits = self.runner.logits(self.batch, r, embeds[start : start + self.chunk])
                out.append(self._score(logits, r, step_fn or self.step_fn))
        return torch.cat(out)

    def gradients(self, rows: torch.Tensor, embeds: torch.Tensor, reduce: Reduce) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk: scores [points, T] and contributions [points, T, L] (one backward per target)."""
        leaf = embeds.detach().requires_grad_(True)
        n_targets = self.batch.target_ids.shape[1]
        contrib = embeds.new_zeros(rows.shape[0], n_targets, embeds.shape[1])
        with torch.enable_grad():
            # Each backward starts from its own column: from a stacked tensor, every target's backward
            # would also run (with zero gradients) through all the other targets' heads.
            cols = self._columns(self.runner.logits(self.batch, rows, leaf), rows, self.step_fn)
            live = [k for k in range(n_targets) if bool(self.batch.valid[rows, k].any())]
            for i, k in enumerate(live):
                if not cols[k].requires_grad:
                    raise ModelError("model", "the target score does not depend on the input embeddings")
                (grad,) = torch.autograd.grad(cols[k].sum(), leaf, retain_graph=i < len(live) - 1, allow_unused=True)
                if grad is not None:
                    contrib[:, k] = reduce(grad, rows)
        return torch.stack([c.detach() for c in cols], dim=1), contrib


def points(inputs: torch.Tensor, baselines: torch.Tensor, rows: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    base = baselines[rows]
    return base + alpha.view(-1, 1, 1) * (inputs[rows] - base)


def fixed_rule(
    scorer: Scorer, inputs: torch.Tensor, baselines: torch.Tensor, rule: Rule, reduce: Reduce, bar: Bar | None = None
) -> torch.Tensor:
    """Weighted sum of contributions at the rule's nodes: [B, T, L] (``bar`` counts the points)."""
    bar = bar or Bar()
    n_rows = inputs.shape[0]
    nodes = torch.tensor(rule.nodes, dtype=torch.float64).to(inputs)
    weights = torch.tensor(rule.weights, dtype=torch.float64).to(inputs)
    rows = torch.arange(n_rows, device=inputs.device).repeat_interleave(rule.steps)
    alpha, w = nodes.repeat(n_rows), weights.repeat(n_rows)
    out = inputs.new_zeros(n_rows, scorer.batch.target_ids.shape[1], inputs.shape[1])
    for start in range(0, rows.shape[0], scorer.chunk):
        sl = slice(start, start + scorer.chunk)
        _, contrib = scorer.gradients(rows[sl], points(inputs, baselines, rows[sl], alpha[sl]), reduce)
        out.index_add_(0, rows[sl], contrib * w[sl, None, None])
        bar.advance(int(rows[sl].shape[0]))
    return out


_COARSE = np.array([1.0, 0.0, 4.0, 0.0, 1.0]) / 6.0
_FINE = np.array([1.0, 4.0, 2.0, 4.0, 1.0]) / 12.0
POINTS_PER_SPLIT = 4
NOISE_ULPS = 16.0
"""Rounding-noise floor, in units of ``eps(dtype) * scale`` (see ``noise_floor``).

Measured in float32 on the GPT-2-like benchmark model (6 layers): with a tolerance far below
rounding, both estimates levelled off at <= 3 units (65 points), and float32 vs float64 at the
same nodes differed by <= 3 units. 16 leaves a margin of ~5; deeper models can be noisier (up
to ~40 units of the smaller ``|f(x)| + |f(b)| + sum_j |v_j|`` were seen on SmolLM2-135M), and a
floor set too low only costs steps, never a wrong claim of convergence.
"""


MAX_ORDER = 4.0
"""Simpson's order on smooth integrands; the order an interval's error estimate may assume."""


@dataclass
class _Interval:
    """Simpson pair on [a, b] for all targets of one row: values [5, T, L], scores [5, T].

    ``raw = |fine - coarse|`` estimates the fine rule's error times ``2^p - 1`` for a rule converging
    at order ``p``: 1 across a jump of the integrand (ReLU gradients), 2 across a kink, 4 where it is
    smooth. ``order`` [T] is observed, not assumed: after a split, the children's summed ``raw``
    against the parent's is ``2^-p``; it may rise by at most 1 per generation (an estimate must be
    confirmed over successive splits before it is trusted), and the whole path starts at 1.
    """

    a: float
    b: float
    values: torch.Tensor
    scores: torch.Tensor
    order: torch.Tensor | None = None  # [T]

    def __post_init__(self) -> None:
        h = self.b - self.a
        coarse = h * torch.einsum("n,ntl->tl", self.values.new_tensor(_COARSE), self.values)
        self.fine = h * torch.einsum("n,ntl->tl", self.values.new_tensor(_FINE), self.values)
        self.raw = (self.fine - coarse).abs()  # [T, L]
        if self.order is None:
            self.order = torch.ones(self.raw.shape[0], dtype=torch.float64, device=self.raw.device)
        factor = (2.0**self.order - 1.0).to(self.raw.dtype)
        self.error = self.raw / factor[:, None]  # [T, L]
        # Integral of |contribution| over the interval, summed over positions: the size of what is summed.
        self.magnitude = h * torch.einsum("n,ntl->t", self.values.new_tensor(_FINE), self.values.abs())
        self.residual = (self.scores[-1] - self.scores[0] - self.fine.sum(dim=1)).abs()  # [T]

    def indicator(self, budget: torch.Tensor) -> float:
        """Largest error of this interval over targets, in units of each target's budget."""
        worst = torch.maximum(self.error.amax(dim=1), self.residual)
        return float((worst / budget).max())

    def children(self) -> list[float]:
        h = self.b - self.a
        return [self.a + h * f for f in (1 / 8, 3 / 8, 5 / 8, 7 / 8)]

    def split(self, v: torch.Tensor, s: torch.Tensor) -> list[_Interval]:
        mid = (self.a + self.b) / 2
        x, y = self.values, self.scores
        left = _Interval(
            self.a, mid, torch.stack([x[0], v[0], x[1], v[1], x[2]]), torch.stack([y[0], s[0], y[1], s[1], y[2]])
        )
        right = _Interval(
            mid, self.b, torch.stack([x[2], v[2], x[3], v[3], x[4]]), torch.stack([y[2], s[2], y[3], s[3], y[4]])
        )
        assert self.order is not None
        parent = self.raw.sum(dim=1).double()
        ratio = (left.raw.sum(dim=1).double() + right.raw.sum(dim=1).double()) / parent.clamp_min(1e-300)
        observed = -torch.log2(ratio.clamp_min(2.0**-MAX_ORDER))
        order = torch.minimum(observed, self.order + 1.0).clamp(1.0, MAX_ORDER)
        return [
            _Interval(left.a, left.b, left.values, left.scores, order),
            _Interval(right.a, right.b, right.values, right.scores, order),
        ]


@dataclass(frozen=True)
class AdaptiveOutcome:
    values: torch.Tensor  # [B, T, L]
    steps: torch.Tensor  # [B]
    converged: torch.Tensor  # [B, T]
    quadrature_error: torch.Tensor  # [B, T], relative to |total|
    noise_floor: torch.Tensor  # [B, T], absolute (same units as the score)
    at_noise_floor: torch.Tensor  # [B, T]: converged only because the budget was below the floor


def noise_floor(parts: list[_Interval], noise_ulps: float) -> torch.Tensor:
    """Error level the estimates cannot resolve, per target: ``k * eps * (|f(x)| + |f(b)| + sum_j int |v_j|)``.

    ``f(x) - f(b)`` carries the rounding of both scores, and each Simpson estimate is a weighted
    sum of contributions whose rounding scales with their absolute size, not with their (possibly
    cancelling) sum; so ``int |v_j|`` over the path, summed over positions, bounds what the sums see.
    """
    first, last = parts[0].scores[0], parts[-1].scores[-1]
    magnitude = torch.stack([p.magnitude for p in parts]).sum(dim=0)
    eps = torch.finfo(first.dtype).eps
    return noise_ulps * eps * (first.abs() + last.abs() + magnitude)


def adaptive(
    scorer: Scorer,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    total: torch.Tensor,
    reduce: Reduce,
    tol: float,
    atol: float,
    max_steps: int,
    noise_ulps: float | None = None,
    bar: Bar | None = None,
) -> AdaptiveOutcome:
    """Nested Clenshaw-Curtis per row (``spectral.py``), then globally adaptive Simpson for the rest.

    A row is refined until every valid target's summed feature error and completeness error
    are within ``max(tol * |total| + atol, noise floor)``; all targets of a row share its points and
    Simpson intervals are bisected by their worst target. The floor (``noise_floor``,
    ``NOISE_ULPS`` unless ``noise_ulps`` is given) is the rounding level of the estimates: a
    tolerance below it cannot be certified in this dtype. ``bar`` counts the points evaluated and
    shows how many target tokens have converged after each bisection round.
    """
    bar = bar or Bar()
    ulps = NOISE_ULPS if noise_ulps is None else noise_ulps
    n_rows = inputs.shape[0]
    valid = scorer.batch.valid
    tiny = torch.finfo(total.dtype).tiny
    budget = (total.abs() * tol + atol).clamp_min(tiny)
    # Padding targets never block convergence.
    budget = torch.where(valid, budget, torch.full_like(budget, float("inf")))

    def evaluate(rows: list[int], alphas: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.tensor(rows, dtype=torch.long, device=inputs.device)
        a = torch.tensor(np.asarray(alphas, dtype=np.float64)).to(inputs)
        vals, scs = [], []
        for start in range(0, r.shape[0], scorer.chunk):
            sl = slice(start, start + scorer.chunk)
            s, c = scorer.gradients(r[sl], points(inputs, baselines, r[sl], a[sl]), reduce)
            vals.append(c)
            scs.append(s)
            bar.advance(int(r[sl].shape[0]))
        return torch.cat(vals), torch.cat(scs)

    def floor_of(scores: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(scores.dtype).eps
        return ulps * eps * (scores[0].abs() + scores[-1].abs() + magnitude)

    spectral = spectral_phase(evaluate, n_rows, total, budget, max_steps, floor_of)
    steps = [len(st.nodes) for st in spectral]
    converged = torch.zeros(n_rows, total.shape[1], dtype=torch.bool)
    n_targets = int(valid.sum())

    def note() -> None:
        done_rows = [b for b in range(n_rows) if spectral[b].done]
        done = int(valid[done_rows].sum()) if done_rows else 0
        done += int((converged & valid.cpu())[[b for b in range(n_rows) if b in parts]].sum()) if parts else 0
        bar.update(note=f"{done}/{n_targets} targets converged")

    # Phase 2 starts from one interval [0, 1]: reuse the evaluations at 0, 1/2, 1, add 1/4 and 3/4.
    rest = [b for b in range(n_rows) if not spectral[b].done and steps[b] + 2 <= max_steps]
    parts: dict[int, list[_Interval]] = {}
    if rest:
        q_values, q_scores = evaluate([b for b in rest for _ in (0, 1)], [0.25, 0.75] * len(rest))
        for j, b in enumerate(rest):
            v0, vm, v1, s0, sm, s1 = spectral[b].endpoints()
            node_values = torch.stack([v0, q_values[2 * j], vm, q_values[2 * j + 1], v1])
            node_scores = torch.stack([s0, q_scores[2 * j], sm, q_scores[2 * j + 1], s1])
            parts[b] = [_Interval(0.0, 1.0, node_values, node_scores)]
            steps[b] += 2
    active = list(rest)
    note()
    while active:
        plan: list[tuple[int, list[int]]] = []
        for b in active:
            effective = torch.maximum(budget[b], noise_floor(parts[b], ulps))
            ok = _row_converged(parts[b], total[b], effective)
            converged[b] = ok.cpu()
            if bool(ok.all()):
                continue
            room = (max_steps - steps[b]) // POINTS_PER_SPLIT
            if room < 1:
                continue
            share = 1.0 / len(parts[b])
            ind = [p.indicator(effective) for p in parts[b]]
            order = sorted(range(len(ind)), key=lambda i: -ind[i])
            plan.append((b, [i for i in order if ind[i] > share][:room] or order[:1]))
        note()
        if not plan:
            break
        rows = [b for b, chosen in plan for _ in range(POINTS_PER_SPLIT * len(chosen))]
        alphas = [x for b, chosen in plan for i in chosen for x in parts[b][i].children()]
        v, s = evaluate(rows, alphas)
        cursor = 0
        for b, chosen in plan:
            new: dict[int, list[_Interval]] = {}
            for i in chosen:
                sl = slice(cursor, cursor + POINTS_PER_SPLIT)
                new[i] = parts[b][i].split(v[sl], s[sl])
                cursor += POINTS_PER_SPLIT
            parts[b] = [c for i, p in enumerate(parts[b]) for c in new.get(i, [p])]
            steps[b] += POINTS_PER_SPLIT * len(chosen)
        active = [b for b, _ in plan]
    values, feature_error, floor, within_budget = [], [], [], []
    for b, st in enumerate(spectral):
        if b in parts:
            row = parts[b]
            values.append(torch.stack([p.fine for p in row]).sum(dim=0))
            feature_error.append(torch.stack([p.error for p in row]).sum(dim=0).amax(dim=1))
            floor.append(noise_floor(row, ulps))
            within_budget.append(_row_converged(row, total[b], budget[b]))
            continue
        assert st.estimate is not None and st.error is not None and st.magnitude is not None
        values.append(st.estimate)
        feature_error.append(st.error)
        floor.append(floor_of(st.scores, st.magnitude))
        ok = (st.error <= budget[b]) & ((total[b] - st.estimate.sum(dim=1)).abs() <= budget[b])
        within_budget.append(ok)
        converged[b] = torch.full_like(converged[b], st.done)
    scale = (total.abs() + atol).clamp_min(tiny)
    done = converged & valid.cpu()
    return AdaptiveOutcome(
        values=torch.stack(values),
        steps=torch.tensor(steps),
        converged=done,
        quadrature_error=(torch.stack(feature_error) / scale).cpu(),
        noise_floor=(torch.stack(floor) * valid).cpu(),
        at_noise_floor=done & ~torch.stack(within_budget).cpu(),
    )


def _row_converged(parts: list[_Interval], total: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    feature_error = torch.stack([p.error for p in parts]).sum(dim=0).amax(dim=1)
    estimate = torch.stack([p.fine.sum(dim=1) for p in parts]).sum(dim=0)
    return (feature_error <= budget) & ((total - estimate).abs() <= budget)
