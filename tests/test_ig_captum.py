"""Agreement with Captum 0.9 IntegratedGradients at equal steps (float64)."""

from __future__ import annotations

import pytest
import torch

import integrand

from .models import TwoInputs, cnn, mlp

captum_attr = pytest.importorskip("captum.attr")
D = torch.float64
RULES = {
    "gauss-legendre": "gausslegendre",
    "left": "riemann_left",
    "right": "riemann_right",
    "middle": "riemann_middle",
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_single_input_models(rule: str, kind: str) -> None:
    model = (mlp() if kind == "mlp" else cnn(act=torch.nn.Tanh)).to(D)
    x = torch.randn(5, 6, dtype=D) if kind == "mlp" else torch.randn(5, 1, 8, 8, dtype=D)
    base = torch.randn_like(x) * 0.1
    target = torch.tensor([0, 1, 2, 1, 0])
    ours = integrand.integrated_gradients(model, x, target=target, baseline=base, steps=17, rule=rule, batch_size=13)
    theirs, delta = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=17, method=RULES[rule], return_convergence_delta=True
    )
    assert _rel(ours.values, theirs) <= 1e-6
    # Captum's delta is sum - (f(x) - f(x')); ours is the opposite sign.
    torch.testing.assert_close(ours.delta, -delta, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_named_inputs(rule: str) -> None:
    model = TwoInputs().to(D)
    image, vector = torch.randn(3, 1, 6, 6, dtype=D), torch.randn(3, 4, dtype=D)
    ours = integrand.integrated_gradients(model, {"image": image, "vector": vector}, target=2, steps=20, rule=rule)
    theirs = captum_attr.IntegratedGradients(model).attribute((image, vector), target=2, n_steps=20, method=RULES[rule])
    assert _rel(ours.values["image"], theirs[0]) <= 1e-6
    assert _rel(ours.values["vector"], theirs[1]) <= 1e-6


def test_trapezoid_weights_sum_to_one_unlike_captum() -> None:
    """Captum's riemann_trapezoid loses 1/n of the integral; ours is complete on a linear model."""
    model = torch.nn.Linear(4, 1).to(D)
    x = torch.randn(2, 4, dtype=D)
    ours = integrand.integrated_gradients(lambda t: model(t)[:, 0], x, steps=10, rule="trapezoid")
    assert float(ours.relative_error.max()) < 1e-12
    theirs = captum_attr.IntegratedGradients(lambda t: model(t)[:, 0]).attribute(
        x, n_steps=10, method="riemann_trapezoid"
    )
    torch.testing.assert_close(theirs, ours.values * 0.9, rtol=1e-6, atol=0.0)
