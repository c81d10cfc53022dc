"""Attribution methods, one module each, collected in one explicit registry."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, TypeVar, cast, overload

import torch

from ..checks import check_model
from ..errors import InputError
from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .blur_ig import blur_ig as _blur_ig
from .c_lime import c_lime as _c_lime
from .deeplift import deeplift as _deeplift
from .feature_ablation import feature_ablation as _feature_ablation
from .gradient_shap import expected_gradients as _expected_gradients
from .gradient_shap import gradient_shap as _gradient_shap
from .gradient_support import baseline_setting, target_setting
from .guided_backprop import deconvnet as _deconvnet
from .guided_backprop import guided_backprop as _guided_backprop
from .guided_ig import guided_ig as _guided_ig
from .idgi import idgi as _idgi
from .input_x_gradient import input_x_gradient as _input_x_gradient
from .integrated_gradients import integrated_gradients as _integrated_gradients
from .kernel_shap import kernel_shap as _kernel_shap
from .lime import lime as _lime
from .lrp import lrp as _lrp
from .noise_tunnel import smoothgrad as _smoothgrad
from .noise_tunnel import smoothgrad_sq as _smoothgrad_sq
from .noise_tunnel import vargrad as _vargrad
from .occlusion import occlusion as _occlusion
from .registry import MethodFn, MethodInfo, Registry, check_params
from .saliency import saliency as _saliency

AT_LAYER_PARAMS = ("layer", "layer_side", "layer_output_index", "reuse")
"""Keyword arguments every method takes through :func:`attribute` (``methods.at_layer``)."""

OWN_LAYER = ("integrated_gradients", "lrp")
"""Methods that take ``layer=`` themselves (layer IG; LRP reads token ids at the embedding layer)."""


def _build_registry() -> Registry:
    registry = Registry()
    registry.register("integrated_gradients", _integrated_gradients)
    registry.register("occlusion", _occlusion)
    registry.register("feature_ablation", _feature_ablation)
    registry.register("lime", _lime)
    registry.register("c_lime", _c_lime)
    registry.register("kernel_shap", _kernel_shap)
    registry.register("saliency", _saliency)
    registry.register("input_x_gradient", _input_x_gradient)
    registry.register("smoothgrad", _smoothgrad)
    registry.register("smoothgrad_sq", _smoothgrad_sq)
    registry.register("vargrad", _vargrad)
    registry.register("guided_backprop", _guided_backprop)
    registry.register("deconvnet", _deconvnet)
    registry.register("deeplift", _deeplift)
    registry.register("gradient_shap", _gradient_shap)
    registry.register("expected_gradients", _expected_gradients)
    registry.register("guided_ig", _guided_ig)
    registry.register("blur_ig", _blur_ig)
    registry.register("idgi", _idgi)
    registry.register("lrp", _lrp)
    return registry


REGISTRY = _build_registry()
BUILT_IN = frozenset(REGISTRY.names())


def list_methods() -> list[MethodInfo]:
    """Every registered method (name, one-line summary, keyword parameters with defaults), sorted by name."""
    return REGISTRY.infos()


@overload
def register_method(name: str, fn: MethodFn) -> MethodFn: ...


@overload
def register_method(name: str, fn: None = None) -> Callable[[MethodFn], MethodFn]: ...


def register_method(name: str, fn: MethodFn | None = None) -> MethodFn | Callable[[MethodFn], MethodFn]:
    """Make ``fn`` callable as ``attribute(..., method=name)``; a function, or a decorator without ``fn``.

    ``fn(model, inputs, target=None, *, options...) -> Attribution`` takes its options as keyword-only
    parameters (they are listed by :func:`list_methods` and checked by :func:`attribute`). A method that
    also takes ``forward_kwargs=`` runs at a layer with ``attribute(..., method=name, layer=...)``.
    Returns ``fn`` unchanged. ``unregister_method(name)`` removes it again.
    """
    if fn is None:

        def decorate(method: MethodFn) -> MethodFn:
            REGISTRY.register(name, method)
            return method

        if not isinstance(name, str) or not name.isidentifier():
            raise InputError("name", f"expected a method name made of letters, digits and '_', got {name!r}")
        return decorate
    REGISTRY.register(name, fn)
    return fn


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method`; the built-in methods cannot be removed."""
    if name in BUILT_IN:
        raise InputError("name", f"{name!r} is a built-in method and cannot be removed")
    REGISTRY.unregister(name)


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
    if method in OWN_LAYER:
        check_params(info, params)
        return _checked(info, info.fn(model, inputs, target, **params), target, params)
    check_params(info, params, AT_LAYER_PARAMS)
    if params.get("layer") is not None:
        from .at_layer import attribute_at_layer

        return _checked(info, attribute_at_layer(info, model, inputs, target, **params), target, params)
    for name in AT_LAYER_PARAMS:
        if name in params and name != "layer":
            raise InputError(name, "only applies with layer=")
    params.pop("layer", None)
    return _checked(info, info.fn(model, inputs, target, **params), target, params)


