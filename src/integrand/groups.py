"""Named feature groups (channels, modalities, time windows, regions, words) and aggregation over them.

A ``Groups`` object is a boolean membership matrix ``[groups, features]`` over the flattened features
of one example (named inputs concatenated in order, as ``InputSet.flat`` does), plus the input layout
it was built for. Every result can be aggregated over it, and perturbation methods take the same
object (``feature_mask()`` converts a partition to integer masks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any, Callable, Mapping, Sequence, Union

import torch

from .errors import InputError
from .inputs import TENSOR_KEY
from .protocol import ResultMixin
from .result import Attribution

Layout = tuple[tuple[str, tuple[int, ...]], ...]
"""(input name, per-example shape) in input order; a plain tensor input is named ``TENSOR_KEY``."""
Like = Union[torch.Tensor, Mapping[str, torch.Tensor], Attribution]
MemberSpec = Union[torch.Tensor, Sequence[int], str, Mapping[str, Any]]


def layout_of(like: Like) -> tuple[Layout, bool]:
    """Per-example shapes of the inputs (or of an attribution's values), and whether they are named."""
    values = like.values if isinstance(like, Attribution) else like
    if isinstance(values, torch.Tensor):
        if values.dim() < 1:
            raise InputError("like", "expected a batch dimension first")
        return ((TENSOR_KEY, tuple(values.shape[1:])),), False
    if isinstance(values, Mapping) and values:
        return tuple((str(k), tuple(v.shape[1:])) for k, v in values.items()), True
    raise InputError(
        "like", f"expected a tensor, a mapping of named tensors or an Attribution, got {type(like).__name__}"
    )


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _mask_of(argument: str, shape: tuple[int, ...], spec: Any) -> torch.Tensor:
    """One input's members as a flat bool vector: a bool mask broadcastable to ``shape``, indices, or True."""
    n = _numel(shape)
    if spec is True:
        return torch.ones(n, dtype=torch.bool)
    if isinstance(spec, torch.Tensor) and spec.dtype == torch.bool:
        if spec.dim() == len(shape) + 1 and spec.shape[0] == 1:
            spec = spec[0]
        try:
            return torch.broadcast_to(spec.detach().cpu(), shape).reshape(n).clone()
        except RuntimeError:
            raise InputError(
                argument, f"mask of shape {tuple(spec.shape)} does not broadcast to the features {shape}"
            ) from None
    if isinstance(spec, torch.Tensor):
        if spec.is_floating_point() or spec.dim() != 1:
            raise InputError(
                argument, f"expected a bool mask or a 1-D integer index tensor, got {spec.dtype} {tuple(spec.shape)}"
            )
        index = spec.detach().cpu().long()
    elif isinstance(spec, Sequence) and not isinstance(spec, str) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in spec
    ):
        index = torch.tensor(list(spec), dtype=torch.long)
    else:
        raise InputError(argument, f"expected a bool mask, feature indices or an input name, got {type(spec).__name__}")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        raise InputError(argument, f"feature index out of range for {n} features: {index.tolist()}")
    out = torch.zeros(n, dtype=torch.bool)
    out[index] = True
    return out


def _member_row(argument: str, layout: Layout, named: bool, spec: MemberSpec) -> torch.Tensor:
    names = [name for name, _ in layout]
    parts = {name: torch.zeros(_numel(shape), dtype=torch.bool) for name, shape in layout}
    if isinstance(spec, str):
        if not named or spec not in parts:
            raise InputError(argument, f"{spec!r} is not a named input; inputs are {names}")
        parts[spec][:] = True
    elif isinstance(spec, Mapping):
        if not named:
            raise InputError(argument, "a mapping of per-input members needs named inputs")
        for key, sub in spec.items():
            if key not in parts:
                raise InputError(argument, f"{key!r} is not a named input; inputs are {names}")
            parts[key] = _mask_of(f"{argument}[{key!r}]", dict(layout)[key], sub)
    else:
        if named:
            raise InputError(argument, "with named inputs give an input name or a mapping input name -> mask/indices")
        parts[TENSOR_KEY] = _mask_of(argument, layout[0][1], spec)
    return torch.cat([parts[name] for name in names])


