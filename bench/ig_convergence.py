"""IG cost to reach a completeness error, integrand vs Captum, in one process.

Run: .venv/bin/python bench/ig_convergence.py  (one torch thread; prints a Markdown table)
Models: the digits CNN (ReLU + max-pool) and a GELU MLP trained on the same digits, batch 32, float32.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch
from captum.attr import IntegratedGradients
from torch import nn

import integrand
from integrand.demo.digits import DigitsConfig, load_digits_data, train_digits_cnn

torch.set_num_threads(1)
warnings.simplefilter("ignore", integrand.ConvergenceWarning)


def gelu_mlp() -> nn.Module:
    data = load_digits_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        for idx in torch.randperm(len(data.train_y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx]).backward()
            opt.step()
    return model.eval()


def rel_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attr: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out, base = model(x), model(torch.zeros_like(x))
    total = out[torch.arange(len(y)), y] - base[torch.arange(len(y)), y]
    return ((total - attr.flatten(1).sum(1)).abs() / total.abs()).double()


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def captum_row(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, float]:
    ig = IntegratedGradients(model)
    attr, seconds = timed(
        lambda: ig.attribute(x, target=y, n_steps=steps, method="gausslegendre", internal_batch_size=512)
    )
    err = rel_error(model, x, y, attr)
    return {"evals": float(steps), "seconds": seconds, "mean_err": float(err.mean()), "max_err": float(err.max())}


def ours_row(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> dict[str, float]:
    res, seconds = timed(lambda: integrand.integrated_gradients(model, x, target=y, batch_size=512, **kw))
    err = res.relative_error
    return {
        "evals": float(res.steps.float().mean()),
        "seconds": seconds,
        "mean_err": float(err.mean()),
        "max_err": float(err.max()),
        "converged": float(res.converged.float().mean()),
    }


def fmt(name: str, row: dict[str, float], batch: int) -> str:
    per_eval = 1e6 * row["seconds"] / (row["evals"] * batch)
    conv = f"{row['converged']:.0%}" if "converged" in row else "-"
    return (
        f"| {name} | {row['evals']:.1f} | {row['mean_err']:.2e} | {row['max_err']:.2e} | {conv} "
        f"| {row['seconds'] * 1e3:.0f} | {per_eval:.0f} |"
    )


def main() -> None:
    cnn, data = train_digits_cnn(DigitsConfig())
    models = {"digits CNN (ReLU)": cnn, "digits MLP (GELU)": gelu_mlp()}
    x, y = data.test_x[:32], data.test_y[:32]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {len(y)}, float32\n")
    for name, model in models.items():
        print(f"### {name}\n")
        print("| method | grad evals / example | mean rel. error | max rel. error | converged | wall ms | µs / eval |")
        print("|---|---|---|---|---|---|---|")
        base = captum_row(model, x, y, 50)
        print(fmt("Captum GL 50 (default)", base, len(y)))
        for steps in (16, 32, 64, 128, 256):
            row = captum_row(model, x, y, steps)
            print(fmt(f"Captum GL {steps}", row, len(y)))
        for tol in (3e-2, 1e-2, 3e-3, 1e-3, 1e-5, 1e-6):  # default max_steps (4097)
            print(fmt(f"integrand tol={tol:g}", ours_row(model, x, y, tol=tol), len(y)))
        print(fmt("integrand GL 50 (fixed)", ours_row(model, x, y, steps=50), len(y)))
        print()
    print("### chunking (digits CNN, GL 64 steps, batch 32 = 2048 points)\n")
    print("| batch_size | wall ms |\n|---|---|")
    for bs in (64, 256, 1024, 2048, None):
        _, seconds = timed(lambda bs=bs: integrand.integrated_gradients(cnn, x, target=y, steps=64, batch_size=bs))
        print(f"| {bs if bs else 'auto (memory budget)'} | {seconds * 1e3:.0f} |")


if __name__ == "__main__":
    main()
