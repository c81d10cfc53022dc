"""Feature ablation: replace one feature group at a time by the baseline and record the score drop."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..baselines import BaselineSpec, make_baselines
from ..inputs import Inputs, as_input_set
from ..result import Attribution
from ..targets import TargetSpec
from .perturb import FeatureMaskSpec, Scorer, feature_groups, flat_baseline


def feature_ablation(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    feature_mask: FeatureMaskSpec = None,
    baseline: BaselineSpec = "zeros",
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Feature ablation: every element of a group gets ``f(x) - f(x with the group at baseline)``.

    Args:
        feature_mask: integer ids per element (one tensor, or a mapping per named input; equal ids
            form one group, across inputs too; a leading batch dim gives per-example groups), or an
            object with ``feature_mask()`` such as ``integrand.groups.Groups``. Default: each element alone.
        baseline: what an ablated group is replaced by (see ``integrated_gradients``).
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.

    Deterministic: no seed. One model evaluation per group and example.
    """
    input_set = as_input_set(inputs)
    baselines = make_baselines(input_set, baseline)
    groups = feature_groups(input_set, feature_mask)
    scorer = Scorer(model, input_set, target, forward_kwargs, batch_size, memory_budget)
    score_input, score_baseline = scorer.inputs_and(baselines)
    x_flat, b_flat = input_set.flat(), flat_baseline(input_set, baselines)
    device = x_flat.device
    example_of = torch.repeat_interleave(torch.arange(input_set.batch), torch.tensor(groups.counts)).to(device)
    group_of = torch.cat([torch.arange(c) for c in groups.counts]).to(device)

    def build(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        ex = example_of[start:stop]
        off = groups.ids[ex] == group_of[start:stop, None]
        return torch.where(off, b_flat[ex], x_flat[ex]), ex

    drops = score_input[example_of] - scorer.stream(int(example_of.shape[0]), build)
    values = torch.zeros_like(x_flat)
    start = 0
    for b, c in enumerate(groups.counts):
        values[b] = drops[start : start + c][groups.ids[b]]
        start += c
    return Attribution(
        values=input_set.public(input_set.unflat(values)),
        inputs=input_set.public(input_set.tensors),
        baseline=input_set.public(baselines),
        score_input=score_input,
        score_baseline=score_baseline,
        delta=None,
        steps=torch.tensor(groups.counts),
        converged=torch.ones(input_set.batch, dtype=torch.bool),
        method="feature_ablation",
        params={"groups": list(groups.counts), "explains": "attribution" if feature_mask is None else "group"},
    )