@dataclass(frozen=True)
class Groups:
    """Named groups of features, validated: no empty group, no overlap unless ``allow_overlap``."""

    names: tuple[str, ...]
    membership: torch.Tensor
    layout: Layout
    named: bool
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        if not self.names:
            raise InputError("groups", "no groups given")
        if len(set(self.names)) != len(self.names):
            raise InputError("groups", f"group names must be unique, got {list(self.names)}")
        features = sum(_numel(shape) for _, shape in self.layout)
        if self.membership.dtype != torch.bool or tuple(self.membership.shape) != (len(self.names), features):
            raise InputError("groups", f"membership must be bool [{len(self.names)}, {features}]")
        empty = [n for n, row in zip(self.names, self.membership) if not bool(row.any())]
        if empty:
            raise InputError("groups", f"groups {empty} cover no feature")
        counts = self.membership.sum(dim=0)
        if not self.allow_overlap and bool((counts > 1).any()):
            shared = [n for n, row in zip(self.names, self.membership) if bool((row & (counts > 1)).any())]
            raise InputError("groups", f"groups {shared} overlap; pass allow_overlap=True if that is intended")

    @classmethod
    def define(cls, spec: Mapping[str, MemberSpec], like: Like, *, allow_overlap: bool = False) -> Groups:
        """Groups from ``name -> members``; members are a bool mask, flat feature indices, an input
        name (a whole modality), or for named inputs a mapping input name -> mask/indices/True.

        ``like`` is an example of the inputs (or an ``Attribution``) and fixes the feature layout.
        """
        if not isinstance(spec, Mapping):
            raise InputError("groups", f"expected a mapping name -> members, got {type(spec).__name__}")
        layout, named = layout_of(like)
        rows = [_member_row(f"groups[{name!r}]", layout, named, members) for name, members in spec.items()]
        if not rows:
            raise InputError("groups", "no groups given")
        return cls(tuple(str(n) for n in spec), torch.stack(rows), layout, named, allow_overlap)

    @classmethod
    def from_feature_mask(
        cls, mask: torch.Tensor | Mapping[str, torch.Tensor], like: Like, *, names: Mapping[int, str] | None = None
    ) -> Groups:
        """Groups from integer feature masks (one id per feature; equal ids form one group, across inputs too)."""
        layout, named = layout_of(like)
        masks = dict(mask) if isinstance(mask, Mapping) else {TENSOR_KEY: mask}
        if set(masks) != {n for n, _ in layout} or isinstance(mask, Mapping) != named:
            raise InputError("feature_mask", f"expected one integer mask per input {[n for n, _ in layout]}")
        flat = []
        for name, shape in layout:
            m = masks[name]
            if not isinstance(m, torch.Tensor) or m.is_floating_point() or m.dtype == torch.bool:
                raise InputError("feature_mask", f"mask for {name!r} must be an integer tensor")
            if m.dim() == len(shape) + 1 and m.shape[0] == 1:
                m = m[0]
            try:
                flat.append(torch.broadcast_to(m.detach().cpu().long(), shape).reshape(-1))
            except RuntimeError:
                raise InputError("feature_mask", f"mask {tuple(m.shape)} does not broadcast to {shape}") from None
        ids = torch.cat(flat)
        unique = torch.unique(ids).tolist()
        label = {i: (names or {}).get(i, str(i)) for i in unique}
        return cls(tuple(label[i] for i in unique), torch.stack([ids == i for i in unique]), layout, named)

    @classmethod
    def modalities(cls, like: Like) -> Groups:
        """One group per named input."""
        layout, named = layout_of(like)
        if not named:
            raise InputError("like", "modalities need named inputs (a mapping of tensors)")
        return cls.define({name: name for name, _ in layout}, like)

    @classmethod
    def along(
        cls, like: Like, dim: int, *, names: Sequence[str] | None = None, input: str | None = None, size: int = 1
    ) -> Groups:
        """Slices of one per-example dim (channels with ``size=1``, time windows with ``size>1``).

        ``dim`` counts per-example dims (0 is the first dim after the batch). For named inputs,
        ``input`` picks the input; the other inputs stay outside every group.
        """
        layout, named = layout_of(like)
        shapes = dict(layout)
        key = input if named else TENSOR_KEY
        if key is None or key not in shapes:
            raise InputError("input", f"expected one of {list(shapes)}, got {input!r}")
        shape = shapes[key]
        if not -len(shape) <= dim < len(shape):
            raise InputError("dim", f"out of range for per-example shape {shape}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError("size", f"expected an integer >= 1, got {size!r}")
        length = shape[dim]
        starts = list(range(0, length, size))
        if names is not None and len(names) != len(starts):
            raise InputError("names", f"expected {len(starts)} names, got {len(names)}")
        labels = list(names) if names is not None else [
            str(s) if size == 1 else f"{s}:{min(s + size, length)}" for s in starts
        ]
        spec: dict[str, MemberSpec] = {}
        for label, start in zip(labels, starts):
            mask = torch.zeros(shape, dtype=torch.bool)
            mask.narrow(dim, start, min(size, length - start)).fill_(True)
            spec[label] = {key: mask} if named else mask
        return cls.define(spec, like)

    @property
    def features(self) -> int:
        return int(self.membership.shape[1])

    def covers_all(self) -> bool:
        return bool(self.membership.any(dim=0).all())

    def feature_mask(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """Integer masks (group index per feature) for perturbation methods; needs a partition."""
        if bool((self.membership.sum(dim=0) > 1).any()):
            raise InputError("groups", "overlapping groups cannot be written as one integer feature mask")
        if not self.covers_all():
            raise InputError("groups", "the groups do not cover every feature; add a group for the rest")
        ids = self.membership.long().argmax(dim=0)
        out, start = {}, 0
        for name, shape in self.layout:
            n = _numel(shape)
            out[name] = ids[start : start + n].reshape(shape)
            start += n
        return out if self.named else out[TENSOR_KEY]

    def check(self, like: Like, argument: str = "groups") -> None:
        """Raise unless ``like`` has the feature layout these groups were defined for."""
        layout, named = layout_of(like)
        if layout != self.layout or named != self.named:
            raise InputError(argument, f"groups were defined for inputs {list(self.layout)}, got {list(layout)}")

    def reduce(self, flat: torch.Tensor) -> torch.Tensor:
        """Group sums of ``[..., features]`` values: ``[..., groups]``."""
        if flat.shape[-1] != self.features:
            raise InputError("groups", f"expected {self.features} features, got {flat.shape[-1]}")
        return flat @ self.membership.to(device=flat.device, dtype=flat.dtype).T


def flatten(values: torch.Tensor | Mapping[str, torch.Tensor], leading: int = 1) -> torch.Tensor:
    """Values as ``[*leading dims, features]``, named inputs concatenated in order."""
    parts = values.values() if isinstance(values, Mapping) else [values]
    return torch.cat([v.reshape(*v.shape[:leading], -1) for v in parts], dim=-1)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A zero denominator leaves the share undefined: NaN, never a silent 0 or inf.
    return torch.where(den == 0, torch.full_like(num, float("nan")), num / torch.where(den == 0, 1, den))


@dataclass(frozen=True, repr=False)
class GroupAttribution(ResultMixin):
    """An attribution summed over named groups, per example.

    ``share`` is each group's sum over the sum of all attributions; ``abs_share`` the same for |values|
    (it grows with a group's size and per-feature noise); ``magnitude_share`` is ``|group sum|`` over the
    sum of ``|group sum|`` of all groups (how strongly each group moves the score, net of cancellation);
    ``score_share`` (path methods) each group's sum over ``f(x) - f(baseline)``, so the shares of a
    partition add up to ``1 - relative_error`` (signed): the completeness error is what no group explains.
    """

    names: tuple[str, ...]
    sums: torch.Tensor
    mean_abs: torch.Tensor
    share: torch.Tensor
    abs_share: torch.Tensor
    magnitude_share: torch.Tensor
    total: torch.Tensor
    uncovered: torch.Tensor
    score_share: torch.Tensor | None
    delta: torch.Tensor | None
    relative_error: torch.Tensor | None
    method: str
    converged: torch.Tensor | None = None
    """Per example, whether the attribution it was grouped from converged (``None`` for methods without a
    completeness notion): grouping never claims more than its parts."""

    AXES = ("example", "group")

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``sums``: [examples, groups]."""
        return self.sums

    @property
    def n_unconverged(self) -> int | None:
        """How many of the grouped examples did not converge (``None`` without convergence flags)."""
        return None if self.converged is None else int((~self.converged.bool()).sum())

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"method": self.method, "groups": list(self.names)}
        if self.converged is not None:
            params["n_unconverged"] = self.n_unconverged
        return params

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"group": self.names}

    def ranked(self, example: int | None = None, by: str = "abs_share") -> list[tuple[str, float]]:
        """Groups by decreasing ``by`` (an attribute name) for one example, or averaged over the batch."""
        if by not in ("sums", "mean_abs", "share", "abs_share", "magnitude_share", "score_share"):
            raise InputError("by", f"unknown column {by!r}")
        column = getattr(self, by)
        if column is None:
            raise InputError("by", f"{by} is not available for method {self.method!r}")
        row = column.mean(dim=0) if example is None else column[example]
        order = torch.argsort(row, descending=True, stable=True).tolist()
        return [(self.names[i], float(row[i])) for i in order]

    def table(self, example: int = 0) -> list[dict[str, float | str]]:
        """One row per group for one example."""
        rows: list[dict[str, float | str]] = []
        for g, name in enumerate(self.names):
            row: dict[str, float | str] = {
                "group": name,
                "sum": float(self.sums[example, g]),
                "mean_abs": float(self.mean_abs[example, g]),
                "share": float(self.share[example, g]),
                "abs_share": float(self.abs_share[example, g]),
                "magnitude_share": float(self.magnitude_share[example, g]),
            }
            if self.score_share is not None:
                row["score_share"] = float(self.score_share[example, g])
            rows.append(row)
        return rows

    def to_html(self, example: int = 0) -> str:
        from .viz.html import table

        rows = self.table(example)
        headers = list(rows[0])
        body = [[r[h] if isinstance(r[h], str) else f"{r[h]:.4g}" for h in headers] for r in rows]
        err = "" if self.relative_error is None else f" (completeness error {float(self.relative_error[example]):.2e})"
        return f"<div>{escape(self.method)} by group, example {example}{escape(err)}</div>" + table(headers, body)


def _flags(attribution: Attribution) -> torch.Tensor | None:
    # A method without a completeness error has no convergence to pass on (its flags cannot be False).
    if attribution.delta is None or attribution.converged is None:
        return None
    return torch.as_tensor(attribution.converged, dtype=torch.bool).reshape(-1).cpu()


def aggregate(attribution: Attribution, groups: Groups) -> GroupAttribution:
    """Sum, mean |.| and shares of ``attribution`` over ``groups``."""
    if not isinstance(attribution, Attribution):
        raise InputError("attribution", f"expected an Attribution, got {type(attribution).__name__}")
    if not isinstance(groups, Groups):
        raise InputError("groups", f"expected a Groups object, got {type(groups).__name__}")
    groups.check(attribution)
    flat = flatten(attribution.values).detach()
    member = groups.membership.to(device=flat.device)
    sums = groups.reduce(flat)
    abs_sums = groups.reduce(flat.abs())
    total = flat.sum(dim=1)
    counts = member.sum(dim=1).to(flat.dtype)
    covered = member.any(dim=0)
    score_share = None
    if attribution.score_baseline is not None:
        score_share = _ratio(sums, (attribution.score_input - attribution.score_baseline)[:, None].to(flat.dtype))
    return GroupAttribution(
        names=groups.names,
        sums=sums,
        mean_abs=abs_sums / counts,
        share=_ratio(sums, total[:, None]),
        abs_share=_ratio(abs_sums, flat.abs().sum(dim=1, keepdim=True)),
        magnitude_share=_ratio(sums.abs(), sums.abs().sum(dim=1, keepdim=True)),
        total=total,
        uncovered=flat[:, ~covered].sum(dim=1),
        score_share=score_share,
        delta=attribution.delta,
        relative_error=attribution.relative_error,
        method=attribution.method,
        converged=_flags(attribution),
    )


def _from_group_values(attribution: Attribution, groups: Groups) -> GroupAttribution:
    """Group results of a method that scores whole groups (every feature of a group holds its score)."""
    flat = flatten(attribution.values).detach()
    member = groups.membership.to(device=flat.device, dtype=flat.dtype)
    values = (flat @ member.T) / member.sum(dim=1)
    total = values.sum(dim=1)
    score_share = None
    if attribution.score_baseline is not None:
        score_share = _ratio(values, (attribution.score_input - attribution.score_baseline)[:, None].to(flat.dtype))
    magnitude = _ratio(values.abs(), values.abs().sum(dim=1, keepdim=True))
    return GroupAttribution(
        names=groups.names,
        sums=values,
        mean_abs=values.abs(),
        share=_ratio(values, total[:, None]),
        abs_share=magnitude,
        magnitude_share=magnitude,
        total=total,
        uncovered=torch.zeros_like(total),
        score_share=score_share,
        delta=attribution.delta,
        relative_error=attribution.relative_error,
        method=attribution.method,
        converged=_flags(attribution),
    )


def attribute_groups(
    model: Callable[..., Any],
    inputs: Any,
    target: Any = None,
    *,
    groups: Groups,
    method: str = "integrated_gradients",
    **params: Any,
) -> GroupAttribution:
    """Attribution to whole groups with any registered method.

    Methods that take ``feature_mask`` (feature ablation, KernelSHAP, LIME, ...) perturb the groups
    themselves: the group's score is what the method gives each of its features. Other methods
    (IG and the gradient family) attribute features, and their values are summed per group.
    """
    from .methods import REGISTRY

    if not isinstance(groups, Groups):
        raise InputError("groups", f"expected a Groups object, got {type(groups).__name__}")
    groups.check(inputs)
    info = REGISTRY.get(method)
    if "feature_mask" in info.params:
        if "feature_mask" in params:
            raise InputError("feature_mask", "pass the groups as groups=, not feature_mask=")
        return _from_group_values(info.fn(model, inputs, target, feature_mask=groups, **params), groups)
    return aggregate(info.fn(model, inputs, target, **params), groups)


def modality_shares(attribution: Attribution) -> GroupAttribution:
    """One group per named input: how much of the prediction change each modality explains."""
    return aggregate(attribution, Groups.modalities(attribution))
