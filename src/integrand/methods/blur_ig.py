"""Blur Integrated Gradients (Xu et al. 2020): integrate along the Gaussian scale-space path.

The path is ``γ(σ) = G_σ * x`` from a heavily blurred image (``σ = max_sigma``) down to the
input (``σ = 0``); the blur acts on the last two (spatial) dims with zero padding, as in the
authors' implementation. The attribution is
``-∫₀^{σmax} ∇f(γ(σ)) ⊙ ∂γ/∂σ dσ``, computed with a quadrature rule in ``u = sqrt(σ/σmax)``
(small scales, where an image changes fastest, get most nodes) and the exact σ-derivative of the
blur (no finite differences), so it sums to ``f(x) - f(G_σmax * x)`` up to the quadrature error
(reported in ``delta``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..checks import check_count, check_positive
from ..errors import InputError
from ..inputs import TENSOR_KEY, Inputs, InputSet, as_input_set
from ..paths import PathStep, path_sum
from ..quadrature import make_rule
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import Points, Setup, evaluate, flat, prepare, result

DEFAULT_MAX_SIGMA = 50.0
DEFAULT_STEPS = 100


def blur_matrix(size: int, sigma: float, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The [size, size] zero-padded Gaussian filter and its derivative in ``sigma`` (float64).

    The kernel is normalised over offsets ``|t| <= reach``; ``reach`` is fixed along a path so the
    filter is a smooth function of ``sigma`` (truncation that grows with sigma would make it jump).
    """
    if sigma <= 0:
        return torch.eye(size, dtype=torch.float64), torch.zeros(size, size, dtype=torch.float64)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    total = weights.sum()
    total_prime = (weights * offsets**2).sum() / sigma**3
    index = torch.arange(size, dtype=torch.float64)
    t = index[None, :] - index[:, None]
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w_prime = w * t**2 / sigma**3
    return w / total, (w_prime * total - w * total_prime) / total**2


def check_images(inputs: InputSet) -> None:
    for name, x in inputs.tensors.items():
        if x.dim() < 3:
            argument = "inputs" if name == TENSOR_KEY else f"inputs[{name!r}]"
            raise InputError(
                argument, f"Blur IG blurs the last two dims and needs [batch, (channels,) H, W], got {tuple(x.shape)}"
            )


class BlurPath:
    """``γ(σ)`` and ``∂γ/∂σ`` for the inputs, on a fixed kernel reach."""

    def __init__(self, inputs: InputSet, max_sigma: float) -> None:
        self.inputs = inputs
        self.max_sigma = max_sigma
        self.reach = {name: max(max(x.shape[-2:]) - 1, math.ceil(4 * max_sigma)) for name, x in inputs.tensors.items()}
        self._matrices: dict[tuple[int, float, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _matrix(self, size: int, sigma: float, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Every example visits the same σ nodes: build each filter once per path.
        key = (size, sigma, reach)
        if key not in self._matrices:
            self._matrices[key] = blur_matrix(size, sigma, reach)
        return self._matrices[key]

    def at(self, example: int, sigma: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Blurred example and its σ-derivative, per named input (shaped like one row, batch dim kept)."""
        points, slopes = {}, {}
        for name, x in self.inputs.tensors.items():
            h, w = x.shape[-2:]
            mh, dmh = self._matrix(h, sigma, self.reach[name])
            mw, dmw = self._matrix(w, sigma, self.reach[name])
            row = x[example : example + 1].double().cpu()
            points[name] = (mh @ row @ mw.T).to(device=x.device, dtype=x.dtype)
            slopes[name] = (dmh @ row @ mw.T + mh @ row @ dmw.T).to(device=x.device)
        return points, slopes

    def baselines(self) -> dict[str, torch.Tensor]:
        rows = [self.at(e, self.max_sigma)[0] for e in range(self.inputs.batch)]
        return {name: torch.cat([r[name] for r in rows]) for name in self.inputs.names}


def blur_path(
    setup: Setup, path: BlurPath, sigmas: Sequence[float], weights: Sequence[float] | None
) -> Iterator[PathStep]:
    """Gradients at ``γ(σ)`` for each σ in path order, per example.

    With ``weights`` the move is ``weight * max_sigma * (-∂γ/∂σ)`` (weights of σ/max_sigma);
    without, it is the displacement to the next point (the last point's successor is the input).
    """
    inputs = setup.inputs

    def stream() -> Iterator[Points]:
        for e in range(inputs.batch):
            at = [path.at(e, s) for s in sigmas]
            points = {n: torch.cat([p[n] for p, _ in at]) for n in inputs.names}
            if weights is not None:
                moves = flat(
                    {n: torch.cat([-w * path.max_sigma * d[n] for (_, d), w in zip(at, weights)]) for n in inputs.names}
                )
            else:
                here = flat({n: torch.cat([p[n] for p, _ in at]).double() for n in inputs.names})
                after = torch.cat([here[1:], flat({n: x[e : e + 1].double() for n, x in inputs.tensors.items()})])
                moves = after - here
            example = torch.full((len(sigmas),), e, dtype=torch.long, device=inputs.device)
            yield Points(points, example, {"move": moves})

    for block, points in evaluate(setup.engine, stream()):
        yield PathStep(points.example, block.scores.double(), flat(block.grads).double(), points.aux["move"])


def blur_ig(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    max_sigma: float = DEFAULT_MAX_SIGMA,
    steps: int = DEFAULT_STEPS,
    rule: str = "gauss-legendre",
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Blur IG: integrate gradients along the path from a blurred copy of the image to the image.

    Args:
        max_sigma: blur std (pixels) at the start of the path; the baseline is ``G_max_sigma * x``.
        steps: quadrature nodes.
        rule: quadrature rule in ``u = sqrt(σ/max_sigma)`` ("gauss-legendre", "middle", "left",
            "right", "trapezoid").
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    check_positive("max_sigma", max_sigma)
    check_count("steps", steps, 1)
    quadrature = make_rule(rule, steps)
    input_set = as_input_set(inputs)
    check_images(input_set)
    setup = prepare(
        model, input_set, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    path = BlurPath(input_set, float(max_sigma))
    # σ = max_sigma·u², rule in u: images change fastest at small σ, which gets most of the nodes.
    sigmas = [max_sigma * u * u for u in quadrature.nodes]
    weights = [w * 2 * u for w, u in zip(quadrature.weights, quadrature.nodes)]
    values = path_sum(input_set, blur_path(setup, path, sigmas, weights)).to(input_set.dtype)
    baselines = path.baselines()
    score_baseline = setup.engine.scores(baselines, setup.example)
    params = {"max_sigma": float(max_sigma), "steps": steps, "rule": rule}
    return result(
        setup,
        values,
        method="blur_ig",
        params=params,
        steps=steps,
        baseline=baselines,
        score_baseline=score_baseline,
        path=True,
    )
