"""Gradient methods, integrand vs Captum 0.9 in one process: wall time, agreement, completeness.

Run: .venv/bin/python bench/gradient_methods.py  (one torch thread; prints Markdown tables)
Models: the digits CNNs of the demo (ReLU + max-pool, and tanh + avg-pool), batch 32 test digits, float32.
Stochastic methods use identical settings but independent noise, so they agree in distribution only.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import torch
from captum import attr as ca

import integrand
from integrand.demo.digits import DigitsConfig, train_digits_cnn

torch.set_num_threads(1)
warnings.simplefilter("ignore")


Case = tuple[str, Callable[[], Any], Callable[[], Any] | None]


def best_ms(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    out, best = None, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return 1000 * best, out


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def cases(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, refs: torch.Tensor) -> list[Case]:
    return [
        (
            "saliency",
            lambda: integrand.saliency(model, x, y),
            lambda: ca.Saliency(model).attribute(x, target=y, abs=False),
        ),
        (
            "input_x_gradient",
            lambda: integrand.methods.input_x_gradient(model, x, y),
            lambda: ca.InputXGradient(model).attribute(x, target=y),
        ),
        (
            "guided_backprop",
            lambda: integrand.methods.guided_backprop(model, x, y),
            lambda: ca.GuidedBackprop(model).attribute(x, target=y),
        ),
        ("deconvnet", lambda: integrand.methods.deconvnet(model, x, y),
         lambda: ca.Deconvolution(model).attribute(x, target=y)),
        ("deeplift", lambda: integrand.methods.deeplift(model, x, y),
         lambda: ca.DeepLift(model).attribute(x, target=y)),
        (
            "smoothgrad (50 samples)",
            lambda: integrand.smoothgrad(model, x, y, stdev=0.15, seed=0, batch_size=800),
            lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_samples=50, stdevs=0.15, target=y, abs=False),
        ),
        (
            "gradient_shap (50 samples)",
            lambda: integrand.methods.gradient_shap(model, x, y, baselines=refs, stdev=0.1, seed=0, batch_size=800),
            lambda: ca.GradientShap(model).attribute(x, refs, n_samples=50, stdevs=0.1, target=y),
        ),
        ("expected_gradients (50)",
         lambda: integrand.methods.expected_gradients(model, x, y, baselines=refs, seed=0), None),
        ("guided_ig (200 steps)", lambda: integrand.methods.guided_ig(model, x, y), None),
        ("blur_ig (100 steps)", lambda: integrand.methods.blur_ig(model, x, y, max_sigma=8.0), None),
        ("idgi, IG path (50)", lambda: integrand.methods.idgi(model, x, y), None),
        ("idgi, guided path (200)", lambda: integrand.methods.idgi(model, x, y, path="guided_ig"), None),
        ("idgi, blur path (100)", lambda: integrand.methods.idgi(model, x, y, path="blur_ig", max_sigma=8.0), None),
    ]


def main() -> None:
    relu, data = train_digits_cnn(DigitsConfig())
    tanh, _ = train_digits_cnn(DigitsConfig(activation="tanh"))
    x, y = data.test_x[:32], data.test_y[:32]
    refs = data.train_x[:64]
    print(
        "| model | method | integrand ms | Captum ms | max abs diff / max abs | integrand max rel. completeness error |"
    )
    print("|---|---|---|---|---|---|")
    for label, model in (("relu+maxpool", relu), ("tanh+avgpool", tanh)):
        for name, mine, theirs in cases(model, x, y, refs):
            ms, result = best_ms(mine, 1 if "guided" in name else 3)
            rel = result.relative_error
            completeness = f"{float(rel.max()):.1e}" if rel is not None else "-"
            if theirs is None:
                print(f"| {label} | {name} | {ms:.0f} | - | - | {completeness} |")
                continue
            cms, ref = best_ms(theirs)
            print(f"| {label} | {name} | {ms:.0f} | {cms:.0f} | {rel_diff(result.values, ref):.1e} | {completeness} |")


if __name__ == "__main__":
    main()
