"""Circuit discovery: activation, attribution, IG and relevance patching over transformer components."""

from __future__ import annotations

from ..models import Gate
from .components import KINDS, Component, Layout, intervene, layout_for
from .faithfulness import Correlation, Faithfulness, faithfulness, markdown_table
from .lrp import ATTNLRP, GRADIENT, LRPRules, lrp_rules, rewire
from .metrics import Metric, log_prob, logit_diff, normalised_logit_diff
from .patching import IG_PATHS, METHODS, patching
from .result import Cost, PatchingResult

__all__ = [
    "ATTNLRP",
    "GRADIENT",
    "IG_PATHS",
    "KINDS",
    "METHODS",
    "Component",
    "Correlation",
    "Cost",
    "Faithfulness",
    "Gate",
    "LRPRules",
    "Layout",
    "Metric",
    "PatchingResult",
    "faithfulness",
    "intervene",
    "layout_for",
    "log_prob",
    "logit_diff",
    "lrp_rules",
    "markdown_table",
    "normalised_logit_diff",
    "patching",
    "rewire",
]
