"""AttnLRP relevance of every target token: one forward and one backward pass per target.

The rules of :data:`integrand.circuits.lrp.ATTNLRP` rewire the model's backward pass (its forward
output stays bit for bit the same); relevance of a source token is then its input embedding times
the rewired gradient, summed over the hidden size. Targets share the forward pass as with IG.

LRP has no baseline: relevance should sum to the attributed score itself. The share absorbed by
biases, position embeddings, the softmax's dropped Taylor term and the epsilon stabiliser is
reported as ``delta = score - sum(relevance)`` and judged against :data:`LRP_TOL` (defined with
the rules in :mod:`integrand.circuits.lrp`, shared with text and ``integrand.attribute``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..circuits.lrp import ATTNLRP, LRP_TOL, LRPRules, conservation, lrp_layout, lrp_rules, warn_unconserved
from ..progress import bar as progress_bar
from .integrate import Scorer

__all__ = ["LRP_TOL", "Relevance", "lrp_relevance", "warn_unconserved"]


@dataclass(frozen=True)
class Relevance:
    """Per-target relevance [B, T, L], the conservation residual [B, T] and the flags [B, T]."""

    values: torch.Tensor
    delta: torch.Tensor
    converged: torch.Tensor
    params: dict[str, Any]


def lrp_relevance(
    scorer: Scorer,
    inputs: torch.Tensor,
    score: torch.Tensor,
    valid: torch.Tensor,
    progress: bool | None = None,
    rules: LRPRules = ATTNLRP,
) -> Relevance:
    """Relevance of every input position for every target column (``score`` [B, T] is the explained score).

    ``progress`` shows a bar of prompts done (``integrand.progress``'s rule for None).
    """
    model = scorer.runner.model
    layout = lrp_layout(model)
    rows = torch.arange(inputs.shape[0], device=inputs.device)

    def reduce(grad: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return (grad * inputs[r]).sum(dim=-1)

    chunks = []
    n_targets = int(valid.sum())
    with (
        lrp_rules(model, layout, rules),
        progress_bar(f"LRP, {n_targets} target tokens: prompts", len(rows), progress) as bar,
    ):
        for start in range(0, rows.shape[0], scorer.chunk):
            sl = slice(start, start + scorer.chunk)
            _, contrib = scorer.gradients(rows[sl], inputs[sl], reduce)
            chunks.append(contrib)
            bar.advance(contrib.shape[0])
    values = torch.cat(chunks)
    kept = conservation(values.sum(dim=-1), score, valid)
    params = {"rules": asdict(rules), "converged_tol": LRP_TOL, "lrp_conservation": kept.share.tolist()}
    return Relevance(values, kept.delta.to(score.dtype), kept.converged, params)

