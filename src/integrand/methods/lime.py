"""LIME (Ribeiro et al. 2016): a kernel-weighted linear model on random binary masks to a baseline."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..baselines import BaselineSpec
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .perturb import FeatureMaskSpec


def lime(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    feature_mask: FeatureMaskSpec = None,
    baseline: BaselineSpec = "zeros",
    n_samples: int = 500,
    p: float = 0.5,
    kernel_width: float = 0.25,
    ridge: float = 0.0,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """LIME: weighted least squares of the score on ``n_samples`` random masks (``lfa.fit`` on ``BernoulliMasks``).

    Each interpretable feature (a ``feature_mask`` group, default every element) is kept with
    probability ``p`` and otherwise set to ``baseline``; a mask's weight is
    ``exp(-D^2 / (2 kernel_width^2))`` with ``D`` its cosine distance to the all-ones mask.
    Every element of a group gets the group's coefficient (``params["explains"] == "group"``).

    Args:
        ridge: L2 penalty on the coefficients (0: ordinary weighted least squares, minimum-norm
            when there are fewer masks than features).
        seed: seed of the masks. ``None`` draws a seed from torch's global generator (so
            ``torch.manual_seed`` governs it) and records it in ``params["seed"]``; equal seeds give
            bit-identical results.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    from ..lfa import fit
    from ..neighbourhoods import BernoulliMasks

    hood = BernoulliMasks(
        n_samples=n_samples, p=p, kernel_width=kernel_width, baseline=baseline, feature_mask=feature_mask
    )
    local = fit(
        model,
        inputs,
        hood,
        "squared",
        target,
        ridge=ridge,
        seed=seed,
        batch_size=batch_size,
        memory_budget=memory_budget,
        forward_kwargs=forward_kwargs,
    )
    return local.to_attribution(
        "lime",
        {
            "n_samples": n_samples,
            "p": p,
            "kernel_width": kernel_width,
            "ridge": ridge,
            "explains": "attribution" if feature_mask is None else "group",
        },
    )
