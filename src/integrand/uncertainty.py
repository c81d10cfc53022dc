"""Attribution under model uncertainty: deep ensembles, MC dropout and Gaussian (mean, variance) outputs.

Each member (an ensemble model, or one dropout sample) is explained with the same method and the
same fixed target; the result keeps every member's ``Attribution`` and reports mean, standard
deviation and sign agreement per feature and per group, plus the predicted distribution.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .checks import check_call, training_allowed
from .errors import InputError, ModelError
from .groups import Groups, flatten
from .inputs import Inputs, InputSet, as_input_set, call_model, gather_kwargs
from .methods import REGISTRY
from .protocol import ResultMixin
from .result import Attribution, TensorOrDict
from .targets import Target, TargetSpec

DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
"""Dropout modules whose masks MC dropout samples (alpha dropout is rejected: its mask is not a scale)."""


@dataclass(frozen=True)
class GroupSpread:
    """Per-member group sums and shares ``[members, batch, groups]`` and the statistics of the sums.

    ``abs_share`` and ``magnitude_share`` are defined as in ``integrand.groups.GroupAttribution``.
    """

    names: tuple[str, ...]
    sums: torch.Tensor
    abs_share: torch.Tensor
    magnitude_share: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    sign_agreement: torch.Tensor

    def top(self) -> torch.Tensor:
        """Index of the group with the largest magnitude share, per member and example: ``[members, batch]``."""
        return self.magnitude_share.argmax(dim=-1)


@dataclass(frozen=True, repr=False)
class UncertainAttribution(ResultMixin):
    """Attributions of every member with their mean, std (unbiased, over members) and sign agreement.

    ``sign_agreement`` is the fraction of members whose attribution has the sign of the mean.
    ``predictions`` is the model output at the inputs per member, ``[members, batch, ...]``.
    """

    kind: str
    members: tuple[Attribution, ...]
    mean: TensorOrDict
    std: TensorOrDict
    sign_agreement: TensorOrDict
    predictions: torch.Tensor
    prediction_mean: torch.Tensor
    prediction_std: torch.Tensor
    scores: torch.Tensor
    groups: GroupSpread | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    AXES = ("example",)

    @property
    def values(self) -> TensorOrDict:
        """The protocol's name for ``mean``: the mean attribution over the members."""
        return self.mean

    @property
    def delta(self) -> None:
        """``None``: a mean of attributions; each member in ``members`` has its own delta."""
        return None

    @property
    def relative_error(self) -> torch.Tensor | None:
        """Per example, the largest relative completeness error over the members (``None`` without one)."""
        errors = [m.relative_error for m in self.members]
        if not errors or any(e is None for e in errors):
            return None
        return torch.stack([e for e in errors if e is not None]).amax(dim=0)

    @property
    def converged(self) -> torch.Tensor:
        """Per example, whether every member converged."""
        return torch.stack([m.converged.bool() for m in self.members]).all(dim=0)

    def mean_attribution(self) -> Attribution:
        """The mean over members as one ``Attribution`` (scores and completeness error averaged too)."""
        first = self.members[0]

        def avg(values: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
            return None if any(v is None for v in values) else torch.stack(list(values)).mean(dim=0)  # type: ignore[arg-type]

        return Attribution(
            values=self.mean,
            inputs=first.inputs,
            baseline=first.baseline,
            score_input=self.scores.mean(dim=0),
            score_baseline=avg([m.score_baseline for m in self.members]),
            delta=avg([m.delta for m in self.members]),
            steps=torch.stack([m.steps for m in self.members]).amax(dim=0),
            converged=torch.stack([m.converged for m in self.members]).all(dim=0),
            method=f"{self.kind}-mean:{self.method}",
            params=dict(self.params),
            labels=first.labels,
        )


def _stats(stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean = stacked.mean(dim=0)
    std = stacked.std(dim=0, correction=1)
    agree = (torch.sign(stacked) == torch.sign(mean)).to(stacked.dtype).mean(dim=0)
    return mean, std, agree


def _per_input(stacked: TensorOrDict, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorOrDict:
    return {k: fn(v) for k, v in stacked.items()} if isinstance(stacked, dict) else fn(stacked)


def _share(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # As in groups: a zero denominator leaves the share undefined (NaN).
    return torch.where(den == 0, torch.full_like(num, float("nan")), num / torch.where(den == 0, 1, den))


def _fixed_target(target: TargetSpec, prediction_mean: torch.Tensor) -> TargetSpec:
    # Every member must explain the same score: target=None on class outputs means the class the
    # ensemble as a whole predicts, not each member's own argmax.
    if target is None and prediction_mean.dim() == 2:
        return prediction_mean.argmax(dim=1)
    return target


def _combine(
    kind: str,
    members: list[Attribution],
    predictions: torch.Tensor,
    groups: Groups | None,
    method: str,
    params: dict[str, Any],
) -> UncertainAttribution:
    values = [m.values for m in members]
    stacked: TensorOrDict
    if isinstance(values[0], dict):
        stacked = {k: torch.stack([v[k] for v in values]) for k in values[0]}  # type: ignore[index]
    else:
        stacked = torch.stack(values)  # type: ignore[arg-type]
    spread = None
    if groups is not None:
        groups.check(members[0])
        flat = flatten(stacked, leading=2)
        sums = groups.reduce(flat)
        abs_share = _share(groups.reduce(flat.abs()), flat.abs().sum(dim=-1, keepdim=True))
        magnitude_share = _share(sums.abs(), sums.abs().sum(dim=-1, keepdim=True))
        g_mean, g_std, g_agree = _stats(sums)
        spread = GroupSpread(groups.names, sums, abs_share, magnitude_share, g_mean, g_std, g_agree)
    return UncertainAttribution(
        kind=kind,
        members=tuple(members),
        mean=_per_input(stacked, lambda t: _stats(t)[0]),
        std=_per_input(stacked, lambda t: _stats(t)[1]),
        sign_agreement=_per_input(stacked, lambda t: _stats(t)[2]),
        predictions=predictions,
        prediction_mean=predictions.mean(dim=0),
        prediction_std=predictions.std(dim=0, correction=1),
        scores=torch.stack([m.score_input for m in members]),
        groups=spread,
        method=method,
        params=params,
    )


def _predict(model: Callable[..., Any], inputs: InputSet, forward_kwargs: Any) -> torch.Tensor:
    check_call(model, inputs, forward_kwargs)  # before the first forward pass: no train-mode BatchNorm update
    example = torch.arange(inputs.batch, device=inputs.device)
    with torch.no_grad():
        return call_model(model, inputs, inputs.tensors, gather_kwargs(forward_kwargs, inputs.batch, example)).detach()


def _check_common(method: str, groups: Groups | None, inputs: Inputs) -> InputSet:
    REGISTRY.get(method)
    if groups is not None and not isinstance(groups, Groups):
        raise InputError("groups", f"expected a Groups object or None, got {type(groups).__name__}")
    input_set = as_input_set(inputs)
    if groups is not None:
        groups.check(inputs)
    return input_set


def ensemble(
    models: Sequence[Callable[..., Any]],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    method: str = "integrated_gradients",
    groups: Groups | None = None,
    **params: Any,
) -> UncertainAttribution:
    """Explain every model of an ensemble with ``method`` and summarise over members.

    ``params`` are the method's keyword arguments. Members must map the inputs to outputs of one shape.
    With ``target=None`` on class outputs, every member explains the class of the ensemble's mean output.
    """
    if isinstance(models, (nn.Module, torch.Tensor)) or not isinstance(models, Sequence):
        raise InputError("models", "expected a sequence of models")
    if len(models) < 2:
        raise InputError("models", f"an ensemble needs at least 2 models, got {len(models)}")
    input_set = _check_common(method, groups, inputs)
    outputs = []
    for i, model in enumerate(models):
        if not callable(model):
            raise InputError(f"models[{i}]", f"expected a callable model, got {type(model).__name__}")
        outputs.append(_predict(model, input_set, params.get("forward_kwargs")))
        if outputs[-1].shape != outputs[0].shape:
            raise InputError(
                "models",
                f"member {i} returns shape {tuple(outputs[-1].shape)}, member 0 {tuple(outputs[0].shape)}; "
                "ensemble members must predict the same thing",
            )
    predictions = torch.stack(outputs)
    fixed = _fixed_target(target, predictions.mean(dim=0))
    fn = REGISTRY.get(method).fn
    members = [fn(model, inputs, fixed, **params) for model in models]
    return _combine("ensemble", members, predictions, groups, method, dict(params, members=len(models)))


def _mask_shape(module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    if isinstance(module, nn.Dropout) or x.dim() < 2:
        return tuple(x.shape[1:])
    # Channel dropout zeroes whole feature maps: one draw per channel, broadcast over the rest.
    return (x.shape[1],) + (1,) * (x.dim() - 2)


@contextmanager
def sampled_dropout(
    model: nn.Module, generator: torch.Generator, masks: dict[tuple[int, tuple[int, ...]], torch.Tensor] | None = None
) -> Iterator[None]:
    """Activate the model's dropout modules with masks drawn once from ``generator`` and then held fixed.

    ``masks`` (module id and input shape -> mask) lets a later context reuse the masks of an earlier one.

    Only dropout modules are switched to train mode. Holding each mask fixed (shared by every row of
    the batch) makes the sample one deterministic sub-network, so a path integral over many forward
    passes explains that sub-network. Modes, ``inplace`` flags and hooks are restored on every exit.
    """
    modules = [m for m in model.modules() if isinstance(m, DROPOUTS)]
    alpha = [type(m).__name__ for m in model.modules() if isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout))]
    if alpha:
        raise ModelError("model", f"MC dropout supports nn.Dropout/Dropout1d/2d/3d, not {sorted(set(alpha))}")
    if not modules:
        raise InputError("model", "has no nn.Dropout modules; MC dropout needs dropout layers")
    modes = [(module, module.training) for module in model.modules()]
    inplace = [(m, m.inplace) for m in modules]
    masks = {} if masks is None else masks

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        x: torch.Tensor = args[0]
        shape = _mask_shape(module, x)
        key = (id(module), tuple(x.shape[1:]))
        if key not in masks:
            p = float(getattr(module, "p", 0.5))
            keep = torch.rand(shape, generator=generator, dtype=torch.float64) >= p
            scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
            masks[key] = keep.double() * scale
        return x * masks[key].to(device=x.device, dtype=x.dtype)

    handles = []
    try:
        for m in modules:
            m.training = True
            # An in-place dropout would overwrite its input before the hook can apply the fixed mask.
            m.inplace = False
            handles.append(m.register_forward_hook(hook))
        # The explicit opt-in to train mode: these dropout modules apply the fixed masks above.
        with training_allowed(modules):
            yield
    finally:
        for h in handles:
            h.remove()
        for m, flag in inplace:
            m.inplace = flag
        for module, mode in modes:
            module.training = mode


def mc_dropout(
    model: nn.Module,
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    samples: int,
    seed: int = 0,
    method: str = "integrated_gradients",
    groups: Groups | None = None,
    **params: Any,
) -> UncertainAttribution:
    """Explain ``samples`` dropout sub-networks of ``model`` (MC dropout, Gal & Ghahramani 2016).

    Sample ``s`` draws its dropout masks from a generator seeded from ``seed`` and ``s``, so equal
    seeds give bit-identical results; the global RNG state is left as it was.
    """
    if not isinstance(model, nn.Module):
        raise InputError("model", "MC dropout needs an nn.Module with dropout layers")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise InputError("samples", f"expected an integer >= 2, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError("seed", f"expected an integer, got {seed!r}")
    input_set = _check_common(method, groups, inputs)
    subseeds = torch.randint(0, 2**62, (samples,), generator=torch.Generator().manual_seed(seed)).tolist()
    fn = REGISTRY.get(method).fn
    devices = [input_set.device] if input_set.device.type == "cuda" else []
    masks: list[dict[tuple[int, tuple[int, ...]], torch.Tensor]] = [{} for _ in subseeds]
    outputs: list[torch.Tensor] = []
    # The dropout modules still draw their own (discarded) masks in train mode: fork the global RNG.
    with torch.random.fork_rng(devices=devices):
        for subseed, held in zip(subseeds, masks):
            with sampled_dropout(model, torch.Generator().manual_seed(subseed), held):
                outputs.append(_predict(model, input_set, params.get("forward_kwargs")))
        predictions = torch.stack(outputs)
        fixed = _fixed_target(target, predictions.mean(dim=0))
        members = []
        for subseed, held in zip(subseeds, masks):
            with sampled_dropout(model, torch.Generator().manual_seed(subseed), held):
                members.append(fn(model, inputs, fixed, **params))
    return _combine("mc_dropout", members, predictions, groups, method, dict(params, samples=samples, seed=seed))


GAUSSIAN_PARAMETRIZATIONS = ("variance", "log_variance", "std", "log_std", "softplus_std")


class _Column:
    def __init__(self, index: int, transform: str) -> None:
        self.index = index
        self.transform = transform

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 2 or not 0 <= self.index < output.shape[1]:
            raise ModelError("model", f"expected an output [batch, >{self.index}], got {tuple(output.shape)}")
        col = output[:, self.index]
        if self.transform == "mean" or self.transform == "variance":
            return col
        if self.transform == "log_variance":
            return col.exp()
        if self.transform == "std":
            return col.square()
        if self.transform == "log_std":
            return (2 * col).exp()
        softplus: torch.Tensor = nn.functional.softplus(col)
        return softplus.square()

    def __repr__(self) -> str:
        return f"gaussian_{'mean' if self.transform == 'mean' else 'variance'}({self.index}, {self.transform})"


def gaussian_mean(index: int = 0) -> Target:
    """The mean of a Gaussian output head: column ``index``."""
    return _Column(index, "mean")


def gaussian_variance(index: int = 1, parametrization: str = "log_variance") -> Target:
    """The variance of a Gaussian output head whose column ``index`` holds ``parametrization``
    ("variance", "log_variance", "std", "log_std" or "softplus_std")."""
    if parametrization not in GAUSSIAN_PARAMETRIZATIONS:
        raise InputError("parametrization", f"expected one of {GAUSSIAN_PARAMETRIZATIONS}, got {parametrization!r}")
    return _Column(index, parametrization)


@dataclass(frozen=True, repr=False)
class GaussianAttribution(ResultMixin):
    """Separate explanations of a Gaussian prediction's mean and of its variance."""

    mean: Attribution
    variance: Attribution


    AXES = ("example",)

    @property
    def values(self) -> TensorOrDict:
        """The mean head's attribution (``variance.values`` is the variance head's)."""
        return self.mean.values

    @property
    def delta(self) -> torch.Tensor | None:
        return self.mean.delta

    @property
    def relative_error(self) -> torch.Tensor | None:
        """Per example, the larger relative error of the two heads."""
        a, b = self.mean.relative_error, self.variance.relative_error
        return None if a is None or b is None else torch.maximum(a, b)

    @property
    def converged(self) -> torch.Tensor:
        return self.mean.converged.bool() & self.variance.converged.bool()

    @property
    def method(self) -> str:
        return self.mean.method

    @property
    def params(self) -> dict[str, Any]:
        return {"mean": self.mean.params, "variance": self.variance.params}


def explain_gaussian(
    model: Callable[..., Any],
    inputs: Inputs,
    *,
    mean_index: int = 0,
    variance_index: int = 1,
    parametrization: str = "log_variance",
    method: str = "integrated_gradients",
    **params: Any,
) -> GaussianAttribution:
    """Explain a model that predicts a Gaussian: which features move its mean, which its variance."""
    fn = REGISTRY.get(method).fn
    variance = gaussian_variance(variance_index, parametrization)
    return GaussianAttribution(
        mean=fn(model, inputs, gaussian_mean(mean_index), **params),
        variance=fn(model, inputs, variance, **params),
    )


def spread_of(result: UncertainAttribution) -> Mapping[str, float]:
    """Batch-averaged headline numbers: predictive std, attribution std, sign agreement."""
    mean_std = flatten(result.std).mean()
    agree = flatten(result.sign_agreement).mean()
    return {
        "prediction_std": float(result.prediction_std.float().mean()),
        "attribution_std": float(mean_std),
        "sign_agreement": float(agree),
    }
