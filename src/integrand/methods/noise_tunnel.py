"""SmoothGrad, SmoothGrad² and VarGrad: statistics of gradients at Gaussian-perturbed inputs.

SmoothGrad (Smilkov et al. 2017) averages the attribution over ``x + ε``, ``ε ~ N(0, σ²I)``;
SmoothGrad² averages its square and VarGrad (Adebayo et al. 2018) takes its variance. In the
local-function-approximation view, SmoothGrad is the gradient-matching linear fit on a
Gaussian neighbourhood of width σ.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch

from ..checks import check_count, check_positive, generator, resolve_seed
from ..errors import InputError
from ..inputs import Inputs, InputSet
from ..paths import accumulate
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import Points, Setup, evaluate, flat, prepare, result

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")
BASES = ("gradient", "input_x_gradient")
DEFAULT_SAMPLES = 50
DEFAULT_NOISE_LEVEL = 0.15
"""Noise std as a share of each example's value range when ``stdev`` is not given (the paper's 10–20%)."""

NoiseSource = Callable[[int], dict[str, torch.Tensor]]
"""Example index -> noise per named input, shaped [samples, *input.shape[1:]]; called in example order."""


def noise_widths(inputs: InputSet, stdev: float | None) -> torch.Tensor:
    """Noise std per example: ``stdev`` itself, or ``DEFAULT_NOISE_LEVEL`` times the example's range."""
    if stdev is not None:
        width = check_positive("stdev", stdev)
        return torch.full((inputs.batch,), width, dtype=torch.float64)
    rows = inputs.flat().detach().double().cpu()
    spread = rows.max(dim=1).values - rows.min(dim=1).values
    if bool((spread == 0).any()):
        bad = [i for i, s in enumerate(spread.tolist()) if s == 0]
        raise InputError(
            "stdev", f"examples {bad} are constant, so a noise width relative to their range is zero; give stdev="
        )
    return DEFAULT_NOISE_LEVEL * spread


def seeded_noise(inputs: InputSet, samples: int, widths: torch.Tensor, seed: int) -> NoiseSource:
    """Gaussian noise drawn in float64 from one CPU generator, example by example."""
    gen = generator(seed)

    def draw(example: int) -> dict[str, torch.Tensor]:
        out = {}
        for name, x in inputs.tensors.items():
            z = torch.randn((samples, *x.shape[1:]), generator=gen, dtype=torch.float64)
            out[name] = (z * float(widths[example])).to(device=x.device, dtype=x.dtype)
        return out

    return draw


def tunnel(setup: Setup, kind: str, base: str, samples: int, noise: NoiseSource) -> torch.Tensor:
    """Flat [batch, features] statistic of the attributions at ``samples`` noisy copies per example."""
    inputs = setup.inputs

    def stream() -> Iterator[Points]:
        for e in range(inputs.batch):
            eps = noise(e)
            points = {name: x[e : e + 1] + eps[name] for name, x in inputs.tensors.items()}
            example = torch.full((samples,), e, dtype=torch.long, device=inputs.device)
            yield Points(points, example)

    total = torch.zeros(inputs.batch, sum(inputs.sizes()), dtype=inputs.dtype, device=inputs.device)
    squares = torch.zeros_like(total)
    for block, points in evaluate(setup.engine, stream()):
        attr = flat(block.grads)
        if base == "input_x_gradient":
            attr = attr * flat(points.tensors)
        ones = torch.ones(attr.shape[0], dtype=attr.dtype, device=attr.device)
        accumulate(total, points.example, attr, ones)
        accumulate(squares, points.example, attr * attr, ones)
    mean = total / samples
    if kind == "smoothgrad":
        return mean
    if kind == "smoothgrad_sq":
        return squares / samples
    return squares / samples - mean * mean


def _run(
    kind: str,
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec,
    samples: int,
    stdev: float | None,
    base: str,
    seed: int | None,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
) -> Attribution:
    check_count("samples", samples, 1)
    if base not in BASES:
        raise InputError("base", f"unknown base attribution {base!r}; expected one of {', '.join(BASES)}")
    used_seed = resolve_seed(seed)
    setup = prepare(
        model, inputs, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    widths = noise_widths(setup.inputs, stdev)
    values = tunnel(setup, kind, base, samples, seeded_noise(setup.inputs, samples, widths, used_seed))
    params = {"samples": samples, "stdev": widths.tolist(), "base": base, "seed": used_seed}
    return result(setup, values, method=kind, params=params, steps=samples)


def smoothgrad(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    stdev: float | None = None,
    base: str = "gradient",
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """SmoothGrad: the mean attribution over Gaussian-perturbed copies of the input.

    Args:
        samples: noisy copies per example.
        stdev: absolute standard deviation of the Gaussian noise (must be > 0); default: 0.15 times
            each example's value range (max - min), the paper's recommended 10–20% noise level.
        base: attribution averaged over the copies: "gradient" (default) or "input_x_gradient"
            (the noisy input times its gradient).
        seed: seeds the noise; seeded runs are bit-identical. With ``seed=None`` a seed is drawn from
            torch's global generator (so ``torch.manual_seed`` governs it) and recorded in
            ``result.params["seed"]``; pass it back to repeat the run exactly.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    return _run(
        "smoothgrad", model, inputs, target, samples, stdev, base, seed, batch_size, memory_budget, forward_kwargs
    )


def smoothgrad_sq(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    stdev: float | None = None,
    base: str = "gradient",
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """SmoothGrad²: the mean squared attribution over Gaussian-perturbed copies of the input.

    Arguments as for :func:`smoothgrad`.
    """
    return _run(
        "smoothgrad_sq", model, inputs, target, samples, stdev, base, seed, batch_size, memory_budget, forward_kwargs
    )


def vargrad(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    stdev: float | None = None,
    base: str = "gradient",
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """VarGrad: the variance of the attribution over Gaussian-perturbed copies of the input.

    Arguments as for :func:`smoothgrad`.
    """
    return _run("vargrad", model, inputs, target, samples, stdev, base, seed, batch_size, memory_budget, forward_kwargs)
