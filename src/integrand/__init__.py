"""integrand: faithful, error-controlled attribution for PyTorch models."""

from __future__ import annotations

from . import targets
from .baselines import gaussian_blur
from .errors import ConvergenceWarning, InputError, IntegrandError, MissingExtraError, ModelError
from . import lfa, metrics, neighbourhoods
from .methods import attribute, integrated_gradients, methods
from .methods.c_lime import c_lime
from .methods.feature_ablation import feature_ablation
from .methods.kernel_shap import kernel_shap
from .methods.lime import lime
from .methods.occlusion import occlusion
from .methods.blur_ig import blur_ig
from .methods.deeplift import deeplift
from .methods.gradient_shap import expected_gradients, gradient_shap
from .methods.guided_backprop import deconvnet, guided_backprop
from .methods.guided_ig import guided_ig
from .methods.idgi import idgi
from .methods.input_x_gradient import input_x_gradient
from .methods.noise_tunnel import smoothgrad, smoothgrad_sq, vargrad
from .methods.saliency import saliency
from .quadrature import RULES, Rule, make_rule
from .recommend import Recommendation, recommend
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
    "metrics",
    "lime",
    "neighbourhoods",
    "recommend",
    "Recommendation",
    "occlusion",
    "gaussian_blur",
    "integrated_gradients",
    "make_rule",
    "methods",
    "targets",
    "blur_ig",
    "deconvnet",
    "deeplift",
    "expected_gradients",
    "gradient_shap",
    "guided_backprop",
    "guided_ig",
    "idgi",
    "input_x_gradient",
    "saliency",
    "smoothgrad",
    "smoothgrad_sq",
    "vargrad",
    "TextExplainer",
    "TokenAttribution",
]
