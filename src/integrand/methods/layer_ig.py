"""Layer Integrated Gradients: the same path integral, taken at a module's tensor.

Layer IG presents "the model above the layer" (``frozen.Above``) as a model of the layer's
activation and hands it to ``integrate_path``, so rules, error control, chunking and the
``Attribution`` are those of input IG. (Neuron IG, "the model below the layer", is in ``neuron_ig``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

import torch
from torch import nn

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_call
from ..errors import InputError, ModelError
from ..frozen import EXAMPLE_KWARG, Above, FrozenPrefix, check, run_full
from ..inputs import TENSOR_KEY, Inputs, InputSet, call_model
from ..integration import Integration
from ..layers import SIDES, Element, LayerSpec, capture_layers, replace_layers, resolve_layer, run_to_layer
from ..result import Attribution
from ..targets import TargetSpec
from .integrated_gradients import integrate_path

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _internal(wrapper: ModuleT) -> ModuleT:
    """An integrand wrapper around the user's (eval-mode) model: in eval mode itself, the model untouched."""
    wrapper.training = False  # not .eval(): that would recurse into the user's model
    return wrapper


def layer_specs(model: Any, layer: Any, side: str, index: Element) -> list[LayerSpec]:
    """One spec per layer of ``layer`` (a module, a dotted name, or a list/tuple of these)."""
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise InputError("layer", "expected at least one layer, got an empty list")
    specs = [layer_spec(model, one, side, index) for one in layers]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InputError("layer", f"the list names a layer twice: {names}")
    return specs


def layer_spec(model: Any, layer: nn.Module | str, side: str, index: Element) -> LayerSpec:
    name, module = resolve_layer(model, layer)
    if side not in SIDES:
        raise InputError("layer_side", f"expected 'output' or 'input', got {side!r}")
    if index is not None and (isinstance(index, bool) or not isinstance(index, (int, str))):
        raise InputError("layer_output_index", f"expected None, an int or a str, got {type(index).__name__}")
    return LayerSpec(name, module, side, index)  # type: ignore[arg-type]


