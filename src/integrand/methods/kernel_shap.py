"""KernelSHAP (Lundberg & Lee 2017): Shapley values as a Shapley-kernel-weighted linear fit."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..baselines import BaselineSpec
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .perturb import FeatureMaskSpec


def kernel_shap(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    feature_mask: FeatureMaskSpec = None,
    baseline: BaselineSpec = "zeros",
    n_samples: int | None = 1000,
    ridge: float = 0.0,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """KernelSHAP: Shapley values of the groups, players absent = at ``baseline``.

    The empty and the full coalition are exact constraints (``f(b)`` is the intercept and the
    values sum to ``f(x) - f(b)``; ``delta`` reports the remaining error), the other coalitions
    are fitted by least squares with the Shapley kernel (``lfa.fit`` on ``ShapleyCoalitions``).

    Args:
        feature_mask: the players, as for ``feature_ablation``; every element of a group gets the
            group's value. Default: every element is a player.
        n_samples: coalitions drawn from the kernel; ``None`` enumerates all ``2^m`` coalitions,
            which gives the exact Shapley values (m <= 20 players).
        ridge: L2 penalty on the values (0 for Shapley values).
        seed: seed of the coalitions; ``None`` draws one from torch's global generator and records it
            in ``params["seed"]``; equal seeds give bit-identical results.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    from ..lfa import fit
    from ..neighbourhoods import ShapleyCoalitions

    hood = ShapleyCoalitions(n_samples=n_samples, baseline=baseline, feature_mask=feature_mask)
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
        "kernel_shap",
        {"n_samples": n_samples, "ridge": ridge, "explains": "attribution" if feature_mask is None else "group"},
        completeness=True,
    )
