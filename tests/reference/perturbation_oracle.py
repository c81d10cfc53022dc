"""Slow, obviously-correct loops for the perturbation methods, written from the definitions."""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np
import torch

Score = Callable[[torch.Tensor], float]


def shapley_values(score: Score, x: torch.Tensor, baseline: torch.Tensor) -> list[float]:
    """Exact Shapley values of the features of one example ``x [d]`` by enumerating every subset.

    phi_i = sum over S not containing i of |S|! (d-|S|-1)! / d! * (v(S + i) - v(S)), where v(S) is the
    score with the features in S at ``x`` and the others at ``baseline``.
    """
    d = x.shape[0]

    def value(subset: tuple[int, ...]) -> float:
        point = baseline.clone()
        for j in subset:
            point[j] = x[j]
        return score(point)

    phi = []
    for i in range(d):
        others = [j for j in range(d) if j != i]
        total = 0.0
        for size in range(d):
            weight = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for subset in itertools.combinations(others, size):
                total += weight * (value(tuple(sorted(subset + (i,)))) - value(subset))
        phi.append(total)
    return phi


def occlusion_2d(
    score: Score, x: torch.Tensor, baseline: float, window: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Occlusion of one [H, W] example: windows start at k * stride while the previous start left
    elements uncovered; each element gets the mean drop over the windows that cover it."""
    h, w = x.shape
    total = torch.zeros_like(x)
    count = torch.zeros_like(x)
    full = score(x)
    rows = list(range(0, max(h - window[0], 0) + stride[0], stride[0]))
    cols = list(range(0, max(w - window[1], 0) + stride[1], stride[1]))
    for r in rows:
        for c in cols:
            y = x.clone()
            y[r : r + window[0], c : c + window[1]] = baseline
            drop = full - score(y)
            total[r : r + window[0], c : c + window[1]] += drop
            count[r : r + window[0], c : c + window[1]] += 1
    return total / count


def weighted_least_squares(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Slope and intercept minimising sum w (y - c - z a)^2, by numpy's lstsq on the sqrt-weighted design."""
    design = np.hstack([np.ones((z.shape[0], 1)), z]) * np.sqrt(w)[:, None]
    theta = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)[0]
    return theta[1:], float(theta[0])
