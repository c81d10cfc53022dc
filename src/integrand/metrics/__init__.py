"""Metrics of attribution quality: completeness, infidelity, max-sensitivity, deletion / insertion,
top-k / bottom-k faithfulness, local-function-approximation loss and the model-randomisation check."""

from __future__ import annotations

from ..lfa import loss_of as lfa_loss
from .completeness import completeness
from .curves import Curve, deletion, insertion
from .faithfulness import Faithfulness, top_k_faithfulness
from .infidelity import infidelity
from .randomisation import Randomisation, default_layers, model_randomisation
from .sensitivity import sensitivity_max

__all__ = [
    "Curve",
    "Faithfulness",
    "Randomisation",
    "completeness",
    "default_layers",
    "deletion",
    "infidelity",
    "insertion",
    "lfa_loss",
    "model_randomisation",
    "sensitivity_max",
    "top_k_faithfulness",
]
