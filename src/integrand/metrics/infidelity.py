"""Infidelity (Yeh et al. 2019): how well ``attribution . I`` predicts the score drop under perturbations ``I``."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..checks import check_count, check_positive, generator, resolve_seed
from ..inputs import Inputs, as_input_set
from ..methods.perturb import Scorer
from ..targets import TargetSpec
from ._common import Explanation, flat_values, perturbation_rows


def infidelity(
    model: Callable[..., Any],
    inputs: Inputs,
    attribution: Explanation,
    target: TargetSpec = None,
    *,
    sigma: float = 0.1,
    n_samples: int = 32,
    perturbations: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    normalize: bool = False,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """``E_I[(I . attribution - (f(x) - f(x - I)))^2]`` per example (lower is better).

    Args:
        sigma: std of the default Gaussian perturbations ``I ~ N(0, sigma^2 I)``.
        perturbations: explicit ``I``, shaped ``[n_samples, *input.shape]`` (a mapping per named input);
            overrides ``sigma`` and ``seed``.
        normalize: rescale the attributions by the least-squares optimal ``beta`` first
            (Yeh et al.'s scale-free variant): ``E[(beta I.a - diff)^2]``.
        seed: seed of the perturbations; ``None`` draws one from torch's global generator.
    """
    input_set = as_input_set(inputs)
    n_samples = check_count("n_samples", n_samples)
    attr = flat_values(attribution, input_set)
    x = input_set.flat()
    if perturbations is not None:
        noise = perturbation_rows(perturbations, input_set, n_samples)
    else:
        sigma = check_positive("sigma", sigma, "a noise width > 0")
        draws = torch.randn((n_samples, *x.shape), generator=generator(resolve_seed(seed)), dtype=torch.float64)
        noise = (draws * sigma).to(x.device, x.dtype)
    scorer = Scorer(model, input_set, target, forward_kwargs, batch_size, memory_budget)
    example = torch.arange(input_set.batch, device=x.device)
    score_input = scorer.rows(x, example)
    points = (x[None] - noise).reshape(-1, x.shape[1])
    scores = scorer.rows(points, example.repeat(n_samples)).reshape(n_samples, -1)
    drop = (score_input[None] - scores).double()
    predicted = (noise * attr[None]).sum(dim=2).double()
    if normalize:
        beta = (predicted * drop).sum(0) / (predicted**2).sum(0).clamp_min(torch.finfo(torch.float64).tiny)
        predicted = beta[None] * predicted
    return ((predicted - drop) ** 2).mean(0).to(x.dtype)
