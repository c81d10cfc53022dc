"""Neuron activation profiles and dead-unit detection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from integrand.errors import InputError
from integrand.profiles import activation_profiles


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[0].weight[5].zero_()
        model[0].bias[5] = -1.0  # unit 5 can never fire after the ReLU: dead
    return model


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % 3
    x = torch.randn(n, 4, dtype=torch.float64) + 2.0 * nn.functional.one_hot(labels, 4).double()
    return x, labels


def test_profile_equals_class_mean_minus_overall_mean(state_guard: type) -> None:
    model = _model()
    guard = state_guard(model)
    x, labels = _data()
    prof = activation_profiles(model, x, labels, layer="1", classes=["a", "b", "c"], batch_size=7)
    acts = model[1](model[0](x)).detach()
    for k in range(3):
        torch.testing.assert_close(prof.class_mean[k], acts[labels == k].mean(dim=0))
        torch.testing.assert_close(prof.profile[k], acts[labels == k].mean(dim=0) - acts.mean(dim=0))
    torch.testing.assert_close(prof.overall_mean, acts.mean(dim=0))
    # Weighted by class sizes, the profiles cancel: sum_k n_k (mean_k - mean) = 0.
    torch.testing.assert_close(prof.counts.double() @ prof.profile, torch.zeros(6, dtype=torch.float64))
    assert prof.dead.tolist() == [bool((acts[:, u] == 0).all()) for u in range(6)]
    assert bool(prof.dead[5])
    torch.testing.assert_close(prof.active_fraction, (acts > 0).double().mean(dim=0))
    whole = activation_profiles(model, x, labels, layer=model[1], classes=["a", "b", "c"])
    torch.testing.assert_close(whole.profile, prof.profile)
    top = prof.top_units("b", k=3)
    assert all(unit != 5 for unit, _ in top)
    assert top[0][1] == pytest.approx(float(prof.profile[1].max()))
    guard.assert_unchanged()


def test_conv_channels_are_units_and_threshold() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2)).double()
    x = torch.randn(10, 1, 6, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1] * 5)
    prof = activation_profiles(model, x, labels, layer="1", threshold=1e9)
    acts = model[1](model[0](x)).detach().mean(dim=(2, 3))
    torch.testing.assert_close(prof.class_mean[1], acts[1::2].mean(dim=0))
    assert bool(prof.dead.all())  # nothing exceeds an absurd threshold


def test_named_integer_inputs_and_table_figure() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 5)
            self.mix = nn.Linear(5, 5)

        def forward(self, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.mix(self.embed(ids).mean(dim=1) * scale[:, None])

    model = Tagger()
    ids = torch.randint(0, 10, (8, 4))
    scale = torch.rand(8)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    prof = activation_profiles(model, {"ids": ids, "scale": scale}, labels, layer="mix", classes=["x", "<y>"])
    acts = model(ids, scale).detach().double()
    torch.testing.assert_close(prof.class_mean[0], acts[::2].mean(dim=0))
    rows = prof.table()
    assert len(rows) == 5 and set(rows[0]) >= {"unit", "dead", "profile[x]", "profile[<y>]"}
    html = prof.to_html()
    assert "&lt;y&gt;" in html and "<y>" not in html
    fig = prof.figure()
    ax = fig.axes[0]
    low, high = ax.images[0].get_clim()
    assert low == pytest.approx(-high) and high == pytest.approx(float(prof.profile.abs().max()))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "<y>"]


def test_dead_units_are_hatched_in_the_figure() -> None:
    x, labels = _data(30)
    prof = activation_profiles(_model(), x, labels, layer="1")
    ax = prof.figure().axes[0]
    assert len([p for p in ax.patches if p.get_hatch() == "//"]) == int(prof.dead.sum()) == 1


def test_profile_bad_input() -> None:
    model = _model()
    x, labels = _data(12)
    with pytest.raises(InputError, match="no module named 'relu'") as info:
        activation_profiles(model, x, labels, layer="relu")
    assert info.value.argument == "layer"
    with pytest.raises(InputError, match="no examples") as info:
        activation_profiles(model, x, labels, layer="1", classes=["a", "b", "c", "d"])
    assert info.value.argument == "labels"
    for bad in (labels[:5], labels.double(), labels - 1):
        with pytest.raises(InputError) as info:
            activation_profiles(model, x, bad, layer="1")
        assert info.value.argument == "labels"
    with pytest.raises(InputError) as info:
        activation_profiles(model, x, labels, layer="1", threshold=-1.0)
    assert info.value.argument == "threshold"
    with pytest.raises(InputError) as info:
        activation_profiles(model, x, labels, layer="1", batch_size=0)
    assert info.value.argument == "batch_size"
    with pytest.raises(InputError) as info:
        activation_profiles(model, {"a": x, "b": x[:3]}, labels, layer="1")
    assert info.value.argument == "inputs"
    prof = activation_profiles(model, x, labels, layer="1")
    with pytest.raises(InputError) as info:
        prof.top_units("nope")
    assert info.value.argument == "cls"
