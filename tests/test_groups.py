"""Feature groups: definitions, validation and aggregation of attributions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import integrand
from integrand.errors import InputError
from integrand.groups import Groups, aggregate, modality_shares
from integrand.result import Attribution


class TwoModalities(nn.Module):
    """Linear in a [3, 8] sensor window and a 2-vector of controls: IG = w * (x - baseline) exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.ws = nn.Parameter(torch.randn(3, 8, dtype=torch.float64))
        self.wc = nn.Parameter(torch.randn(2, dtype=torch.float64))

    def forward(self, sensors: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        return (sensors * self.ws).sum(dim=(1, 2)) + (control * self.wc).sum(dim=1) + 0.3


class Nonlinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(24, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
        self.net.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def _named_inputs(batch: int = 4) -> dict[str, torch.Tensor]:
    return {
        "sensors": torch.randn(batch, 3, 8, dtype=torch.float64),
        "control": torch.randn(batch, 2, dtype=torch.float64),
    }


def test_channel_groups_sum_to_total_and_shares_to_one() -> None:
    model = Nonlinear()
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    result = integrand.integrated_gradients(model, x, steps=32)
    groups = Groups.along(x, 0, names=["p", "q", "r"])
    agg = aggregate(result, groups)
    torch.testing.assert_close(agg.sums.sum(dim=1), result.total(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(agg.sums, result.values.sum(dim=2), rtol=1e-12, atol=1e-12)  # type: ignore[union-attr]
    torch.testing.assert_close(agg.share.sum(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(agg.abs_share.sum(dim=1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(agg.magnitude_share, agg.sums.abs() / agg.sums.abs().sum(dim=1, keepdim=True))
    torch.testing.assert_close(agg.uncovered, torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(agg.mean_abs, result.values.abs().mean(dim=2))  # type: ignore[union-attr]
    # Completeness carries over: group sums plus the completeness error give f(x) - f(baseline).
    assert agg.score_share is not None and result.delta is not None and result.score_baseline is not None
    change = result.score_input - result.score_baseline
    torch.testing.assert_close(agg.sums.sum(dim=1) + result.delta, change, rtol=1e-12, atol=1e-12)


def test_partial_groups_leave_the_rest_uncovered() -> None:
    x = torch.randn(3, 3, 8, dtype=torch.float64)
    result = integrand.integrated_gradients(Nonlinear(), x, steps=16)
    window = torch.zeros(3, 8, dtype=torch.bool)
    window[:, -4:] = True
    agg = aggregate(result, Groups.define({"recent": window, "first": [0, 1]}, x))
    torch.testing.assert_close(agg.sums.sum(dim=1) + agg.uncovered, result.total())


def test_modality_shares_closed_form_and_completeness() -> None:
    model = TwoModalities()
    inputs = _named_inputs()
    result = integrand.integrated_gradients(model, inputs, baseline={"sensors": 0.5, "control": -1.0}, steps=8)
    shares = modality_shares(result)
    assert shares.names == ("sensors", "control")
    expected_sensors = ((inputs["sensors"] - 0.5) * model.ws.detach()).sum(dim=(1, 2))
    expected_control = ((inputs["control"] + 1.0) * model.wc.detach()).sum(dim=1)
    torch.testing.assert_close(shares.sums[:, 0], expected_sensors)
    torch.testing.assert_close(shares.sums[:, 1], expected_control)
    assert shares.score_share is not None and shares.relative_error is not None and result.delta is not None
    change = result.score_input - result.score_baseline  # type: ignore[operator]
    # The modality shares of the prediction change add up to 1 minus the signed completeness error.
    torch.testing.assert_close(shares.score_share.sum(dim=1), 1 - result.delta / change)
    assert float(shares.relative_error.max()) < 1e-10


def test_groups_across_named_inputs_and_time_windows() -> None:
    inputs = _named_inputs(2)
    result = integrand.integrated_gradients(TwoModalities(), inputs, steps=4)
    windows = Groups.along(inputs, 1, input="sensors", size=3)
    assert windows.names == ("0:3", "3:6", "6:8")
    agg = aggregate(result, windows)
    values = result.values
    assert isinstance(values, dict)
    torch.testing.assert_close(agg.sums[:, 2], values["sensors"][:, :, 6:].sum(dim=(1, 2)))
    torch.testing.assert_close(agg.uncovered, values["control"].sum(dim=1))
    mixed = Groups.define({"p+u0": {"sensors": torch.tensor([True, False, False])[:, None], "control": [0]}}, inputs)
    agg = aggregate(result, mixed)
    torch.testing.assert_close(agg.sums[:, 0], values["sensors"][:, 0].sum(dim=1) + values["control"][:, 0])


def test_feature_mask_round_trip() -> None:
    inputs = _named_inputs(1)
    groups = Groups.define({"sensors": "sensors", "u0": {"control": [0]}, "u1": {"control": [1]}}, inputs)
    mask = groups.feature_mask()
    assert isinstance(mask, dict)
    assert mask["sensors"].shape == (3, 8) and bool((mask["sensors"] == 0).all())
    assert mask["control"].tolist() == [1, 2]
    back = Groups.from_feature_mask(mask, inputs, names={0: "sensors", 1: "u0", 2: "u1"})
    assert back.names == groups.names and torch.equal(back.membership, groups.membership)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.integers(0, 5), min_size=12, max_size=12),
    st.integers(0, 10_000),
)
def test_group_sums_add_up_for_any_partition(batch: int, labels: list[int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, 3, 4, generator=gen, dtype=torch.float64)
    attribution = Attribution(
        values=values,
        inputs=values,
        baseline=None,
        score_input=torch.zeros(batch, dtype=torch.float64),
        score_baseline=None,
        delta=None,
        steps=torch.ones(batch),
        converged=torch.ones(batch, dtype=torch.bool),
        method="test",
    )
    groups = Groups.from_feature_mask(torch.tensor(labels).reshape(3, 4), values)
    agg = aggregate(attribution, groups)
    torch.testing.assert_close(agg.sums.sum(dim=1), values.sum(dim=(1, 2)), rtol=1e-12, atol=1e-12)
    assert agg.score_share is None
    for g, name in enumerate(agg.names):
        members = torch.tensor(labels).reshape(3, 4) == int(name)
        torch.testing.assert_close(agg.sums[:, g], values[:, members].sum(dim=1))


def test_ranked_table_and_html_escaping() -> None:
    x = torch.tensor([[1.0, 2.0, -3.0]], dtype=torch.float64)
    attribution = integrand.integrated_gradients(lambda t: t.sum(dim=1), x, steps=4)
    groups = Groups.define({"<b>a</b>": [0], "b": [1], "c": [2]}, x)
    agg = aggregate(attribution, groups)
    assert [name for name, _ in agg.ranked()] == ["c", "b", "<b>a</b>"]
    assert agg.ranked(by="sums")[0][0] == "b"
    html = agg.to_html()
    assert "&lt;b&gt;a&lt;/b&gt;" in html and "<b>a</b>" not in html
    assert agg.table()[2]["sum"] == pytest.approx(-3.0)


def test_zero_total_gives_nan_share_not_inf() -> None:
    x = torch.zeros(1, 2, dtype=torch.float64)
    attribution = integrand.integrated_gradients(lambda t: t.sum(dim=1), x, steps=4)
    agg = aggregate(attribution, Groups.define({"a": [0], "b": [1]}, x))
    assert bool(torch.isnan(agg.share).all()) and bool(torch.isnan(agg.abs_share).all())


# --- bad input ---------------------------------------------------------------------------------


def test_overlapping_masks_error_unless_allowed() -> None:
    x = torch.randn(2, 6)
    spec = {"a": [0, 1, 2], "b": [2, 3]}
    with pytest.raises(InputError, match="overlap") as info:
        Groups.define(spec, x)
    assert info.value.argument == "groups"
    groups = Groups.define(spec, x, allow_overlap=True)
    with pytest.raises(InputError, match="overlapping"):
        groups.feature_mask()


def test_empty_group_errors() -> None:
    x = torch.randn(2, 3, 4)
    with pytest.raises(InputError, match="cover no feature") as info:
        Groups.define({"a": torch.ones(3, 4, dtype=torch.bool), "empty": torch.zeros(3, 4, dtype=torch.bool)}, x)
    assert info.value.argument == "groups"
    with pytest.raises(InputError, match="cover no feature"):
        Groups.define({"none": []}, x)
    with pytest.raises(InputError, match="no groups"):
        Groups.define({}, x)


@pytest.mark.parametrize(
    ("spec", "argument"),
    [
        ({"a": torch.ones(5, dtype=torch.bool)}, "groups['a']"),
        ({"a": [0, 12]}, "groups['a']"),
        ({"a": [-1]}, "groups['a']"),
        ({"a": torch.ones(3, 4)}, "groups['a']"),
        ({"a": "sensors"}, "groups['a']"),
        ({"a": 1.5}, "groups['a']"),
    ],
)
def test_bad_members(spec: dict[str, object], argument: str) -> None:
    with pytest.raises(InputError) as info:
        Groups.define(spec, torch.randn(2, 3, 4))  # type: ignore[arg-type]
    assert info.value.argument == argument


def test_bad_named_members_and_layout_mismatch() -> None:
    inputs = _named_inputs(2)
    with pytest.raises(InputError, match="not a named input"):
        Groups.define({"a": "pressure"}, inputs)
    with pytest.raises(InputError, match="not a named input"):
        Groups.define({"a": {"pressure": [0]}}, inputs)
    with pytest.raises(InputError, match="named inputs"):
        Groups.define({"a": [0]}, inputs)
    with pytest.raises(InputError) as info:
        Groups.modalities(torch.randn(2, 3))
    assert info.value.argument == "like"
    result = integrand.integrated_gradients(TwoModalities(), inputs, steps=4)
    with pytest.raises(InputError, match="defined for inputs") as err:
        aggregate(result, Groups.define({"a": [0]}, torch.randn(2, 26)))
    assert err.value.argument == "groups"
    with pytest.raises(InputError) as err:
        aggregate(result, {"a": [0]})  # type: ignore[arg-type]
    assert err.value.argument == "groups"


def test_incomplete_groups_cannot_become_a_feature_mask() -> None:
    groups = Groups.define({"a": [0]}, torch.randn(1, 3))
    with pytest.raises(InputError, match="do not cover"):
        groups.feature_mask()
    with pytest.raises(InputError, match="integer"):
        Groups.from_feature_mask(torch.ones(3), torch.randn(1, 3))
    with pytest.raises(InputError, match="names"):
        Groups.along(torch.randn(1, 3, 4), 0, names=["a"])


# --- group-level perturbation uses the same group definitions ---------------------------------


def _interaction(x: torch.Tensor) -> torch.Tensor:
    """x0 * x1 + x2: the pair (x0, x1) only acts jointly."""
    return x[:, 0] * x[:, 1] + x[:, 2]


@pytest.mark.parametrize("method", ["feature_ablation", "kernel_shap", "integrated_gradients"])
def test_group_level_methods_agree_on_an_additive_split(method: str) -> None:
    x = torch.tensor([[1.5, -2.0, 0.7], [0.3, 4.0, -1.0]], dtype=torch.float64)
    groups = Groups.define({"pair": [0, 1], "single": [2]}, x)
    params: dict[str, object] = {"steps": 16} if method == "integrated_gradients" else {}
    if method == "kernel_shap":
        params = {"seed": 0, "n_samples": 64}
    agg = integrand.groups.attribute_groups(_interaction, x, groups=groups, method=method, **params)
    # With the zero baseline the split is additive: the pair is worth x0 * x1, the single x2.
    expected = torch.stack([x[:, 0] * x[:, 1], x[:, 2]], dim=1)
    torch.testing.assert_close(agg.sums, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(agg.magnitude_share.sum(dim=1), torch.ones(2, dtype=torch.float64))


def test_group_ablation_perturbs_groups_jointly_not_feature_by_feature() -> None:
    x = torch.tensor([[1.5, -2.0, 0.7]], dtype=torch.float64)
    groups = Groups.define({"pair": [0, 1], "single": [2]}, x)
    per_feature = aggregate(integrand.methods.feature_ablation(_interaction, x), groups)
    joint = integrand.groups.attribute_groups(_interaction, x, groups=groups, method="feature_ablation")
    # Removing x0 alone or x1 alone each removes the whole product: summing per feature double counts.
    assert float(per_feature.sums[0, 0]) == pytest.approx(2 * 1.5 * -2.0)
    assert float(joint.sums[0, 0]) == pytest.approx(1.5 * -2.0)


def test_group_level_kernel_shap_over_named_inputs() -> None:
    model = TwoModalities()
    inputs = _named_inputs(2)
    groups = Groups.modalities(inputs)
    shap = integrand.groups.attribute_groups(model, inputs, groups=groups, method="kernel_shap", seed=1, n_samples=16)
    ig = integrand.groups.attribute_groups(model, inputs, groups=groups, steps=4)
    torch.testing.assert_close(shap.sums, ig.sums, rtol=1e-9, atol=1e-10)
    with pytest.raises(InputError) as info:
        integrand.groups.attribute_groups(model, inputs, groups=groups, method="feature_ablation", feature_mask=None)
    assert info.value.argument == "feature_mask"
    with pytest.raises(InputError) as info:
        integrand.groups.attribute_groups(model, inputs, groups=Groups.define({"a": [0]}, torch.randn(1, 3)))
    assert info.value.argument == "groups"
