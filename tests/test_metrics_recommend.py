"""recommend: each method wins the neighbourhood it fits (no free lunch); failures are reported, not raised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError
from integrand.neighbourhoods import BernoulliMasks, Gaussian, LeaveOneOut, Point, ShapleyCoalitions
from tests.models import mlp

CANDIDATES = ["saliency", "smoothgrad", "c_lime", "integrated_gradients", "lime", "kernel_shap", "feature_ablation"]


@pytest.fixture
def problem() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return mlp(inputs=6, hidden=16, classes=3, act=nn.Tanh), torch.randn(4, 6)


@pytest.mark.parametrize(
    ("hood", "winners"),
    [
        (Gaussian(sigma=0.3, n_samples=400), {"smoothgrad", "c_lime"}),  # equal in expectation (Stein's lemma)
        (BernoulliMasks(n_samples=400), {"lime"}),
        (ShapleyCoalitions(), {"kernel_shap"}),
        (LeaveOneOut(), {"feature_ablation"}),
    ],
)
def test_each_method_wins_its_own_neighbourhood(hood, winners: set[str], problem, state_guard) -> None:
    model, x = problem
    guard = state_guard(model)
    result = integrand.recommend.recommend(model, x, hood, methods=CANDIDATES)
    guard.assert_unchanged()
    assert result.best in winners, result.to_text()
    losers = [c for c in result.candidates if c.method not in winners]
    best = result.candidates[0].relative_loss
    assert all(c.relative_loss > best for c in losers)
    assert all(c.relative_loss >= 0 for c in result.candidates)


def test_failures_are_listed_last_with_their_error(problem) -> None:
    model, x = problem
    methods = ["gradient_shap", "feature_ablation", "blur_ig"]
    result = integrand.recommend.recommend(model, x, LeaveOneOut(), methods=methods)
    assert [c.method for c in result.candidates][0] == "feature_ablation"
    failed = {c.method: c.error for c in result.candidates[1:]}
    assert set(failed) == {"gradient_shap", "blur_ig"} and all(failed.values())
    html = result.to_html()
    assert "<table>" in html and "feature_ablation" in html and "gradient_shap" in html
    text = str(result)
    assert "failed:" in text and text.index("feature_ablation") < text.index("gradient_shap")


def test_per_method_params_override_the_matched_ones(problem) -> None:
    model, x = problem
    result = integrand.recommend.recommend(
        model, x, Gaussian(sigma=0.2, n_samples=100), methods=["c_lime"], params={"c_lime": {"sigma": 1.0}}
    )
    assert result.candidates[0].params["sigma"] == 1.0
    matched = integrand.recommend.recommend(model, x, Gaussian(sigma=0.2, n_samples=100), methods=["c_lime"])
    assert matched.candidates[0].params["sigma"] == 0.2 and matched.candidates[0].params["n_samples"] == 100


def test_html_escapes_error_text(problem) -> None:
    model, x = problem

    result = integrand.recommend.recommend(
        model, x, LeaveOneOut(), methods=["feature_ablation"], params={"feature_ablation": {"baseline": "<b>"}}
    )
    html = result.to_html()
    assert "<b>" not in html.split("</style>", 1)[1] and "&lt;b&gt;" in html


def test_bad_recommend_arguments(problem) -> None:
    model, x = problem
    with pytest.raises(InputError) as info:
        integrand.recommend.recommend(model, x, Gaussian(sigma=0.1), methods=["limes"])
    assert info.value.argument == "method"
    with pytest.raises(InputError) as info:
        integrand.recommend.recommend(model, x, Point(), methods=["saliency"])
    assert info.value.argument == "loss"  # a single point cannot be fitted by function values


def test_point_neighbourhood_with_gradient_loss_ranks_saliency_first(problem) -> None:
    model, x = problem
    result = integrand.recommend.recommend(model, x, Point(), methods=["smoothgrad", "saliency"], loss="gradient")
    assert result.best == "saliency" and result.candidates[0].loss < 1e-12
    assert all(c.top_gap != c.top_gap for c in result.candidates)  # no perturbation, so no gaps (NaN)
