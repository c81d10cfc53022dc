"""Phase 1 of error-controlled generation attribution: nested Clenshaw-Curtis rules per row.

Transformer paths are smooth (GELU/SiLU, softmax, norms) unless they cross a sharp transition, and
on a smooth integrand a spectral rule reaches rounding level with far fewer points than Simpson
bisection. Each row evaluates the Clenshaw-Curtis nodes of levels 2, 4, 8, 16 and 32 (3, 5, 9, 17,
33 points, every level reusing all earlier ones). The raw per-feature estimate ``CC(n) - CC(n/2)``
measures the error of the coarser rule; the error of ``CC(n)`` is extrapolated from two levels as
``e_n * min(1, e_n / e_(n/2))``, which holds for geometric (analytic integrand) and algebraic
(kinks) convergence alike. The exact completeness residual is checked as well. A row whose
estimate stops shrinking by ``SHRINK`` per level leaves for Simpson bisection (phase 2) with its
evaluations at 0, 1/2 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..quadrature import clenshaw_curtis_level, interleave_level

LEVELS = (2, 4, 8, 16, 32)
SHRINK = 0.5
"""A row goes on to the next level only if every target's error estimate at least halved.

Lenient on purpose: from 5 to 9 nodes the estimates of the GPT-2-like benchmark model shrank by
only 0.05-0.3 per target (pre-asymptotic) and then by ~1e-3 from 9 to 17; a row that should have
left costs at most the 8 nodes of the last level."""

Evaluate = Callable[[list[int], list[float]], tuple[torch.Tensor, torch.Tensor]]
"""(rows, alphas) -> (contributions [points, T, L], scores [points, T]) at those points, in order."""


@dataclass
class SpectralRow:
    """One row's nodes (ascending, as Clenshaw-Curtis orders them) and its current estimate."""

    nodes: list[float]
    values: torch.Tensor  # [n, T, L]
    scores: torch.Tensor  # [n, T]
    estimate: torch.Tensor | None = None  # [T, L]
    error: torch.Tensor | None = None  # [T]: extrapolated feature error of ``estimate`` (max over positions)
    raw_error: torch.Tensor | None = None  # [T]: |CC(n) - CC(n/2)|, max over positions
    magnitude: torch.Tensor | None = None  # [T]: integral of sum_j |contribution_j|
    done: bool = False

    def endpoints(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values and scores at alpha = 0, 1/2 and 1 (always nodes of the rule)."""
        mid = (len(self.nodes) - 1) // 2
        v, s = self.values, self.scores
        return v[0], v[mid], v[-1], s[0], s[mid], s[-1]


def spectral_phase(
    evaluate: Evaluate,
    n_rows: int,
    total: torch.Tensor,
    budget: torch.Tensor,
    max_steps: int,
    floor_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[SpectralRow]:
    """Run the nested levels for every row; ``row.done`` when all its targets are within budget.

    ``budget`` [B, T] is the allowed absolute error (``inf`` for padding targets); ``floor_of(scores
    [n, T], magnitude [T])`` returns the rounding-noise floor [T] that also counts as converged.
    """
    first = LEVELS[0]
    nodes, _ = clenshaw_curtis_level(first, total)
    v, s = evaluate([b for b in range(n_rows) for _ in nodes], nodes * n_rows)
    n = len(nodes)
    states = [SpectralRow(list(nodes), v[n * b : n * b + n], s[n * b : n * b + n]) for b in range(n_rows)]
    active = list(range(n_rows))
    for previous, level in zip(LEVELS, LEVELS[1:]):
        active = [b for b in active if level + 1 <= max_steps]
        if not active:
            break
        fine_nodes, weights = clenshaw_curtis_level(level, total)
        new_nodes = fine_nodes[1::2]  # the odd nodes are new; the even ones are the previous level's
        new_v, new_s = evaluate([b for b in active for _ in new_nodes], new_nodes * len(active))
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
            allowed = torch.maximum(budget[b], floor_of(scores, magnitude))
            if st.raw_error is None:
                error, shrank = raw, True
            else:
                ratio = raw / st.raw_error.clamp_min(torch.finfo(raw.dtype).tiny)
                error = raw * ratio.clamp(max=1.0)
                shrank = bool(((ratio <= SHRINK) | (raw <= allowed)).all())
            completeness = (total[b] - estimate.sum(dim=1)).abs()
            done = bool(((error <= allowed) & (completeness <= allowed)).all())
            states[b] = SpectralRow(fine_nodes, values, scores, estimate, error, raw, magnitude, done)
            if not done and shrank:
                still.append(b)
        active = still
    return states
