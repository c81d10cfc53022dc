"""Phase 2 of error control: the intervals of one example, kept as tensors.

Each interval holds the integrand (gradient times input - baseline) at five equally spaced
nodes, which give a coarse Simpson estimate on the whole interval and a fine one on its halves.
Splitting an interval reuses its five nodes and needs four new ones (the quarter points of
each half).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_COARSE = (1.0 / 6.0, 0.0, 4.0 / 6.0, 0.0, 1.0 / 6.0)
_FINE = (1.0 / 12.0, 4.0 / 12.0, 2.0 / 12.0, 4.0 / 12.0, 1.0 / 12.0)
POINTS_PER_SPLIT = 4


@dataclass(frozen=True)
class Intervals:
    """``n`` intervals: bounds ``a, b`` [n] (float64), ``values`` [n, 5, features], ``scores`` [n, 5]."""

    a: torch.Tensor
    b: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor
    fine: torch.Tensor  # [n, features]: Simpson on the two halves
    signed_error: torch.Tensor  # [n, features]: fine - coarse
    indicator: torch.Tensor  # [n]: max(|fine - coarse|, |local completeness residual|)

    @classmethod
    def build(cls, a: torch.Tensor, b: torch.Tensor, values: torch.Tensor, scores: torch.Tensor) -> Intervals:
        h = (b - a).to(values)[:, None]
        fine = h * torch.einsum("k,nkd->nd", values.new_tensor(_FINE), values)
        coarse = h * torch.einsum("k,nkd->nd", values.new_tensor(_COARSE), values)
        signed_error = fine - coarse
        residual = scores[:, -1] - scores[:, 0] - fine.sum(dim=1)
        indicator = torch.maximum(signed_error.abs().amax(dim=1), residual.abs().to(signed_error))
        return cls(a, b, values, scores, fine, signed_error, indicator)

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def estimate(self) -> torch.Tensor:
        """The integral over [0, 1] per feature: the sum of the fine estimates."""
        return self.fine.sum(dim=0)

    def feature_error(self) -> float:
        """Largest per-feature gap between the composite fine and coarse rules.

        This estimates the error of the coarse rule, so it over-estimates the error of the fine
        estimate that is returned; signs are kept so that errors of opposite sign in different
        intervals cancel as they do in the integral.
        """
        return float(self.signed_error.sum(dim=0).abs().max())

    def choose(self, budget: float, room: int) -> torch.Tensor:
        """Intervals to split: those above an equal share of the budget, worst first, at most ``room``."""
        order = torch.argsort(self.indicator, descending=True, stable=True)
        above = order[self.indicator[order] > budget / len(self)]
        return (above if len(above) else order[:1])[:room]

    def new_alphas(self, chosen: torch.Tensor) -> torch.Tensor:
        """The four new nodes of each chosen interval, [len(chosen) * 4], in float64."""
        a, h = self.a[chosen], (self.b - self.a)[chosen]
        offsets = torch.tensor([1 / 8, 3 / 8, 5 / 8, 7 / 8], dtype=torch.float64)
        return (a[:, None] + h[:, None] * offsets).reshape(-1)

    def split(self, chosen: torch.Tensor, new_values: torch.Tensor, new_scores: torch.Tensor) -> Intervals:
        """Replace each chosen interval by its two halves, given the values at ``new_alphas(chosen)``."""
        m = len(chosen)
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[chosen] = False
        v, s = self.values[chosen], self.scores[chosen]
        nv, ns = new_values.view(m, 4, -1), new_scores.view(m, 4)
        left_v = torch.stack([v[:, 0], nv[:, 0], v[:, 1], nv[:, 1], v[:, 2]], dim=1)
        right_v = torch.stack([v[:, 2], nv[:, 2], v[:, 3], nv[:, 3], v[:, 4]], dim=1)
        left_s = torch.stack([s[:, 0], ns[:, 0], s[:, 1], ns[:, 1], s[:, 2]], dim=1)
        right_s = torch.stack([s[:, 2], ns[:, 2], s[:, 3], ns[:, 3], s[:, 4]], dim=1)
        a, b = self.a[chosen], self.b[chosen]
        mid = (a + b) / 2
        children = Intervals.build(
            torch.cat([a, mid]), torch.cat([mid, b]), torch.cat([left_v, right_v]), torch.cat([left_s, right_s])
        )
        return Intervals(
            *(torch.cat([getattr(self, f)[keep], getattr(children, f)]) for f in self.__dataclass_fields__)
        )
