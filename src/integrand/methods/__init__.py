"""Attribution methods, one module each, collected in one explicit registry."""

from __future__ import annotations

from typing import Any, Callable

from ..checks import check_model
from ..errors import InputError
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .blur_ig import blur_ig
from .c_lime import c_lime
from .deeplift import deeplift
from .feature_ablation import feature_ablation
from .gradient_shap import expected_gradients, gradient_shap
from .guided_backprop import deconvnet, guided_backprop
from .guided_ig import guided_ig
from .idgi import idgi
from .input_x_gradient import input_x_gradient
from .integrated_gradients import integrated_gradients
from .kernel_shap import kernel_shap
from .lime import lime
from .noise_tunnel import smoothgrad, smoothgrad_sq, vargrad
from .occlusion import occlusion
from .registry import MethodInfo, Registry, check_params
from .saliency import saliency

AT_LAYER_PARAMS = ("layer", "layer_side", "layer_output_index", "reuse")
"""Keyword arguments every method takes through :func:`attribute` (``methods.at_layer``)."""


def _build_registry() -> Registry:
    registry = Registry()
    registry.register("integrated_gradients", integrated_gradients)
    registry.register("occlusion", occlusion)
    registry.register("feature_ablation", feature_ablation)
    registry.register("lime", lime)
    registry.register("c_lime", c_lime)
    registry.register("kernel_shap", kernel_shap)
    registry.register("saliency", saliency)
    registry.register("input_x_gradient", input_x_gradient)
    registry.register("smoothgrad", smoothgrad)
    registry.register("smoothgrad_sq", smoothgrad_sq)
    registry.register("vargrad", vargrad)
    registry.register("guided_backprop", guided_backprop)
    registry.register("deconvnet", deconvnet)
    registry.register("deeplift", deeplift)
    registry.register("gradient_shap", gradient_shap)
    registry.register("expected_gradients", expected_gradients)
    registry.register("guided_ig", guided_ig)
    registry.register("blur_ig", blur_ig)
    registry.register("idgi", idgi)
    return registry


REGISTRY = _build_registry()


def methods() -> list[MethodInfo]:
    """Every registered method with its summary and keyword parameters."""
    return REGISTRY.infos()


def attribute(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    method: str = "integrated_gradients",
    **params: Any,
) -> Attribution:
    """Run the registered ``method``; ``params`` are that method's keyword arguments.

    ``layer=`` (with ``layer_side=``, ``layer_output_index=``, ``reuse=``) attributes to a module's tensor
    instead of the inputs, for every method; integrated gradients handles it itself.
    """
    info = REGISTRY.get(method)
    check_model(model)
    if method == "integrated_gradients":
        check_params(info, params)
        return info.fn(model, inputs, target, **params)
    check_params(info, params, AT_LAYER_PARAMS)
    if params.get("layer") is not None:
        from .at_layer import attribute_at_layer

        return attribute_at_layer(info, model, inputs, target, **params)
    for name in AT_LAYER_PARAMS:
        if name in params and name != "layer":
            raise InputError(name, "only applies with layer=")
    params.pop("layer", None)
    return info.fn(model, inputs, target, **params)


__all__ = [
    "REGISTRY",
    "attribute",
    "c_lime",
    "feature_ablation",
    "integrated_gradients",
    "kernel_shap",
    "lime",
    "methods",
    "MethodInfo",
    "occlusion",
    "Registry",
]
