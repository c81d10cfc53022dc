"""Attribution methods, one module each, collected in one explicit registry."""

from __future__ import annotations

from typing import Any, Callable

from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .c_lime import c_lime
from .feature_ablation import feature_ablation
from .integrated_gradients import integrated_gradients
from .kernel_shap import kernel_shap
from .lime import lime
from .occlusion import occlusion
from .registry import MethodInfo, Registry


def _build_registry() -> Registry:
    registry = Registry()
    registry.register("integrated_gradients", integrated_gradients)
    registry.register("occlusion", occlusion)
    registry.register("feature_ablation", feature_ablation)
    registry.register("lime", lime)
    registry.register("c_lime", c_lime)
    registry.register("kernel_shap", kernel_shap)
    return registry


REGISTRY = _build_registry()


def methods() -> list[MethodInfo]:
    """Every registered method with its summary and keyword parameters."""
    return REGISTRY.infos()


def attribute(
    model: Callable[..., Any], inputs: Inputs, target: TargetSpec = None, *, method: str = "integrated_gradients", **params: Any
) -> Attribution:
    """Run the registered ``method``; ``params`` are that method's keyword arguments."""
    info = REGISTRY.get(method)
    return info.fn(model, inputs, target, **params)


__all__ = [
    "REGISTRY", "attribute", "c_lime", "feature_ablation", "integrated_gradients", "kernel_shap", "lime", "methods",
    "MethodInfo", "occlusion", "Registry",
]
