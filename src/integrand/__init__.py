"""integrand: faithful, error-controlled attribution for PyTorch models.

The top level holds the everyday verbs; everything else lives in the submodule named after what it
holds (``integrand.methods``, ``integrand.uncertainty``, ``integrand.groups``, ``integrand.concepts``,
``integrand.metrics``, ``integrand.quadrature``, ``integrand.recommend``, ...). See docs/design.md.
"""

from __future__ import annotations

import importlib as _importlib
import warnings as _warnings
from typing import Any as _Any

# Submodules, each reachable as ``integrand.<name>`` after ``import integrand``.
from . import baselines as baselines
from . import circuits as circuits
from . import concepts as concepts
from . import corpus as corpus
from . import generation as generation
from . import groups as groups
from . import lfa as lfa
from . import methods as methods
from . import metrics as metrics
from . import neighbourhoods as neighbourhoods
from . import profiles as profiles
from . import quadrature as quadrature
from . import recommend as recommend
from . import steering as steering
from . import targets as targets
from . import text as text
from . import uncertainty as uncertainty
from .corpus import Corpus
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
from .generation import GenerationExplainer
from .methods import (
    attribute,
    integrated_gradients,
    list_methods,
    occlusion,
    register_method,
    saliency,
    smoothgrad,
)
from .protocol import Result, load
from .result import Attribution
from .text import TextExplainer
from .viz import show

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # attribute
    "attribute",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "occlusion",
    "list_methods",
    "register_method",
    # explain text, generations, corpora
    "TextExplainer",
    "GenerationExplainer",
    "Corpus",
    # results
    "Attribution",
    "Result",
    "load",
    "show",
    # errors and warnings
    "IntegrandError",
    "InputError",
    "ModelError",
    "MissingExtraError",
    "QueryError",
    "StoreError",
    "ConvergenceWarning",
    "StoreWarning",
]

_MOVED: dict[str, str] = {
    **{
        name: "integrand.methods"
        for name in (
            "blur_ig",
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
            "kernel_shap",
            "lime",
            "smoothgrad_sq",
            "vargrad",
        )
    },
    **{
        name: "integrand.uncertainty"
        for name in (
            "GaussianAttribution",
            "UncertainAttribution",
            "ensemble",
            "explain_gaussian",
            "gaussian_mean",
            "gaussian_variance",
            "mc_dropout",
        )
    },
    **{name: "integrand.groups" for name in ("GroupAttribution", "Groups", "attribute_groups", "modality_shares")},
    **{name: "integrand.concepts" for name in ("ConceptAttribution", "concept_attribution")},
    **{name: "integrand.profiles" for name in ("ActivationProfile", "activation_profiles")},
    **{name: "integrand.quadrature" for name in ("RULES", "Rule", "make_rule")},
    **{name: "integrand.generation" for name in ("GenerationAttribution", "comprehension")},
    "Recommendation": "integrand.recommend",
    "SteeringVector": "integrand.steering",
    "TokenAttribution": "integrand.text",
    "gaussian_blur": "integrand.baselines",
    "run": "integrand.corpus",
}
"""Names that left the top level, and where they live now (reachable here for one release, with a warning)."""


def __getattr__(name: str) -> _Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'integrand' has no attribute {name!r}")
    _warnings.warn(
        f"integrand.{name} moved to {home}.{name}; the top-level name will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_importlib.import_module(home), name)
