"""Convergence flags: one tolerance, one relative error and one rule for every path result.

A path result (IG and its variants, text and generation attributions, steering fits, circuits IG
patching, corpus rows) is *converged* when its completeness residual is within tolerance::

    |sum(attributions) - (f(x) - f(baseline))| <= max(tol * |f(x) - f(baseline)| + atol, noise floor)

with ``tol`` the caller's tolerance, else :data:`DEFAULT_TOL`, whether the step count was fixed or
chosen by error control (error control also asks the per-feature quadrature estimate to meet it).
The noise floor is the rounding level of the sums (``ulps * eps * (|f(x)| + |f(baseline)| +
sum |attributions|)``): a residual below it cannot be told from zero in the result's dtype.
The *relative error* reported next to the flag is ``|residual| / |f(x) - f(baseline)|``.

Whatever aggregates many path results reports how many of them missed the tolerance and warns
(:class:`~integrand.errors.ConvergenceWarning`) when more than :data:`UNCONVERGED_WARN_SHARE` did.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .errors import ConvergenceWarning, caller_stacklevel

DEFAULT_TOL = 1e-2
"""Relative completeness error a result must meet to count as converged, unless ``tol`` is given."""

UNCONVERGED_WARN_SHARE = 0.10
"""Aggregates (steering fits, rankings, corpus runs, cue tables) warn above this share of unconverged items."""


def relative_error(delta: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``|delta| / |total|`` elementwise (``total = f(x) - f(baseline)``, floored at the dtype's tiny)."""
    dtype = delta.dtype if delta.is_floating_point() else torch.float64
    scale = total.abs().to(dtype).clamp_min(torch.finfo(dtype).tiny)
    return delta.abs().to(dtype) / scale


def relative_error_value(delta: float, total: float) -> float:
    """:func:`relative_error` of plain floats (``inf`` when ``total`` is 0 and ``delta`` is not)."""
    scale = abs(total)
    if scale > 0:
        return abs(delta) / scale
    return 0.0 if delta == 0 else float("inf")


def noise_floor(magnitude: torch.Tensor, dtype: torch.dtype, ulps: float) -> torch.Tensor:
    """``ulps * eps(dtype) * magnitude``: magnitude is ``|f(x)| + |f(baseline)| + sum |attributions|``."""
    return ulps * torch.finfo(dtype).eps * magnitude.abs()


def within_tolerance(
    delta: torch.Tensor,
    total: torch.Tensor,
    tol: float | None = None,
    atol: float = 0.0,
    floor: torch.Tensor | None = None,
) -> torch.Tensor:
    """The convergence rule of this module, elementwise; NaN residuals never pass."""
    budget = (tol if tol is not None else DEFAULT_TOL) * total.abs().double() + atol
    if floor is not None:
        budget = torch.maximum(budget, floor.double().to(budget.device))
    residual = delta.abs().double().to(budget.device)
    return (residual <= budget).cpu()


def warn_unconverged(where: str, items: Sequence[object], tol: float | None, *, stacklevel: int = 3) -> None:
    """One :class:`ConvergenceWarning` naming the ``items`` (examples, target tokens) that missed ``tol``.

    The warning points at the first frame outside integrand (the user's call); ``stacklevel`` is ignored.
    """
    if not items:
        return
    warnings.warn(
        f"{where} {_listing(items)} did not meet the relative completeness tolerance "
        f"{tol if tol is not None else DEFAULT_TOL:g} (the attributions do not yet add up to f(x) - f(baseline)); "
        "the result is returned with .converged False and its .relative_error: raise steps= or pass tol=",
        ConvergenceWarning,
        stacklevel=caller_stacklevel(),
    )


@dataclass(frozen=True)
class ConvergenceSummary:
    """How many of an aggregate's path results did not converge."""

    n_items: int
    n_unconverged: int

    @property
    def unconverged_share(self) -> float:
        return self.n_unconverged / self.n_items if self.n_items else 0.0

    def line(self, what: str = "items") -> str:
        """One readable line, e.g. ``3 of 40 items (7.5%) did not converge``."""
        return f"{self.n_unconverged} of {self.n_items} {what} ({100 * self.unconverged_share:.1f}%) did not converge"


def _listing(items: Sequence[object]) -> str:
    return ", ".join(str(i) for i in items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")


def summarize(
    flags: Iterable[bool],
    what: str,
    where: str,
    *,
    names: Sequence[object] | None = None,
    warn_share: float = UNCONVERGED_WARN_SHARE,
    stacklevel: int = 3,
) -> ConvergenceSummary:
    """Count unconverged items; warn, naming them (``names``, else their indices), above ``warn_share``.

    The warning points at the first frame outside integrand (the user's call); ``stacklevel`` is ignored.
    """
    values = [bool(f) for f in flags]
    summary = ConvergenceSummary(len(values), sum(1 for v in values if not v))
    if summary.n_items and summary.unconverged_share > warn_share:
        labels = list(range(len(values))) if names is None else list(names)
        bad = [label for label, ok in zip(labels, values) if not ok]
        warnings.warn(
            f"{where}: {summary.line(what)} ({_listing(bad)}), above the {100 * warn_share:g}% allowed "
            "before results built on them are flagged; raise steps or use tol=",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )
    return summary
