"""The IG axioms on models with closed-form answers, in float64."""

from __future__ import annotations

import pytest
import torch

import integrand

from .models import PaperNetF, PaperNetG, Quadratic, cnn, fold_batchnorm, mlp

D = torch.float64


def test_completeness_closed_form_quadratic() -> None:
    a, b = torch.randn(5, dtype=D), torch.randn(5, dtype=D)
    model = Quadratic(a, b)
    x, base = torch.randn(3, 5, dtype=D), torch.randn(3, 5, dtype=D)
    res = integrand.integrated_gradients(model, x, baseline=base, steps=2)
    expected = a * (x**2 - base**2) + b * (x - base)
    torch.testing.assert_close(res.values, expected, rtol=1e-12, atol=1e-12)
    assert float(res.relative_error.max()) < 1e-12


@pytest.mark.parametrize("rule", ["gauss-legendre", "middle", "trapezoid"])
def test_completeness_error_control_smooth_mlp(rule: str) -> None:
    model = mlp().to(D)
    x = torch.randn(4, 6, dtype=D)
    res = integrand.integrated_gradients(model, x, target=1, tol=1e-9)
    assert bool(res.converged.all())
    assert float(res.relative_error.max()) <= 1e-9
    fixed = integrand.integrated_gradients(model, x, target=1, steps=64, rule=rule)
    assert float(fixed.relative_error.max()) < 1e-3


def test_sensitivity_single_differing_feature_gets_all_credit() -> None:
    model = mlp().to(D)
    x = torch.randn(1, 6, dtype=D)
    base = x.clone()
    base[0, 2] += 1.5
    res = integrand.integrated_gradients(model, x, target=0, baseline=base, tol=1e-8)
    diff = float(res.score_input - res.score_baseline)
    assert abs(diff) > 1e-6
    assert float(res.values[0, 2]) == pytest.approx(diff, rel=1e-7)
    others = torch.cat([res.values[0, :2], res.values[0, 3:]])
    assert torch.equal(others, torch.zeros_like(others))


def test_dummy_feature_gets_zero() -> None:
    model = mlp().to(D)
    with torch.no_grad():
        model[0].weight[:, 4] = 0.0
    x = torch.randn(3, 6, dtype=D)
    res = integrand.integrated_gradients(model, x, target=2, steps=16)
    assert torch.equal(res.values[:, 4], torch.zeros(3, dtype=D))


def test_implementation_invariance_paper_relu_nets() -> None:
    x = torch.tensor([[3.0, 1.0], [1.5, 0.2], [2.0, -1.0]], dtype=D)
    f = integrand.integrated_gradients(PaperNetF(), x, steps=50)
    g = integrand.integrated_gradients(PaperNetG(), x, steps=50)
    torch.testing.assert_close(f.values, g.values, rtol=0, atol=1e-12)
    # Both nets equal the same function, so error control converges to the same exact values.
    fa = integrand.integrated_gradients(PaperNetF(), x, tol=1e-8)
    ga = integrand.integrated_gradients(PaperNetG(), x, tol=1e-8)
    torch.testing.assert_close(fa.values, ga.values, rtol=1e-7, atol=1e-9)


def test_implementation_invariance_batchnorm_folding() -> None:
    model = cnn(batchnorm=True).to(D)
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    model.eval()
    folded = fold_batchnorm(model).eval()
    x = torch.randn(3, 1, 8, 8, dtype=D)
    torch.testing.assert_close(model(x), folded(x))
    a = integrand.integrated_gradients(model, x, target=1, steps=32)
    b = integrand.integrated_gradients(folded, x, target=1, steps=32)
    torch.testing.assert_close(a.values, b.values, rtol=1e-9, atol=1e-12)


def test_linearity() -> None:
    f1, f2 = mlp(classes=1).to(D), mlp(classes=1).to(D)

    def combo(x: torch.Tensor) -> torch.Tensor:
        return (2.5 * f1(x) - 0.7 * f2(x))[:, 0]

    x = torch.randn(4, 6, dtype=D)
    r = integrand.integrated_gradients(combo, x, steps=24)
    r1 = integrand.integrated_gradients(lambda t: f1(t)[:, 0], x, steps=24)
    r2 = integrand.integrated_gradients(lambda t: f2(t)[:, 0], x, steps=24)
    torch.testing.assert_close(r.values, 2.5 * r1.values - 0.7 * r2.values, rtol=1e-10, atol=1e-12)


def test_symmetry_preservation() -> None:
    inner = mlp(inputs=3, classes=1).to(D)

    def symmetric(x: torch.Tensor) -> torch.Tensor:
        swapped = x[:, [1, 0, 2, 3]]
        return (inner(x[:, [0, 1, 2]] + x[:, [3, 3, 3]]) + inner(swapped[:, [0, 1, 2]] + x[:, [3, 3, 3]]))[:, 0]

    x = torch.randn(5, 4, dtype=D)
    x[:, 1] = x[:, 0]
    res = integrand.integrated_gradients(symmetric, x, steps=32)
    torch.testing.assert_close(res.values[:, 0], res.values[:, 1], rtol=1e-10, atol=1e-12)
