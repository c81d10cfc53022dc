"""The claims of docs/examples/sensors.py on a small, fast configuration."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_sensors", ROOT / "docs" / "examples" / "sensors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_driver_has_the_largest_group_share_and_failure_raises_spread(example: ModuleType) -> None:
    cfg = example.Config(train=1500, test=100, epochs=150, steps=16)
    members, data = example.train_ensemble(cfg)
    assert len(members) == 5
    assert data["rmse"] < 0.5 * data["target_std"]  # the forecasters learned the dynamics
    report = example.analyse(members, data, cfg)
    assert report["driver_top_in_every_member"]
    driver = report["groups"].names.index(example.DRIVER)
    share = report["share"]
    assert share.shape == (5, 6)
    assert bool((share[:, driver] > 0.3).all())
    # The irrelevant purge flow gets almost nothing in every member.
    assert bool((share[:, report["groups"].names.index("purge_flow")] < 0.05).all())
    # Spread is reported per group, and the driving channel's sign is agreed on.
    assert report["group_std"].shape == (6,)
    assert float(report["group_sign_agreement"][driver]) > 0.9
    assert report["relative_error"] < 1e-3
    assert report["predictive_std"] > 0
    assert report["predictive_std_failed"] > 1.2 * report["predictive_std"]
    modality = report["modality"]
    assert modality.names == ("sensors", "control")
    mean = report["result"].mean_attribution()
    change = mean.score_input - mean.score_baseline
    # Modality shares of the prediction change add up to 1 minus the completeness error (float32 here).
    torch.testing.assert_close(modality.score_share.sum(dim=1), 1 - mean.delta / change, atol=2e-3, rtol=0)

def test_fracast_wrapper_reproduces_the_package_forecast(example: ModuleType) -> None:
    fracast = pytest.importorskip("fracast")
    pytest.importorskip("statsmodels")
    series = example.co2_monthly()
    assert len(series) == 526  # March 1958 to December 2001
    context = torch.tensor(series.values[:-12], dtype=torch.float32)
    model = fracast.FracastModel.from_pretrained(weights="fp32")
    point = example.FracastPoint(model, float(context.min()), float(context.max() - context.min()), 11)
    with torch.no_grad():
        ours = float(point(context[None])[0])
    reference = float(model.forecast(context.numpy(), horizon=12)[11, model.quantiles.index(0.5)])
    assert ours == pytest.approx(reference, abs=1e-3)


@pytest.mark.slow
def test_fracast_co2_recent_and_same_month_drive_the_forecast(example: ModuleType) -> None:
    pytest.importorskip("fracast")
    pytest.importorskip("statsmodels")
    co2 = example.fracast_co2(steps=32)
    assert float(co2["result"].relative_error[0]) < 5e-3
    recency = dict(zip(co2["recency"].names, co2["recency"].sums[0].tolist()))
    assert recency["last 12 months"] > recency["13-24"] > abs(recency["older"])
    seasons = co2["seasons"].sums[0]
    assert int(seasons.argmax()) == 0  # the same calendar month as the forecast month matters most
