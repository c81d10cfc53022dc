"""integrand: faithful, error-controlled attribution for PyTorch models."""

from __future__ import annotations

from . import circuits, concepts, groups, lfa, metrics, neighbourhoods, profiles, steering, targets, uncertainty
from .baselines import gaussian_blur
from .concepts import ConceptAttribution, concept_attribution
from .corpus import Corpus, run
from .errors import (
    ConvergenceWarning,
    InputError,
    IntegrandError,
    MissingExtraError,
    ModelError,
    QueryError,
    StoreError,
    StoreWarning,
)
from .generation import GenerationAttribution, GenerationExplainer, comprehension
from .groups import GroupAttribution, Groups, attribute_groups, modality_shares
from .methods import attribute, integrated_gradients, methods
from .methods.blur_ig import blur_ig
from .methods.c_lime import c_lime
from .methods.deeplift import deeplift
from .methods.feature_ablation import feature_ablation
from .methods.gradient_shap import expected_gradients, gradient_shap
from .methods.guided_backprop import deconvnet, guided_backprop
from .methods.guided_ig import guided_ig
from .methods.idgi import idgi
from .methods.input_x_gradient import input_x_gradient
from .methods.kernel_shap import kernel_shap
from .methods.lime import lime
from .methods.noise_tunnel import smoothgrad, smoothgrad_sq, vargrad
from .methods.occlusion import occlusion
from .methods.saliency import saliency
from .profiles import ActivationProfile, activation_profiles
from .quadrature import RULES, Rule, make_rule
from .recommend import Recommendation, recommend
from .result import Attribution
from .steering import SteeringVector
from .text import TextExplainer, TokenAttribution
from .uncertainty import (
    GaussianAttribution,
    UncertainAttribution,
    ensemble,
    explain_gaussian,
    gaussian_mean,
    gaussian_variance,
    mc_dropout,
)
from .viz import show

__version__ = "0.1.0"

__all__ = [
    "circuits",
    "show",
    "GenerationAttribution",
    "GenerationExplainer",
    "comprehension",
    "Attribution",
    "SteeringVector",
    "steering",
    "Corpus",
    "run",
    "ConvergenceWarning",
    "InputError",
    "IntegrandError",
    "MissingExtraError",
    "ModelError",
    "QueryError",
    "StoreError",
    "StoreWarning",
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
    "ActivationProfile",
    "ConceptAttribution",
    "GaussianAttribution",
    "GroupAttribution",
    "Groups",
    "UncertainAttribution",
    "activation_profiles",
    "attribute_groups",
    "concept_attribution",
    "concepts",
    "ensemble",
    "explain_gaussian",
    "gaussian_mean",
    "gaussian_variance",
    "groups",
    "mc_dropout",
    "modality_shares",
    "profiles",
    "uncertainty",
]
