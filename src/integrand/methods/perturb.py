"""Shared machinery of the perturbation methods: feature groups, batched scoring, seeds, linear fits.

Perturbation methods evaluate the target score on many modified copies of each example and
combine the scores: a difference (occlusion, ablation) or a fitted linear model (LIME, C-LIME,
KernelSHAP). Copies are built chunk by chunk from flat ``[points, features]`` rows, so the full
set of perturbed inputs never lives in memory at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Union, runtime_checkable

import torch

from ..checks import check_call
from ..engine import Engine, chunk_size, probe
from ..errors import InputError
from ..inputs import TENSOR_KEY, InputSet, call_model, gather_kwargs
from ..targets import Target, TargetSpec, resolve_target


@runtime_checkable
class HasFeatureMask(Protocol):
    """Anything that can write itself as integer feature masks (e.g. ``integrand.groups.Groups``)."""

    def feature_mask(self) -> torch.Tensor | dict[str, torch.Tensor]: ...


FeatureMaskSpec = Union[torch.Tensor, Mapping[str, torch.Tensor], HasFeatureMask, None]


@dataclass(frozen=True)
class FeatureGroups:
    """Interpretable features: ``ids[b, f]`` is the group (0..counts[b]-1) of flat feature ``f`` of example ``b``."""

    ids: torch.Tensor
    counts: tuple[int, ...]

    def expand(self, z: torch.Tensor, example: int) -> torch.Tensor:
        """Group values ``[n, groups]`` to feature values ``[n, features]``."""
        return z[:, self.ids[example]]

    def reduce(self, values: torch.Tensor, example: int) -> torch.Tensor:
        """Feature values ``[n, features]`` summed within groups: ``[n, groups]``."""
        out = values.new_zeros(values.shape[0], self.counts[example])
        return out.index_add_(1, self.ids[example], values)


def feature_groups(inputs: InputSet, feature_mask: FeatureMaskSpec, argument: str = "feature_mask") -> FeatureGroups:
    """Validate integer feature masks (one per named input; equal ids form one group, across inputs too).

    ``None`` makes every scalar its own feature. A mask is broadcast to the per-example shape, or
    given per example with a leading batch dim. Every element must belong to a group (ids >= 0).
    """
    batch, device = inputs.batch, inputs.device
    if feature_mask is None:
        total = sum(inputs.sizes())
        ids = torch.arange(total, device=device).expand(batch, total)
        return FeatureGroups(ids=ids, counts=(total,) * batch)
    if isinstance(feature_mask, HasFeatureMask) and not isinstance(feature_mask, torch.Tensor):
        feature_mask = feature_mask.feature_mask()
    if isinstance(feature_mask, Mapping):
        if not inputs.named:
            raise InputError(argument, "a mapping of masks needs named inputs; pass one integer tensor")
        masks = {str(k): v for k, v in feature_mask.items()}
        missing = [n for n in inputs.names if n not in masks]
        extra = [n for n in masks if n not in inputs.tensors]
        if missing or extra:
            raise InputError(argument, f"the masks do not cover the inputs: missing {missing}, unknown {extra}")
    elif isinstance(feature_mask, torch.Tensor):
        if inputs.named:
            raise InputError(argument, f"named inputs need a mapping of masks, one per input {list(inputs.names)}")
        masks = {TENSOR_KEY: feature_mask}
    else:
        raise InputError(
            argument, f"expected an integer tensor or a mapping of them, got {type(feature_mask).__name__}"
        )
    rows = []
    for name, x in inputs.tensors.items():
        m = masks[name]
        where = argument if name == TENSOR_KEY else f"{argument}[{name!r}]"
        if not isinstance(m, torch.Tensor) or m.is_floating_point() or m.is_complex() or m.dtype == torch.bool:
            raise InputError(where, "expected an integer tensor of feature ids")
        m = m.detach().to(device)
        if m.dim() != x.dim():
            m = m.unsqueeze(0)
        try:
            full = torch.broadcast_to(m, x.shape)
        except RuntimeError:
            raise InputError(
                where, f"mask shape {tuple(masks[name].shape)} does not cover the input shape {tuple(x.shape)}"
            ) from None
        if bool((full < 0).any()):
            raise InputError(where, "every element must belong to a feature group (found ids < 0)")
        rows.append(full.reshape(batch, -1).long())
    raw = torch.cat(rows, dim=1)
    per_example: list[torch.Tensor] = []
    counts: list[int] = []
    for b in range(batch):
        unique, inverse = torch.unique(raw[b], return_inverse=True)
        per_example.append(inverse)
        counts.append(int(unique.numel()))
    return FeatureGroups(ids=torch.stack(per_example), counts=tuple(counts))


class Scorer:
    """Target scores of perturbed copies of the examples, chunked, without autograd."""

    def __init__(
        self,
        model: Callable[..., Any],
        inputs: InputSet,
        target: TargetSpec,
        forward_kwargs: Mapping[str, Any] | None,
        batch_size: int | None,
        memory_budget: int | None,
    ) -> None:
        self.inputs = inputs
        if batch_size is None:
            measured = probe(model, inputs, forward_kwargs)
            output, per_point, saved = measured.output, measured.bytes_per_point, measured.saved_tensors
        else:
            # The chunk is given: a plain forward suffices (probing autograd memory costs a backward-ready pass).
            check_call(model, inputs, forward_kwargs)
            example = torch.arange(inputs.batch, device=inputs.device)
            with torch.no_grad():
                output = call_model(model, inputs, inputs.tensors, gather_kwargs(forward_kwargs, inputs.batch, example))
            per_point = saved = 1
        self.target: Target = resolve_target(target, output)
        self.chunk = chunk_size(batch_size, memory_budget, per_point, inputs.device, saved)
        self.engine = Engine(model, inputs, self.target, forward_kwargs, self.chunk)
        self.evaluations = 0

    def rows(self, rows: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
        """Scores of flat ``[n, features]`` rows; ``example[i]`` is the example row ``i`` belongs to."""
        out = []
        for start in range(0, rows.shape[0], self.chunk):
            part = rows[start : start + self.chunk]
            out.append(self.engine.scores(self.inputs.unflat(part), example[start : start + self.chunk]))
        self.evaluations += rows.shape[0]
        return torch.cat(out) if out else rows.new_zeros(0)

    def stream(self, n: int, build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Scores of ``n`` rows produced chunk by chunk by ``build(start, stop) -> (rows, example)``."""
        out = []
        for start in range(0, n, self.chunk):
            rows, example = build(start, min(n, start + self.chunk))
            out.append(self.rows(rows, example))
        return torch.cat(out) if out else torch.zeros(0, dtype=self.inputs.dtype, device=self.inputs.device)

    def inputs_and(self, baselines: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores at the inputs and at the baselines."""
        example = torch.arange(self.inputs.batch, device=self.inputs.device)
        flat_base = torch.cat([baselines[n].reshape(self.inputs.batch, -1) for n in self.inputs.names], dim=1)
        both = self.rows(torch.cat([self.inputs.flat(), flat_base]), example.repeat(2))
        return both[: self.inputs.batch], both[self.inputs.batch :]


def flat_baseline(inputs: InputSet, baselines: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([baselines[n].reshape(inputs.batch, -1) for n in inputs.names], dim=1)


def weighted_fit(
    design: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least squares ``y ~ c + design @ coef`` in float64; returns ``(coef, c)``.

    Finite weights weigh squared residuals; infinite weights make their rows exact equality
    constraints (KernelSHAP's empty and full coalitions). ``ridge`` penalises ``coef`` only.
    Underdetermined systems get the minimum-norm solution (of the centred problem without constraints).
    """
    z, t, w = design.double(), y.double(), weights.double()
    finite = torch.isfinite(w)
    if bool((w[finite] < 0).any()):
        raise InputError("weights", "sample weights must be >= 0")
    n, d = z.shape
    if bool(finite.all()):
        total = w.sum()
        if not float(total) > 0:
            raise InputError("weights", "all sample weights are zero")
        z_mean = (w[:, None] * z).sum(0) / total
        t_mean = (w * t).sum() / total
        sw = w.sqrt()
        a = sw[:, None] * (z - z_mean)
        b = sw * (t - t_mean)
        if ridge > 0:
            a = torch.cat([a, math.sqrt(ridge) * torch.eye(d, dtype=a.dtype, device=a.device)])
            b = torch.cat([b, b.new_zeros(d)])
        coef = _lstsq(a, b)
        return coef, t_mean - z_mean @ coef
    # Constrained: rows with infinite weight fix theta = [c, coef] exactly; the rest is fitted in their null space.
    full = torch.cat([z.new_ones(n, 1), z], dim=1)
    cons, rhs = full[~finite], t[~finite]
    particular = _lstsq(cons, rhs)
    _, s, vh = torch.linalg.svd(cons)
    rank = int((s > s.max() * 1e-10).sum()) if s.numel() else 0
    null = vh[rank:].T
    if null.shape[1] == 0:
        return particular[1:], particular[0]
    sw = w[finite].sqrt()
    a = sw[:, None] * (full[finite] @ null)
    b = sw * (t[finite] - full[finite] @ particular)
    if ridge > 0:
        pen = math.sqrt(ridge) * null[1:]
        a = torch.cat([a, pen])
        b = torch.cat([b, -math.sqrt(ridge) * particular[1:]])
    theta = particular + null @ _lstsq(a, b) if a.shape[0] else particular
    return theta[1:], theta[0]


def _lstsq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least squares (SVD based, so rank-deficient systems are fine)."""
    if a.shape[0] == 0 or a.shape[1] == 0:
        return a.new_zeros(a.shape[1])
    solution: torch.Tensor = torch.linalg.pinv(a, rtol=1e-12) @ b
    return solution
