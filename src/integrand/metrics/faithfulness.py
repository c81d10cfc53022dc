"""Faithfulness by perturbing the top-k and bottom-k features (prediction gaps, Dai et al. / Han et al. 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_count, check_positive, generator, resolve_seed
from ..errors import InputError
from ..inputs import Inputs, as_input_set
from ..methods.perturb import Scorer, flat_baseline
from ..protocol import NoCompleteness
from ..targets import TargetSpec
from ._common import Explanation, flat_values

MODES = ("binary", "gaussian")


@dataclass(frozen=True, repr=False)
class Faithfulness(NoCompleteness):
    """Mean ``|f(x) - f(x')|`` when only the ``k`` most (``top``) or least (``bottom``) important features change.

    A faithful explanation has a large ``top`` gap (PGI) and a small ``bottom`` gap (PGU). ``values`` is
    ``[example, subset]`` (top, bottom); no completeness notion (``delta``, ``relative_error``,
    ``converged`` are ``None``).
    """

    top: torch.Tensor
    bottom: torch.Tensor
    k: int
    mode: str

    AXES = ("example", "subset")
    SUBSETS: ClassVar[tuple[str, ...]] = ("top", "bottom")

    @property
    def values(self) -> torch.Tensor:
        return torch.stack([self.top, self.bottom], dim=1)

    @property
    def method(self) -> str:
        return "top_k_faithfulness"

    @property
    def params(self) -> dict[str, Any]:
        return {"k": self.k, "mode": self.mode}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"subset": self.SUBSETS}


def top_k_faithfulness(
    model: Callable[..., Any],
    inputs: Inputs,
    attribution: Explanation,
    target: TargetSpec = None,
    *,
    k: int | float = 0.25,
    mode: str = "binary",
    baseline: BaselineSpec = "zeros",
    sigma: float = 0.1,
    n_samples: int = 32,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Faithfulness:
    """Prediction gaps on the top-k / bottom-k features by ``|attribution|``.

    Args:
        k: a number of features, or a fraction of them in (0, 1].
        mode: "binary" sets the chosen features to ``baseline`` (one evaluation); "gaussian" adds
            ``N(0, sigma^2)`` noise to them (``n_samples`` draws, seeded).
    """
    input_set = as_input_set(inputs)
    if mode not in MODES:
        raise InputError("mode", f"expected one of {MODES}, got {mode!r}")
    values = flat_values(attribution, input_set)
    features = values.shape[1]
    if isinstance(k, float) and not isinstance(k, bool):
        if not 0 < k <= 1:
            raise InputError("k", f"a fraction must be in (0, 1], got {k}")
        count = max(1, math.ceil(k * features))
    else:
        count = check_count("k", k)
        if count > features:
            raise InputError("k", f"k={count} exceeds the {features} features")
    ranking = values.abs().argsort(dim=1, descending=True, stable=True)
    chosen = {
        "top": torch.zeros_like(values, dtype=torch.bool).scatter_(1, ranking[:, :count], True),
        "bottom": torch.zeros_like(values, dtype=torch.bool).scatter_(1, ranking[:, features - count :], True),
    }
    x = input_set.flat()
    scorer = Scorer(model, input_set, target, forward_kwargs, batch_size, memory_budget)
    example = torch.arange(input_set.batch, device=x.device)
    score_input = scorer.rows(x, example)
    if mode == "binary":
        b = flat_baseline(input_set, make_baselines(input_set, baseline))
        gaps = {
            name: (score_input - scorer.rows(torch.where(mask, b, x), example)).abs() for name, mask in chosen.items()
        }
        return Faithfulness(top=gaps["top"], bottom=gaps["bottom"], k=count, mode=mode)
    sigma = check_positive("sigma", sigma, "a noise width > 0")
    n_samples = check_count("n_samples", n_samples)
    noise = torch.randn((n_samples, *x.shape), generator=generator(resolve_seed(seed)), dtype=torch.float64)
    noise = (noise * sigma).to(x.device, x.dtype)
    gaps = {}
    for name, mask in chosen.items():
        points = (x[None] + noise * mask[None]).reshape(-1, x.shape[1])
        scores = scorer.rows(points, example.repeat(n_samples)).reshape(n_samples, -1)
        gaps[name] = (score_input[None] - scores).abs().mean(0)
    return Faithfulness(top=gaps["top"], bottom=gaps["bottom"], k=count, mode=mode)
