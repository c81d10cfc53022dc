"""integrand: faithful, error-controlled attribution for PyTorch models."""

from __future__ import annotations

from . import targets
from .baselines import gaussian_blur
from .errors import ConvergenceWarning, InputError, IntegrandError, MissingExtraError, ModelError
from . import lfa, neighbourhoods
from .methods import attribute, integrated_gradients, methods
from .methods.c_lime import c_lime
from .methods.feature_ablation import feature_ablation
from .methods.kernel_shap import kernel_shap
from .methods.lime import lime
from .methods.occlusion import occlusion
from .quadrature import RULES, Rule, make_rule
from .result import Attribution
from .text import TextExplainer, TokenAttribution

__version__ = "0.1.0"

__all__ = [
    "Attribution",
    "ConvergenceWarning",
    "InputError",
    "IntegrandError",
    "MissingExtraError",
    "ModelError",
    "RULES",
    "Rule",
    "attribute",
    "c_lime",
    "feature_ablation",
    "kernel_shap",
    "lfa",
    "lime",
    "neighbourhoods",
    "occlusion",
    "gaussian_blur",
    "integrated_gradients",
    "make_rule",
    "methods",
    "targets",
    "TextExplainer",
    "TokenAttribution",
]
