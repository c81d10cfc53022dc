"""Captum 0.9's infidelity and sensitivity_max on identical perturbations give the same numbers."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from integrand import metrics
from tests.models import cnn, mlp

captum_metrics = pytest.importorskip("captum.metrics")
captum_attr = pytest.importorskip("captum.attr")


def _example_major(noise: torch.Tensor) -> torch.Tensor:
    """Our ``[samples, batch, ...]`` noise in Captum's order (each example repeated samples times)."""
    return noise.transpose(0, 1).reshape(-1, *noise.shape[2:])


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum(normalize: bool) -> None:
    torch.manual_seed(0)
    model = cnn().double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 0, 4])
    attr = captum_attr.IntegratedGradients(model).attribute(x, target=target, n_steps=16)
    n = 7
    noise = torch.randn(n, *x.shape, dtype=torch.float64) * 0.05

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = _example_major(noise)
        return flat, inputs - flat

    theirs = captum_metrics.infidelity(
        model, perturb, x, attr, target=target, n_perturb_samples=n, normalize=normalize
    )
    ours = metrics.infidelity(model, x, attr, target, perturbations=noise, n_samples=n, normalize=normalize)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_sensitivity_max_matches_captum() -> None:
    torch.manual_seed(1)
    model = mlp(inputs=6, hidden=10, classes=3).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    n = 5
    noise = (torch.rand(n, *x.shape, dtype=torch.float64) * 2 - 1) * 0.1
    explain = captum_attr.InputXGradient(model).attribute

    def perturb(inputs: torch.Tensor, radius: float) -> torch.Tensor:
        return inputs + _example_major(noise)

    theirs = captum_metrics.sensitivity_max(explain, x, perturb_func=perturb, n_perturb_samples=n, target=target)

    def same_explainer(model: Any, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return explain(inputs, target=target)

    ours = metrics.sensitivity_max(model, x, target, method=same_explainer, perturbations=noise, n_samples=n)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    # Our own input x gradient gives the same numbers as Captum's.
    native = metrics.sensitivity_max(model, x, target, method="input_x_gradient", perturbations=noise, n_samples=n)
    torch.testing.assert_close(native, theirs, rtol=1e-9, atol=1e-12)
