"""Labelled patching scores and the compute they cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from ..protocol import ResultMixin
from .components import KINDS, Component


@dataclass(frozen=True)
class Cost:
    """Passes over the pair batch: one forward (backward) pass = the model run forward (backward) on all N pairs.

    Batched runs of several patched copies count one pass per copy, so the numbers compare methods
    independently of ``batch_size``; ``seconds`` is the wall-clock time of the call.
    """

    forward: int
    backward: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.forward} fwd + {self.backward} bwd, {self.seconds:.2f} s"


@dataclass(frozen=True, repr=False)
class PatchingResult(ResultMixin):
    """One score per component: the estimated change of the metric when the component is patched.

    ``scores[i]`` belongs to ``components[i]``; for activation patching it is exactly
    ``metric(corrupted run with component i set to its clean value) - metric(corrupted run)``.
    ``positions`` lists the aligned ``(clean, corrupted)`` position pairs. IG patching fills
    ``relative_error`` and ``converged`` per component (its path's completeness, see ``patching``);
    the other methods have no completeness notion and leave them ``None``.
    """

    method: str
    components: tuple[Component, ...]
    scores: torch.Tensor
    metric_clean: float
    metric_corrupted: float
    positions: tuple[tuple[int, int], ...]
    cost: Cost
    params: Mapping[str, Any] = field(default_factory=dict)
    relative_error: torch.Tensor | None = None
    converged: torch.Tensor | None = None

    AXES = ("component",)

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``scores``: one effect per component."""
        return self.scores

    @property
    def delta(self) -> None:
        """``None``: patching effects have no completeness sum (IG patching reports ``relative_error``)."""
        return None

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"component": self.names}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def score(self, name: str) -> float:
        """The score of one component by name (``"mlp.3.7"``)."""
        try:
            return float(self.scores[self.names.index(name)])
        except ValueError as exc:
            raise InputError("name", f"no component {name!r} in this result") from exc

    def kinds(self) -> tuple[str, ...]:
        """Component kinds present, in canonical order."""
        present = {c.kind for c in self.components}
        return tuple(k for k in KINDS if k in present)

    def select(self, kind: str) -> tuple[tuple[Component, ...], torch.Tensor]:
        """Components of one kind and their scores."""
        idx = [i for i, c in enumerate(self.components) if c.kind == kind]
        return tuple(self.components[i] for i in idx), self.scores[idx]

    def grid(self, kind: str) -> torch.Tensor:
        """Scores of one kind as ``[layer, position or head]`` (NaN where not computed)."""
        comps, scores = self.select(kind)
        if not comps:
            raise InputError("kind", f"no {kind!r} components in this result; present: {self.kinds()}")
        out = torch.full(
            (max(c.layer for c in comps) + 1, max(c.index for c in comps) + 1), math.nan, dtype=torch.float64
        )
        for c, s in zip(comps, scores.tolist()):
            out[c.layer, c.index] = s
        return out

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` components with the largest absolute score."""
        order = torch.argsort(self.scores.abs(), descending=True)[:k]
        return [(self.components[i].name, float(self.scores[i])) for i in order.tolist()]

    def table(self, k: int = 10) -> str:
        """A plain-text summary: metric values, cost and the top components."""
        lines = [
            f"{self.method} patching: metric clean {self.metric_clean:.4g}, corrupted {self.metric_corrupted:.4g}",
            f"cost: {self.cost}",
        ]
        if self.relative_error is not None and self.converged is not None:
            bad = int((~self.converged).sum())
            lines.append(
                f"completeness: max relative error {float(self.relative_error.max()):.3g}"
                + (f", {bad} of {len(self.components)} components on unconverged paths" if bad else ", converged")
            )
        lines += [f"  {name:<16} {value:+.4g}" for name, value in self.top(k)]
        return "\n".join(lines)
