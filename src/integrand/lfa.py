"""Local function approximation: fit the linear model an attribution method implicitly fits.

``fit(model, x, neighbourhood, loss)`` draws the neighbourhood's coordinates ``xi`` around each
example and fits ``g(xi) = c + a . xi`` explicitly:

* ``loss="squared"``: weighted least squares on function values ``f(point(xi))``
  (LIME, C-LIME, KernelSHAP, occlusion / feature ablation);
* ``loss="gradient"``: gradient matching ``sum w ||grad_xi f(point(xi)) - a||^2``, whose minimiser is the
  weighted mean gradient (saliency, SmoothGrad, input x gradient, Integrated Gradients).

``loss_of`` scores any explanation on a neighbourhood with the same losses (held-out draws), which is
the faithfulness measure that matches the neighbourhood (Han, Srinivas & Lakkaraju 2022).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Union

import torch

from .baselines import make_baselines
from .checks import generator, resolve_seed
from .errors import InputError
from .inputs import Inputs, InputSet, as_input_set
from .methods.perturb import FeatureGroups, Scorer, feature_groups, flat_baseline, weighted_fit
from .neighbourhoods import NEIGHBOURHOODS, Neighbourhood, Point, Sample
from .result import Attribution
from .targets import TargetSpec

Loss = Literal["squared", "gradient"]
LOSSES: tuple[str, ...] = ("squared", "gradient")
Kind = Literal["gradient", "attribution", "group"]
KINDS: tuple[str, ...] = ("gradient", "attribution", "group")
TensorOrDict = Union[torch.Tensor, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class LocalFit:
    """The fitted local linear model of each example.

    ``coefficients`` has the input's shape (every element of a group carries the group's coefficient);
    ``group_coefficients[b]`` are example ``b``'s coefficients per interpretable feature. ``loss`` is the
    weighted mean loss at the optimum on the fitted draws (finite-weight draws only).
    ``completeness`` is ``f(x) - f(baseline) - sum(group_coefficients)`` for mask neighbourhoods.
    """

    coefficients: TensorOrDict
    inputs: TensorOrDict
    group_coefficients: tuple[torch.Tensor, ...]
    intercept: torch.Tensor
    loss: torch.Tensor
    score_input: torch.Tensor
    score_baseline: torch.Tensor | None
    baseline: TensorOrDict | None
    completeness: torch.Tensor | None
    neighbourhood: Neighbourhood
    loss_name: str
    seed: int
    evaluations: int

    def to_attribution(self, method: str, params: Mapping[str, Any], *, completeness: bool = False) -> Attribution:
        """The fit as an ``Attribution`` (``delta`` is the completeness error only if ``completeness``)."""
        batch = int(self.score_input.shape[0])
        n = self.evaluations // max(1, batch)
        return Attribution(
            values=self.coefficients,
            inputs=self.inputs,
            baseline=self.baseline,
            score_input=self.score_input,
            score_baseline=self.score_baseline,
            delta=self.completeness if completeness else None,
            steps=torch.full((batch,), n),
            converged=torch.ones(batch, dtype=torch.bool),
            method=method,
            params={**params, "seed": self.seed},
        )


class _Setup:
    """Everything ``fit`` and ``loss_of`` share: validated inputs, baselines, groups, a scorer."""

    def __init__(
        self,
        model: Callable[..., Any],
        x: Inputs,
        neighbourhood: Neighbourhood,
        loss: str,
        target: TargetSpec,
        forward_kwargs: Mapping[str, Any] | None,
        batch_size: int | None,
        memory_budget: int | None,
    ) -> None:
        if not isinstance(neighbourhood, NEIGHBOURHOODS):
            names = ", ".join(c.__name__ for c in NEIGHBOURHOODS)
            raise InputError("neighbourhood", f"expected one of {names}, got {type(neighbourhood).__name__}")
        if loss not in LOSSES:
            raise InputError("loss", f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        if loss == "squared" and isinstance(neighbourhood, Point):
            raise InputError(
                "loss", "the squared loss needs a neighbourhood with spread; Point() supports loss='gradient'"
            )
        self.inputs: InputSet = as_input_set(x, "x")
        self.neighbourhood = neighbourhood
        self.loss = loss
        self.additive = bool(neighbourhood.additive)
        if self.additive:
            self.baselines: dict[str, torch.Tensor] | None = None
            self.groups: FeatureGroups = feature_groups(self.inputs, None)
        else:
            self.baselines = make_baselines(self.inputs, getattr(neighbourhood, "baseline", "zeros"))
            self.groups = feature_groups(self.inputs, getattr(neighbourhood, "feature_mask", None))
        self.scorer = Scorer(model, self.inputs, target, forward_kwargs, batch_size, memory_budget)
        self.x = self.inputs.flat()
        self.b = None if self.baselines is None else flat_baseline(self.inputs, self.baselines)

    def draws(self, seed: int) -> list[Sample]:
        # Every example sees the same random stream, so a batch of one equals the batched result.
        return [self.neighbourhood.sample(self.groups.counts[e], generator(seed)) for e in range(self.inputs.batch)]

    def points(self, e: int, xi: torch.Tensor) -> torch.Tensor:
        full = self.groups.expand(xi.to(self.x.device), e).to(self.x.dtype)
        if self.b is None:
            return self.x[e] + full
        return full * self.x[e] + (1 - full) * self.b[e]

    def evaluate(self, draws: list[Sample]) -> list[torch.Tensor]:
        """Per example: scores ``[n]`` (squared loss) or gradients in ``xi`` coordinates ``[n, d]`` (gradient loss)."""
        sizes = [s.xi.shape[0] for s in draws]
        owner = torch.repeat_interleave(torch.arange(len(draws)), torch.tensor(sizes))
        local = torch.cat([torch.arange(n) for n in sizes])
        device = self.x.device
        out: list[list[torch.Tensor]] = [[] for _ in draws]
        for start in range(0, len(owner), self.scorer.chunk):
            ex, rows = owner[start : start + self.scorer.chunk], local[start : start + self.scorer.chunk]
            present = sorted(set(ex.tolist()))
            pts = torch.cat([self.points(e, draws[e].xi[rows[ex == e]]) for e in present])
            example = ex.to(device)
            if self.loss == "squared":
                values = self.scorer.rows(pts, example)
                for e in present:
                    out[e].append(values[(ex == e).to(device)].double().cpu())
                continue
            block = self.scorer.engine.gradients(self.inputs.unflat(pts), example)
            grad = torch.cat([g.reshape(g.shape[0], -1) for g in block.grads.values()], dim=1)
            self.scorer.evaluations += grad.shape[0]
            for e in present:
                g = grad[(ex == e).to(device)]
                if self.b is not None:
                    g = g * (self.x[e] - self.b[e])
                out[e].append(self.groups.reduce(g, e).double().cpu())
        return [torch.cat(parts) for parts in out]

    def unflat_groups(self, coefs: list[torch.Tensor]) -> TensorOrDict:
        flat = torch.stack([c.to(self.x.dtype).to(self.x.device)[self.groups.ids[e]] for e, c in enumerate(coefs)])
        return self.inputs.public(self.inputs.unflat(flat))


def fit(
    model: Callable[..., Any],
    x: Inputs,
    neighbourhood: Neighbourhood,
    loss: Loss = "squared",
    target: TargetSpec = None,
    *,
    ridge: float = 0.0,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> LocalFit:
    """Fit ``g(xi) = c + a . xi`` to the model on ``neighbourhood`` around each example of ``x``.

    Args:
        neighbourhood: ``Point``, ``Gaussian``, ``Uniform``, ``StraightPath``, ``BernoulliMasks``,
            ``ShapleyCoalitions`` or ``LeaveOneOut`` (see ``integrand.neighbourhoods``).
        loss: "squared" (function values) or "gradient" (gradient matching).
        ridge: L2 penalty on ``a`` (squared loss only).
        seed: seed of the neighbourhood draws; ``None`` draws one from torch's global generator
            (recorded in ``LocalFit.seed``). Equal seeds give bit-identical fits.
    """
    setup = _Setup(model, x, neighbourhood, loss, target, forward_kwargs, batch_size, memory_budget)
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge >= 0:
        raise InputError("ridge", f"expected a number >= 0, got {ridge!r}")
    if ridge and loss == "gradient":
        raise InputError("ridge", "ridge applies to the squared loss only")
    used = resolve_seed(seed)
    draws = setup.draws(used)
    if loss == "gradient" and any(not bool(torch.isfinite(s.weights).all()) for s in draws):
        raise InputError("loss", "the gradient-matching loss needs finite weights; use loss='squared' here")
    values = setup.evaluate(draws)
    coefs, intercepts, losses = [], [], []
    for s, v in zip(draws, values):
        if loss == "squared":
            a, c = weighted_fit(s.xi, v, s.weights, float(ridge))
            losses.append(_squared(s, v, a, c))
        else:
            w = s.weights / s.weights.sum()
            a = (w[:, None] * v).sum(dim=0)
            c = torch.zeros((), dtype=torch.float64)
            losses.append((w * ((v - a) ** 2).sum(dim=1)).sum())
        coefs.append(a)
        intercepts.append(c)
    score_input, score_baseline = _endpoints(setup)
    completeness = None
    if score_baseline is not None:
        sums = torch.stack([a.sum() for a in coefs]).to(score_input.dtype).to(score_input.device)
        completeness = score_input - score_baseline - sums
    return LocalFit(
        coefficients=setup.unflat_groups(coefs),
        inputs=setup.inputs.public(setup.inputs.tensors),
        group_coefficients=tuple(coefs),
        intercept=torch.stack(intercepts),
        loss=torch.stack(losses),
        score_input=score_input,
        score_baseline=score_baseline,
        baseline=None if setup.baselines is None else setup.inputs.public(setup.baselines),
        completeness=completeness,
        neighbourhood=neighbourhood,
        loss_name=loss,
        seed=used,
        evaluations=setup.scorer.evaluations,
    )


def _endpoints(setup: _Setup) -> tuple[torch.Tensor, torch.Tensor | None]:
    if setup.baselines is None:
        example = torch.arange(setup.inputs.batch, device=setup.x.device)
        return setup.scorer.rows(setup.x, example), None
    return setup.scorer.inputs_and(setup.baselines)


def _squared(s: Sample, y: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(s.weights)
    w = s.weights[finite]
    r = y[finite] - c - s.xi[finite] @ a
    return (w * r**2).sum() / w.sum().clamp_min(torch.finfo(torch.float64).tiny)


def coordinates(
    explanation: TensorOrDict | Attribution,
    inputs: InputSet,
    groups: FeatureGroups,
    baseline_flat: torch.Tensor | None,
    kind: str,
) -> list[torch.Tensor]:
    """An explanation as coefficients of ``g`` in a neighbourhood's coordinates, per example.

    ``kind`` says what the values are: "gradient" (d f / d x, e.g. saliency, SmoothGrad, C-LIME),
    "attribution" (a share of ``f(x) - f(b)`` per element, e.g. IG, occlusion) or "group" (every element
    of a group carries the group's share, as LIME / KernelSHAP with a feature mask return).
    Mask coordinates need attribution-like values: gradients are multiplied by ``x - b``; additive
    coordinates need gradient-like values: attributions are divided by ``x - b`` (0 where ``x = b``).
    """
    if kind not in KINDS:
        raise InputError("kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    values = explanation.values if isinstance(explanation, Attribution) else explanation
    ref = explanation.baseline if isinstance(explanation, Attribution) else None
    tensors = values if isinstance(values, dict) else {"input": values}
    if list(tensors) != list(inputs.names) and not (not inputs.named and len(tensors) == 1):
        raise InputError("explanation", f"expected values for inputs {list(inputs.names)}, got {list(tensors)}")
    flat = torch.cat([v.reshape(inputs.batch, -1) for v in tensors.values()], dim=1).detach()
    if flat.shape != (inputs.batch, sum(inputs.sizes())):
        raise InputError(
            "explanation", f"expected {sum(inputs.sizes())} values per example, got shape {tuple(flat.shape)}"
        )
    flat = flat.to(inputs.device).double()
    x = inputs.flat().double()
    if ref is not None:
        refs = ref if isinstance(ref, dict) else {n: ref for n in inputs.names}
        b = torch.cat([refs[n].reshape(inputs.batch, -1) for n in inputs.names], dim=1).to(x)
    else:
        b = baseline_flat.double() if baseline_flat is not None else torch.zeros_like(x)
    out = []
    for e in range(inputs.batch):
        v = flat[e]
        if kind == "group":
            sizes = torch.bincount(groups.ids[e], minlength=groups.counts[e]).double()
            v = v / sizes[groups.ids[e]]
            kind_e = "attribution"
        else:
            kind_e = kind
        if baseline_flat is None:
            if kind_e == "attribution":
                diff = x[e] - b[e]
                v = torch.where(diff != 0, v / torch.where(diff != 0, diff, torch.ones_like(diff)), torch.zeros_like(v))
        else:
            if kind_e == "gradient":
                v = v * (x[e] - baseline_flat[e].double())
            v = groups.reduce(v[None], e)[0]
        out.append(v.cpu())
    return out


def loss_of(
    model: Callable[..., Any],
    x: Inputs,
    explanation: TensorOrDict | Attribution,
    neighbourhood: Neighbourhood,
    loss: Loss = "squared",
    target: TargetSpec = None,
    *,
    kind: Kind = "attribution",
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The LFA loss of a given explanation on ``neighbourhood``: one number per example (lower is better).

    Squared loss: weighted mean of ``(f(point(xi)) - c - a . xi)^2`` with the best intercept ``c``
    (finite-weight draws only); gradient loss: weighted mean of ``||grad_xi f - a||^2``. Use a seed
    other than the one the explanation was fitted with to measure it on held-out draws.
    """
    setup = _Setup(model, x, neighbourhood, loss, target, forward_kwargs, batch_size, memory_budget)
    coefs = coordinates(explanation, setup.inputs, setup.groups, setup.b, kind)
    draws = setup.draws(resolve_seed(seed))
    values = setup.evaluate(draws)
    out = []
    for s, v, a in zip(draws, values, coefs):
        if loss == "squared":
            finite = torch.isfinite(s.weights)
            w = s.weights[finite]
            c = (w * (v[finite] - s.xi[finite] @ a)).sum() / w.sum()
            out.append(_squared(s, v, a, c))
        else:
            w = s.weights / s.weights.sum()
            out.append((w * ((v - a) ** 2).sum(dim=1)).sum())
    return torch.stack(out)


__all__ = ["KINDS", "LOSSES", "LocalFit", "coordinates", "fit", "loss_of"]
