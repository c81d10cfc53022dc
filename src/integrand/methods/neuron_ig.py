"""Neuron Integrated Gradients: IG of one unit (or a selection of units) of a module's tensor.

The model below the layer, with its output reduced to the selected units, is a model of the
inputs; ``integrate_path`` integrates it like input IG.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_call
from ..errors import InputError
from ..inputs import Inputs, as_input_set, call_model
from ..integration import Integration
from ..layers import LayerSpec, run_to_layer
from ..result import Attribution
from ..targets import TargetSpec
from .integrated_gradients import integrate_path
from .layer_ig import _internal

NeuronSpec = int | tuple[int | slice, ...] | Callable[[torch.Tensor], torch.Tensor]


def neuron_selector(neuron: Any, shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``activation -> Tensor[batch]``: one unit (int, index tuple) or a sum of units (slices)."""
    units = math.prod(shape)
    if isinstance(neuron, bool):
        raise InputError("neuron", "expected an int, a tuple of ints/slices or a callable, got a bool")
    if isinstance(neuron, int):
        if not -units <= neuron < units:
            raise InputError("neuron", f"index {neuron} out of range for {units} units (activation {list(shape)})")
        return lambda a: a.reshape(a.shape[0], -1)[:, neuron]
    if isinstance(neuron, tuple):
        if len(neuron) != len(shape):
            raise InputError("neuron", f"expected {len(shape)} indices for activation {list(shape)}, got {neuron!r}")
        for i, (n, size) in enumerate(zip(neuron, shape)):
            if isinstance(n, slice):
                if n.step == 0:
                    raise InputError("neuron", f"slice {n} in dim {i} has step 0; expected a non-zero step")
                if len(range(size)[n]) == 0:
                    raise InputError("neuron", f"slice {n} selects nothing in dim {i} of size {size}")
            elif isinstance(n, bool) or not isinstance(n, int) or not -size <= n < size:
                raise InputError("neuron", f"index {n!r} out of range for dim {i} of size {size} (shape {list(shape)})")
        return lambda a: a[(slice(None), *neuron)].reshape(a.shape[0], -1).sum(dim=1)
    if callable(neuron):
        return neuron  # type: ignore[no-any-return]
    raise InputError("neuron", f"expected an int, a tuple of ints/slices or a callable, got {type(neuron).__name__}")


def _check_neuron_score(score: Any, batch: int) -> None:
    """A callable neuron selector must give one score per example: Tensor[batch]."""
    if isinstance(score, torch.Tensor) and score.dim() == 0:
        raise InputError(
            "neuron",
            "the callable returned one number for the whole batch (0-d); return one score per example, "
            "e.g. `lambda a: a[:, 3]` or `lambda a: a[:, :, 2].sum(dim=1)` instead of `... .sum()`: each "
            "example's gradient of a batch sum is its own gradient, so the attributions are the same",
        )
    if not isinstance(score, torch.Tensor) or tuple(score.shape) != (batch,):
        got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
        raise InputError(
            "neuron", f"the callable must return a tensor of shape ({batch},), one score per example; got {got}"
        )


class Below(nn.Module):
    """The model below a layer, scoring one unit of its tensor (the "model" of neuron IG)."""

    def __init__(self, model: Any, spec: LayerSpec, select: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.select = select

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.select(run_to_layer(self.spec, lambda: self.model(*args, **kwargs)))


def neuron_integrated_gradients(
    model: Any,
    inputs: Inputs,
    target: TargetSpec,
    spec: LayerSpec,
    neuron: NeuronSpec,
    *,
    baseline: BaselineSpec,
    input_baseline: Any,
    seed: int,
    forward_kwargs: Mapping[str, Any] | None,
    integration: Integration,
    multiply_by_inputs: bool = True,
) -> Attribution:
    """IG of one unit of the layer's tensor w.r.t. the (float) inputs; the model above never runs."""
    if target is not None:
        raise InputError("target", "neuron IG scores the selected unit of the layer; leave target=None")
    if input_baseline is not None:
        raise InputError("input_baseline", "neuron IG integrates in input space already; use baseline=")
    input_set = as_input_set(inputs)
    check_call(model, input_set, forward_kwargs)
    with torch.no_grad():
        activation = run_to_layer(
            spec, lambda: call_model(model, input_set, input_set.tensors, dict(forward_kwargs or {}))
        )
    select = neuron_selector(neuron, tuple(activation.shape[1:]))
    if callable(neuron):
        with torch.no_grad():
            score = select(activation)
        _check_neuron_score(score, activation.shape[0])
    baselines = make_baselines(input_set, baseline, seed=seed)
    params = {"layer": spec.name, "layer_side": spec.side, "layer_output_index": spec.index, "neuron": repr(neuron)}
    return integrate_path(
        _internal(Below(model, spec, select)),
        input_set,
        baselines,
        None,
        forward_kwargs=forward_kwargs,
        method="neuron_integrated_gradients",
        extra_params=params,
        integration=integration,
        multiply_by_inputs=multiply_by_inputs,
    )
