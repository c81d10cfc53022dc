"""Which sensor drives a forecast of combustion instability, and how sure is the ensemble?

Part 1 (synthetic, generated here): a noisy oscillator (the chamber's dynamic pressure) whose
amplitude responds, with a delay, to one sensor channel (injector pressure) and one control input
(fuel flow). An OH* chemiluminescence channel echoes the pressure, and the injector temperature and a
purge-flow control are irrelevant. An ensemble of 5 small forecasters predicts the log RMS pressure
over the next 12 steps from the last 48 steps of the 4 sensors plus the 2 controls (two named inputs
of different shapes). IG of every member is aggregated over sensor channels and controls; a sensor
failure (the driving channel reading 0) is then fed to the ensemble.

Part 2 (real): the pretrained Fracast-0 forecaster from the ``fracast`` wheel on the monthly Mauna
Loa CO2 series shipped with statsmodels; IG over the context shows which past months drive the
12-month-ahead forecast.

Run: ``python docs/examples/sensors.py [--out DIR]`` (figures go to DIR; about a minute on one thread).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import integrand
from integrand.groups import Groups, aggregate
from integrand.uncertainty import UncertainAttribution, ensemble

SENSORS = ("dynamic_pressure", "oh_chemiluminescence", "injector_pressure", "injector_temperature")
CONTROLS = ("fuel_flow", "purge_flow")
DRIVER = "injector_pressure"


@dataclass(frozen=True)
class Config:
    train: int = 3000
    test: int = 200
    window: int = 48
    horizon: int = 12
    lag: int = 12
    members: int = 5
    epochs: int = 250
    hidden: int = 64
    steps: int = 32
    seed: int = 0


def simulate(n: int, cfg: Config, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Sensor windows ``[n, 4, window]``, controls ``[n, 2]`` and the target log RMS future pressure ``[n]``."""
    total = cfg.lag + cfg.window + cfg.horizon
    # Injector pressure: a per-run operating level plus an AR(1) fluctuation.
    level = 0.5 + 2.0 * torch.rand(n, 1, generator=gen)
    noise = 0.2 * torch.randn(n, total, generator=gen)
    fluct = torch.zeros(n, total)
    for t in range(1, total):
        fluct[:, t] = 0.85 * fluct[:, t - 1] + noise[:, t]
    drive = level + fluct
    controls = torch.rand(n, 2, generator=gen)
    # The oscillation amplitude follows the driver (and fuel flow) after a delay of `lag` steps.
    excitation = drive[:, : cfg.window + cfg.horizon] + 0.8 * controls[:, :1]
    amplitude = 0.2 * torch.exp(1.2 * (excitation - 1.5))
    t = torch.arange(cfg.window + cfg.horizon, dtype=torch.float32)
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
    pressure = amplitude * torch.sin(2 * math.pi * t / 6 + phase) + 0.05 * torch.randn(n, t.shape[0], generator=gen)
    oh = 0.7 * torch.roll(pressure, 2, dims=1) + 0.05 * torch.randn(n, t.shape[0], generator=gen)
    temperature = 3.0 + torch.cumsum(0.1 * torch.randn(n, t.shape[0], generator=gen), dim=1)
    past = slice(0, cfg.window)
    sensors = torch.stack(
        [pressure[:, past], oh[:, past], drive[:, cfg.lag : cfg.lag + cfg.window], temperature[:, past]], dim=1
    )
    future = pressure[:, cfg.window :]
    target = 0.5 * torch.log(future.square().mean(dim=1))
    return {"sensors": sensors, "control": controls}, target


