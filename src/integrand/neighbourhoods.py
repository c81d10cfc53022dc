"""Neighbourhoods: distributions of perturbations around an input, in interpretable coordinates.

The local-function-approximation view (Han, Srinivas & Lakkaraju 2022) describes every
attribution method by a neighbourhood and a loss. A neighbourhood draws coordinates ``xi`` with
weights, and maps them to model inputs in one of two ways:

* additive: ``x + xi`` (one coordinate per element: ``Point``, ``Gaussian``, ``Uniform``);
* mask: ``xi * x + (1 - xi) * baseline`` per feature group (``StraightPath``, ``BernoulliMasks``,
  ``ShapleyCoalitions``, ``LeaveOneOut``); ``xi = 1`` is the input, ``xi = 0`` the baseline.

A linear model ``g(xi) = c + a . xi`` fitted on a neighbourhood is an explanation: gradient-like
for additive neighbourhoods, attribution-like (one value per group) for mask neighbourhoods.
An infinite weight marks an exact constraint (KernelSHAP's empty and full coalitions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Union

import torch

from .baselines import BaselineSpec
from .checks import check_count, check_positive
from .errors import InputError
from .methods.perturb import FeatureMaskSpec
from .quadrature import make_rule


@dataclass(frozen=True)
class Sample:
    """Draws around one example: coordinates ``xi [n, d]`` and weights ``[n]`` (float64, ``inf`` = constraint)."""

    xi: torch.Tensor
    weights: torch.Tensor


@dataclass(frozen=True)
class Point:
    """The input itself (zero width). With the gradient-matching loss: the plain gradient (saliency)."""

    additive: ClassVar[bool] = True

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        return Sample(torch.zeros(1, d, dtype=torch.float64), torch.ones(1, dtype=torch.float64))


@dataclass(frozen=True)
class Gaussian:
    """``x + eps`` with ``eps ~ N(0, sigma^2 I)``: SmoothGrad (gradient loss), C-LIME (squared loss)."""

    sigma: float
    n_samples: int = 500
    additive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma, "a width > 0 (a zero-width neighbourhood is Point())")
        check_count("n_samples", self.n_samples)

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        xi = torch.randn(self.n_samples, d, generator=gen, dtype=torch.float64) * self.sigma
        return Sample(xi, torch.ones(self.n_samples, dtype=torch.float64))


@dataclass(frozen=True)
class Uniform:
    """``x + eps`` with ``eps`` uniform in the L-infinity ball of ``radius`` (sensitivity's neighbourhood)."""

    radius: float
    n_samples: int = 500
    additive: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_positive("radius", self.radius, "a width > 0 (a zero-width neighbourhood is Point())")
        check_count("n_samples", self.n_samples)

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        xi = (torch.rand(self.n_samples, d, generator=gen, dtype=torch.float64) * 2 - 1) * self.radius
        return Sample(xi, torch.ones(self.n_samples, dtype=torch.float64))


@dataclass(frozen=True)
class StraightPath:
    """``alpha * x + (1 - alpha) * baseline`` at the nodes of a quadrature rule, weighted by it.

    With the gradient-matching loss this is Integrated Gradients: ``(x - b) * E_alpha grad f``.
    """

    steps: int = 50
    rule: str = "gauss-legendre"
    baseline: BaselineSpec = "zeros"
    additive: ClassVar[bool] = False
    feature_mask: ClassVar[FeatureMaskSpec] = None

    def __post_init__(self) -> None:
        make_rule(self.rule, self.steps)

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        rule = make_rule(self.rule, self.steps)
        alpha = torch.tensor(rule.nodes, dtype=torch.float64)
        return Sample(alpha[:, None].expand(-1, d).clone(), torch.tensor(rule.weights, dtype=torch.float64))


@dataclass(frozen=True)
class BernoulliMasks:
    """LIME's neighbourhood: each group kept with probability ``p``, weighted by an exponential kernel.

    The weight of a mask ``z`` is ``exp(-D(z)^2 / (2 width^2))`` with ``D`` the cosine distance
    between ``z`` and the all-ones mask (as LIME does for text; 1 for the empty mask).
    """

    n_samples: int = 500
    p: float = 0.5
    kernel_width: float = 0.25
    baseline: BaselineSpec = "zeros"
    feature_mask: FeatureMaskSpec = None
    additive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_count("n_samples", self.n_samples)
        check_positive("kernel_width", self.kernel_width, "a kernel width > 0")
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0 < self.p < 1:
            raise InputError("p", f"expected a probability in (0, 1), got {self.p!r}")

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        z = (torch.rand(self.n_samples, d, generator=gen, dtype=torch.float64) < self.p).double()
        return Sample(z, lime_kernel(z, self.kernel_width))


def lime_kernel(z: torch.Tensor, width: float) -> torch.Tensor:
    """``exp(-D^2 / (2 width^2))`` with ``D`` the cosine distance of each binary row of ``z`` to all ones."""
    kept = z.sum(dim=1)
    distance = 1 - torch.sqrt(kept / z.shape[1])
    return torch.exp(-(distance**2) / (2 * width**2))


def shapley_kernel(m: int, k: torch.Tensor) -> torch.Tensor:
    """Shapley kernel weight of a coalition of size ``k`` among ``m``: ``(m-1) / (C(m,k) k (m-k))``, inf at 0 and m."""
    k = k.double()
    log_binom = torch.lgamma(torch.tensor(m + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    inner = (k > 0) & (k < m)
    safe = torch.where(inner, k * (m - k), torch.ones_like(k))
    w = (m - 1) / safe * torch.exp(-log_binom)
    return torch.where(inner, w, torch.full_like(w, math.inf))


MAX_ENUMERATED = 20


@dataclass(frozen=True)
class ShapleyCoalitions:
    """KernelSHAP's neighbourhood: coalitions weighted by the Shapley kernel, empty and full ones exact.

    ``n_samples=None`` enumerates all ``2^m`` coalitions (exact Shapley values; m <= 20); an integer
    draws that many coalitions: the size ``k`` with probability proportional to ``(m-1) / (k (m-k))``,
    then a uniform subset of that size, each with weight 1 (importance sampling of the kernel).
    """

    n_samples: int | None = None
    baseline: BaselineSpec = "zeros"
    feature_mask: FeatureMaskSpec = None
    additive: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.n_samples is not None:
            check_count("n_samples", self.n_samples)

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        anchors = torch.stack([torch.ones(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)])
        inf = torch.full((2,), math.inf, dtype=torch.float64)
        if self.n_samples is None:
            if d > MAX_ENUMERATED:
                raise InputError(
                    "n_samples",
                    f"enumerating all coalitions of {d} features is too many (> 2^{MAX_ENUMERATED}); "
                    "pass n_samples=... or a coarser feature_mask",
                )
            codes = torch.arange(1, 2**d - 1)
            z = ((codes[:, None] >> torch.arange(d)) & 1).double()
            return Sample(torch.cat([anchors, z]), torch.cat([inf, shapley_kernel(d, z.sum(dim=1))]))
        if d < 2:
            return Sample(anchors, inf)
        sizes = torch.arange(1, d, dtype=torch.float64)
        k = torch.multinomial((d - 1) / (sizes * (d - sizes)), self.n_samples, replacement=True, generator=gen) + 1
        order = torch.rand(self.n_samples, d, generator=gen, dtype=torch.float64).argsort(dim=1)
        z = (order < k[:, None]).double()
        return Sample(torch.cat([anchors, z]), torch.cat([inf, torch.ones(self.n_samples, dtype=torch.float64)]))


@dataclass(frozen=True)
class LeaveOneOut:
    """The input and every copy with one group at the baseline: occlusion / feature ablation (squared loss)."""

    baseline: BaselineSpec = "zeros"
    feature_mask: FeatureMaskSpec = None
    additive: ClassVar[bool] = False

    def sample(self, d: int, gen: torch.Generator) -> Sample:
        z = torch.cat([torch.ones(1, d, dtype=torch.float64), 1 - torch.eye(d, dtype=torch.float64)])
        return Sample(z, torch.ones(d + 1, dtype=torch.float64))


Neighbourhood = Union[Point, Gaussian, Uniform, StraightPath, BernoulliMasks, ShapleyCoalitions, LeaveOneOut]
NEIGHBOURHOODS: tuple[type, ...] = (
    Point,
    Gaussian,
    Uniform,
    StraightPath,
    BernoulliMasks,
    ShapleyCoalitions,
    LeaveOneOut,
)
