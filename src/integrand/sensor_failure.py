"""Sensor failure: which sensor group explains the change of an ensemble's forecast and of its variance.

When sensors fail (read zero, freeze at one value, or turn noisy) a deep ensemble's forecast moves
and its members start to disagree. ``sensor_failure`` integrates gradients from the healthy input
(the baseline) to the failed input, once for the ensemble-mean forecast and once for the ensemble
variance, and sums both attributions over named groups (``integrand.groups.Groups``).

With the healthy input as baseline a group whose readings did not change gets exactly zero (the
dummy axiom), so a single failure is attributed wholly to the failed group; the split is informative
when several sensors fail at once (which failure the ensemble "misses"), or over time windows of one
sensor. The completeness errors say how much of each change no group explains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .errors import InputError, ModelError
from .groups import GroupAttribution, Groups, aggregate, flatten
from .inputs import Inputs
from .methods.integrated_gradients import integrated_gradients
from .protocol import ResultMixin

FAILURE_MODES = ("zero", "freeze", "noise")


def fail_channel(
    inputs: Inputs,
    channel: int,
    mode: str,
    *,
    input: str | None = None,
    at: int = 0,
    value: float = 0.0,
    std: float | None = None,
    seed: int = 0,
) -> Inputs:
    """A copy of ``inputs`` where one sensor channel (per-example dim 0, time last) fails from step ``at``.

    ``"zero"`` reads ``value``; ``"freeze"`` holds the reading of step ``at`` from then on; ``"noise"``
    adds Gaussian noise of standard deviation ``std`` (default: the channel's std in ``inputs``).
    ``input`` names the tensor for named inputs.
    """
    if isinstance(inputs, Mapping):
        if input is None or input not in inputs:
            raise InputError("input", f"expected one of {list(inputs)}, got {input!r}")
        x = inputs[input]
    elif isinstance(inputs, torch.Tensor):
        x = inputs
    else:
        raise InputError("inputs", f"expected a tensor or a mapping of named tensors, got {type(inputs).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or not x.is_floating_point():
        raise InputError("inputs", "expected float sensor readings [batch, channels, ..., time]")
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < x.shape[1]:
        raise InputError("channel", f"expected a channel index in [0, {x.shape[1]}), got {channel!r}")
    if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at < x.shape[-1]:
        raise InputError("at", f"expected a time step in [0, {x.shape[-1]}), got {at!r}")
    out = x.detach().clone()
    window = out[:, channel, ..., at:]
    if mode == "zero":
        window.fill_(value)
    elif mode == "freeze":
        window.copy_(out[:, channel, ..., at : at + 1].expand_as(window))
    elif mode == "noise":
        scale = float(x[:, channel].std()) if std is None else std
        if not scale >= 0:
            raise InputError("std", f"expected a non-negative noise level, got {std!r}")
        gen = torch.Generator().manual_seed(seed)
        window.add_(scale * torch.randn(window.shape, generator=gen, dtype=torch.float64).to(window))
    else:
        raise InputError("mode", f"expected one of {FAILURE_MODES}, got {mode!r}")
    if isinstance(inputs, Mapping) and input is not None:
        return {**inputs, input: out}
    return out


class EnsembleStatistic:
    """The members' mean or unbiased variance of one output per example, as one model ``inputs -> [batch]``."""

    def __init__(self, members: Sequence[Callable[..., Any]], statistic: str, index: int | None = None) -> None:
        self.members, self.statistic, self.index = list(members), statistic, index

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        outputs = []
        for i, member in enumerate(self.members):
            out = member(*args, **kwargs)
            if self.index is not None:
                out = out[:, self.index] if isinstance(out, torch.Tensor) and out.dim() == 2 else out
            elif isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == 1:
                out = out[:, 0]
            if not isinstance(out, torch.Tensor) or out.dim() != 1:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ModelError(f"models[{i}]", f"expected one forecast per example [batch], got {shape}; pass index=")
            outputs.append(out)
        stacked = torch.stack(outputs)
        return stacked.mean(dim=0) if self.statistic == "mean" else stacked.var(dim=0, correction=1)

    def __repr__(self) -> str:
        return f"ensemble_{self.statistic}({len(self.members)} members)"


@dataclass(frozen=True, repr=False)
class SensorFailure(ResultMixin):
    """Per-group attribution of the forecast change and of the variance increase, healthy -> failed.

    ``change_share``: each group's share of the summed ``|group attribution|`` of the ensemble-mean
    forecast change, pooled over examples. ``variance_share``: each group's signed attribution of the
    variance, summed over examples, over the summed variance increase; the shares of a partition add
    up to ``1 - variance_pooled_error``. ``failed`` lists the groups whose readings differ.
    """

    names: tuple[str, ...]
    failed: tuple[str, ...]
    change: GroupAttribution
    variance: GroupAttribution
    mean_healthy: torch.Tensor
    mean_failed: torch.Tensor
    var_healthy: torch.Tensor
    var_failed: torch.Tensor
    change_share: torch.Tensor
    variance_share: torch.Tensor
    change_error: float
    variance_error: float
    variance_pooled_error: float

    AXES = ("quantity", "sensor")

    @property
    def values(self) -> torch.Tensor:
        """``[change_share, variance_share]`` stacked: [2, sensors]."""
        return torch.stack([self.change_share, self.variance_share])

    @property
    def delta(self) -> None:
        """``None``: the completeness errors are reported relative (``relative_error``)."""
        return None

    @property
    def relative_error(self) -> torch.Tensor:
        """Relative completeness errors of the change and the variance attributions."""
        return torch.tensor([self.change_error, self.variance_error], dtype=torch.float64)

    @property
    def converged(self) -> torch.Tensor | None:
        """Whether every example of the change and of the variance attribution converged ([2], as
        ``relative_error``); ``None`` when the grouped results carry no flags."""
        if self.change.converged is None or self.variance.converged is None:
            return None
        return torch.stack([self.change.converged.bool().all(), self.variance.converged.bool().all()])

    @property
    def params(self) -> dict[str, Any]:
        return {"failed": list(self.failed), "sensors": list(self.names)}

    @property
    def method(self) -> str:
        return "sensor_failure"

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"quantity": ("change", "variance"), "sensor": self.names}

    @property
    def missed(self) -> str | None:
        """The group with the largest share of the variance increase (None when the variance did not rise)."""
        if float((self.var_failed - self.var_healthy).sum()) <= 0:
            return None
        return self.names[int(self.variance_share.argmax())]

    @property
    def missed_by_change(self) -> str:
        """The group with the largest share of the forecast change."""
        return self.names[int(self.change_share.argmax())]

    def variance_ratio(self) -> float:
        """Mean predictive variance after the failure over before."""
        return float(self.var_failed.mean() / self.var_healthy.mean())

    def table(self) -> list[dict[str, str | float]]:
        """One row per group: mean |forecast change| and variance increase attributed, and their shares."""
        return [
            {
                "group": name,
                "failed": "yes" if name in self.failed else "no",
                "forecast change (mean |IG|)": float(self.change.sums[:, g].abs().mean()),
                "change share": float(self.change_share[g]),
                "variance increase (mean IG)": float(self.variance.sums[:, g].mean()),
                "variance share": float(self.variance_share[g]),
            }
            for g, name in enumerate(self.names)
        ]


