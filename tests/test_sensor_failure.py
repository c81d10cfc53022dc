"""Sensor failure: IG of an ensemble's forecast change and variance increase, healthy -> failed, by sensor group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from integrand.errors import InputError, ModelError
from integrand.groups import Groups
from integrand.sensor_failure import fail_channel, sensor_failure

CHANNELS = ("a", "b", "c")


class Linear(nn.Module):
    """``w . flat(sensors) + v . control + b``: the ensemble variance is quadratic in the inputs."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3 * 8, generator=gen, dtype=torch.float64), requires_grad=False)
        self.v = nn.Parameter(torch.randn(2, generator=gen, dtype=torch.float64), requires_grad=False)
        self.b = nn.Parameter(torch.randn((), generator=gen, dtype=torch.float64), requires_grad=False)

    def forward(self, sensors: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = sensors.flatten(1) @ self.w + control @ self.v + self.b
        return out


def setup() -> tuple[list[Linear], dict[str, torch.Tensor], Groups]:
    members = [Linear(s) for s in range(4)]
    gen = torch.Generator().manual_seed(9)
    inputs = {"sensors": torch.randn(5, 3, 8, generator=gen, dtype=torch.float64),
              "control": torch.randn(5, 2, generator=gen, dtype=torch.float64)}
    spec: dict[str, object] = {}
    for i, name in enumerate(CHANNELS):
        mask = torch.zeros(3, 8, dtype=torch.bool)
        mask[i] = True
        spec[name] = {"sensors": mask}
    spec["control"] = "control"
    return members, inputs, Groups.define(spec, inputs)  # type: ignore[arg-type]


def closed_form(members: list[Linear], x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """IG of the unbiased variance over members of linear models: Δ ⊙ ∇V at the midpoint (V is quadratic)."""
    w = torch.stack([torch.cat([m.w, m.v]) for m in members])
    b = torch.stack([m.b for m in members])
    d, e = w - w.mean(dim=0), b - b.mean()
    mid = (x0 + x1) / 2
    grad = 2 / (len(members) - 1) * ((mid @ d.T + e) @ d)
    return (x1 - x0) * grad


def flat(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([inputs["sensors"].flatten(1), inputs["control"]], dim=1)


def test_variance_ig_is_complete_and_matches_the_closed_form_for_two_failures(state_guard: type) -> None:
    members, healthy, groups = setup()
    guards = [state_guard(m) for m in members]
    failed = fail_channel(healthy, 0, "zero", input="sensors", at=3, value=4.0)
    failed = fail_channel(failed, 2, "noise", input="sensors", std=3.0, seed=1)
    result = sensor_failure(members, healthy, failed, groups=groups, steps=2)
    assert result.failed == ("a", "c") and result.variance_ratio() > 1
    expected = closed_form(members, flat(healthy), flat(failed))
    torch.testing.assert_close(result.variance.sums, groups.reduce(expected), rtol=1e-10, atol=1e-10)
    pooled = groups.reduce(expected).sum(dim=0) / (result.var_failed - result.var_healthy).sum()
    torch.testing.assert_close(result.variance_share, pooled, rtol=1e-10, atol=1e-12)
    assert abs(float(result.variance_share.sum()) - 1) < 1e-10 and abs(result.variance_pooled_error) < 1e-10
    assert result.variance_error < 1e-10 and result.change_error < 1e-10
    # Unchanged groups get exactly nothing (dummy axiom): the channel "b" and the controls.
    assert torch.equal(result.variance.sums[:, [1, 3]], torch.zeros(5, 2, dtype=torch.float64))
    assert torch.equal(result.change_share[[1, 3]], torch.zeros(2, dtype=torch.float64))
    assert result.missed == CHANNELS[int(pooled.argmax())]
    mean_change = (result.mean_failed - result.mean_healthy)[:, None]
    torch.testing.assert_close(result.change.sums.sum(dim=1, keepdim=True), mean_change)
    assert [row["group"] for row in result.table()] == list(groups.names)
    assert [row["failed"] for row in result.table()] == ["yes", "no", "yes", "no"]
    for g in guards:
        g.assert_unchanged()


def test_a_single_failure_goes_wholly_to_the_failed_group() -> None:
    members, healthy, groups = setup()
    failed = fail_channel(healthy, 1, "freeze", input="sensors", at=2)
    result = sensor_failure(members, healthy, failed, groups=groups, steps=3)
    assert result.failed == ("b",)
    torch.testing.assert_close(result.variance_share, torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert result.missed_by_change == "b"
    assert result.missed == ("b" if float((result.var_failed - result.var_healthy).sum()) > 0 else None)


def test_failure_modes() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    zero = fail_channel(x, 1, "zero", at=2, value=-1.0)
    assert isinstance(zero, torch.Tensor)
    assert torch.equal(zero[:, 1, 2:], torch.full((2, 3), -1.0)) and torch.equal(zero[:, 1, :2], x[:, 1, :2])
    assert torch.equal(zero[:, [0, 2]], x[:, [0, 2]])
    frozen = fail_channel(x, 2, "freeze", at=1)
    assert isinstance(frozen, torch.Tensor)
    assert torch.equal(frozen[:, 2, 1:], x[:, 2, 1:2].expand(2, 4)) and torch.equal(frozen[:, 2, 0], x[:, 2, 0])
    noisy = fail_channel(x, 0, "noise", std=0.5, seed=3)
    assert isinstance(noisy, torch.Tensor)
    assert torch.equal(noisy, fail_channel(x, 0, "noise", std=0.5, seed=3))
    assert not torch.equal(noisy[:, 0], x[:, 0]) and torch.equal(noisy[:, 1:], x[:, 1:])
    assert 0.2 < float((noisy[:, 0] - x[:, 0]).std()) < 0.9
    assert torch.equal(x, torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5))  # input untouched


def test_typed_errors_name_the_argument() -> None:
    members, healthy, groups = setup()
    failed = fail_channel(healthy, 0, "zero", input="sensors")
    cases = [
        ("mode", lambda: fail_channel(healthy, 0, "melt", input="sensors")),
        ("channel", lambda: fail_channel(healthy, 3, "zero", input="sensors")),
        ("at", lambda: fail_channel(healthy, 0, "zero", input="sensors", at=8)),
        ("input", lambda: fail_channel(healthy, 0, "zero", input="video")),
        ("inputs", lambda: fail_channel(healthy, 0, "zero", input="control")),
        ("std", lambda: fail_channel(healthy, 0, "noise", input="sensors", std=-1.0)),
        ("models", lambda: sensor_failure(members[:1], healthy, failed, groups=groups)),
        ("models", lambda: sensor_failure(members[0], healthy, failed, groups=groups)),  # type: ignore[arg-type]
        ("failed", lambda: sensor_failure(members, healthy, dict(healthy), groups=groups)),
        ("failed", lambda: sensor_failure(members, healthy, {"sensors": failed["sensors"]}, groups=groups)),
        ("groups", lambda: sensor_failure(members, healthy, failed, groups=None)),  # type: ignore[arg-type]
    ]
    for argument, call in cases:
        with pytest.raises(InputError) as info:
            call()
        assert info.value.argument == argument, (argument, info.value)
    two = [lambda sensors, control: torch.zeros(5, 2, dtype=torch.float64)] * 2
    with pytest.raises(ModelError):
        sensor_failure(two, healthy, failed, groups=groups)
