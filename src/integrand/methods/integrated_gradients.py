"""Integrated Gradients (Sundararajan et al. 2017) with exact rules and error control."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, Mapping, Sequence

import torch

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_model
from ..convergence import DEFAULT_TOL, warn_unconverged
from ..defaults import ARRAY_API, IG_STEPS
from ..engine import Engine, Probe, chunk_size, probe
from ..errors import ConvergenceWarning, InputError, caller_stacklevel
from ..inputs import Inputs, InputSet, as_input_set
from ..integrate import NOISE_ULPS, adaptive, fixed, judge_fixed
from ..integration import DEFAULT_MAX_STEPS, EXACT, Integration
from ..layers import ALL
from ..progress import bar as progress_bar
from ..quadrature import make_rule
from ..result import Attribution
from ..targets import Target, TargetSpec, resolve_target
from .gradient_support import baseline_setting, target_setting

DEFAULT_STEPS = IG_STEPS
EXACT_BELOW_TOL = 5e-5
"""``tol=`` uses exact IG on a detected piecewise-linear model below this tolerance.

The exact sum's cost does not depend on ``tol``; error control's grows faster than ``1/tol`` across
kinks. Digits ReLU CNN, 32 digits, one thread (bench/exact_ig.py): exact 3.0 s; error control 0.48 s
at 1e-3, 1.8 s at 1e-4, 22 s at 1e-5."""
__all__ = ["DEFAULT_MAX_STEPS", "DEFAULT_STEPS", "integrate_path", "integrated_gradients"]


def integrate_path(
    model: Callable[..., Any],
    inputs: InputSet,
    baselines: dict[str, torch.Tensor],
    target: TargetSpec,
    *,
    integration: Integration | None = None,
    steps: int | None = None,
    rule: str | None = None,
    tol: float | None = None,
    max_steps: int | None = None,
    atol: float | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None,
    method: str = "integrated_gradients",
    extra_params: Mapping[str, Any] | None = None,
    output_at_input: torch.Tensor | None = None,
    multiply_by_inputs: bool = True,
) -> Attribution:
    """Straight-line IG of ``model`` from ``baselines`` to ``inputs`` (shared by input and layer IG).

    ``integration``, or the shorthand keywords over ``defaults.ARRAY_API`` (not both).

    ``output_at_input``: the model's output at ``inputs`` when the caller has it already (layer
    IG records it); it replaces a forward pass, and the memory probe too when ``batch_size`` is given.
    ``multiply_by_inputs=False``: ``values`` are the path-averaged gradients (completeness is still
    judged on their product with ``inputs - baselines``).
    """
    config = Integration.from_kwargs(
        integration, default=ARRAY_API, steps=steps, rule=rule, tol=tol, max_steps=max_steps, atol=atol,
        batch_size=batch_size, memory_budget=memory_budget,
    )  # fmt: skip
    if config.rule == EXACT:
        raise InputError("rule", "'exact' applies to input attributions (integrated_gradients without layer=)")
    steps, rule, tol, max_steps, atol = config.steps, config.rule, config.tol, config.max_steps, config.atol
    batch_size, memory_budget = config.batch_size, config.memory_budget
    if not multiply_by_inputs and tol is not None:
        raise InputError(
            "multiply_by_inputs",
            "False needs a fixed rule (steps=): error control refines gradient x (input - baseline); "
            "or divide result.values by (inputs - baseline) where it is non-zero",
        )
    rule_obj = make_rule(rule, DEFAULT_STEPS if steps is None else steps) if tol is None else None
    if output_at_input is not None and batch_size is not None:
        measured = Probe(output=output_at_input.detach(), bytes_per_point=1)
    else:
        measured = probe(model, inputs, forward_kwargs)
    resolved: Target = resolve_target(target, measured.output)
    chunk = chunk_size(batch_size, memory_budget, measured.bytes_per_point, inputs.device, measured.saved_tensors)
    engine = Engine(model, inputs, resolved, forward_kwargs, chunk)
    example = torch.arange(inputs.batch, device=inputs.device)
    if output_at_input is None:
        score_input = engine.scores(inputs.tensors, example)
    else:
        score_input = engine._score(output_at_input.detach(), example)
    score_baseline = engine.scores(baselines, example)
    diff = inputs.flat() - torch.cat([baselines[n].reshape(inputs.batch, -1) for n in inputs.names], dim=1)
    total = score_input - score_baseline
    quadrature_error: torch.Tensor | None = None
    if rule_obj is not None:
        # The weighted gradients, multiplied by (input - baseline) once at the end.
        with progress_bar(f"{method}: points", inputs.batch * rule_obj.steps) as bar:
            averaged = fixed(engine.along(baselines, None), inputs.batch, rule_obj, chunk, inputs.device, bar)[:, 0]
        flat = averaged * diff
        step_count = torch.full((inputs.batch,), rule_obj.steps)
        magnitude = score_input.abs() + score_baseline.abs() + flat.abs().sum(dim=1)
        converged = judge_fixed(total - flat.sum(dim=1), total, magnitude, atol)
        warn_unconverged(
            f"{method}: examples", [i for i, ok in enumerate(converged.tolist()) if not ok], None, stacklevel=4
        )
        rule_name = rule
    else:
        assert tol is not None
        with progress_bar(f"{method} to tol {tol:g}: points", None) as bar:
            outcome = adaptive(
                engine.along(baselines, diff),
                total[:, None],
                tol=float(tol),
                atol=float(atol),
                max_steps=max_steps,
                chunk=chunk,
                bar=bar,
                unit="examples",
            )
        flat = averaged = outcome.values[:, 0]
        step_count, converged = outcome.steps, outcome.converged[:, 0]
        quadrature_error, rule_name = outcome.quadrature_error[:, 0], outcome.rule()
        if not bool(converged.all()):
            bad = [i for i, ok in enumerate(converged.tolist()) if not ok]
            warnings.warn(
                f"{method}: examples {bad} did not reach tol={tol} within max_steps={max_steps}; "
                "see result.converged and result.relative_error",
                ConvergenceWarning,
                stacklevel=caller_stacklevel(),
            )
    values = inputs.unflat(flat if multiply_by_inputs else averaged)
    params: dict[str, Any] = {
        "rule": rule_name,
        "steps": steps if rule_obj is not None else None,
        "tol": tol,
        "converged_tol": DEFAULT_TOL if tol is None else tol,
        "max_steps": max_steps if tol is not None else None,
        "atol": atol,
        "noise_floor_ulps": NOISE_ULPS,
        "integration": config.as_params(),
        "multiply_by_inputs": multiply_by_inputs,
        "target": repr(resolved)
        if not callable(target) or isinstance(target, torch.Tensor)
        else getattr(target, "__name__", repr(target)),
    }
    params.update(extra_params or {})
    return Attribution(
        values=inputs.public(values),
        inputs=inputs.public(inputs.tensors),
        baseline=inputs.public(baselines),
        score_input=score_input.detach(),
        score_baseline=score_baseline.detach(),
        delta=(total - flat.sum(dim=1)).detach(),
        steps=step_count,
        converged=converged,
        method=method,
        params=params,
        quadrature_error=quadrature_error,
    )


def _records_settings(fn: Callable[..., Attribution]) -> Callable[..., Attribution]:
    """Record the baseline as asked for (``params["baseline"]``, and ``"input_baseline"`` with layers),
    per-example target classes (``"target_index"``) and the method in every result of ``fn``, whichever
    of its paths produced it."""

    @functools.wraps(fn)
    def recorded(*args: Any, **kwargs: Any) -> Attribution:
        result = fn(*args, **kwargs)
        settings: dict[str, Any] = {"method": result.method, "baseline": baseline_setting(kwargs.get("baseline"))}
        target = kwargs.get("target", args[2] if len(args) > 2 else None)
        if isinstance(target, torch.Tensor):
            settings["target_index"] = target_setting(target)
        if kwargs.get("input_baseline") is not None:
            settings["input_baseline"] = baseline_setting(kwargs["input_baseline"])
        return dataclasses.replace(result, params={**settings, **result.params})

    return recorded


@_records_settings
def integrated_gradients(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    baseline: BaselineSpec = None,
    integration: Integration | None = None,
    steps: int | None = None,
    rule: str | None = None,
    tol: float | None = None,
    max_steps: int | None = None,
    atol: float | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    layer: torch.nn.Module | str | Sequence[torch.nn.Module | str] | None = None,
    layer_side: str = "output",
    layer_output_index: int | str | None = None,
    neuron: Any = None,
    input_baseline: Any = None,
    reuse: bool = True,
    multiply_by_inputs: bool = True,
    piecewise_linear: bool | None = None,
) -> Attribution:
    """Integrated Gradients of ``target(model(inputs))`` along the straight line from ``baseline``.

    Args:
        model: an ``nn.Module`` or callable from the input(s) to an output with the batch dim first.
        inputs: a float tensor, or a mapping of named float tensors passed as keyword arguments.
        target: int class, LongTensor[batch], callable ``output -> Tensor[batch]``, or None
            (the output itself for 1-D outputs, the argmax class at the input for 2-D).
        baseline: "zeros" (default), a number, a tensor broadcastable to the input, a callable,
            "blur", "uniform", or a mapping of these per named input. With ``layer=`` (and no
            ``neuron=``) it is in the layer's activation space.
        integration: how the path integral is computed (``integrand.integration.Integration``);
            the keywords ``steps`` to ``memory_budget`` below are shorthand for its fields, filled
            from ``defaults.ARRAY_API`` (50 Gauss-Legendre points); giving both is an InputError.
        steps: points of the fixed rule (default 50, at most ``quadrature.MAX_STEPS`` = 100,000);
            excludes ``tol``.
        rule: "gauss-legendre" (default), "left", "right", "middle" or "trapezoid"; or "exact" for
            piecewise-linear models (ReLU/max-pool networks): the finite sum over the path's linear
            pieces (``params["pieces"]``); with ``tol=`` and ``piecewise_linear=True`` too
            (``params["exact_fallback"]`` says why not). docs/methods.md, "Exact IG".
        tol: error-controlled mode: refine each example until its relative completeness error
            and its per-feature quadrature error estimate are at most ``tol``.
        max_steps: the most gradient evaluations per example in error-controlled mode (and the
            most linear pieces before ``tol=`` leaves exact IG for error control); default 4,097.
        atol: absolute slack added to ``tol * |f(x) - f(baseline)|`` (for examples where it is ~0).
        batch_size: integration points per forward/backward pass.
        memory_budget: bytes for one pass when ``batch_size`` is not given (default: a quarter of
            the memory available now).
        forward_kwargs: extra model arguments; tensors whose first dim is the batch follow each point.
        seed: seed of the "uniform" baseline.
        layer: attribute to this module's tensor instead of the inputs (a module of ``model``
            or its dotted name); inputs may then be integer (token ids). The part of the model
            below the layer runs once per example, not once per point (docs/layers.md). A list
            of layers is attributed jointly: all their tensors move along one straight line
            (the same α) from their baselines, and ``values`` maps each layer name to its
            attribution. The layers must not feed each other (checked).
        layer_side: "output" (default) or "input" of the layer.
        layer_output_index: the element of a tuple/mapping/ModelOutput output (with
            ``layer_side="input"``: the positional index or keyword name of the argument);
            ``"all"``: every floating-point tensor element at once, jointly as for a list of
            layers, keyed ``"name[element]"`` in ``values``.
        neuron: neuron IG: attribute the inputs' contribution to units of the layer's tensor
            (an int flat index, a tuple of ints/slices per non-batch dim (selected units are
            summed), or a callable ``activation -> Tensor[batch]``); ``target`` must be None.
        input_baseline: with ``layer=``, a baseline in input space (e.g. a pad token id, or a
            mapping per named input; names left out keep their input); its activation at the
            layer is the path's start. Excludes ``baseline``.
        reuse: replay the frozen part below the layer instead of recomputing it at every point
            (falls back to recomputation by itself when replay does not reproduce the model).
        multiply_by_inputs: False returns the path-averaged gradient instead (not multiplied by
            ``x - baseline``, Captum's "local" attribution; needs a fixed rule). ``delta`` and
            ``converged`` still judge the completeness of ``values * (x - baseline)``.
        piecewise_linear: None (default): ``rule="exact"`` detects an ``nn.Sequential`` tree of
            piecewise-linear modules, and so does ``tol=`` below ``EXACT_BELOW_TOL`` (5e-5; above it
            error control is the faster); True declares the model so (checked by completeness) and
            makes every ``tol=`` use the exact sum; False never uses it.
    """
    check_model(model)
    if piecewise_linear is not None and not isinstance(piecewise_linear, bool):
        raise InputError("piecewise_linear", f"expected None, True or False, got {piecewise_linear!r}")
    config = Integration.from_kwargs(
        integration, default=ARRAY_API, steps=steps, rule=rule, tol=tol, max_steps=max_steps, atol=atol,
        batch_size=batch_size, memory_budget=memory_budget,
    )  # fmt: skip
    if config.rule == EXACT and layer is not None:
        raise InputError("rule", "'exact' takes no steps= and applies to input attributions (layer=None)")
    if not isinstance(multiply_by_inputs, bool):
        raise InputError("multiply_by_inputs", f"expected True or False, got {multiply_by_inputs!r}")
    if layer is not None:
        from .layer_ig import joint_layer_integrated_gradients, layer_integrated_gradients, layer_specs
        from .neuron_ig import neuron_integrated_gradients

        specs = layer_specs(model, layer, layer_side, layer_output_index)
        if len(specs) > 1 or layer_output_index == ALL or isinstance(layer, (list, tuple)):
            if neuron is not None:
                raise InputError(
                    "neuron",
                    "neuron IG reads one tensor: give one layer and one layer_output_index (a callable "
                    "neuron receives that tensor and may combine any of its units)",
                )
            return joint_layer_integrated_gradients(
                model,
                inputs,
                target,
                specs,
                baseline=baseline,
                input_baseline=input_baseline,
                seed=seed,
                forward_kwargs=forward_kwargs,
                integration=config,
                multiply_by_inputs=multiply_by_inputs,
            )
        spec = specs[0]
        if neuron is not None:
            return neuron_integrated_gradients(
                model,
                inputs,
                target,
                spec,
                neuron,
                baseline=baseline,
                input_baseline=input_baseline,
                seed=seed,
                forward_kwargs=forward_kwargs,
                integration=config,
                multiply_by_inputs=multiply_by_inputs,
            )
        return layer_integrated_gradients(
            model,
            inputs,
            target,
            spec,
            baseline=baseline,
            input_baseline=input_baseline,
            reuse=reuse,
            seed=seed,
            forward_kwargs=forward_kwargs,
            integration=config,
            multiply_by_inputs=multiply_by_inputs,
        )
    layer_only = {"neuron": neuron, "input_baseline": input_baseline, "layer_output_index": layer_output_index}
    for name, value in layer_only.items():
        if value is not None:
            raise InputError(name, "only applies with layer=")
    if layer_side != "output":
        raise InputError("layer_side", "only applies with layer=")
    input_set = as_input_set(inputs)
    baselines = make_baselines(input_set, baseline, seed=seed)
    fallback: dict[str, Any] = {}
    # Under tol= the exact sum's cost does not depend on tol, error control's grows faster than 1/tol on
    # piecewise-linear nets: the exact sum runs when declared, or when detected and tol is below the
    # crossover (docs/methods.md, "Exact IG").
    tol = config.tol
    exact_pays = piecewise_linear is True or (piecewise_linear is None and tol is not None and tol < EXACT_BELOW_TOL)
    if config.rule == EXACT or (tol is not None and multiply_by_inputs and exact_pays):
        from ..exact import MAX_PIECES
        from .exact_ig import exact_integrated_gradients

        exact = exact_integrated_gradients(
            model, input_set, baselines, target, required=config.rule == EXACT, piecewise_linear=piecewise_linear,
            tol=tol, atol=config.atol, batch_size=config.batch_size, memory_budget=config.memory_budget,
            forward_kwargs=forward_kwargs, multiply_by_inputs=multiply_by_inputs,
            max_pieces=MAX_PIECES if config.rule == EXACT else config.max_steps,
        )  # fmt: skip
        if isinstance(exact, Attribution):
            return dataclasses.replace(exact, params={**exact.params, "integration": config.as_params()})
        fallback["exact_fallback"] = exact
    return integrate_path(
        model, input_set, baselines, target, forward_kwargs=forward_kwargs, extra_params=fallback,
        integration=config, multiply_by_inputs=multiply_by_inputs,
    )  # fmt: skip
