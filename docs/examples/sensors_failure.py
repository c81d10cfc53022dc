"""Sensor failure in the combustor example: which failed sensor the ensemble misses.

Trains the five forecasters of ``docs/examples/sensors.py``, then fails sensors from step 24 of the
48-step window on: reading 0 ("zero"), holding the reading of step 24 ("freeze"), or adding noise of
the channel's standard deviation ("noise"). ``integrand.sensor_failure`` integrates gradients from the
healthy to the failed input, for the ensemble-mean forecast and for the ensemble variance, and sums
them per sensor group.

Run: ``python docs/examples/sensors_failure.py [--out docs/img] [--quiet]`` (about a minute on one thread).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import integrand
from integrand.sensor_failure import FAILURE_MODES, SensorFailure, fail_channel, sensor_failure

AT = 24


def load_sensors_example() -> ModuleType:
    path = Path(__file__).resolve().parent / "sensors.py"
    spec = importlib.util.spec_from_file_location("example_sensors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def scenarios(sensors: tuple[str, ...]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(label, mode, failed channels): each sensor alone, then all four at once, per mode."""
    out = [(f"{name} {mode}", mode, (i,)) for mode in FAILURE_MODES for i, name in enumerate(sensors)]
    out += [(f"all four {mode}", mode, tuple(range(len(sensors)))) for mode in FAILURE_MODES]
    return out


def run(members: list[Any], data: dict[str, Any], groups: Any, mode: str, channels: tuple[int, ...],
        steps: int) -> SensorFailure:
    healthy = data["test"]
    failed = healthy
    for i, channel in enumerate(channels):
        failed = fail_channel(failed, channel, mode, input="sensors", at=AT, seed=i)
    return sensor_failure(members, healthy, failed, groups=groups, steps=steps)


def figure(sensors: tuple[str, ...], results: dict[str, SensorFailure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, *right) = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    width = 0.25
    for m, mode in enumerate(FAILURE_MODES):
        ratios = [results[f"{name} {mode}"].variance_ratio() for name in sensors]
        left.bar([i + (m - 1) * width for i in range(len(sensors))], ratios, width, label=mode)
    left.axhline(1.0, color="black", lw=0.8)
    left.set_yscale("log")
    left.set_xticks(range(len(sensors)), [s.replace("_", "\n") for s in sensors], fontsize=8)
    left.set_ylabel("predictive variance, failed / healthy")
    left.set_title("one sensor fails (from step 24)")
    left.legend(title="failure")
    width = 0.8 / len(sensors)
    for ax, column, title in ((right[0], "change_share", "forecast change"),
                              (right[1], "variance_share", "variance increase")):
        for g, name in enumerate(sensors):
            shares = [float(getattr(results[f"all four {mode}"], column)[g]) for mode in FAILURE_MODES]
            offsets = [m + (g - (len(sensors) - 1) / 2) * width for m in range(len(FAILURE_MODES))]
            ax.bar(offsets, shares, width, label=name, color=f"C{g + 3}")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(FAILURE_MODES)), list(FAILURE_MODES))
        ax.set_ylabel(f"share of the {title} (IG)")
        ax.set_title(f"all four fail: {title}")
    right[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the figure")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ex = load_sensors_example()
    cfg = ex.Config()
    start = time.perf_counter()
    members, data = ex.train_ensemble(cfg)
    trained = time.perf_counter() - start
    groups = ex.sensor_groups(data["test"])
    from rich.progress import Progress

    results: dict[str, SensorFailure] = {}
    todo = scenarios(ex.SENSORS)
    with Progress(disable=args.quiet, transient=True) as bar:
        job = bar.add_task("sensor failures", total=len(todo))
        for label, mode, channels in todo:
            results[label] = run(members, data, groups, mode, channels, cfg.steps)
            bar.advance(job)
    print(f"integrand {integrand.__version__}, 1 torch thread; trained {cfg.members} forecasters in {trained:.1f} s, "
          f"{len(todo)} failure scenarios attributed in {time.perf_counter() - start - trained:.1f} s")
    print("| failure (from step 24) | mean |Δ forecast| | variance ×| missed (largest variance share) | "
          "failed? | max rel. completeness error: change, variance | pooled variance error |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        change = float((r.mean_failed - r.mean_healthy).abs().mean())
        missed = r.missed or "— (variance fell)"
        hit = "—" if r.missed is None else "yes" if r.missed in r.failed else "no"
        print(f"| {label} | {change:.3f} | {r.variance_ratio():.2f} | {missed} | {hit} | "
              f"{r.change_error:.1e}, {r.variance_error:.1e} | {r.variance_pooled_error:+.1e} |")
    names = groups.names
    print("\nAll four sensors fail: shares per group (change share = |IG| share of the mean forecast change)")
    print("| failure | " + " | ".join(f"{n}: change, variance" for n in names[: len(ex.SENSORS)]) + " |")
    print("|---" * (len(ex.SENSORS) + 1) + "|")
    for mode in FAILURE_MODES:
        r = results[f"all four {mode}"]
        cells = [f"{float(r.change_share[g]):.2f}, {float(r.variance_share[g]):+.2f}" for g in range(len(ex.SENSORS))]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        figure(ex.SENSORS, results, args.out / "sensors_failure.png")
        print(f"figure: {args.out / 'sensors_failure.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
