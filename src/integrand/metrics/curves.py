"""Deletion and insertion curves (Petsiuk et al. 2018): remove or reveal features in attribution order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_count
from ..errors import InputError
from ..inputs import Inputs, as_input_set
from ..methods.perturb import Scorer, flat_baseline
from ..protocol import NoCompleteness
from ..targets import TargetSpec
from ._common import Explanation, flat_values

ORDERS = ("signed", "abs")


@dataclass(frozen=True, repr=False)
class Curve(NoCompleteness):
    """Scores ``[batch, steps + 1]`` after changing the first ``fractions[j]`` of the ranked features.

    ``auc`` is the trapezoid area over ``fractions`` in [0, 1]: low is good for deletion (the
    score falls fast), high is good for insertion. ``values`` is ``scores``; a curve has no
    completeness notion (``delta``, ``relative_error``, ``converged`` are ``None``).
    """

    kind: str
    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor

    AXES = ("example", "step")

    @property
    def values(self) -> torch.Tensor:
        return self.scores

    @property
    def method(self) -> str:
        return self.kind

    @property
    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": int(self.fractions.numel()) - 1, "auc": self.auc.tolist()}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"step": [f"{f:.3g}" for f in self.fractions.tolist()]}


def _curve(
    kind: str,
    model: Callable[..., Any],
    inputs: Inputs,
    attribution: Explanation,
    target: TargetSpec,
    baseline: BaselineSpec,
    steps: int,
    order: str,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
) -> Curve:
    input_set = as_input_set(inputs)
    steps = check_count("steps", steps)
    if order not in ORDERS:
        raise InputError("order", f"expected one of {ORDERS}, got {order!r}")
    values = flat_values(attribution, input_set)
    ranking = (values.abs() if order == "abs" else values).argsort(dim=1, descending=True, stable=True)
    rank = ranking.argsort(dim=1)  # rank[b, f]: position of feature f in example b's ordering
    x = input_set.flat()
    b = flat_baseline(input_set, make_baselines(input_set, baseline))
    features = x.shape[1]
    counts = torch.round(torch.linspace(0, features, steps + 1, dtype=torch.float64)).long().to(x.device)
    scorer = Scorer(model, input_set, target, forward_kwargs, batch_size, memory_budget)
    n = input_set.batch * (steps + 1)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, stop, device=x.device)
        ex, j = pos // (steps + 1), pos % (steps + 1)
        changed = rank[ex] < counts[j][:, None]
        if kind == "deletion":
            return torch.where(changed, b[ex], x[ex]), ex
        return torch.where(changed, x[ex], b[ex]), ex

    scores = scorer.stream(n, build).reshape(input_set.batch, steps + 1)
    fractions = counts.double() / features
    auc = torch.trapezoid(scores.double(), fractions.to(scores.device), dim=1)
    return Curve(kind=kind, fractions=fractions.cpu(), scores=scores, auc=auc.to(scores.dtype))


def deletion(
    model: Callable[..., Any],
    inputs: Inputs,
    attribution: Explanation,
    target: TargetSpec = None,
    *,
    baseline: BaselineSpec = "zeros",
    steps: int = 20,
    order: str = "signed",
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Deletion curve: set the top-ranked features to ``baseline``, ``steps`` equal fractions at a time.

    Features are ranked by attribution, largest first (``order="abs"`` ranks by magnitude); all
    points of all examples are scored in chunked batches.
    """
    return _curve(
        "deletion",
        model,
        inputs,
        attribution,
        target,
        baseline,
        steps,
        order,
        batch_size,
        memory_budget,
        forward_kwargs,
    )


def insertion(
    model: Callable[..., Any],
    inputs: Inputs,
    attribution: Explanation,
    target: TargetSpec = None,
    *,
    baseline: BaselineSpec = "blur",
    steps: int = 20,
    order: str = "signed",
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Curve:
    """Insertion curve: start from ``baseline`` (a blurred copy by default, as Petsiuk et al.) and
    reveal the top-ranked features of the input, ``steps`` equal fractions at a time."""
    return _curve(
        "insertion",
        model,
        inputs,
        attribution,
        target,
        baseline,
        steps,
        order,
        batch_size,
        memory_budget,
        forward_kwargs,
    )
