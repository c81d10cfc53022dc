"""Any registered method at a layer: the method sees "the model above the layer" and the layer's tensor.

The frozen part below the layer is recorded once (``layer_view``), exactly as for layer IG, so
saliency, input×gradient, SmoothGrad, occlusion, KernelSHAP, ... at a layer all attribute to the
layer's activation and run only the part above it at each evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from ..errors import InputError
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .layer_ig import layer_spec, layer_view
from .registry import MethodInfo


def attribute_at_layer(
    info: MethodInfo,
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec,
    *,
    layer: Any,
    layer_side: str = "output",
    layer_output_index: int | str | None = None,
    reuse: bool = True,
    forward_kwargs: Mapping[str, Any] | None = None,
    **params: Any,
) -> Attribution:
    """Run ``info``'s method on the layer's tensor; ``params`` are the method's own keyword arguments."""
    if "forward_kwargs" not in info.params:
        raise InputError("layer", f"method {info.name!r} cannot run at a layer (it takes no forward_kwargs)")
    spec = layer_spec(model, layer, layer_side, layer_output_index)
    view = layer_view(model, inputs, spec, reuse=reuse, forward_kwargs=forward_kwargs)
    result = info.fn(view.above, view.activation, target, forward_kwargs=view.forward_kwargs, **params)
    layer_params = {"layer": spec.name, "layer_side": spec.side, "layer_output_index": spec.index, "reuse": view.reuse}
    return dataclasses.replace(result, method=f"layer_{result.method}", params={**result.params, **layer_params})
