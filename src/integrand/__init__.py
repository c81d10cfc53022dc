"""integrand: faithful, error-controlled attribution for PyTorch models."""

from __future__ import annotations

from . import targets
from .baselines import gaussian_blur
from .errors import ConvergenceWarning, InputError, IntegrandError, MissingExtraError, ModelError
from .methods import attribute, integrated_gradients, methods
from .quadrature import RULES, Rule, make_rule
from .result import Attribution

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
    "gaussian_blur",
    "integrated_gradients",
    "make_rule",
    "methods",
    "targets",
]