class Forecaster(nn.Module):
    """Standardise with the training statistics (buffers), then a small tanh MLP to one number."""

    def __init__(self, cfg: Config, stats: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("s_mean", stats["s_mean"])
        self.register_buffer("s_std", stats["s_std"])
        self.register_buffer("c_mean", stats["c_mean"])
        self.register_buffer("c_std", stats["c_std"])
        width = len(SENSORS) * cfg.window + len(CONTROLS)
        self.net = nn.Sequential(
            nn.Linear(width, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 32), nn.Tanh(), nn.Linear(32, 1)
        )

    def forward(self, sensors: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        s = (sensors - self.s_mean) / self.s_std
        c = (control - self.c_mean) / self.c_std
        out: torch.Tensor = self.net(torch.cat([s.flatten(1), c], dim=1))[:, 0]
        return out


def train_ensemble(cfg: Config) -> tuple[list[Forecaster], dict[str, Any]]:
    gen = torch.Generator().manual_seed(cfg.seed)
    inputs, y = simulate(cfg.train, cfg, gen)
    test_inputs, test_y = simulate(cfg.test, cfg, gen)
    s, c = inputs["sensors"], inputs["control"]
    stats = {
        "s_mean": s.mean(dim=(0, 2))[:, None], "s_std": s.std(dim=(0, 2))[:, None],
        "c_mean": c.mean(dim=0), "c_std": c.std(dim=0),
    }
    members = []
    for m in range(cfg.members):
        torch.manual_seed(cfg.seed * 100 + m)
        model = Forecaster(cfg, stats)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(**inputs), y)
            loss.backward()
            opt.step()
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        members.append(model)
    with torch.no_grad():
        predictions = torch.stack([m(**test_inputs) for m in members])
    rmse = (predictions.mean(dim=0) - test_y).square().mean().sqrt()
    data = {
        "train": inputs, "test": test_inputs, "test_y": test_y,
        "baseline": {"sensors": s.mean(dim=0), "control": c.mean(dim=0)},
        "rmse": float(rmse), "target_std": float(test_y.std()),
    }
    return members, data


def sensor_groups(like: dict[str, torch.Tensor]) -> Groups:
    """One group per sensor channel and per control input."""
    spec: dict[str, Any] = {}
    for i, name in enumerate(SENSORS):
        mask = torch.zeros(like["sensors"].shape[1:], dtype=torch.bool)
        mask[i] = True
        spec[name] = {"sensors": mask}
    for i, name in enumerate(CONTROLS):
        spec[name] = {"control": [i]}
    return Groups.define(spec, like)


def analyse(members: list[Forecaster], data: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The claims of the example as numbers."""
    test = data["test"]
    groups = sensor_groups(test)
    result = ensemble(members, test, groups=groups, baseline=data["baseline"], steps=cfg.steps)
    assert result.groups is not None
    # Group share = |group sum| / sum over groups of |group sum|, averaged over test examples: [members, groups].
    share = result.groups.magnitude_share.mean(dim=1)
    failed = {"sensors": test["sensors"].clone(), "control": test["control"]}
    failed["sensors"][:, SENSORS.index(DRIVER)] = 0.0
    with torch.no_grad():
        broken = torch.stack([m(**failed) for m in members])
    mean_attr = result.mean_attribution()
    return {
        "result": result,
        "groups": groups,
        "share": share,
        "feature_abs_share": result.groups.abs_share.mean(dim=(0, 1)),
        "driver_top_in_every_member": all(
            groups.names[int(i)] == DRIVER for i in share.argmax(dim=1)
        ),
        "predictive_std": float(result.prediction_std.mean()),
        "predictive_std_failed": float(broken.std(dim=0).mean()),
        "group_std": result.groups.std.mean(dim=0),
        "group_sign_agreement": result.groups.sign_agreement.mean(dim=0),
        "relative_error": float(mean_attr.relative_error.max()) if mean_attr.relative_error is not None else math.nan,
        "modality": aggregate(mean_attr, Groups.modalities(test)),
    }


# ---------------------------------------------------------------- part 2: Fracast on CO2


class FracastPoint(nn.Module):
    """Fracast-0 as a differentiable function: context ``[batch, T]`` -> one quantile at one horizon step.

    The package normalises the context by its min and span in NumPy; here those two numbers are
    fixed from the real context, so the integration path runs through the model's own input space.
    """

    def __init__(self, fracast: Any, loc: float, span: float, step: int, quantile: float = 0.5) -> None:
        super().__init__()
        self.core, self.head = fracast.core, fracast.head
        self.width = int(fracast.context_length)
        self.loc, self.span, self.step = loc, span, step
        self.quantile = fracast.quantiles.index(quantile)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        batch, length = context.shape
        values = nn.functional.pad((context - self.loc) / self.span, (self.width - length, 0))[:, None, :]
        valid = torch.zeros(batch, 1, self.width, dtype=torch.bool, device=context.device)
        valid[..., self.width - length :] = True
        hidden = self.core(values, valid, valid.to(values.dtype))
        quantiles = self.head.forward_horizon(
            hidden, last_obs=values[:, 0, -1:], ctx=values[:, 0], ctx_mask=valid[:, 0]
        )
        out: torch.Tensor = quantiles[:, self.step, self.quantile] * self.span + self.loc
        return out


def co2_monthly() -> Any:
    """Monthly means of the weekly Mauna Loa CO2 record (statsmodels), gaps interpolated."""
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean().interpolate()


def fracast_co2(steps: int = 32, ahead: int = 12) -> dict[str, Any]:
    """Explain Fracast's ``ahead``-month median forecast made at the end of 2000."""
    from fracast import FracastModel

    series = co2_monthly()
    context = torch.tensor(series.values[:-ahead], dtype=torch.float32)
    actual = float(series.values[-1])
    fracast = FracastModel.from_pretrained(weights="fp32")
    model = FracastPoint(fracast, float(context.min()), float(context.max() - context.min()), ahead - 1)
    reference = float(fracast.forecast(context.numpy(), horizon=ahead)[ahead - 1, fracast.quantiles.index(0.5)])
    x = context[None]
    start = time.perf_counter()
    result = integrand.integrated_gradients(model, x, baseline=float(context.mean()), steps=steps, batch_size=16)
    seconds = time.perf_counter() - start
    values = result.values
    assert isinstance(values, torch.Tensor)
    n = context.shape[0]
    lag = torch.arange(n, 0, -1)  # months before the forecast origin; 1 = the latest month
    windows = {"last 12 months": lag <= 12, "13-24": (lag > 12) & (lag <= 24), "25-60": (lag > 24) & (lag <= 60),
               "older": lag > 60}
    recency = aggregate(result, Groups.define(windows, x))
    # Calendar month of each context month relative to the forecast month (0 = same calendar month).
    offset = (lag + ahead - 1) % 12
    seasons = aggregate(result, Groups.define({f"{int(k)} mo. off": offset == k for k in range(12)}, x))
    order = torch.argsort(values[0].abs(), descending=True)[:8]
    months = series.index[:-ahead]
    return {
        "result": result, "seconds": seconds, "forecast": float(result.score_input[0]), "reference": reference,
        "actual": actual, "target_month": str(series.index[-1].date()),
        "top_months": [(str(months[int(i)].date()), int(lag[int(i)]), float(values[0, int(i)])) for i in order],
        "recency": recency, "seasons": seasons, "context": context, "months": months,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the figures")
    parser.add_argument("--skip-fracast", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = Config()
    start = time.perf_counter()
    members, data = train_ensemble(cfg)
    trained = time.perf_counter() - start
    report = analyse(members, data, cfg)
    result: UncertainAttribution = report["result"]
    print(f"integrand {integrand.__version__}, 1 torch thread")
    print(f"trained {cfg.members} forecasters in {trained:.1f} s; ensemble test RMSE {data['rmse']:.3f} "
          f"(target std {data['target_std']:.3f}); IG of all members {time.perf_counter() - start - trained:.1f} s")
    print(f"max completeness error of the mean attribution: {report['relative_error']:.1e}")
    names = report["groups"].names
    print("| member | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for m, row in enumerate(report["share"]):
        print(f"| {m} | " + " | ".join(f"{float(v):.3f}" for v in row) + " |")
    print("| std over members (group sum) | " + " | ".join(f"{float(v):.3f}" for v in report["group_std"]) + " |")
    print("| feature-level abs share (mean) | "
          + " | ".join(f"{float(v):.3f}" for v in report["feature_abs_share"]) + " |")
    print("| sign agreement | " + " | ".join(f"{float(v):.2f}" for v in report["group_sign_agreement"]) + " |")
    print(f"driving channel has the largest share in every member: {report['driver_top_in_every_member']}")
    modality = report["modality"]
    print("modalities, ensemble-mean attribution: magnitude share (mean over examples) "
          + ", ".join(f"{n} {float(v):.3f}" for n, v in zip(modality.names, modality.magnitude_share.mean(dim=0))))
    mean_attr = result.mean_attribution()
    assert mean_attr.score_baseline is not None and modality.score_share is not None
    i = int((mean_attr.score_input - mean_attr.score_baseline).abs().argmax())
    print(f"  test example {i} (largest |f(x) - f(baseline)|): share of the change "
          + ", ".join(f"{n} {float(v):+.4f}" for n, v in zip(modality.names, modality.score_share[i]))
          + f", relative completeness error {float(modality.relative_error[i]):.1e}")
    print(f"predictive std (mean over test examples): healthy {report['predictive_std']:.3f}, "
          f"{DRIVER} failed (reads 0) {report['predictive_std_failed']:.3f} "
          f"(x{report['predictive_std_failed'] / report['predictive_std']:.1f})")
    if args.out is not None:
        from integrand.viz.figures import series_figure

        args.out.mkdir(parents=True, exist_ok=True)
        mean = result.mean
        assert isinstance(mean, dict)
        fig = series_figure(SENSORS, mean["sensors"][0], data["test"]["sensors"][0],
                            title="ensemble-mean IG over time, test example 0")
        fig.savefig(args.out / "sensors_over_time.png", dpi=90)
    if args.skip_fracast:
        return 0
    co2 = fracast_co2()
    r = co2["result"]
    print(f"\nFracast-0 on monthly CO2: forecast for {co2['target_month']} made 12 months earlier: "
          f"{co2['forecast']:.2f} ppm (package forecast {co2['reference']:.2f}, actual {co2['actual']:.2f}); "
          f"IG {co2['seconds']:.1f} s, relative completeness error {float(r.relative_error[0]):.1e}")
    print("most important context months (month, months before origin, attribution in ppm):")
    for month, lag, value in co2["top_months"]:
        print(f"  {month}  lag {lag:3d}  {value:+.3f}")
    for title, agg in (("recency", co2["recency"]), ("calendar month vs. target", co2["seasons"])):
        print(f"{title}: " + ", ".join(f"{n} {float(s):+.2f} ppm" for n, s in zip(agg.names, agg.sums[0])))
    if args.out is not None:
        from integrand.viz.figures import series_figure

        tail = 120
        fig = series_figure(["co2"], r.values[0, -tail:], co2["context"][-tail:],
                            title="Fracast-0: IG of the 12-month-ahead median over the last 120 context months")
        fig.savefig(args.out / "fracast_co2_over_time.png", dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