def raw_inputs(inputs: Inputs) -> InputSet:
    """Inputs of any dtype (token ids included): they are never interpolated, only indexed by example."""
    if isinstance(inputs, torch.Tensor):
        tensors, named = {TENSOR_KEY: inputs}, False
    elif isinstance(inputs, Mapping) and inputs:
        tensors, named = {str(k): v for k, v in inputs.items()}, True
    else:
        raise InputError("inputs", f"expected a tensor or a non-empty mapping of tensors, got {type(inputs).__name__}")
    first: torch.Tensor | None = None
    for name, t in tensors.items():
        argument = "inputs" if not named else f"inputs[{name!r}]"
        if not isinstance(t, torch.Tensor):
            raise InputError(argument, f"expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 1 or t.shape[0] < 1:
            raise InputError(argument, f"expected a batch dimension first, got shape {tuple(t.shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(argument, "contains NaN or Inf")
        if first is not None and (t.shape[0] != first.shape[0] or t.device != first.device):
            raise InputError(argument, "named inputs must share batch size and device")
        first = t if first is None else first
    return InputSet({k: v.detach() for k, v in tensors.items()}, named=named)


def input_baselines(raw: InputSet, spec: Any, seed: int) -> dict[str, torch.Tensor]:
    """Input-space baselines; names missing from a mapping keep their input (e.g. attention masks)."""
    out: dict[str, torch.Tensor] = {}
    for name, x in raw.tensors.items():
        argument = "input_baseline" if not raw.named else f"input_baseline[{name!r}]"
        one = spec.get(name, x) if isinstance(spec, Mapping) else spec
        if isinstance(one, torch.Tensor) and one is x:
            out[name] = x
        elif x.is_floating_point():
            try:
                out[name] = make_baselines(InputSet({TENSOR_KEY: x}, named=False), one, seed)[TENSOR_KEY]
            except InputError as error:
                raise InputError(argument, str(error).split(": ", 1)[-1]) from None
        elif isinstance(one, int) and not isinstance(one, bool):
            out[name] = torch.full_like(x, one)
        elif isinstance(one, str) and one == "zeros":
            out[name] = torch.zeros_like(x)
        elif isinstance(one, torch.Tensor) and not one.is_floating_point():
            try:
                out[name] = torch.broadcast_to(one.to(x.device, x.dtype), x.shape).clone()
            except RuntimeError:
                raise InputError(argument, f"shape {tuple(one.shape)} does not broadcast to {tuple(x.shape)}") from None
        else:
            raise InputError(argument, f"integer inputs need an int or integer tensor, got {type(one).__name__}")
    if isinstance(spec, Mapping) and set(spec) - set(raw.names):
        raise InputError("input_baseline", f"names {sorted(set(spec) - set(raw.names))} are not inputs")
    return out


def _activation_baselines(act: InputSet, spec: BaselineSpec, seed: int, layer: str) -> dict[str, torch.Tensor]:
    x = act.tensors[TENSOR_KEY]
    if isinstance(spec, torch.Tensor):
        try:
            ok = torch.broadcast_to(spec, x.shape).shape == x.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise InputError(
                "baseline",
                f"shape {tuple(spec.shape)} does not broadcast to the activation shape {tuple(x.shape)} of layer "
                f"{layer!r} (baseline= is in activation space; give input-space baselines as input_baseline=)",
            )
    if isinstance(spec, Mapping):
        raise InputError("baseline", "a layer has one activation tensor; give a number, a tensor or a callable")
    return make_baselines(act, spec, seed)


@dataclass(frozen=True)
class LayerView:
    """A model seen from a layer: ``above`` maps the layer's tensor (``activation``) to the output."""

    raw: InputSet
    activation: torch.Tensor
    above: Above
    reuse: str
    output: torch.Tensor | None
    forward_kwargs: dict[str, Any]


def layer_view(
    model: Any, inputs: Inputs, spec: LayerSpec, *, reuse: bool, forward_kwargs: Mapping[str, Any] | None
) -> LayerView:
    """Record the frozen part below ``spec`` once and present the part above as a model of its tensor."""
    raw = raw_inputs(inputs)
    check_call(model, raw, forward_kwargs)
    recorded = model if isinstance(model, nn.Module) else nn.ModuleList([spec.module])
    prefix = FrozenPrefix.record(recorded, spec, run_full(model, raw, forward_kwargs), raw.batch)
    activation = prefix.activation
    if not activation.is_floating_point():
        raise InputError("layer_side", f"the {spec.side} of {spec.name!r} is {activation.dtype}: not interpolable")
    if activation.dim() < 1 or activation.shape[0] != raw.batch:
        raise ModelError("layer", f"the {spec.side} of {spec.name!r} has shape {tuple(activation.shape)}: no batch dim")
    output = prefix.output if isinstance(prefix.output, torch.Tensor) else None
    if output is not None and (output.dim() < 1 or output.shape[0] != raw.batch):
        raise ModelError("model", f"expected an output with batch dim {raw.batch} first, got {tuple(output.shape)}")
    above = _internal(Above(model, spec, raw, prefix))
    if not reuse:
        how = "off (reuse=False)"
    elif not isinstance(model, nn.Module):
        how = "off (the model is not an nn.Module)"
    else:
        why = check(above, prefix, forward_kwargs)
        how = "frozen-prefix" if why is None else f"off ({why})"
    if how != "frozen-prefix":
        above = _internal(Above(model, spec, raw, None))
    kwargs = {**(forward_kwargs or {}), EXAMPLE_KWARG: torch.arange(raw.batch, device=activation.device)}
    return LayerView(raw, activation.detach(), above, how, output, kwargs)


def layer_integrated_gradients(
    model: Any,
    inputs: Inputs,
    target: TargetSpec,
    spec: LayerSpec,
    *,
    baseline: BaselineSpec,
    input_baseline: Any,
    reuse: bool,
    seed: int,
    forward_kwargs: Mapping[str, Any] | None,
    integration: Integration,
    multiply_by_inputs: bool = True,
) -> Attribution:
    """IG of ``target`` w.r.t. the layer's tensor, from an activation-space or input-space baseline."""
    if baseline is not None and input_baseline is not None:
        raise InputError("input_baseline", "give baseline= (activation space) or input_baseline= (inputs), not both")
    view = layer_view(model, inputs, spec, reuse=reuse, forward_kwargs=forward_kwargs)
    raw, activation, above, how, output = view.raw, view.activation, view.above, view.reuse, view.output
    act = InputSet({TENSOR_KEY: activation.detach()}, named=False)
    if input_baseline is not None:
        base = input_baselines(raw, input_baseline, seed)
        with torch.no_grad():
            base_act = run_to_layer(spec, lambda: call_model(model, raw, base, dict(forward_kwargs or {})))
        if base_act.shape != activation.shape:
            raise ModelError(
                "input_baseline",
                f"the baseline's {spec.side} of {spec.name!r} has shape {tuple(base_act.shape)}, "
                f"the input's {tuple(activation.shape)}",
            )
        baselines = {TENSOR_KEY: base_act.detach().to(activation.dtype)}
    else:
        baselines = _activation_baselines(act, baseline, seed, spec.name)
    kwargs = view.forward_kwargs
    params = {
        "layer": spec.name,
        "layer_side": spec.side,
        "layer_output_index": spec.index,
        "reuse": how,
        "baseline_space": "input" if input_baseline is not None else "activation",
    }
    return integrate_path(
        above,
        act,
        baselines,
        target,
        forward_kwargs=kwargs,
        method="layer_integrated_gradients",
        extra_params=params,
        output_at_input=output,
        integration=integration,
        multiply_by_inputs=multiply_by_inputs,
    )


def tensor_name(spec: LayerSpec) -> str:
    """The key of one attributed tensor in a joint result: the layer name, with ``[element]`` if any."""
    return spec.name if spec.index is None else f"{spec.name}[{spec.index}]"


class AboveSeveral(nn.Module):
    """The model as a function of several attributed tensors, passed as keywords named by ``tensor_name``."""

    def __init__(self, model: Any, specs: list[LayerSpec], inputs: InputSet) -> None:
        super().__init__()
        self.model = model
        self.specs = specs
        self.inputs = inputs

    def forward(self, **kwargs: Any) -> torch.Tensor:
        example = kwargs.pop(EXAMPLE_KWARG)
        points = [kwargs.pop(tensor_name(spec)) for spec in self.specs]
        tensors = {k: v[example] for k, v in self.inputs.tensors.items()}
        with replace_layers(self.specs, points):
            return call_model(self.model, self.inputs, tensors, kwargs)


def joint_layer_integrated_gradients(
    model: Any,
    inputs: Inputs,
    target: TargetSpec,
    specs: list[LayerSpec],
    *,
    baseline: BaselineSpec,
    input_baseline: Any,
    seed: int,
    forward_kwargs: Mapping[str, Any] | None,
    integration: Integration,
    multiply_by_inputs: bool = True,
) -> Attribution:
    """IG w.r.t. several tensors at once: one straight line from each tensor's baseline to its value.

    All tensors are replaced together at every point (the same α), so the result is the IG of the
    model seen as a function of all of them; with independent tensors that form a cut between
    inputs and output, the attributions of all tensors together sum to ``f(x) - f(x')``.
    """
    if baseline is not None and input_baseline is not None:
        raise InputError("input_baseline", "give baseline= (activation space) or input_baseline= (inputs), not both")
    raw = raw_inputs(inputs)
    check_call(model, raw, forward_kwargs)
    captured = capture_layers(specs, run_full(model, raw, forward_kwargs), dependence=True)
    names = [tensor_name(s) for s in captured.specs]
    for j, on in enumerate(captured.depends):
        if on:
            raise InputError(
                "layer",
                f"{names[j]!r} is computed from {names[on[0]]!r}; joint attribution replaces both, so "
                f"{names[on[0]]!r} would be credited only through paths that bypass {names[j]!r}. "
                "Give layers that do not feed each other, or attribute each in its own call",
            )
    acts: dict[str, torch.Tensor] = {}
    for name, spec, value in zip(names, captured.specs, captured.values):
        if not value.is_floating_point():
            raise InputError("layer_side", f"the {spec.side} {name!r} is {value.dtype}: not interpolable")
        if value.dim() < 1 or value.shape[0] != raw.batch:
            raise ModelError("layer", f"{name!r} has shape {tuple(value.shape)}: no batch dim {raw.batch} first")
        first = next(iter(acts.values()), value)
        if value.dtype != first.dtype or value.device != first.device:
            raise InputError("layer", f"{name!r} is {value.dtype} on {value.device}, another tensor {first.dtype}")
        acts[name] = value
    act = InputSet(acts, named=True)
    if input_baseline is not None:
        base = input_baselines(raw, input_baseline, seed)
        at_base = capture_layers(
            captured.specs, lambda: call_model(model, raw, base, dict(forward_kwargs or {})), dependence=False
        )
        baselines = {}
        for name, value in zip(names, at_base.values):
            if value.shape != acts[name].shape:
                raise ModelError(
                    "input_baseline",
                    f"the baseline's {name!r} has shape {tuple(value.shape)}, the input's {tuple(acts[name].shape)}",
                )
            baselines[name] = value.to(acts[name].dtype)
    else:
        if isinstance(baseline, torch.Tensor):
            raise InputError("baseline", f"several tensors {names}: give a number, a callable or a mapping by name")
        baselines = make_baselines(act, baseline, seed)
    output = captured.output if isinstance(captured.output, torch.Tensor) else getattr(captured.output, "logits", None)
    params = {
        "layer": [s.name for s in specs],
        "layer_side": specs[0].side,
        "layer_output_index": specs[0].index,
        "tensors": names,
        "reuse": "off (several tensors are replaced jointly)",
        "baseline_space": "input" if input_baseline is not None else "activation",
    }
    kwargs = {**(forward_kwargs or {}), EXAMPLE_KWARG: torch.arange(raw.batch, device=act.device)}
    return integrate_path(
        _internal(AboveSeveral(model, captured.specs, raw)),
        act,
        baselines,
        target,
        forward_kwargs=kwargs,
        method="layer_integrated_gradients",
        extra_params=params,
        output_at_input=output.detach() if isinstance(output, torch.Tensor) else None,
        integration=integration,
        multiply_by_inputs=multiply_by_inputs,
    )
