"""Exact IG on the digits ReLU CNN next to Captum's 50-step Gauss-Legendre IG and error control, in one process.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/exact_ig.py  (one torch thread; prints a Markdown table)
Model: the demo's digits CNN (Conv-ReLU-Conv-ReLU-MaxPool-Linear, float32, trained in seconds and cached),
32 test digits, zero baseline, target the predicted class. Times are the best of 3 runs (error control: one
run each, at tol 1e-3, 1e-4 and 1e-5 with max_steps=100,000).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch
from captum.attr import IntegratedGradients

import integrand
from integrand.demo.digits import train_digits_cnn

torch.set_num_threads(1)
TOLS = (1e-3, 1e-4, 1e-5)
MAX_STEPS = 100_000
warnings.simplefilter("ignore", integrand.ConvergenceWarning)


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    model, data = train_digits_cnn()
    x = data.test_x[:32]
    with torch.no_grad():
        y = model(x).argmax(1)
        total = model(x)[torch.arange(32), y] - model(torch.zeros_like(x))[torch.arange(32), y]

    def rel(attr: torch.Tensor) -> float:
        return float(((total - attr.flatten(1).sum(1)).abs() / total.abs()).max())

    exact, t_exact = timed(lambda: integrand.integrated_gradients(model, x, y, rule="exact", batch_size=32))
    controlled = {
        tol: timed(lambda tol=tol: integrand.integrated_gradients(model, x, y, tol=tol, max_steps=MAX_STEPS), repeat=1)
        for tol in TOLS
    }
    cap = IntegratedGradients(model)
    gl, t_gl = timed(
        lambda: cap.attribute(x, target=y, n_steps=50, method="gausslegendre", internal_batch_size=32 * 50)
    )
    ref = integrand.integrated_gradients(model.double(), x.double(), y, rule="exact")
    model.float()
    pieces = torch.tensor(exact.params["pieces"], dtype=torch.float64)

    def dev(values: torch.Tensor) -> float:  # worst per-feature error vs float64 exact IG, relative to |total|
        err = (values.double() - ref.values).abs().flatten(1).max(1).values / total.double().abs()
        return float(err.max())

    print("| method | evaluations / example (mean, max) | time (s) | converged | worst rel. completeness "
          "| worst feature err |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("exact IG (rule='exact')", f"{pieces.mean():.1f}, {int(pieces.max())} pieces", t_exact, exact.values, 32),
        *[
            (f"tol={tol:g} error control", f"{r.steps.double().mean():.1f}, {int(r.steps.max())}", secs, r.values,
             int(r.converged.sum()))
            for tol, (r, secs) in controlled.items()
        ],
        ("Captum GL 50 steps", "50, 50", t_gl, gl.detach(), None),
    ]  # fmt: skip
    for name, evals, secs, values, ok in rows:
        done = "-" if ok is None else f"{ok}/32"
        print(f"| {name} | {evals} | {secs:.3f} | {done} | {rel(values):.1e} | {dev(values):.1e} |")
    print(
        f"\nexact / Captum time: {t_exact / t_gl:.2f}x; float64 exact pieces mean {sum(ref.params['pieces']) / 32:.1f}"
    )


if __name__ == "__main__":
    main()
