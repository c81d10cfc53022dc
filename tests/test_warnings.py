"""Warnings from integrand point at the user's call and read as one self-explanatory line."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pytest
import torch
from torch import nn

import integrand
from integrand.convergence import summarize
from integrand.errors import ConvergenceWarning, caller_stacklevel

F64 = torch.float64


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).to(F64).eval()


def _x() -> torch.Tensor:
    return 5 * torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))


CALLS: dict[str, Callable[[nn.Sequential, torch.Tensor], Any]] = {
    "integrated_gradients": lambda m, x: integrand.integrated_gradients(m, x, 1, steps=2),
    "attribute": lambda m, x: integrand.attribute(m, x, 1, steps=2),
    "attribute at a layer": lambda m, x: integrand.attribute(m, x, 1, steps=2, layer=m[0]),
    "adaptive": lambda m, x: integrand.integrated_gradients(m, x, 1, tol=1e-12, max_steps=8),
    "methods.integrated_gradients": lambda m, x: integrand.methods.integrated_gradients(m, x, 1, steps=2),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_convergence_warnings_point_at_the_callers_file(name: str) -> None:
    model, x = _model(), _x()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CALLS[name](model, x)
    found = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert found, f"{name}: no ConvergenceWarning (converged={result.converged})"
    assert not bool(result.converged.all())
    for w in found:
        assert w.filename == __file__, (name, w.filename)
        message = str(w.message)
        assert "\n" not in message and len(message) < 400
        assert "integrated_gradients" in message and ("tol" in message or "tolerance" in message)


def test_the_warning_line_names_the_callers_source_line() -> None:
    model, x = _model(), _x()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        integrand.integrated_gradients(model, x, 1, steps=2)  # the line the warning names
    (w,) = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    import linecache

    assert "the line the warning names" in linecache.getline(w.filename, w.lineno)
    shown = warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
    assert "src/integrand" not in shown and shown.count("\n") == 2


def test_aggregate_warnings_point_at_the_caller_too() -> None:
    with pytest.warns(ConvergenceWarning, match="2 of 4 rows") as record:
        summary = summarize([True, False, False, True], "rows", "test")
    assert summary.n_unconverged == 2 and record[0].filename == __file__


def test_caller_stacklevel_counts_only_frames_inside_integrand() -> None:
    assert caller_stacklevel() == 1
