"""Paths from baselines to inputs, and the one weighted sum of gradients along them.

Every path method reduces to gradients at points of a path, each dotted with what the point
moves the input by: a displacement, or a quadrature weight times the path's derivative. The
points come from one of three kinds of path; the sum is always :func:`accumulate`.

- straight: :func:`line`, at a quadrature rule's nodes (IG through ``integrand.integrate``, text,
  generation, IG patching), at equal steps (IDGI) or at random ``alpha`` from sampled references
  (GradientSHAP / expected gradients, ``methods.gradient_shap``);
- blurred: the Gaussian scale-space path of Blur IG (``methods.blur_ig.blur_path``);
- guided: the adaptive, lowest-gradient-first path of Guided IG (``methods.guided_ig.guided_path``).

Non-straight paths arrive as streams of :class:`PathStep` and are summed by :func:`path_sum`; the
integrator weights its straight-line contributions with the same :func:`accumulate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from .inputs import InputSet


def line(start: torch.Tensor, end: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Points ``start + alpha * (end - start)`` of straight paths; ``alpha`` [P] runs along the first dim."""
    a = alpha.to(device=end.device, dtype=end.dtype).view((-1,) + (1,) * (end.dim() - 1))
    return start + a * (end - start)


def accumulate(out: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> None:
    """``out[rows[p]] += values[p] * weights[p]`` for every point ``p``: the one weighted sum.

    ``weights`` broadcasts against ``values`` from the left (one weight per point, [P], or one per
    point and feature, [P, F]); it is cast to ``out``'s dtype, so float64 sums stay float64.
    """
    w = weights.to(device=out.device, dtype=out.dtype)
    w = w.view(w.shape + (1,) * (values.dim() - w.dim()))
    out.index_add_(0, rows, values.to(out.dtype) * w)


@dataclass(frozen=True)
class PathStep:
    """Gradients and scores at a block of path points, and each point's share of the path.

    ``move`` is what the gradient is dotted with in the path sum (a displacement, or a quadrature
    weight times the path's derivative), [points, features]. Everything is float64: path sums
    accumulate many terms.
    """

    example: torch.Tensor
    scores: torch.Tensor
    grads: torch.Tensor
    move: torch.Tensor


def path_sum(inputs: InputSet, steps: Iterable[PathStep]) -> torch.Tensor:
    """``Σ grad ⊙ move`` per example over a stream of path steps: flat, [batch, features] float64."""
    values = torch.zeros(inputs.batch, sum(inputs.sizes()), dtype=torch.float64, device=inputs.device)
    for step in steps:
        accumulate(values, step.example, step.grads, step.move)
    return values
