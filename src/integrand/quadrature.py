"""Quadrature rules on [0, 1], built in float64.

A rule is a frozen pair of nodes and weights. Every rule's weights sum to exactly 1,
so a constant integrand is integrated exactly (Captum's trapezoid sums to (n-1)/n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .errors import InputError

MAX_STEPS = 100_000
"""The most nodes a rule may have. Gauss-Legendre nodes cost O(n^2) time and O(n) memory: 0.8 s for
20,000 nodes and 21 s for this bound on one CPU thread; every node also costs one model evaluation per
example, so rules this large are far beyond what error control needs (see ``max_steps``)."""
MAX_NEWTON_ITERATIONS = 10


@dataclass(frozen=True)
class Rule:
    """Nodes in [0, 1] and their weights; ``degree`` is the highest polynomial degree integrated exactly."""

    name: str
    nodes: tuple[float, ...]
    weights: tuple[float, ...]
    degree: int

    @property
    def steps(self) -> int:
        return len(self.nodes)

    def integrate(self, fn: Callable[[np.ndarray], np.ndarray]) -> float:
        """Apply the rule to a vectorised scalar function (used by tests and docs)."""
        values = fn(np.asarray(self.nodes, dtype=np.float64))
        return float(np.dot(np.asarray(self.weights, dtype=np.float64), values))


def _left(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    return np.arange(n) / n, np.full(n, 1.0 / n), 0


def _right(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    return np.arange(1, n + 1) / n, np.full(n, 1.0 / n), 0


def _middle(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n), 1


def _trapezoid(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    if n < 2:
        raise InputError("steps", f"the trapezoid rule needs at least 2 steps, got {n}")
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] *= 0.5
    return np.linspace(0.0, 1.0, n), weights, 1


def _legendre_pair(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``P_n(x)`` and ``P_{n-1}(x)`` by the three-term recurrence: O(n) vector operations."""
    previous, current = np.ones_like(x), x.copy()
    scratch = np.empty_like(x)
    for k in range(1, n):
        # P_{k+1} = ((2k+1) x P_k - k P_{k-1}) / (k+1), in place to keep large n cheap.
        np.multiply(x, current, out=scratch)
        scratch *= (2 * k + 1) / (k + 1)
        previous *= k / (k + 1)
        scratch -= previous
        previous, current, scratch = current, scratch, previous
    return current, previous


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Gauss-Legendre by Newton's method on the Legendre recurrence, O(n^2) time and O(n) memory.

    Only the ``ceil(n/2)`` non-negative roots are computed (the rule is symmetric), starting from
    Tricomi's asymptotic estimate ``cos(theta) * (1 - (n-1)/(8n^3))`` with ``theta = pi(4k-1)/(4n+2)``,
    close enough for Newton to converge quadratically from the first step. Weights come from the
    derivative at the converged roots: ``w = 2 / ((1 - x^2) P_n'(x)^2)`` on [-1, 1].
    """
    half = (n + 1) // 2
    k = np.arange(1, half + 1, dtype=np.float64)
    theta = np.pi * (4 * k - 1) / (4 * n + 2)
    x = np.cos(theta) * (1.0 - (n - 1) / (8.0 * n**3))
    if n % 2:
        x[-1] = 0.0
    derivative = np.ones_like(x)
    for _ in range(MAX_NEWTON_ITERATIONS):
        p_n, p_prev = _legendre_pair(x, n)
        one_minus_x2 = (1.0 - x) * (1.0 + x)
        derivative = n * (p_prev - x * p_n) / one_minus_x2
        step = p_n / derivative
        x = x - step
        if float(np.max(np.abs(step))) <= 4 * np.finfo(np.float64).eps:
            break
    p_n, p_prev = _legendre_pair(x, n)
    one_minus_x2 = (1.0 - x) * (1.0 + x)
    derivative = n * (p_prev - x * p_n) / one_minus_x2
    weights = 2.0 / (one_minus_x2 * derivative**2)
    if n % 2:
        x[-1] = 0.0
        nodes = np.concatenate([-x[:-1], x[::-1]])
        full = np.concatenate([weights[:-1], weights[::-1]])
    else:
        nodes = np.concatenate([-x, x[::-1]])
        full = np.concatenate([weights, weights[::-1]])
    full = full / full.sum() * 2.0
    return (nodes + 1.0) / 2.0, full / 2.0, 2 * n - 1


def clenshaw_curtis(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Clenshaw-Curtis on [0, 1] with ``n`` nodes (Chebyshev extrema): nested when n - 1 doubles."""
    if n < 2:
        raise InputError("steps", f"the Clenshaw-Curtis rule needs at least 2 steps, got {n}")
    order = n - 1
    theta = np.pi * np.arange(n) / order
    nodes = np.sin(theta / 2) ** 2  # = (1 - cos(theta)) / 2 without cancellation near 0
    nodes[0], nodes[-1] = 0.0, 1.0
    if order % 2 == 0:
        nodes[order // 2] = 0.5
    weights = np.ones(n)
    for j in range(1, order // 2 + 1):
        b = 1.0 if 2 * j == order else 2.0
        weights -= b / (4 * j * j - 1) * np.cos(2 * j * theta)
    weights *= np.where((np.arange(n) == 0) | (np.arange(n) == order), 1.0, 2.0) / order / 2.0
    return nodes, weights, order + 1 if order % 2 == 0 else order


_BUILDERS: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray, int]]] = {
    "left": _left,
    "right": _right,
    "middle": _middle,
    "trapezoid": _trapezoid,
    "gauss-legendre": _gauss_legendre,
    "clenshaw-curtis": clenshaw_curtis,
}

RULES: tuple[str, ...] = tuple(_BUILDERS)


def make_rule(name: str, steps: int) -> Rule:
    """Build the named rule with ``steps`` nodes on [0, 1]."""
    if name not in _BUILDERS:
        raise InputError("rule", f"unknown rule {name!r}; expected one of {', '.join(RULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("steps", f"expected an integer >= 1, got {steps!r}")
    if steps > MAX_STEPS:
        raise InputError("steps", f"expected at most {MAX_STEPS:,} nodes (quadrature.MAX_STEPS), got {steps:,}")
    nodes, weights, degree = _BUILDERS[name](steps)
    return Rule(
        name=name,
        nodes=tuple(float(v) for v in nodes),
        weights=tuple(float(v) for v in weights),
        degree=degree,
    )


def clenshaw_curtis_level(level: int, like: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    """Nodes and weights (dtype and device of ``like``) of the nested Clenshaw-Curtis rule with ``level + 1`` nodes."""
    nodes, weights, _ = clenshaw_curtis(level + 1)
    return nodes.tolist(), torch.tensor(weights, dtype=torch.float64).to(like)


def interleave_level(previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Evaluations at the next nested level: ``previous`` at the even nodes, ``new`` at the odd ones (first axis)."""
    out = torch.empty(
        (previous.shape[0] + new.shape[0], *previous.shape[1:]), dtype=previous.dtype, device=previous.device
    )
    out[0::2], out[1::2] = previous, new
    return out
