"""Choose an explanation: run the candidate methods and rank them by faithfulness on one neighbourhood.

Han, Srinivas & Lakkaraju (2022) show there is no single best method: each method is the optimal
local linear model of its own neighbourhood and loss. So the user names the neighbourhood they care
about (small Gaussian noise, masking to a baseline, coalitions, ...) and ``recommend`` scores each
method's explanation by the LFA loss on fresh draws of it, relative to explaining nothing (the zero
explanation), plus the top-k / bottom-k prediction gaps under the matching perturbation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from html import escape
from typing import Any, Callable, Mapping, Sequence, cast

import torch

from .errors import IntegrandError
from .inputs import Inputs, as_input_set, call_model
from .lfa import KINDS, Kind, Loss, loss_of
from .methods import REGISTRY
from .metrics.faithfulness import top_k_faithfulness
from .neighbourhoods import (
    BernoulliMasks,
    Gaussian,
    LeaveOneOut,
    Neighbourhood,
    Point,
    ShapleyCoalitions,
    StraightPath,
    Uniform,
)
from .protocol import NoCompleteness
from .result import Attribution
from .targets import TargetSpec, resolve_target

GRADIENT_LIKE = frozenset(
    {"saliency", "smoothgrad", "smoothgrad_sq", "vargrad", "c_lime", "guided_backprop", "deconvnet"}
)
"""Methods whose values are d f / d x rather than shares of f(x) - f(baseline)."""

OWN_NEIGHBOURHOOD: dict[str, type] = {
    "saliency": Point,
    "smoothgrad": Gaussian,
    "c_lime": Gaussian,
    "integrated_gradients": StraightPath,
    "lime": BernoulliMasks,
    "kernel_shap": ShapleyCoalitions,
    "feature_ablation": LeaveOneOut,
    "occlusion": LeaveOneOut,
}
"""The neighbourhood each method fits; such a method gets the evaluation neighbourhood's settings."""

_ALIASES: dict[str, tuple[str, ...]] = {
    "sigma": ("sigma", "stdev"),
    "n_samples": ("n_samples", "samples"),
    "steps": ("steps",),
    "rule": ("rule",),
    "p": ("p",),
    "kernel_width": ("kernel_width",),
}


@dataclass(frozen=True)
class Candidate:
    """One method's scores; ``relative_loss`` is its LFA loss over the zero explanation's (mean over examples)."""

    method: str
    relative_loss: float
    loss: float
    top_gap: float
    bottom_gap: float
    seconds: float
    params: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True, repr=False)
