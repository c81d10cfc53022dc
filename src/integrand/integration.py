"""One configuration of a path integral: the frozen :class:`Integration`, validated once.

Every entry point (``integrated_gradients`` and its layer and neuron modes, ``TextExplainer``,
``GenerationExplainer``, IG patching, the steering fit, the corpus runner and the ``integrand``
command) takes ``integration=Integration(...)``; their ``steps=``/``tol=``/... keywords stay as
shorthand and are turned into one ``Integration`` at the boundary by :meth:`Integration.from_kwargs`,
filling what is not given from that entry point's policy in ``integrand.defaults``. Giving both
``integration=`` and a shorthand keyword is an :class:`~integrand.errors.InputError` naming
``integration``. Each path result records ``params["integration"]`` (:meth:`Integration.as_params`).

The mode follows from ``steps`` and ``tol``: ``steps`` set is a fixed rule of that many points (judged
at :data:`~integrand.convergence.DEFAULT_TOL`); ``tol`` set is error control to that tolerance;
neither set is error control to ``DEFAULT_TOL`` (normalised, so ``Integration() ==
Integration(tol=DEFAULT_TOL)``), except with ``rule="exact"`` (the exact piecewise-linear sum).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .convergence import DEFAULT_TOL
from .errors import InputError
from .quadrature import MAX_STEPS, RULES

EXACT = "exact"
"""The rule name of exact IG for piecewise-linear models (``integrand.exact``)."""

DEFAULT_RULE = "gauss-legendre"
DEFAULT_MAX_STEPS = 4097
"""Enough for every test digit of the ReLU CNN at tol=1e-3 (the hardest needs 3,407; most need 120-500)."""

FIELDS = ("steps", "rule", "tol", "max_steps", "atol", "batch_size", "memory_budget")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Integration:
    """How a straight-line path integral is computed.

    Attributes:
        steps: points of a fixed quadrature rule (1 to ``quadrature.MAX_STEPS``); excludes ``tol``.
        rule: the fixed rule: "gauss-legendre" (default), "left", "right", "middle", "trapezoid",
            "clenshaw-curtis"; or "exact" (piecewise-linear models, input IG only).
        tol: error control: each example's relative completeness and quadrature error at most ``tol``.
        max_steps: the most gradient evaluations per example under error control (5 to ``MAX_STEPS``).
        atol: absolute slack added to ``tol * |f(x) - f(baseline)|`` (>= 0).
        batch_size: integration points per forward/backward pass (None: from the memory budget).
        memory_budget: bytes for one pass when ``batch_size`` is None (None: a quarter of what is free).
    """

    steps: int | None = None
    rule: str = DEFAULT_RULE
    tol: float | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    atol: float = 0.0
    batch_size: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None:
            if not _is_int(self.steps) or self.steps < 1:
                raise InputError("steps", f"expected an integer >= 1, got {self.steps!r}")
            if self.steps > MAX_STEPS:
                raise InputError(
                    "steps", f"expected at most {MAX_STEPS:,} nodes (quadrature.MAX_STEPS), got {self.steps:,}"
                )
            if self.tol is not None:
                raise InputError("steps", "give either steps= (fixed rule) or tol= (error-controlled), not both")
        if not isinstance(self.rule, str) or self.rule not in (*RULES, EXACT):
            raise InputError("rule", f"unknown rule {self.rule!r}; expected one of {', '.join((*RULES, EXACT))}")
        if self.rule == EXACT and self.steps is not None:
            raise InputError("rule", "'exact' takes no steps= (it sums the path's linear pieces)")
        if self.tol is not None and (not _is_number(self.tol) or self.tol <= 0):
            raise InputError("tol", f"expected a finite number > 0, got {self.tol!r}")
        if not _is_int(self.max_steps) or not 5 <= self.max_steps <= MAX_STEPS:
            raise InputError("max_steps", f"expected an integer in [5, {MAX_STEPS:,}], got {self.max_steps!r}")
        if not _is_number(self.atol) or self.atol < 0:
            raise InputError("atol", f"expected a finite number >= 0, got {self.atol!r}")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise InputError("batch_size", f"expected an integer >= 1, got {self.batch_size!r}")
        if self.memory_budget is not None and (not _is_int(self.memory_budget) or self.memory_budget < 1):
            raise InputError("memory_budget", f"expected a positive number of bytes, got {self.memory_budget!r}")
        if self.steps is None and self.tol is None and self.rule != EXACT:
            object.__setattr__(self, "tol", DEFAULT_TOL)  # error control to the one default tolerance

    @property
    def adaptive(self) -> bool:
        """Error control (``tol`` set), as opposed to a fixed rule or the exact sum."""
        return self.tol is not None

    @property
    def judged_at(self) -> float:
        """The tolerance ``converged`` is judged against."""
        return self.tol if self.tol is not None else DEFAULT_TOL

    def describe(self) -> str:
        """One line for people: what this integrates with."""
        if self.rule == EXACT:
            return "the exact sum over linear pieces" + (
                f" (else error control to tol {self.tol:g})" if self.tol else ""
            )
        if self.tol is not None:
            return f"error control to tol {self.tol:g}"
        return f"{self.steps} fixed {self.rule} points (judged at tol {DEFAULT_TOL:g})"

    def as_params(self) -> dict[str, Any]:
        """The seven fields as a plain dict (what results record as ``params["integration"]``)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Integration:
        """The inverse of :meth:`as_params` (unknown keys are refused, naming them)."""
        unknown = sorted(set(params) - set(FIELDS))
        if unknown:
            raise InputError("integration", f"unknown fields {unknown}; expected some of {list(FIELDS)}")
        return cls(**params)

    @classmethod
    def from_kwargs(
        cls,
        integration: Integration | None = None,
        *,
        default: Integration | None = None,
        steps: int | None = None,
        rule: str | None = None,
        tol: float | None = None,
        max_steps: int | None = None,
        atol: float | None = None,
        batch_size: int | None = None,
        memory_budget: int | None = None,
    ) -> Integration:
        """One ``Integration`` from an entry point's arguments: ``integration`` itself, or the shorthand
        keywords given (not None) over ``default`` (the entry point's policy; ``Integration()`` if None).

        ``steps`` alone replaces the policy's ``tol`` (a fixed rule), ``tol`` alone its ``steps``;
        ``rule="exact"`` alone asks for the exact sum. Both ``integration`` and a keyword: InputError
        naming ``integration``.
        """
        given: dict[str, Any] = {
            name: value
            for name, value in zip(FIELDS, (steps, rule, tol, max_steps, atol, batch_size, memory_budget))
            if value is not None
        }
        if integration is not None:
            if not isinstance(integration, Integration):
                raise InputError(
                    "integration", f"expected an integrand.integration.Integration, got {type(integration).__name__}"
                )
            if given:
                raise InputError(
                    "integration",
                    f"give integration= or the keywords {', '.join(given)}=, not both "
                    f"(dataclasses.replace(integration, ...) changes a field)",
                )
            return integration
        if default is not None and not isinstance(default, Integration):
            raise InputError("default", f"expected an Integration, got {type(default).__name__}")
        base = default if default is not None else cls()
        if "steps" in given and "tol" in given:
            raise InputError("steps", "give either steps= (fixed rule) or tol= (error-controlled), not both")
        if "steps" in given:
            given["tol"] = None
        elif "tol" in given:
            given["steps"] = None
        elif given.get("rule") == EXACT:
            given["steps"] = given["tol"] = None
        return dataclasses.replace(base, **given)
