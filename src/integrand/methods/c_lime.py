"""C-LIME (continuous LIME, Agarwal et al. 2021): least squares on Gaussian perturbations of the input."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec


def c_lime(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    sigma: float = 0.1,
    n_samples: int = 500,
    ridge: float = 0.0,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """C-LIME: the slope of a least-squares plane through ``f(x + eps)``, ``eps ~ N(0, sigma^2 I)``.

    A gradient-like explanation (``params["explains"] == "gradient"``): on a linear model it is
    the weight vector; in expectation it equals SmoothGrad at the same ``sigma`` (Stein's lemma).

    Args:
        sigma: noise standard deviation in input units (> 0).
        n_samples: perturbations per example (at least the number of features for a unique fit
            without ``ridge``).
        ridge: L2 penalty on the slope.
        seed: seed of the noise; ``None`` draws one from torch's global generator and records it in
            ``params["seed"]``; equal seeds give bit-identical results.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    from ..lfa import fit
    from ..neighbourhoods import Gaussian

    local = fit(
        model,
        inputs,
        Gaussian(sigma=sigma, n_samples=n_samples),
        "squared",
        target,
        ridge=ridge,
        seed=seed,
        batch_size=batch_size,
        memory_budget=memory_budget,
        forward_kwargs=forward_kwargs,
    )
    return local.to_attribution(
        "c_lime", {"sigma": sigma, "n_samples": n_samples, "ridge": ridge, "explains": "gradient"}
    )
