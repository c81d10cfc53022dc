"""``rule="exact"`` of Integrated Gradients: the finite sum over linear pieces (``integrand.exact``).

Used when asked for (``rule="exact"``: a model that does not qualify is refused naming ``rule``) and
by ``tol=`` when the model qualifies; otherwise ``tol=`` falls back to error control and the
result says why in ``params["exact_fallback"]``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..convergence import DEFAULT_TOL, noise_floor, warn_unconverged, within_tolerance
from ..engine import Engine, chunk_size, probe
from ..errors import InputError, ModelError
from ..exact import MAX_PIECES, exact_paths, nonlinear_target, not_piecewise_linear
from ..inputs import InputSet
from ..integrate import NOISE_ULPS
from ..result import Attribution
from ..targets import TargetSpec, resolve_target

EXACT = "exact"

EXACT_ULPS = 4096
"""The exact sum must reproduce ``f(x) - f(baseline)`` to this many units of rounding of the summed
magnitudes; a larger residual means a kink the hooks did not see (a functional ReLU, say)."""


def exact_integrated_gradients(
    model: Callable[..., Any],
    inputs: InputSet,
    baselines: dict[str, torch.Tensor],
    target: TargetSpec,
    *,
    required: bool,
    piecewise_linear: bool | None,
    tol: float | None,
    atol: float,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
    multiply_by_inputs: bool = True,
    max_pieces: int = MAX_PIECES,
) -> Attribution | str:
    """Exact IG, or (``required=False``) the reason it does not apply, for the caller to fall back.

    ``required=True`` (``rule="exact"``) raises :class:`InputError` naming ``rule`` instead.
    ``piecewise_linear=True`` declares the model (and target) piecewise linear without the module
    walk; the result is then checked: a completeness residual above rounding means a missed kink.
    """

    def refuse(reason: str) -> str:
        if required:
            raise InputError("rule", f"'exact' needs a piecewise-linear model and score: {reason}")
        return reason

    declared = piecewise_linear is True
    reason = None if declared else not_piecewise_linear(model)
    if reason is not None:
        return refuse(reason)
    measured = probe(model, inputs, forward_kwargs)
    resolved = resolve_target(target, measured.output)
    reason = None if declared else nonlinear_target(resolved)
    if reason is not None:
        return refuse(reason)
    chunk = chunk_size(batch_size, memory_budget, measured.bytes_per_point, inputs.device, measured.saved_tensors)
    engine = Engine(model, inputs, resolved, forward_kwargs, chunk)
    example = torch.arange(inputs.batch, device=inputs.device)
    score_input = engine.scores(inputs.tensors, example)
    score_baseline = engine.scores(baselines, example)
    try:
        paths = exact_paths(model, inputs, baselines, resolved, forward_kwargs, chunk, max_pieces)
    except ModelError as exc:
        if required or "linear pieces" not in str(exc):
            raise
        return str(exc)
    diff = inputs.flat() - torch.cat([baselines[n].reshape(inputs.batch, -1) for n in inputs.names], dim=1)
    ig64 = paths.averaged * diff.double()
    flat = ig64.to(inputs.dtype)
    total = score_input - score_baseline
    delta = (total.double() - ig64.sum(dim=1)).to(inputs.dtype)
    magnitude = (score_input.abs() + score_baseline.abs()).double() + ig64.abs().sum(dim=1)
    exact_floor = noise_floor(magnitude, inputs.dtype, EXACT_ULPS)
    missed = (delta.double().abs() > exact_floor).cpu()
    if declared and bool(missed.any()) and not required:
        bad = missed.nonzero()[:, 0].tolist()
        return f"the declared piecewise-linear model has kinks the exact pieces missed (examples {bad})"
    floor = noise_floor(magnitude, inputs.dtype, NOISE_ULPS)
    converged = within_tolerance(delta.detach(), total.detach(), tol, float(atol), floor)
    warn_unconverged(
        "integrated_gradients (exact): examples",
        [i for i, ok in enumerate(converged.tolist()) if not ok],
        tol,
        stacklevel=4,
    )
    values = flat if multiply_by_inputs else paths.averaged.to(inputs.dtype)
    params: dict[str, Any] = {
        "rule": EXACT,
        "steps": None,
        "pieces": paths.pieces.tolist(),
        "piecewise_linear": "declared" if declared else "detected",
        "tol": tol,
        "converged_tol": DEFAULT_TOL if tol is None else tol,
        "max_steps": None,
        "atol": atol,
        "noise_floor_ulps": NOISE_ULPS,
        "multiply_by_inputs": multiply_by_inputs,
        "target": repr(resolved)
        if not callable(target) or isinstance(target, torch.Tensor)
        else getattr(target, "__name__", repr(target)),
    }
    return Attribution(
        values=inputs.public(inputs.unflat(values)),
        inputs=inputs.public(inputs.tensors),
        baseline=inputs.public(baselines),
        score_input=score_input.detach(),
        score_baseline=score_baseline.detach(),
        delta=delta.detach(),
        steps=paths.pieces.clone(),
        converged=converged,
        method="integrated_gradients",
        params=params,
        quadrature_error=torch.zeros(inputs.batch, dtype=torch.float64),  # no quadrature: an exact sum
    )
