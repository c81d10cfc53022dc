"""Perturbation methods: closed forms on linear models, exact Shapley values, oracles, seeds, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError
from integrand.methods import attribute
from tests.models import cnn, mlp
from tests.reference.perturbation_oracle import occlusion_2d, shapley_values

STOCHASTIC = ("lime", "c_lime", "kernel_shap")
PERTURBATION = ("occlusion", "feature_ablation", "lime", "c_lime", "kernel_shap")


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w + self.b


@pytest.fixture
def linear() -> tuple[Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, generator=g, dtype=torch.float64)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    base = torch.randn(6, generator=g, dtype=torch.float64)
    return Linear(w, 0.7), x, base


@pytest.mark.parametrize("method", ["occlusion", "feature_ablation", "lime", "kernel_shap"])
def test_linear_model_mask_methods_give_w_times_x_minus_baseline(method: str, linear, state_guard) -> None:
    model, x, base = linear
    guard = state_guard(model)
    params = {"seed": 3} if method in STOCHASTIC else {}
    result = attribute(model, x, method=method, baseline=base, **params)
    expected = model.w.detach() * (x - base)
    torch.testing.assert_close(result.values, expected, rtol=1e-10, atol=1e-10)
    guard.assert_unchanged()


def test_linear_model_kernel_shap_exact_is_complete(linear) -> None:
    model, x, base = linear
    result = integrand.methods.kernel_shap(model, x, baseline=base, n_samples=None)
    torch.testing.assert_close(result.values, model.w.detach() * (x - base), rtol=1e-10, atol=1e-10)
    assert result.delta is not None and float(result.delta.abs().max()) < 1e-12


def test_linear_model_lime_recovers_w_in_input_units(linear) -> None:
    # LIME's coefficients are per interpretable (on/off) feature: w * (x - b); dividing by x - b gives w.
    model, x, base = linear
    result = integrand.methods.lime(model, x, baseline=base, n_samples=64, seed=0)
    torch.testing.assert_close(result.values / (x - base), model.w.detach().expand_as(x), rtol=1e-8, atol=1e-8)


def test_linear_model_c_lime_recovers_w(linear) -> None:
    model, x, _ = linear
    result = integrand.methods.c_lime(model, x, sigma=0.5, n_samples=40, seed=0)
    torch.testing.assert_close(result.values, model.w.detach().expand_as(x), rtol=1e-9, atol=1e-9)
    assert result.params["explains"] == "gradient"


def test_feature_groups_across_named_inputs() -> None:
    w_a, w_b = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.tensor([-1.0, 4.0], dtype=torch.float64)

    def model(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ w_a + b @ w_b

    x = {"a": torch.ones(2, 3, dtype=torch.float64), "b": torch.full((2, 2), 2.0, dtype=torch.float64)}
    mask = {"a": torch.tensor([0, 0, 1]), "b": torch.tensor([1, 2])}
    result = integrand.methods.feature_ablation(model, x, feature_mask=mask)
    # group 0 = a0, a1 (drop 3); group 1 = a2, b0 (drop 3 - 2 = 1); group 2 = b1 (drop 8)
    assert result.values["a"][0].tolist() == [3.0, 3.0, 1.0]
    assert result.values["b"][0].tolist() == [1.0, 8.0]
    shap = integrand.methods.kernel_shap(model, x, feature_mask=mask, n_samples=None)
    torch.testing.assert_close(shap.values["a"], result.values["a"])
    torch.testing.assert_close(shap.values["b"], result.values["b"])


def test_kernel_shap_all_coalitions_equals_exact_shapley_values() -> None:
    torch.manual_seed(5)
    model = mlp(inputs=5, hidden=8, classes=3).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    base = torch.randn(5, dtype=torch.float64) * 0.3
    result = integrand.methods.kernel_shap(model, x, target=1, baseline=base, n_samples=None)
    for e in range(2):
        oracle = shapley_values(lambda p: float(model(p[None])[0, 1].detach()), x[e], base)
        torch.testing.assert_close(result.values[e], torch.tensor(oracle, dtype=torch.float64), rtol=1e-9, atol=1e-10)


def test_kernel_shap_sampled_approaches_shapley_values() -> None:
    torch.manual_seed(6)
    model = mlp(inputs=8, hidden=8, classes=2).double()
    x = torch.randn(1, 8, dtype=torch.float64)
    exact = integrand.methods.kernel_shap(model, x, target=0, n_samples=None).values
    few = integrand.methods.kernel_shap(model, x, target=0, n_samples=50, seed=0).values
    many = integrand.methods.kernel_shap(model, x, target=0, n_samples=4000, seed=0).values
    assert float((many - exact).norm()) < 0.5 * float((few - exact).norm())
    assert float((many - exact).norm()) < 0.05 * float(exact.norm()) + 1e-3


def test_occlusion_matches_loop_oracle_with_overhanging_windows() -> None:
    torch.manual_seed(2)
    model = cnn().double()
    x = torch.randn(2, 1, 7, 9, dtype=torch.float64)
    result = integrand.occlusion(model, x, target=3, window=(1, 3, 2), strides=(1, 2, 2), baseline=0.5, batch_size=7)
    for e in range(2):
        oracle = occlusion_2d(lambda img: float(model(img[None, None])[0, 3].detach()), x[e, 0], 0.5, (3, 2), (2, 2))
        torch.testing.assert_close(result.values[e, 0], oracle, rtol=1e-10, atol=1e-12)
    assert result.steps.tolist() == [3 * 5, 3 * 5]  # ceil((7-3)/2)+1 rows, ceil((9-2)/2)+1 cols


def test_occlusion_window_one_equals_feature_ablation() -> None:
    torch.manual_seed(3)
    model = cnn()
    x = torch.rand(3, 1, 6, 6)
    occ = integrand.occlusion(model, x, target=1)
    abl = integrand.methods.feature_ablation(model, x, target=1)
    torch.testing.assert_close(occ.values, abl.values)


@pytest.mark.parametrize("method", PERTURBATION)
def test_chunked_and_batch_of_one_agree(method: str) -> None:
    torch.manual_seed(4)
    model = mlp(inputs=6, hidden=8, classes=3)
    x = torch.randn(3, 6)
    params = {"seed": 11, "n_samples": 60} if method in STOCHASTIC else {}
    full = attribute(model, x, 2, method=method, **params)
    chunked = attribute(model, x, 2, method=method, batch_size=5, **params)
    torch.testing.assert_close(chunked.values, full.values, rtol=1e-5, atol=1e-6)
    one = attribute(model, x[1:2], 2, method=method, **params)
    torch.testing.assert_close(one.values[0], full.values[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", STOCHASTIC)
def test_seeded_runs_are_bit_identical_and_unseeded_runs_record_their_seed(method: str) -> None:
    model = mlp(inputs=6, hidden=8, classes=3)
    x = torch.randn(2, 6)
    a = attribute(model, x, 0, method=method, seed=7, n_samples=40)
    b = attribute(model, x, 0, method=method, seed=7, n_samples=40)
    assert torch.equal(a.values, b.values) and a.params["seed"] == 7
    other = attribute(model, x, 0, method=method, seed=8, n_samples=40)
    assert not torch.equal(a.values, other.values)
    # Without a seed one is drawn from torch's global generator: torch.manual_seed governs it.
    torch.manual_seed(123)
    c = attribute(model, x, 0, method=method, n_samples=40)
    torch.manual_seed(123)
    d = attribute(model, x, 0, method=method, n_samples=40)
    assert torch.equal(c.values, d.values)
    replay = attribute(model, x, 0, method=method, n_samples=40, seed=c.params["seed"])
    assert torch.equal(replay.values, c.values)


@pytest.mark.parametrize("method", PERTURBATION)
def test_float32_close_to_float64_and_state_unchanged(method: str, state_guard) -> None:
    torch.manual_seed(8)
    model = mlp(inputs=5, hidden=8, classes=3, act=nn.Tanh)
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    guard = state_guard(model)
    x = torch.randn(2, 5)
    params = {"seed": 1, "n_samples": 80} if method in STOCHASTIC else {}
    r32 = attribute(model, x, 1, method=method, **params)
    guard.assert_unchanged()
    r64 = attribute(model.double(), x.double(), 1, method=method, **params)
    torch.testing.assert_close(r32.values.double(), r64.values, rtol=2e-3, atol=2e-4)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(InputError, match="valid methods:.*kernel_shap.*lime.*occlusion") as info:
        attribute(nn.Linear(3, 2), torch.randn(1, 3), method="limes")
    assert info.value.argument == "method"
    assert "lime" in str(info.value).split("Did you mean")[-1]


@pytest.mark.parametrize(
    ("method", "params", "argument"),
    [
        ("feature_ablation", {"feature_mask": torch.zeros(4, dtype=torch.long)}, "feature_mask"),
        ("feature_ablation", {"feature_mask": torch.tensor([0, 1, 2, -1, 3])}, "feature_mask"),
        ("feature_ablation", {"feature_mask": torch.zeros(5)}, "feature_mask"),
        ("lime", {"feature_mask": torch.zeros(2, 3, dtype=torch.long), "seed": 0}, "feature_mask"),
        ("kernel_shap", {"feature_mask": torch.arange(4), "seed": 0}, "feature_mask"),
        ("c_lime", {"sigma": 0.0, "seed": 0}, "sigma"),
        ("c_lime", {"sigma": float("nan"), "seed": 0}, "sigma"),
        ("lime", {"kernel_width": 0.0, "seed": 0}, "kernel_width"),
        ("lime", {"n_samples": 0, "seed": 0}, "n_samples"),
        ("lime", {"p": 1.0, "seed": 0}, "p"),
        ("lime", {"seed": -1}, "seed"),
        ("lime", {"ridge": -1.0, "seed": 0}, "ridge"),
        ("occlusion", {"window": (6,)}, "window"),
        ("occlusion", {"window": (2, 2)}, "window"),
        ("occlusion", {"window": (2,), "strides": 3}, "strides"),
        ("occlusion", {"window": (0,)}, "window"),
    ],
)
def test_bad_input_names_the_argument(method: str, params: dict, argument: str) -> None:
    model = nn.Linear(5, 2)
    with pytest.raises(InputError) as info:
        attribute(model, torch.randn(2, 5), 0, method=method, **params)
    assert info.value.argument == argument, str(info.value)


def test_named_masks_must_cover_every_input() -> None:
    def model(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.sum(1) + b.sum(1)

    x = {"a": torch.ones(1, 2), "b": torch.ones(1, 3)}
    with pytest.raises(InputError, match="missing \\['b'\\]") as info:
        integrand.methods.feature_ablation(model, x, feature_mask={"a": torch.tensor([0, 1])})
    assert info.value.argument == "feature_mask"


def test_enumerating_too_many_players_asks_for_n_samples() -> None:
    with pytest.raises(InputError, match="n_samples=") as info:
        integrand.methods.kernel_shap(nn.Linear(21, 1), torch.randn(1, 21), 0, n_samples=None)
    assert info.value.argument == "n_samples"


def test_per_example_feature_masks() -> None:
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    model = Linear(w, 0.0)
    x = torch.ones(2, 4, dtype=torch.float64)
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    result = integrand.methods.feature_ablation(model, x, feature_mask=mask)
    assert result.values.tolist() == [[3.0, 3.0, 7.0, 7.0], [1.0, 9.0, 9.0, 9.0]]
    assert result.steps.tolist() == [2, 2]