class Recommendation(NoCompleteness):
    """Candidates ranked best first (lowest relative LFA loss); failed methods last with their error."""

    neighbourhood: Neighbourhood
    loss: str
    candidates: tuple[Candidate, ...]

    AXES = ("method",)

    @property
    def values(self) -> torch.Tensor:
        """Relative LFA loss per candidate, best first (NaN for a failed method)."""
        return torch.tensor([c.relative_loss if c.error is None else math.nan for c in self.candidates])

    @property
    def params(self) -> dict[str, Any]:
        return {"neighbourhood": repr(self.neighbourhood), "loss": self.loss}

    @property
    def method(self) -> str:
        return "recommend"

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"method": [c.method for c in self.candidates]}

    def summary(self) -> str:
        return self.to_text()

    @property
    def best(self) -> str:
        ok = [c for c in self.candidates if c.error is None]
        if not ok:
            raise IntegrandError("no candidate method succeeded")
        return ok[0].method

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "rank": i + 1 if c.error is None else "-",
                "method": c.method,
                "relative LFA loss": c.relative_loss,
                "top-k gap": c.top_gap,
                "bottom-k gap": c.bottom_gap,
                "seconds": c.seconds,
                "note": c.error or "",
            }
            for i, c in enumerate(self.candidates)
        ]

    def to_text(self) -> str:
        head = f"{'rank':>4}  {'method':<22}{'rel. LFA loss':>14}{'top-k gap':>12}{'bottom-k gap':>14}{'seconds':>9}"
        lines = [f"neighbourhood: {self.neighbourhood!r}, loss: {self.loss}", head]
        for row in self.table():
            if row["note"]:
                lines.append(f"{'-':>4}  {row['method']:<22}failed: {row['note']}")
                continue
            lines.append(
                f"{row['rank']:>4}  {row['method']:<22}{row['relative LFA loss']:>14.4g}{row['top-k gap']:>12.4g}"
                f"{row['bottom-k gap']:>14.4g}{row['seconds']:>9.2f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def to_html(self) -> str:
        from .viz.html import STYLE, table

        rows = [
            [r["rank"], r["method"], *(f"{r[k]:.4g}" if math.isfinite(r[k]) else "" for k in
             ("relative LFA loss", "top-k gap", "bottom-k gap")), f"{r['seconds']:.2f}", r["note"]]
            for r in self.table()
        ]
        headers = ["rank", "method", "relative LFA loss", "top-k gap", "bottom-k gap", "seconds", "note"]
        caption = f"<p>neighbourhood {escape(repr(self.neighbourhood))}, {escape(self.loss)} loss; lower is better</p>"
        return STYLE + caption + table(headers, rows)

    def _repr_html_(self) -> str:
        return self.to_html()


def matched_params(method: str, accepted: Mapping[str, Any], neighbourhood: Neighbourhood, seed: int) -> dict[str, Any]:
    """Keyword arguments that align a method with the evaluation neighbourhood.

    Every method gets ``seed`` and the neighbourhood's ``baseline``/``feature_mask`` when it takes them; a
    method whose own neighbourhood has the same type also gets its width, sample count and kernel.
    """
    out: dict[str, Any] = {}
    if "seed" in accepted:
        out["seed"] = seed
    fields = {f.name: getattr(neighbourhood, f.name) for f in dataclasses.fields(neighbourhood)}
    for name in ("baseline", "feature_mask"):
        if name in accepted and name in fields:
            out[name] = fields[name]
    if OWN_NEIGHBOURHOOD.get(method) is type(neighbourhood):
        for field, names in _ALIASES.items():
            for name in names:
                if field in fields and name in accepted:
                    out[name] = fields[field]
    return out


def recommend(
    model: Callable[..., Any],
    x: Inputs,
    neighbourhood: Neighbourhood,
    target: TargetSpec = None,
    *,
    methods: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    loss: Loss = "squared",
    k: int | float = 0.25,
    seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Recommendation:
    """Rank ``methods`` (default: every registered method) by faithfulness on ``neighbourhood``.

    Args:
        neighbourhood: where the explanation should hold (see ``integrand.neighbourhoods``).
        target: fixed once at ``x`` (``None``: the argmax class) so every method explains the same score.
        params: per-method keyword arguments; they override the matched ones (see ``matched_params``).
        loss: "squared" (predict f on the neighbourhood) or "gradient" (match its gradients).
        k: features changed by the top-k / bottom-k gaps (binary to the baseline for mask
            neighbourhoods, Gaussian / uniform-width noise for additive ones; none for ``Point()``).
        seed: methods run with ``seed``; the loss is measured on held-out draws with ``seed + 1``.

    Methods that fail on this model (missing required arguments, unsupported inputs) are listed
    last with the error message instead of stopping the ranking.
    """
    input_set = as_input_set(x, "x")
    names = list(REGISTRY.names() if methods is None else methods)
    for name in names:
        REGISTRY.get(name)
    with torch.no_grad():
        output = call_model(model, input_set, input_set.tensors, dict(forward_kwargs or {}))
    resolve_target(target, output)
    fixed: TargetSpec = output.argmax(dim=1) if target is None and output.dim() == 2 else target
    eval_seed = seed + 1
    zero = {n: torch.zeros_like(v) for n, v in input_set.tensors.items()}
    floor = loss_of(
        model, x, input_set.public(zero), neighbourhood, loss, fixed, seed=eval_seed, forward_kwargs=forward_kwargs
    )
    floor = floor.double().clamp_min(torch.finfo(torch.float64).tiny)
    gap_mode, gap_kw = _gap_settings(neighbourhood)
    rows: list[Candidate] = []
    for name in names:
        info = REGISTRY.get(name)
        kwargs = {**matched_params(name, info.params, neighbourhood, seed), **dict((params or {}).get(name, {}))}
        if "forward_kwargs" in info.params and forward_kwargs is not None:
            kwargs["forward_kwargs"] = forward_kwargs
        start = time.perf_counter()
        try:
            result = info.fn(model, x, fixed, **kwargs)
            seconds = time.perf_counter() - start
            kind = _kind(name, result)
            value = loss_of(
                model, x, result, neighbourhood, loss, fixed, kind=kind, seed=eval_seed, forward_kwargs=forward_kwargs
            )
            gaps = None if gap_mode == "none" else top_k_faithfulness(
                model, x, result, fixed, k=k, mode=gap_mode, seed=eval_seed, forward_kwargs=forward_kwargs, **gap_kw
            )
        except (IntegrandError, TypeError, ValueError, RuntimeError) as exc:
            note = f"{type(exc).__name__}: {exc}"
            rows.append(Candidate(name, math.inf, math.inf, math.nan, math.nan, 0.0, kwargs, note))
            continue
        rows.append(
            Candidate(
                method=name,
                relative_loss=float((value.double() / floor).mean()),
                loss=float(value.double().mean()),
                top_gap=math.nan if gaps is None else float(gaps.top.double().mean()),
                bottom_gap=math.nan if gaps is None else float(gaps.bottom.double().mean()),
                seconds=seconds,
                params={k2: v for k2, v in kwargs.items() if not isinstance(v, torch.Tensor)},
            )
        )
    rows.sort(key=lambda c: (c.error is not None, c.relative_loss))
    return Recommendation(neighbourhood=neighbourhood, loss=loss, candidates=tuple(rows))


def _kind(name: str, result: Attribution) -> Kind:
    declared = result.params.get("explains") if isinstance(result, Attribution) else None
    if declared in KINDS:
        return cast(Kind, declared)
    return "gradient" if name in GRADIENT_LIKE else "attribution"


def _gap_settings(neighbourhood: Neighbourhood) -> tuple[str, dict[str, Any]]:
    if isinstance(neighbourhood, Gaussian):
        return "gaussian", {"sigma": neighbourhood.sigma}
    if isinstance(neighbourhood, Uniform):
        return "gaussian", {"sigma": neighbourhood.radius / math.sqrt(3.0)}
    if isinstance(neighbourhood, Point):
        return "none", {}
    return "binary", {"baseline": getattr(neighbourhood, "baseline", "zeros")}


__all__ = ["Candidate", "GRADIENT_LIKE", "OWN_NEIGHBOURHOOD", "Recommendation", "matched_params", "recommend"]
