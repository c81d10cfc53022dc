"""The local-function-approximation view: each method is a (neighbourhood, loss) pair fitted explicitly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import integrand
from integrand import InputError, lfa
from integrand.checks import generator
from integrand.methods import REGISTRY
from integrand.neighbourhoods import (
    BernoulliMasks,
    Gaussian,
    LeaveOneOut,
    Point,
    ShapleyCoalitions,
    StraightPath,
    Uniform,
)
from tests.models import cnn, mlp
from tests.reference.perturbation_oracle import shapley_values, weighted_least_squares


@pytest.fixture
def smooth() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return mlp(inputs=5, hidden=12, classes=3, act=nn.Tanh).double(), torch.randn(3, 5, dtype=torch.float64)


def _grad(model: nn.Module, points: torch.Tensor, target: int) -> torch.Tensor:
    """Input gradients one point at a time (the obvious loop)."""
    out = []
    for p in points:
        leaf = p[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(leaf)[0, target], leaf)
        out.append(g[0])
    return torch.stack(out)


def test_gradient_matching_minimiser_is_the_mean_gradient(smooth, state_guard) -> None:
    model, x = smooth
    guard = state_guard(model)
    hood = Gaussian(sigma=0.3, n_samples=40)
    local = lfa.fit(model, x, hood, "gradient", 1, seed=4)
    guard.assert_unchanged()
    eps = hood.sample(5, generator(4)).xi
    for e in range(3):
        grads = _grad(model, x[e] + eps, 1)
        torch.testing.assert_close(local.coefficients[e], grads.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(local.loss[e], ((grads - grads.mean(0)) ** 2).sum(1).mean(), rtol=1e-10, atol=1e-14)


def test_point_neighbourhood_gives_the_gradient(smooth) -> None:
    model, x = smooth
    local = lfa.fit(model, x, Point(), "gradient", 2)
    torch.testing.assert_close(local.coefficients, _grad(model, x, 2), rtol=1e-12, atol=1e-12)
    if "saliency" in REGISTRY.names():
        torch.testing.assert_close(local.coefficients, integrand.attribute(model, x, 2, method="saliency").values)


@pytest.mark.parametrize("rule", ["gauss-legendre", "trapezoid", "middle"])
def test_straight_path_gradient_matching_is_integrated_gradients(rule: str) -> None:
    torch.manual_seed(1)
    model = cnn(act=nn.Softplus).double()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    base = torch.rand(1, 1, 6, 6, dtype=torch.float64) * 0.2
    local = lfa.fit(model, x, StraightPath(steps=16, rule=rule, baseline=base), "gradient", 3)
    ig = integrand.integrated_gradients(model, x, 3, baseline=base, steps=16, rule=rule)
    torch.testing.assert_close(local.coefficients, ig.values, rtol=1e-10, atol=1e-12)
    # Completeness of the fitted model is IG's completeness error.
    torch.testing.assert_close(local.completeness, ig.delta, rtol=1e-8, atol=1e-10)


def test_point_mass_at_the_input_in_mask_coordinates_is_input_times_gradient(smooth) -> None:
    model, x = smooth
    local = lfa.fit(model, x, StraightPath(steps=1, rule="right"), "gradient", 0)
    torch.testing.assert_close(local.coefficients, x * _grad(model, x, 0), rtol=1e-12, atol=1e-12)


def test_squared_loss_on_bernoulli_masks_is_lime_and_weighted_least_squares(smooth) -> None:
    model, x = smooth
    hood = BernoulliMasks(n_samples=80, kernel_width=0.5, baseline=0.2)
    local = lfa.fit(model, x, hood, "squared", 1, seed=6)
    lime = integrand.methods.lime(model, x, 1, n_samples=80, kernel_width=0.5, baseline=0.2, seed=6)
    torch.testing.assert_close(local.coefficients, lime.values, rtol=0, atol=0)
    draw = hood.sample(5, generator(6))
    for e in range(3):
        points = draw.xi * x[e] + (1 - draw.xi) * 0.2
        with torch.no_grad():
            y = model(points)[:, 1].numpy()
        slope, intercept = weighted_least_squares(draw.xi.numpy(), y, draw.weights.numpy())
        np.testing.assert_allclose(local.coefficients[e].numpy(), slope, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(float(local.intercept[e]), intercept, rtol=1e-8, atol=1e-10)


def test_leave_one_out_squared_loss_is_feature_ablation_and_occlusion() -> None:
    torch.manual_seed(2)
    model = cnn()
    x = torch.rand(2, 1, 6, 6)
    mask = (torch.arange(6)[:, None] // 3 * 2 + torch.arange(6)[None, :] // 3).view(1, 1, 6, 6)
    local = lfa.fit(model, x, LeaveOneOut(baseline=0.5, feature_mask=mask), "squared", 4)
    ablation = integrand.methods.feature_ablation(model, x, 4, feature_mask=mask, baseline=0.5)
    occlusion = integrand.occlusion(model, x, 4, window=(1, 3, 3), strides=(1, 3, 3), baseline=0.5)
    torch.testing.assert_close(local.coefficients, ablation.values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(local.coefficients, occlusion.values, rtol=1e-4, atol=1e-5)
    assert float(local.loss.max()) < 1e-9  # m + 1 points, m + 1 parameters: the fit interpolates


def test_shapley_coalitions_squared_loss_is_kernel_shap_and_exact(smooth) -> None:
    model, x = smooth
    local = lfa.fit(model, x, ShapleyCoalitions(), "squared", 2)
    shap = integrand.methods.kernel_shap(model, x, 2, n_samples=None)
    torch.testing.assert_close(local.coefficients, shap.values, rtol=0, atol=0)
    oracle = shapley_values(lambda p: float(model(p[None])[0, 2].detach()), x[0], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(local.coefficients[0], torch.tensor(oracle, dtype=torch.float64), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(local.intercept, model(torch.zeros(1, 5, dtype=torch.float64))[:, 2].detach().expand(3))


def test_c_lime_approaches_smoothgrad_as_samples_grow(smooth) -> None:
    # Stein's lemma: E[eps f(x + eps)] = sigma^2 E[grad f(x + eps)], so least squares on Gaussian draws and
    # gradient matching on Gaussian draws share their population solution.
    model, x = smooth
    reference = lfa.fit(model, x, Gaussian(sigma=0.4, n_samples=20000), "gradient", 0, seed=0).coefficients
    errors = []
    for n in (100, 10000):
        c_lime = integrand.methods.c_lime(model, x, 0, sigma=0.4, n_samples=n, seed=1).values
        errors.append(float((c_lime - reference).norm() / reference.norm()))
    assert errors[1] < 0.05 and errors[1] < errors[0] / 3, errors


def test_fitted_coefficients_minimise_their_own_loss(smooth) -> None:
    model, x = smooth
    g = torch.Generator().manual_seed(0)
    for hood, loss, kind in [
        (BernoulliMasks(n_samples=60), "squared", "attribution"),
        (Gaussian(sigma=0.2, n_samples=60), "squared", "gradient"),
        (Gaussian(sigma=0.2, n_samples=60), "gradient", "gradient"),
        (Uniform(radius=0.2, n_samples=30), "gradient", "gradient"),
        (BernoulliMasks(n_samples=60, feature_mask=torch.tensor([0, 0, 1, 1, 2])), "squared", "group"),
    ]:
        local = lfa.fit(model, x, hood, loss, 1, seed=3)
        same = lfa.loss_of(model, x, local.coefficients, hood, loss, 1, kind=kind, seed=3)
        torch.testing.assert_close(same, local.loss, rtol=1e-9, atol=1e-12)
        if kind == "group":
            continue  # moving single elements would break the group structure
        for _ in range(3):
            moved = local.coefficients + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
            worse = lfa.loss_of(model, x, moved, hood, loss, 1, kind=kind, seed=3)
            assert bool((worse > same).all())


def test_gradients_and_attributions_convert_through_x_minus_baseline(smooth) -> None:
    model, x = smooth
    grad = _grad(model, x, 0)
    hood = BernoulliMasks(n_samples=50, baseline=0.3)
    as_gradient = lfa.loss_of(model, x, grad, hood, "squared", 0, kind="gradient", seed=1)
    as_attribution = lfa.loss_of(model, x, grad * (x - 0.3), hood, "squared", 0, kind="attribution", seed=1)
    torch.testing.assert_close(as_gradient, as_attribution, rtol=1e-12, atol=1e-14)
    ig = integrand.integrated_gradients(model, x, 0, steps=8)
    additive = Gaussian(sigma=0.1, n_samples=30)
    from_result = lfa.loss_of(model, x, ig, additive, "squared", 0, kind="attribution", seed=2)
    by_hand = lfa.loss_of(model, x, ig.values / x, additive, "squared", 0, kind="gradient", seed=2)
    torch.testing.assert_close(from_result, by_hand, rtol=1e-12, atol=1e-14)


def test_seeded_fits_are_bit_identical(smooth) -> None:
    model, x = smooth
    a = lfa.fit(model, x, Gaussian(sigma=0.2, n_samples=30), "squared", 0, seed=9)
    b = lfa.fit(model, x, Gaussian(sigma=0.2, n_samples=30), "squared", 0, seed=9)
    assert torch.equal(a.coefficients, b.coefficients) and a.seed == 9


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: Gaussian(sigma=0.0), "sigma"),
        (lambda: Gaussian(sigma=-1.0), "sigma"),
        (lambda: Uniform(radius=0.0), "radius"),
        (lambda: Gaussian(sigma=0.1, n_samples=0), "n_samples"),
        (lambda: BernoulliMasks(p=0.0), "p"),
        (lambda: BernoulliMasks(kernel_width=0.0), "kernel_width"),
        (lambda: StraightPath(steps=0), "steps"),
        (lambda: StraightPath(rule="simpsons"), "rule"),
    ],
)
def test_zero_width_and_bad_neighbourhoods(build, argument: str) -> None:
    with pytest.raises(InputError) as info:
        build()
    assert info.value.argument == argument


@pytest.mark.parametrize(
    ("hood", "loss", "params", "argument"),
    [
        (Point(), "squared", {}, "loss"),
        (Gaussian(sigma=0.1), "cubic", {}, "loss"),
        (ShapleyCoalitions(), "gradient", {}, "loss"),
        (Gaussian(sigma=0.1), "gradient", {"ridge": 1.0}, "ridge"),
        ("gaussian", "squared", {}, "neighbourhood"),
        (LeaveOneOut(feature_mask=torch.tensor([0, 1])), "squared", {}, "feature_mask"),
    ],
)
def test_bad_fit_arguments(hood, loss: str, params: dict, argument: str, smooth) -> None:
    model, x = smooth
    with pytest.raises(InputError) as info:
        lfa.fit(model, x, hood, loss, 0, **params)
    assert info.value.argument == argument


def test_loss_of_checks_kind_and_shape(smooth) -> None:
    model, x = smooth
    with pytest.raises(InputError) as info:
        lfa.loss_of(model, x, x, Gaussian(sigma=0.1), kind="saliency")
    assert info.value.argument == "kind"
    with pytest.raises(InputError) as info:
        lfa.loss_of(model, x, x[:, :3], Gaussian(sigma=0.1), kind="gradient")
    assert info.value.argument == "explanation"
