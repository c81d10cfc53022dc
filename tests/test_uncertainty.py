"""Ensembles, MC dropout and Gaussian outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import integrand
from integrand.errors import InputError, ModelError
from integrand.groups import Groups, aggregate
from integrand.uncertainty import (
    ensemble,
    explain_gaussian,
    gaussian_mean,
    gaussian_variance,
    mc_dropout,
    sampled_dropout,
    spread_of,
)


def _mlp(seed: int, out: int = 1, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, 12), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(12, out)]
    if out == 1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers).double().eval()


class Mean(nn.Module):
    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.models]).mean(dim=0)


def test_ensemble_mean_equals_mean_of_member_ig_and_ig_of_the_mean_model(state_guard: type) -> None:
    models = [_mlp(s) for s in range(4)]
    guards = [state_guard(m) for m in models]
    x = torch.randn(5, 6, dtype=torch.float64)
    result = ensemble(models, x, steps=24, baseline=0.1)
    separate = torch.stack([integrand.integrated_gradients(m, x, steps=24, baseline=0.1).values for m in models])  # type: ignore[misc]
    torch.testing.assert_close(result.mean, separate.mean(dim=0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.std, separate.std(dim=0), rtol=1e-12, atol=1e-12)
    # IG is linear in the model: the members' mean attribution is the attribution of the mean model.
    of_mean = integrand.integrated_gradients(Mean(models), x, steps=24, baseline=0.1)
    torch.testing.assert_close(result.mean, of_mean.values, rtol=1e-10, atol=1e-12)
    mean_attr = result.mean_attribution()
    torch.testing.assert_close(mean_attr.score_input, of_mean.score_input)
    torch.testing.assert_close(mean_attr.delta, of_mean.delta, rtol=1e-8, atol=1e-12)
    # The predicted distribution is part of the result.
    outputs = torch.stack([m(x) for m in models]).detach()
    torch.testing.assert_close(result.prediction_mean, outputs.mean(dim=0))
    torch.testing.assert_close(result.prediction_std, outputs.std(dim=0))
    assert result.predictions.shape == (4, 5)
    for g in guards:
        g.assert_unchanged()


def test_sign_agreement_counts_members_with_the_sign_of_the_mean() -> None:
    models = [_mlp(s) for s in range(5)]
    x = torch.randn(3, 6, dtype=torch.float64)
    result = ensemble(models, x, steps=8)
    stacked = torch.stack([m.values for m in result.members])  # type: ignore[misc]
    expected = (torch.sign(stacked) == torch.sign(stacked.mean(dim=0))).double().mean(dim=0)
    torch.testing.assert_close(result.sign_agreement, expected)
    assert bool((result.sign_agreement >= 0.4).all())  # with 5 members the mean's sign has >= 3 votes


def test_ensemble_groups_per_member() -> None:
    models = [_mlp(s) for s in range(3)]
    x = torch.randn(4, 6, dtype=torch.float64)
    groups = Groups.define({"first": [0, 1, 2], "rest": [3, 4, 5]}, x)
    result = ensemble(models, x, steps=8, groups=groups)
    assert result.groups is not None
    for i, member in enumerate(result.members):
        agg = aggregate(member, groups)
        torch.testing.assert_close(result.groups.sums[i], agg.sums)
        torch.testing.assert_close(result.groups.abs_share[i], agg.abs_share)
        torch.testing.assert_close(result.groups.magnitude_share[i], agg.magnitude_share)
    torch.testing.assert_close(result.groups.mean, result.groups.sums.mean(dim=0))
    assert torch.equal(result.groups.top(), result.groups.sums.abs().argmax(dim=-1))


def test_ensemble_classes_explain_the_ensemble_prediction() -> None:
    models = [_mlp(s, out=3) for s in range(3)]
    x = torch.randn(4, 6, dtype=torch.float64)
    result = ensemble(models, x, steps=8)
    predicted = result.prediction_mean.argmax(dim=1)
    for model, member in zip(models, result.members):
        torch.testing.assert_close(member.score_input, model(x).detach().gather(1, predicted[:, None])[:, 0])
    numbers = spread_of(result)
    assert set(numbers) == {"prediction_std", "attribution_std", "sign_agreement"}


def test_ensemble_bad_input() -> None:
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(InputError, match="same thing") as info:
        ensemble([_mlp(0), _mlp(1, out=3)], x, steps=4)
    assert info.value.argument == "models"
    with pytest.raises(InputError, match="at least 2") as info:
        ensemble([_mlp(0)], x)
    with pytest.raises(InputError) as info:
        ensemble(_mlp(0), x)  # type: ignore[arg-type]
    assert info.value.argument == "models"
    with pytest.raises(InputError) as info:
        ensemble([_mlp(0), "model"], x)  # type: ignore[list-item]
    assert info.value.argument == "models[1]"
    with pytest.raises(InputError) as info:
        ensemble([_mlp(0), _mlp(1)], x, method="no_such_method")
    assert info.value.argument == "method"
    with pytest.raises(InputError) as info:
        ensemble([_mlp(0), _mlp(1)], x, groups=Groups.define({"a": [0]}, torch.randn(1, 7)))
    assert info.value.argument == "groups"


def _dropout_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(), nn.Dropout(0.3, inplace=True),
        nn.Linear(16, 2),
    ).double()


def test_mc_dropout_seeded_reproducible_and_state_restored(state_guard: type) -> None:
    model = _dropout_model().eval()
    guard = state_guard(model)
    x = torch.randn(3, 6, dtype=torch.float64)
    rng = torch.get_rng_state()
    first = mc_dropout(model, x, samples=4, seed=7, steps=16)
    second = mc_dropout(model, x, samples=4, seed=7, steps=16)
    assert torch.equal(torch.get_rng_state(), rng)  # the user's RNG is untouched
    assert torch.equal(first.mean, second.mean) and torch.equal(first.predictions, second.predictions)
    other = mc_dropout(model, x, samples=4, seed=8, steps=16)
    assert not torch.equal(first.predictions, other.predictions)
    # Different samples are different sub-networks.
    assert float(first.prediction_std.max()) > 0
    guard.assert_unchanged()
    assert all(not m.training for m in model.modules())
    assert model[5].inplace is True  # type: ignore[union-attr]


def test_mc_dropout_masks_are_held_fixed_along_the_path() -> None:
    """Completeness holds per sample only if every point of the path sees the same sub-network."""
    model = _dropout_model().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    result = mc_dropout(model, x, target=0, samples=3, seed=1, tol=1e-7, batch_size=5)
    for member in result.members:
        assert bool(member.converged.all())
        assert member.relative_error is not None and float(member.relative_error.max()) < 1e-7
    # Plain train-mode dropout would redraw masks at every forward pass (a meaningless path integral):
    # outside mc_dropout's fixed masks it is refused.
    redrawn = copy.deepcopy(model).train()
    with pytest.raises(integrand.ModelError, match="training mode"):
        integrand.integrated_gradients(redrawn, x, 0, steps=64, batch_size=5)
    # Each sample's prediction is the sub-network output at the input: equal to its target score.
    torch.testing.assert_close(result.scores, result.predictions[..., 0])


def test_mc_dropout_restores_modes_on_error_and_in_train_mode(state_guard: type) -> None:
    model = _dropout_model().train()
    model[0].eval()  # a mixed state must come back exactly
    guard = state_guard(model)

    def bad_target(output: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        mc_dropout(model, torch.randn(2, 6, dtype=torch.float64), bad_target, samples=2, steps=4)
    guard.assert_unchanged()
    mc_dropout(model, torch.randn(2, 6, dtype=torch.float64), 1, samples=2, steps=4)
    guard.assert_unchanged()


def test_sampled_dropout_switches_only_dropout_modules() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout2d(0.5), nn.Dropout(0.25)).double().eval()
    with sampled_dropout(model, torch.Generator().manual_seed(0)):
        assert [m.training for m in model] == [False, True, True]
        assert not model.training
        x = torch.ones(1, 8, 3, 2, dtype=torch.float64)
        channel = nn.Sequential(model[1])
        out = channel(x)
        # Channel dropout: each channel is all zero or all scaled by 1 / (1 - p).
        per_channel = out.reshape(8, -1)
        assert all(set(row.tolist()) <= {0.0} or set(row.tolist()) == {2.0} for row in per_channel)
        assert torch.equal(channel(x), out)  # held fixed
    assert all(not m.training for m in model.modules())


def test_mc_dropout_bad_input() -> None:
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(InputError, match="no nn.Dropout") as info:
        mc_dropout(_mlp(0), x, samples=3)
    assert info.value.argument == "model"
    with pytest.raises(ModelError, match="AlphaDropout"):
        mc_dropout(nn.Sequential(nn.Linear(6, 1), nn.AlphaDropout(0.2), nn.Flatten(0)).double(), x, samples=2)
    for samples in (1, 0, 2.5, True):
        with pytest.raises(InputError) as info:
            mc_dropout(_dropout_model(), x, samples=samples)  # type: ignore[arg-type]
        assert info.value.argument == "samples"
    with pytest.raises(InputError) as info:
        mc_dropout(_dropout_model(), x, samples=2, seed="1")  # type: ignore[arg-type]
    assert info.value.argument == "seed"


class GaussianHead(nn.Module):
    """mean = w.x, log variance = v.x."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(5, dtype=torch.float64) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x @ self.w, x @ self.v], dim=1)


