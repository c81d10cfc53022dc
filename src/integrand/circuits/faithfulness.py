"""How well a cheap patching method reproduces activation patching: correlations per component kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from ..errors import InputError, MissingExtraError
from ..protocol import NoCompleteness
from .result import Cost, PatchingResult


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation of one method's scores with the reference over ``n`` components."""

    kind: str
    n: int
    pearson: float
    spearman: float


@dataclass(frozen=True, repr=False)
class Faithfulness(NoCompleteness):
    """Per-kind agreement of ``method`` with ``reference_method``, the paired scores and both costs.

    ``values`` is ``[kind, statistic]``: Pearson and Spearman per component kind. A comparison of two
    methods has no completeness notion: ``delta``, ``relative_error`` and ``converged`` are ``None``.
    """

    method: str
    reference_method: str
    rows: tuple[Correlation, ...]
    scores: dict[str, tuple[torch.Tensor, torch.Tensor]]
    cost: Cost
    reference_cost: Cost

    AXES = ("kind", "statistic")
    STATISTICS: ClassVar[tuple[str, ...]] = ("pearson", "spearman")

    @property
    def values(self) -> torch.Tensor:
        """Pearson and Spearman correlation with the reference, one row per kind: [kinds, 2]."""
        return torch.tensor([[r.pearson, r.spearman] for r in self.rows], dtype=torch.float64).reshape(-1, 2)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reference_method": self.reference_method,
            "components": {r.kind: r.n for r in self.rows},
            "cost": str(self.cost),
            "reference_cost": str(self.reference_cost),
        }

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"kind": [r.kind for r in self.rows], "statistic": self.STATISTICS}

    def row(self, kind: str) -> Correlation:
        for r in self.rows:
            if r.kind == kind:
                return r
        raise InputError("kind", f"no {kind!r} row; present: {[r.kind for r in self.rows]}")

    def table(self) -> str:
        """A Markdown table: one row per kind."""
        return markdown_table([self])

    def plot(self, path: str | Path | None = None) -> Any:
        """Scatter of method vs reference scores per kind; saved to ``path`` if given. Needs matplotlib."""
        try:
            from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone
        except ImportError as exc:
            raise MissingExtraError("matplotlib", "viz") from exc
        fig = Figure(figsize=(3.2 * len(self.rows), 3.2))
        axes = fig.subplots(1, len(self.rows), squeeze=False)
        for ax, row in zip(axes[0], self.rows):
            x, y = self.scores[row.kind]
            ax.scatter(x.numpy(), y.numpy(), s=8, alpha=0.7)
            lo = float(min(x.min(), y.min()))
            hi = float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, linestyle="--")
            ax.set_title(f"{row.kind}: r={row.pearson:.3f}, rho={row.spearman:.3f}", fontsize=9)
            ax.set_xlabel(f"{self.reference_method} patching")
            ax.set_ylabel(f"{self.method} patching")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant."""
    # Test constancy on the raw values: the mean of equal floats need not equal them, so the
    # centred vector of a constant side can hold rounding residue instead of exact zeros.
    if x.numel() == 0 or bool(x.min() == x.max()) or bool(y.min() == y.max()):
        return math.nan
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else math.nan


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks starting at 1, ties sharing their average rank."""
    values = x.double().tolist()
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return torch.tensor(out, dtype=torch.float64)


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(ranks(x), ranks(y))


def faithfulness(scores: PatchingResult, reference: PatchingResult, kinds: Sequence[str] | None = None) -> Faithfulness:
    """Correlate ``scores`` with ``reference`` (usually activation patching) per component kind."""
    for arg, value in (("scores", scores), ("reference", reference)):
        if not isinstance(value, PatchingResult):
            raise InputError(arg, f"expected a PatchingResult, got {type(value).__name__}")
    ref_index = {name: i for i, name in enumerate(reference.names)}
    missing = [n for n in scores.names if n not in ref_index]
    if missing:
        raise InputError("reference", f"has no score for {len(missing)} components, e.g. {missing[:3]}")
    wanted = scores.kinds() if kinds is None else tuple(kinds)
    rows: list[Correlation] = []
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for kind in wanted:
        comps, own = scores.select(kind)
        if not comps:
            raise InputError("kinds", f"no {kind!r} components in the scores")
        ref = reference.scores[[ref_index[c.name] for c in comps]]
        pairs[kind] = (ref, own)
        rows.append(Correlation(kind, len(comps), pearson(own, ref), spearman(own, ref)))
    return Faithfulness(scores.method, reference.method, tuple(rows), pairs, scores.cost, reference.cost)


def markdown_table(results: Sequence[Faithfulness]) -> str:
    """One Markdown table for several methods: Pearson / Spearman per kind, and costs."""
    if not results:
        raise InputError("results", "nothing to tabulate")
    kinds = list(dict.fromkeys(r.kind for f in results for r in f.rows))
    head = "| method | " + " | ".join(f"{k} r / rho" for k in kinds) + " | passes (fwd + bwd) | seconds |"
    lines = [head, "|" + "---|" * (len(kinds) + 3)]
    for f in results:
        cells = []
        for k in kinds:
            row = next((r for r in f.rows if r.kind == k), None)
            cells.append("-" if row is None else f"{row.pearson:.3f} / {row.spearman:.3f}")
        cost = f.cost
        lines.append(
            f"| {f.method} | " + " | ".join(cells) + f" | {cost.forward} + {cost.backward} | {cost.seconds:.2f} |"
        )
    ref = results[0].reference_cost
    lines.append(
        f"| {results[0].reference_method} (reference) | "
        + " | ".join("1 / 1" for _ in kinds)
        + f" | {ref.forward} + {ref.backward} | {ref.seconds:.2f} |"
    )
    return "\n".join(lines)
