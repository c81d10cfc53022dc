"""Max-sensitivity (Yeh et al. 2019): the largest relative change of an explanation under small input noise."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..checks import check_count, check_positive, generator, resolve_seed
from ..inputs import Inputs, as_input_set, call_model
from ..targets import TargetSpec, resolve_target
from ._common import MethodSpec, checked, explainer, flat_values, perturbation_rows


def _per_point_target(model: Callable[..., Any], inputs: Inputs, target: TargetSpec) -> Callable[[torch.Tensor], Any]:
    """The target of each example, for copies of it: class indices are fixed at the unperturbed input."""
    if callable(target) and not isinstance(target, torch.Tensor):
        return lambda example: target
    if isinstance(target, int) and not isinstance(target, bool):
        return lambda example: target
    input_set = as_input_set(inputs)
    with torch.no_grad():
        output = call_model(model, input_set, input_set.tensors, {})
    resolve_target(target, output)  # validates
    if target is None:
        if output.dim() == 1:
            return lambda example: None
        index = output.argmax(dim=1)
    else:
        assert isinstance(target, torch.Tensor)
        index = target.long()
    return lambda example: index[example.to(index.device)]


def sensitivity_max(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    method: MethodSpec = "saliency",
    params: Mapping[str, Any] | None = None,
    radius: float = 0.02,
    n_samples: int = 10,
    perturbations: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``max_d ||E(x + d) - E(x)|| / ||E(x)||`` over ``n_samples`` draws ``d`` per example (lower is better).

    Args:
        method: a registered method name, or a callable ``(model, inputs, target, **params)`` returning an
            ``Attribution`` or values. All perturbed copies are explained in one call.
        params: keyword arguments of the method (e.g. a fixed ``seed`` for stochastic methods).
        radius: half-width of the default uniform noise in the L-infinity ball (Captum's default 0.02).
        perturbations: explicit noise ``d``, ``[n_samples, *input.shape]`` (a mapping per named input).
        seed: seed of the noise; ``None`` draws one from torch's global generator.

    The target of a copy is its example's target; ``None`` means the argmax class at the unperturbed input.
    """
    input_set = as_input_set(inputs)
    n_samples = check_count("n_samples", n_samples)
    x = input_set.flat()
    if perturbations is not None:
        noise = perturbation_rows(perturbations, input_set, n_samples)
    else:
        radius = check_positive("radius", radius, "a radius > 0")
        draws = torch.rand((n_samples, *x.shape), generator=generator(resolve_seed(seed)), dtype=torch.float64)
        noise = ((draws * 2 - 1) * radius).to(x.device, x.dtype)
    run = explainer(method)
    target_of = _per_point_target(model, inputs, target)
    example = torch.arange(input_set.batch, device=x.device)
    base = flat_values(checked(run(model, inputs, target_of(example), **(params or {}))), input_set, "method")
    # Copies are ordered sample-major: row s * batch + b is example b under draw s.
    copies = input_set.unflat((x[None] + noise).reshape(-1, x.shape[1]))
    expanded = as_input_set(input_set.public(copies))
    moved = flat_values(
        checked(run(model, expanded.public(expanded.tensors), target_of(example.repeat(n_samples)), **(params or {}))),
        expanded,
        "method",
    ).reshape(n_samples, input_set.batch, -1)
    norm = base.norm(dim=1)
    norm = torch.where(norm == 0, torch.ones_like(norm), norm)
    ratio: torch.Tensor = ((moved - base[None]).norm(dim=2) / norm[None]).max(dim=0).values
    return ratio