def test_gaussian_mean_and_variance_explained_separately_closed_form() -> None:
    model = GaussianHead()
    x = torch.randn(4, 5, dtype=torch.float64)
    result = explain_gaussian(model, x, steps=48)
    w, v = model.w.detach(), model.v.detach()
    torch.testing.assert_close(result.mean.values, w * x)
    # Along the straight line from 0, d/dx_i exp(v.x) integrates to v_i x_i (e^{v.x} - 1) / (v.x).
    s = x @ v
    expected = v * x * ((s.exp() - 1) / s)[:, None]
    torch.testing.assert_close(result.variance.values, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(result.variance.score_input, s.exp())


@pytest.mark.parametrize(
    ("parametrization", "column", "variance"),
    [
        ("variance", 2.0, 2.0),
        ("log_variance", 0.5, 1.6487212707001282),
        ("std", 3.0, 9.0),
        ("log_std", 0.5, 2.718281828459045),
        ("softplus_std", 0.0, 0.4804530139182014),
    ],
)
def test_gaussian_variance_parametrizations(parametrization: str, column: float, variance: float) -> None:
    output = torch.tensor([[1.0, column]], dtype=torch.float64)
    assert float(gaussian_variance(1, parametrization)(output)[0]) == pytest.approx(variance)
    assert float(gaussian_mean(0)(output)[0]) == 1.0


def test_gaussian_bad_input() -> None:
    with pytest.raises(InputError) as info:
        gaussian_variance(1, "precision")
    assert info.value.argument == "parametrization"
    with pytest.raises(ModelError):
        gaussian_mean(3)(torch.zeros(2, 2))


def test_ensemble_of_gaussian_models_variance_target() -> None:
    models = [GaussianHead() for _ in range(3)]
    x = torch.randn(2, 5, dtype=torch.float64)
    result = ensemble(models, x, gaussian_variance(1), steps=32)
    for model, member in zip(models, result.members):
        torch.testing.assert_close(member.score_input, (x @ model.v.detach()).exp())
    assert result.predictions.shape == (3, 2, 2)
    assert copy.deepcopy(result.prediction_std).shape == (2, 2)
