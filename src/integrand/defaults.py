"""The defaults policy: one place for method and baseline names, tolerances and step counts.

Integration policy (see also ``integrand.convergence``):

- **One tolerance.** Every path result is judged converged against :data:`TOL` (``convergence.DEFAULT_TOL``,
  a relative completeness error of 1e-2) unless ``tol`` is given, whether its steps were fixed or chosen
  by error control.
- **Error control where a person waits for one answer.** The ``integrand`` command (``explain``,
  ``generate``, ``run``) and ``GenerationExplainer`` integrate adaptively to :data:`TOL` unless
  ``--steps``/``steps=`` asks for a fixed rule.
- **A fixed rule in the array APIs.** ``integrated_gradients`` and ``TextExplainer`` without ``steps`` or
  ``tol`` use :data:`IG_STEPS` Gauss-Legendre points (cheap and predictable inside loops), and still
  report ``converged`` against :data:`TOL`. Steering fits use :data:`STEER_STEPS` (many pairs per fit).

Names: each method and baseline has one canonical spelling; the aliases below are accepted and
normalised at the boundary (``canonical_method``/``canonical_baseline``), anything else is refused with
a "did you mean" hint.

Each policy below is an :class:`integrand.integration.Integration`; an entry point fills the fields its
caller leaves out from its policy (``Integration.from_kwargs(default=...)``).

The tests (``tests/test_cli_defaults.py``) compare these values with the API signatures and the CLI.
"""

from __future__ import annotations

import difflib
import os
from typing import Mapping, Sequence

from .convergence import DEFAULT_TOL
from .errors import InputError
from .integration import Integration

TOL: float = DEFAULT_TOL
"""The relative completeness tolerance every result is judged against by default."""

IG_STEPS = 50
"""Gauss-Legendre points of ``integrated_gradients``/``TextExplainer`` when neither steps nor tol is given."""

STEER_STEPS = 16
"""IG points per preference pair of a GrAInS steering fit when neither steps nor tol is given."""

METHOD = "integrated_gradients"
"""The canonical name of the default attribution method (text and corpus runs)."""

METHOD_ALIASES: Mapping[str, str] = {"ig": "integrated_gradients"}
"""Accepted spellings of method names and the canonical name each stands for."""

TEXT_BASELINE = "pad"
"""The baseline token of text classifiers: each content token becomes the pad token."""

BASELINE_ALIASES: Mapping[str, str] = {"zero": "zeros"}
"""Accepted spellings of baseline names and the canonical name each stands for."""

THREADS = 1
"""Torch threads the ``integrand`` command uses unless ``--threads`` or ``INTEGRAND_THREADS`` says otherwise.

Measured on the 2-core development machine (docs: README "Threads"): explaining one short text with
the toxicity model took about 1 s with one thread and 3.7-9.9 s with two while other work ran; torch's
intra-op threads only pay off for large tensors on otherwise idle cores.
"""

THREADS_ENV = "INTEGRAND_THREADS"


GENERATION_MAX_STEPS = 1025
"""The most evaluations per prompt under error control in ``GenerationExplainer`` (all targets share them)."""

CLI = Integration()
"""``integrand explain``, ``generate`` and ``run``: error control to :data:`TOL` (``Integration()`` itself)."""

GENERATION = Integration(max_steps=GENERATION_MAX_STEPS)
"""``GenerationExplainer``."""

ARRAY_API = Integration(steps=IG_STEPS)
"""``integrated_gradients``, ``TextExplainer`` and IG patching."""

PATCHING = Integration(steps=16)
"""IG patching (``circuits.patching(method="ig")``): a fixed rule, judged at ``tol``."""

STEERING = Integration(steps=STEER_STEPS)
"""``steering.fit`` (GrAInS)."""


def _canonical(value: object, argument: str, aliases: Mapping[str, str], known: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise InputError(argument, f"expected a name, got {type(value).__name__}")
    name = aliases.get(value, value)
    if name in known:
        return name
    spellings = [*known, *aliases]
    close = difflib.get_close_matches(value, spellings, n=1, cutoff=0.6)
    hint = f"; did you mean {aliases.get(close[0], close[0])!r}?" if close else ""
    listing = ", ".join(list(known) + [f"{a} (= {c})" for a, c in aliases.items() if c in known])
    extra = " or a token id" if aliases is BASELINE_ALIASES else ""
    raise InputError(argument, f"unknown {argument.lstrip('-')} {value!r}; expected one of {listing}{extra}{hint}")


def canonical_method(value: object, known: Sequence[str], argument: str = "method") -> str:
    """The canonical name of method ``value`` among ``known`` (aliases such as "ig" normalised)."""
    return _canonical(value, argument, METHOD_ALIASES, known)


def canonical_baseline(value: str | int, known: Sequence[str], argument: str = "baseline") -> str | int:
    """``value`` with baseline aliases ("zero" -> "zeros") normalised; token ids pass through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _canonical(value, argument, BASELINE_ALIASES, known)


def threads(value: int | None = None) -> int:
    """The thread count: ``value``, else ``INTEGRAND_THREADS``, else :data:`THREADS`."""
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError("--threads", f"expected an integer >= 1, got {value!r}")
        return value
    env = os.environ.get(THREADS_ENV, "").strip()
    if not env:
        return THREADS
    if not env.isascii() or not env.isdigit() or int(env) < 1:
        raise InputError(THREADS_ENV, f"expected an integer >= 1, got {env!r}")
    return int(env)
