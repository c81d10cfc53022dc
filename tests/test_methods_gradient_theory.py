"""Gradient methods against what theory says: linear models, separable models, paper guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

import integrand
from integrand.inputs import as_input_set
from integrand.methods.blur_ig import BlurPath, blur_matrix
from tests.models import Quadratic, cnn, mlp

F64 = torch.float64


class Linear(nn.Module):
    """f(x) = w·x + b over all non-batch dims, one score per example."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.tensor(b, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(dim=1) + self.b


@pytest.fixture
def linear() -> tuple[Linear, torch.Tensor]:
    torch.manual_seed(1)
    return Linear(torch.randn(7, dtype=F64), 0.7), torch.randn(5, 7, dtype=F64)


def test_saliency_is_w(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    w = model.w.detach().expand_as(x)
    assert torch.allclose(integrand.saliency(model, x).values, w, atol=1e-14)
    assert torch.allclose(integrand.saliency(model, x, absolute=True).values, w.abs(), atol=1e-14)


def test_input_x_gradient_is_w_times_x(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    assert torch.allclose(integrand.methods.input_x_gradient(model, x).values, model.w.detach() * x, atol=1e-14)


def test_guided_backprop_and_deconvnet_are_w_without_relus(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    for fn in (integrand.methods.guided_backprop, integrand.methods.deconvnet):
        result = fn(model, x)
        assert torch.allclose(result.values, model.w.detach().expand_as(x), atol=1e-14)
        assert result.params["relu_modules"] == 0


def test_noise_tunnel_on_linear_model(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    w = model.w.detach().expand_as(x)
    assert torch.allclose(integrand.smoothgrad(model, x, stdev=0.5, samples=7, seed=0).values, w, atol=1e-14)
    squared = integrand.methods.smoothgrad_sq(model, x, stdev=0.5, samples=7, seed=0)
    assert torch.allclose(squared.values, w**2, atol=1e-14)
    assert integrand.methods.vargrad(model, x, stdev=0.5, samples=7, seed=0).values.abs().max() < 1e-14


def test_smoothgrad_of_input_x_gradient_uses_the_noisy_inputs(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    # E[(x + ε) ⊙ w] over many samples approaches x ⊙ w at rate σ/sqrt(n).
    result = integrand.smoothgrad(model, x, stdev=0.1, samples=4000, base="input_x_gradient", seed=3)
    assert torch.allclose(result.values, model.w.detach() * x, atol=0.01)


def test_deeplift_is_w_times_difference(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    base = torch.randn(7, dtype=F64)
    result = integrand.methods.deeplift(model, x, baseline=base)
    assert torch.allclose(result.values, model.w.detach() * (x - base), atol=1e-14)
    assert result.delta is not None and result.delta.abs().max() < 1e-13


def test_gradient_shap_and_expected_gradients_on_linear_model(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    single = torch.randn(1, 7, dtype=F64)
    for fn in (integrand.methods.gradient_shap, integrand.methods.expected_gradients):
        result = fn(model, x, baselines=single, samples=5, seed=0)
        assert torch.allclose(result.values, model.w.detach() * (x - single), atol=1e-13)
        # With many references the sum still equals f(x) - mean f(drawn references) exactly.
        many = fn(model, x, baselines=torch.randn(20, 7, dtype=F64), samples=9, seed=1)
        assert many.delta is not None and many.delta.abs().max() < 1e-12


def test_gradient_shap_noise_enters_through_x_minus_baseline(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    single = torch.zeros(1, 7, dtype=F64)
    noisy = integrand.methods.gradient_shap(model, x, baselines=single, samples=3000, stdev=0.2, seed=2)
    assert torch.allclose(noisy.values, model.w.detach() * x, atol=0.02)
    assert not torch.allclose(noisy.values, model.w.detach() * x, atol=1e-6)


def test_guided_ig_is_w_times_difference(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    result = integrand.methods.guided_ig(model, x, baseline=0.3, steps=20)
    assert torch.allclose(result.values, model.w.detach() * (x - 0.3), atol=1e-8)


def test_blur_ig_on_linear_image_model() -> None:
    torch.manual_seed(2)
    w = torch.randn(1, 6, 6, dtype=F64)
    model, x = Linear(w, -0.2), torch.rand(3, 1, 6, 6, dtype=F64)
    result = integrand.methods.blur_ig(model, x, max_sigma=8.0, steps=60)
    assert isinstance(result.baseline, torch.Tensor)
    assert torch.allclose(result.values, w * (x - result.baseline), atol=1e-8)


def test_idgi_on_linear_model_gives_squared_weight_shares(linear: tuple[Linear, torch.Tensor]) -> None:
    model, x = linear
    w = model.w.detach()
    share = w**2 / (w**2).sum()
    for path in ("integrated_gradients", "guided_ig"):
        result = integrand.methods.idgi(model, x, path=path, baseline=0.5, steps=9)
        change = result.score_input - result.score_baseline
        assert torch.allclose(result.values, share * change[:, None], atol=1e-13), path


def test_separable_quadratic_closed_forms() -> None:
    torch.manual_seed(3)
    a, b = torch.randn(6, dtype=F64), torch.randn(6, dtype=F64)
    model = Quadratic(a, b)
    x, base = torch.randn(4, 6, dtype=F64), torch.randn(4, 6, dtype=F64)
    exact = a * (x**2 - base**2) + b * (x - base)
    # Every monotone path gives the same answer for a separable model; Guided IG is a left
    # Riemann sum, so its error is O(1/steps).
    guided = integrand.methods.guided_ig
    errors = [(guided(model, x, baseline=base, steps=s).values - exact).abs().max() for s in (50, 200)]
    assert errors[1] < 0.3 * errors[0] and errors[1] < 0.05
    # DeepLIFT has no activations to rescale here: it is the gradient at x times the difference.
    grad_x = 2 * a * x + b
    assert torch.allclose(integrand.methods.deeplift(model, x, baseline=base).values, grad_x * (x - base), atol=1e-13)


def test_idgi_closed_form_on_quadratic_along_a_ray() -> None:
    # f = Σ a_i x_i² with x = 3b: the gradient direction is constant along the path, so IDGI gives
    # each feature (a_i b_i)² / Σ (a_j b_j)² of the total change.
    torch.manual_seed(4)
    a, base = torch.rand(5, dtype=F64) + 0.5, torch.randn(2, 5, dtype=F64)
    model = Quadratic(a, torch.zeros(5, dtype=F64))
    x = 3 * base
    result = integrand.methods.idgi(model, x, baseline=base, steps=4)
    share = (a * base) ** 2 / ((a * base) ** 2).sum(dim=1, keepdim=True)
    change = (model(x) - model(base)).detach()
    assert torch.allclose(result.values, share * change[:, None], atol=1e-12)


def test_blur_ig_on_quadratic_is_half_difference_of_squares() -> None:
    torch.manual_seed(5)
    x = torch.rand(2, 1, 5, 5, dtype=F64)

    class Energy(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return 0.5 * (z**2).flatten(1).sum(dim=1)

    result = integrand.methods.blur_ig(Energy(), x, max_sigma=6.0, steps=80)
    assert isinstance(result.baseline, torch.Tensor)
    assert torch.allclose(result.values, 0.5 * (x**2 - result.baseline**2), atol=1e-9)


def test_blur_matrix_matches_scipy_gaussian_filter() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((7, 9))
    for sigma in (0.4, 1.3, 3.0):
        reach = 12
        mh, _ = blur_matrix(7, sigma, reach)
        mw, _ = blur_matrix(9, sigma, reach)
        mine = (mh @ torch.from_numpy(image) @ mw.T).numpy()
        theirs = scipy.ndimage.gaussian_filter(image, sigma, mode="constant", truncate=(reach + 0.25) / sigma)
        assert np.abs(mine - theirs).max() < 1e-13, sigma


def test_blur_matrix_derivative_matches_finite_differences() -> None:
    for sigma in (0.3, 1.0, 4.0):
        _, d = blur_matrix(8, sigma, 20)
        h = 1e-6
        fd = (blur_matrix(8, sigma + h, 20)[0] - blur_matrix(8, sigma - h, 20)[0]) / (2 * h)
        assert torch.allclose(d, fd, atol=1e-8), sigma


def test_blur_path_ends_at_input() -> None:
    x = torch.rand(2, 3, 5, 4, dtype=F64)
    path = BlurPath(as_input_set(x), 5.0)
    point, _ = path.at(1, 0.0)
    assert torch.equal(point["input"], x[1:2])


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Softplus, nn.LeakyReLU])
def test_deeplift_summation_to_delta(act: type[nn.Module]) -> None:
    torch.manual_seed(6)
    model = mlp(act=act).double()
    x, base = torch.randn(4, 6, dtype=F64), torch.randn(4, 6, dtype=F64)
    result = integrand.methods.deeplift(model, x, 1, baseline=base)
    assert result.delta is not None and result.delta.abs().max() < 1e-12
    assert result.params["rescaled_modules"] == 2


def test_deeplift_summation_to_delta_on_cnn_with_inplace_relu() -> None:
    torch.manual_seed(7)
    model = cnn().double()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    x = torch.rand(3, 1, 8, 8, dtype=F64)
    result = integrand.methods.deeplift(model, x, 2, baseline=0.5)
    assert result.delta is not None and result.delta.abs().max() < 1e-12


def test_deeplift_uses_the_derivative_where_input_equals_reference() -> None:
    # Baseline equal to the input: every Δx is 0, multipliers fall back to derivatives, and the
    # attribution is zero (difference is zero) but finite.
    model = mlp(act=nn.Sigmoid).double()
    x = torch.randn(2, 6, dtype=F64)
    result = integrand.methods.deeplift(model, x, 0, baseline=x.clone())
    assert torch.isfinite(result.values).all() and result.values.abs().max() == 0


def test_idgi_is_complete_at_any_step_count() -> None:
    torch.manual_seed(8)
    model = mlp().double()
    x = torch.randn(3, 6, dtype=F64)
    for steps in (2, 5, 17):
        for path in ("integrated_gradients", "guided_ig"):
            result = integrand.methods.idgi(model, x, 0, path=path, steps=steps)
            assert result.delta is not None and result.delta.abs().max() < 1e-12, (path, steps)
    image_model = cnn(act=nn.Tanh).double()
    images = torch.rand(2, 1, 8, 8, dtype=F64)
    result = integrand.methods.idgi(image_model, images, 1, path="blur_ig", steps=6, max_sigma=10.0)
    assert result.delta is not None and result.delta.abs().max() < 1e-12


def test_idgi_matches_a_loop_over_the_paper_formula() -> None:
    torch.manual_seed(9)
    model = mlp().double()
    x, base = torch.randn(2, 6, dtype=F64), torch.randn(2, 6, dtype=F64)
    steps = 7
    result = integrand.methods.idgi(model, x, 2, baseline=base, steps=steps)
    for e in range(2):
        points = [base[e] + (j / steps) * (x[e] - base[e]) for j in range(steps + 1)]
        expected = torch.zeros(6, dtype=F64)
        for j in range(steps):
            p = points[j].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(p[None])[0, 2], p)
            change = model(points[j + 1][None])[0, 2] - model(points[j][None])[0, 2]
            expected += g**2 / (g**2).sum() * change.detach()
        assert torch.allclose(result.values[e], expected, atol=1e-13)


def test_guided_ig_completeness_improves_with_steps() -> None:
    torch.manual_seed(10)
    model = mlp().double()
    x = torch.randn(3, 6, dtype=F64)
    errors = [integrand.methods.guided_ig(model, x, 0, steps=s).relative_error for s in (16, 64, 256)]
    assert all(e is not None for e in errors)
    worst = [float(e.max()) for e in errors if e is not None]
    assert worst[2] < worst[1] < worst[0] and worst[2] < 0.01


def test_guided_ig_with_zero_max_dist_is_left_riemann_ig() -> None:
    torch.manual_seed(11)
    model = mlp().double()
    x, base = torch.randn(3, 6, dtype=F64), torch.randn(3, 6, dtype=F64)
    guided = integrand.methods.guided_ig(model, x, 1, baseline=base, steps=25, max_dist=0.0)
    ig = integrand.integrated_gradients(model, x, 1, baseline=base, steps=25, rule="left")
    assert torch.allclose(guided.values, ig.values, atol=1e-12)


def test_guided_ig_path_stays_within_max_dist_of_the_line() -> None:
    from integrand.methods.guided_ig import advance

    torch.manual_seed(12)
    end, start = torch.randn(40, dtype=F64), torch.zeros(40, dtype=F64)
    x = start.clone()
    steps, max_dist = 10, 0.1
    for step in range(steps):
        x = advance(x, end, start, torch.randn(40, dtype=F64), step, steps, 0.25, max_dist)
        own = (x - start) / (end - start)
        alpha = (step + 1) / steps
        assert own.min() >= alpha - max_dist - 1e-12 and own.max() <= alpha + max_dist + 1e-12
        assert abs(float((x - end).abs().sum()) - float((end - start).abs().sum()) * (1 - alpha)) < 1e-8
    assert torch.allclose(x, end, atol=1e-9)


def test_blur_ig_completeness_improves_with_steps() -> None:
    torch.manual_seed(13)
    model = cnn(act=nn.Tanh).double()
    x = torch.rand(2, 1, 8, 8, dtype=F64)
    worst = []
    for steps in (10, 40, 160):
        rel = integrand.methods.blur_ig(model, x, 3, max_sigma=10.0, steps=steps).relative_error
        assert rel is not None
        worst.append(float(rel.max()))
    assert worst[2] < worst[1] < worst[0] and worst[2] < 1e-4