def _max_error(attribution: GroupAttribution) -> float:
    err = attribution.relative_error
    return float(err.abs().max()) if err is not None and err.numel() else float("nan")


def sensor_failure(
    models: Sequence[Callable[..., Any]],
    healthy: Inputs,
    failed: Inputs,
    *,
    groups: Groups,
    index: int | None = None,
    steps: int = 32,
    batch_size: int | None = None,
) -> SensorFailure:
    """Attribute an ensemble's forecast change and variance increase, healthy -> failed, to sensor groups.

    Args:
        models: the ensemble members (at least 2), each ``inputs -> [batch]`` (or ``[batch, k]`` with ``index``).
        healthy: the inputs with every sensor working (the IG baseline).
        failed: the same inputs with some sensors failed (e.g. from ``fail_channel``).
        groups: sensor groups over the inputs' features.
        steps: Gauss-Legendre points; the variance of an ensemble of linear models is quadratic along
            the path, so 2 points already integrate it exactly.
    """
    if isinstance(models, (nn.Module, torch.Tensor)) or not isinstance(models, Sequence) or len(models) < 2:
        raise InputError("models", "expected a sequence of at least 2 ensemble members")
    for i, model in enumerate(models):
        if not callable(model):
            raise InputError(f"models[{i}]", f"expected a callable model, got {type(model).__name__}")
    if not isinstance(groups, Groups):
        raise InputError("groups", f"expected a Groups object, got {type(groups).__name__}")
    groups.check(healthy, "healthy")
    groups.check(failed, "failed")
    h, f = flatten(_detached(healthy)), flatten(_detached(failed))
    if h.shape != f.shape:
        raise InputError("failed", f"expected the shape of healthy {tuple(h.shape)}, got {tuple(f.shape)}")
    differs = (h != f).any(dim=0).cpu()
    if not bool(differs.any()):
        raise InputError("failed", "equals healthy: no sensor reading changed")
    failed_groups = tuple(n for n, row in zip(groups.names, groups.membership) if bool((row & differs).any()))
    baseline: Any = dict(healthy) if isinstance(healthy, Mapping) else healthy
    mean_model, var_model = EnsembleStatistic(models, "mean", index), EnsembleStatistic(models, "variance", index)
    change = aggregate(
        integrated_gradients(mean_model, failed, baseline=baseline, steps=steps, batch_size=batch_size), groups
    )
    variance = aggregate(
        integrated_gradients(var_model, failed, baseline=baseline, steps=steps, batch_size=batch_size), groups
    )
    with torch.no_grad():
        mean_h, mean_f = _call(mean_model, healthy), _call(mean_model, failed)
        var_h, var_f = _call(var_model, healthy), _call(var_model, failed)
    magnitude = change.sums.abs().sum(dim=0)
    increase = (var_f - var_h).sum().to(variance.sums.dtype)
    variance_share = variance.sums.sum(dim=0) / increase if float(increase) != 0 else variance.sums[0] * float("nan")
    return SensorFailure(
        names=groups.names,
        failed=failed_groups,
        change=change,
        variance=variance,
        mean_healthy=mean_h,
        mean_failed=mean_f,
        var_healthy=var_h,
        var_failed=var_f,
        change_share=magnitude / magnitude.sum() if float(magnitude.sum()) > 0 else magnitude * float("nan"),
        variance_share=variance_share,
        change_error=_max_error(change),
        variance_error=_max_error(variance),
        variance_pooled_error=float(1 - variance_share.sum()),
    )


def _detached(inputs: Inputs) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v.detach() for k, v in inputs.items()}
    if isinstance(inputs, torch.Tensor):
        return inputs.detach()
    raise InputError("healthy", f"expected a tensor or a mapping of named tensors, got {type(inputs).__name__}")


def _call(model: EnsembleStatistic, inputs: Inputs) -> torch.Tensor:
    return (model(**inputs) if isinstance(inputs, Mapping) else model(inputs)).detach()