IMPLIED_BASELINES: dict[str, str] = {"blur_ig": "blur path (from the most blurred input)", "lrp": "none (relevance)"}
"""What a method without a ``baseline`` argument explains its score against, for ``params["baseline"]``."""


def _checked(info: MethodInfo, result: Any, target: TargetSpec, params: dict[str, Any]) -> Attribution:
    """The method's result, recording what it explained: method, target and baseline as asked for.

    Settings the method recorded itself win; ``baseline`` is recorded for methods that take one
    (their default when not given) and for those in :data:`IMPLIED_BASELINES`.
    """
    if not isinstance(result, Attribution):
        raise InputError("method", f"method {info.name!r} returned {type(result).__name__}, not an Attribution")
    settings: dict[str, Any] = {"method": info.name, "target": target_setting(target)}
    if isinstance(target, torch.Tensor):
        settings["target_index"] = target_setting(target)
    signature = inspect.signature(info.fn).parameters
    for key in ("baseline", "baselines"):
        if key in signature:
            settings["baseline"] = baseline_setting(params.get(key, signature[key].default))
    if info.name in IMPLIED_BASELINES:
        settings["baseline"] = IMPLIED_BASELINES[info.name]
    return dataclasses.replace(result, params={**settings, **result.params})


def _with_layer(name: str) -> MethodFn:
    """The public function of method ``name``: its own keywords plus the ``layer=`` keywords of :func:`attribute`."""
    info = REGISTRY.get(name)

    def method(model: Callable[..., Any], inputs: Inputs, target: TargetSpec = None, **params: Any) -> Attribution:
        return attribute(model, inputs, target, method=name, **params)

    functools.update_wrapper(method, info.fn)
    signature = inspect.signature(info.fn)
    own = list(signature.parameters.values())
    extra = [
        inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, default=d)
        for p, d in _LAYER_DEFAULTS.items()
        if p not in signature.parameters
    ]
    method.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
    method.__doc__ = (info.fn.__doc__ or "").rstrip() + _LAYER_DOC
    return method


_LAYER_DEFAULTS: dict[str, Any] = {"layer": None, "layer_side": "output", "layer_output_index": None, "reuse": True}
_LAYER_DOC = """

    ``layer=`` (with ``layer_side=``, ``layer_output_index=``, ``reuse=``) attributes to that module's
    tensor instead of the inputs, exactly as ``attribute(..., method=..., layer=...)``.
"""


_F = TypeVar("_F", bound=Callable[..., Attribution])


def _keywords_checked(fn: _F) -> _F:
    """``fn`` (a method that takes ``layer=`` itself) with its keywords checked like :func:`attribute`'s: an
    unknown keyword is an ``InputError`` naming it, with a close match suggested, not Python's TypeError."""
    info = REGISTRY.get(fn.__name__)

    @functools.wraps(fn)
    def method(model: Callable[..., Any], inputs: Inputs, target: TargetSpec = None, **params: Any) -> Attribution:
        check_params(info, params)
        return fn(model, inputs, target, **params)

    return cast(_F, method)


# The public method functions: each takes ``layer=`` like :func:`attribute` (integrated_gradients does natively).
integrated_gradients = _keywords_checked(_integrated_gradients)
lrp = _keywords_checked(_lrp)
blur_ig = _with_layer("blur_ig")
c_lime = _with_layer("c_lime")
deconvnet = _with_layer("deconvnet")
deeplift = _with_layer("deeplift")
expected_gradients = _with_layer("expected_gradients")
feature_ablation = _with_layer("feature_ablation")
gradient_shap = _with_layer("gradient_shap")
guided_backprop = _with_layer("guided_backprop")
guided_ig = _with_layer("guided_ig")
idgi = _with_layer("idgi")
input_x_gradient = _with_layer("input_x_gradient")
kernel_shap = _with_layer("kernel_shap")
lime = _with_layer("lime")
occlusion = _with_layer("occlusion")
saliency = _with_layer("saliency")
smoothgrad = _with_layer("smoothgrad")
smoothgrad_sq = _with_layer("smoothgrad_sq")
vargrad = _with_layer("vargrad")


__all__ = [
    "attribute",
    "blur_ig",
    "BUILT_IN",
    "c_lime",
    "deconvnet",
    "deeplift",
    "expected_gradients",
    "feature_ablation",
    "gradient_shap",
    "guided_backprop",
    "guided_ig",
    "idgi",
    "input_x_gradient",
    "integrated_gradients",
    "kernel_shap",
    "lime",
    "list_methods",
    "lrp",
    "MethodInfo",
    "occlusion",
    "register_method",
    "REGISTRY",
    "Registry",
    "saliency",
    "smoothgrad",
    "smoothgrad_sq",
    "unregister_method",
    "vargrad",
]
