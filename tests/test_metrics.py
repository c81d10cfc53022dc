"""Metrics: closed forms on linear models, loop oracles, the randomisation check, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError, metrics
from integrand.neighbourhoods import BernoulliMasks
from tests.models import cnn, mlp


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor, b: float = 0.3) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w + self.b


@pytest.fixture
def linear() -> tuple[Linear, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return Linear(torch.randn(8, generator=g, dtype=torch.float64)), torch.randn(3, 8, generator=g, dtype=torch.float64)


def test_completeness_reevaluates_the_model() -> None:
    torch.manual_seed(0)
    model = mlp(inputs=5, hidden=8, classes=3).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    ig = integrand.integrated_gradients(model, x, 1, steps=4)
    torch.testing.assert_close(metrics.completeness(model, ig, 1), ig.relative_error)
    torch.testing.assert_close(metrics.completeness(model, ig, 1, relative=False), ig.delta)
    shap = integrand.methods.kernel_shap(model, x, 1, n_samples=None)
    assert float(metrics.completeness(model, shap, 1).max()) < 1e-10
    lime = integrand.methods.c_lime(model, x, 1, seed=0)
    with pytest.raises(InputError) as info:
        metrics.completeness(model, lime, 1)
    assert info.value.argument == "attribution"


def test_infidelity_is_zero_for_the_gradient_of_a_linear_model(linear) -> None:
    model, x = linear
    w = model.w.detach().expand_as(x)
    assert float(metrics.infidelity(model, x, w, seed=0).max()) < 1e-20
    wrong = metrics.infidelity(model, x, w * x, seed=0)
    assert bool((wrong > 1e-3).all())
    # The normalised variant forgives a global scale.
    assert float(metrics.infidelity(model, x, 3 * w, seed=0, normalize=True).max()) < 1e-20
    assert bool((metrics.infidelity(model, x, 3 * w, seed=0) > 1e-3).all())


def test_infidelity_matches_its_definition_on_given_perturbations(linear) -> None:
    torch.manual_seed(1)
    model = mlp(inputs=8, hidden=8, classes=2).double()
    _, x = linear
    attr = torch.randn_like(x)
    noise = torch.randn(5, *x.shape, dtype=torch.float64) * 0.2
    got = metrics.infidelity(model, x, attr, 0, perturbations=noise, n_samples=5, batch_size=4)
    with torch.no_grad():
        drops = torch.stack([model(x)[:, 0] - model(x - noise[s])[:, 0] for s in range(5)])
    expected = (((noise * attr).sum(2) - drops) ** 2).mean(0)
    torch.testing.assert_close(got, expected)


def test_sensitivity_max_is_zero_for_saliency_of_a_linear_model(linear) -> None:
    model, x = linear
    assert float(metrics.sensitivity_max(model, x, method="saliency", seed=0).max()) < 1e-12
    # Input x gradient moves with the input: ||w * d|| / ||w * x|| at the worst draw.
    noise = torch.rand(6, *x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.1
    got = metrics.sensitivity_max(model, x, method="input_x_gradient", perturbations=noise, n_samples=6)
    w = model.w.detach()
    expected = ((w * noise).norm(dim=2) / (w * x).norm(dim=1)).max(0).values
    torch.testing.assert_close(got, expected)


def _curve_oracle(model: nn.Module, x: torch.Tensor, attr: torch.Tensor, steps: int, delete: bool) -> torch.Tensor:
    order = attr.argsort(descending=True, stable=True)
    out = []
    for j in range(steps + 1):
        count = round(j * x.shape[0] / steps)
        point = x.clone() if delete else torch.zeros_like(x)
        point[order[:count]] = 0.0 if delete else x[order[:count]]
        out.append(float(model(point[None]).detach()[0]))
    return torch.tensor(out, dtype=torch.float64)


def test_deletion_and_insertion_match_the_loop_oracle(linear) -> None:
    model, x = linear
    attr = model.w.detach() * x
    dele = metrics.deletion(model, x, attr, steps=4, batch_size=3)
    ins = metrics.insertion(model, x, attr, steps=4, baseline="zeros")
    for e in range(3):
        torch.testing.assert_close(dele.scores[e], _curve_oracle(model, x[e], attr[e], 4, True))
        torch.testing.assert_close(ins.scores[e], _curve_oracle(model, x[e], attr[e], 4, False))
    torch.testing.assert_close(dele.auc, torch.trapezoid(dele.scores, dele.fractions, dim=1))
    # The true attributions w * x give the steepest deletion: lower AUC than any reshuffled ranking.
    shuffled = metrics.deletion(model, x, attr[:, torch.randperm(8)], steps=8)
    assert bool((metrics.deletion(model, x, attr, steps=8).auc <= shuffled.auc + 1e-12).all())


def test_top_k_faithfulness_binary_closed_form(linear) -> None:
    model, x = linear
    attr = model.w.detach() * x
    result = metrics.top_k_faithfulness(model, x, attr, k=3)
    order = attr.abs().argsort(dim=1, descending=True)
    top = attr.gather(1, order[:, :3]).sum(1).abs()
    bottom = attr.gather(1, order[:, -3:]).sum(1).abs()
    torch.testing.assert_close(result.top, top)
    torch.testing.assert_close(result.bottom, bottom)
    assert result.k == 3 and metrics.top_k_faithfulness(model, x, attr, k=0.25).k == 2


def test_top_k_faithfulness_gaussian_matches_the_half_normal_mean(linear) -> None:
    model, x = linear
    attr = model.w.detach() * x
    result = metrics.top_k_faithfulness(model, x, attr, k=2, mode="gaussian", sigma=0.5, n_samples=20000, seed=0)
    order = attr.abs().argsort(dim=1, descending=True)
    w = model.w.detach()
    # w . noise on the chosen features is N(0, sigma^2 ||w_S||^2); its mean absolute value is sigma ||w_S|| sqrt(2/pi).
    expected_top = 0.5 * w[order[:, :2]].norm(dim=1) * math.sqrt(2 / math.pi)
    torch.testing.assert_close(result.top, expected_top, rtol=0.03, atol=0)


def test_lfa_loss_is_the_lfa_module(linear) -> None:
    model, x = linear
    attr = model.w.detach() * x
    loss = metrics.lfa_loss(model, x, attr, BernoulliMasks(n_samples=40), seed=0)
    assert float(loss.max()) < 1e-20  # a linear model is explained exactly on any mask neighbourhood


def test_model_randomisation_changes_attributions_and_leaves_the_model_alone(state_guard) -> None:
    torch.manual_seed(3)
    model = cnn()
    guard = state_guard(model)
    x = torch.rand(4, 1, 8, 8)
    result = metrics.model_randomisation(model, x, method="saliency")
    guard.assert_unchanged()
    assert result.layers == ("6", "2", "0")  # Linear, then the two convolutions
    assert result.passed()
    assert float(result.abs_rank_correlation[-1].abs().mean()) < 0.5
    assert len(result.table()) == 3


def test_model_randomisation_flags_a_model_independent_explanation() -> None:
    torch.manual_seed(4)
    model = cnn()
    x = torch.rand(3, 1, 8, 8)

    def edges(model: nn.Module, inputs: torch.Tensor, target: object) -> torch.Tensor:
        return inputs - inputs.roll(1, dims=-1)

    result = metrics.model_randomisation(model, x, method=edges)
    assert not result.passed()
    torch.testing.assert_close(result.rank_correlation, torch.ones_like(result.rank_correlation))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m, x: metrics.infidelity(m, x, x[:, :3]), "attribution"),
        (lambda m, x: metrics.infidelity(m, x, x, sigma=0.0), "sigma"),
        (lambda m, x: metrics.infidelity(m, x, x, perturbations=torch.zeros(2, 3, 7), n_samples=2), "perturbations"),
        (lambda m, x: metrics.sensitivity_max(m, x, radius=0.0), "radius"),
        (lambda m, x: metrics.sensitivity_max(m, x, method="saliencyy"), "method"),
        (lambda m, x: metrics.deletion(m, x, x, steps=0), "steps"),
        (lambda m, x: metrics.deletion(m, x, x, order="up"), "order"),
        (lambda m, x: metrics.top_k_faithfulness(m, x, x, k=9), "k"),
        (lambda m, x: metrics.top_k_faithfulness(m, x, x, k=1.5), "k"),
        (lambda m, x: metrics.top_k_faithfulness(m, x, x, mode="flip"), "mode"),
        (lambda m, x: metrics.top_k_faithfulness(m, x, x, mode="gaussian", sigma=0.0), "sigma"),
        (lambda m, x: metrics.model_randomisation(m, x, layers=["nope"]), "layers"),
        (lambda m, x: metrics.model_randomisation(lambda t: t.sum(1), x), "model"),
    ],
)
def test_bad_metric_arguments(call, argument: str, linear) -> None:
    model, x = linear
    with pytest.raises(InputError) as info:
        call(model, x)
    assert info.value.argument == argument, str(info.value)


def test_rank_correlation_is_spearman_with_average_ranks_for_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    from integrand.metrics._common import rank_correlation

    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 4, (3, 20), generator=g).double()  # many ties, as in sparse attribution maps
    b = a + torch.randint(0, 3, (3, 20), generator=g).double()
    got = rank_correlation(a, b)
    for i in range(3):
        assert float(got[i]) == pytest.approx(stats.spearmanr(a[i].numpy(), b[i].numpy()).statistic, abs=1e-12)
