"""Perturbation methods, integrand vs Captum 0.9 at equal settings, in one process.

Run: .venv/bin/python bench/perturbation_speed.py  (one torch thread; prints a Markdown table)
Model: the digits CNN; batch of 32 test digits, float32; 2x2 superpixels (16 players) for the
mask methods. Captum evaluates `perturbations_per_eval=256` copies per forward pass where it can.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from captum.attr import FeatureAblation, KernelShap, Lime, Occlusion

import integrand
from integrand.demo.digits import train_digits_cnn

torch.set_num_threads(1)


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    model, data = train_digits_cnn()
    x = data.test_x[:32]
    with torch.no_grad():
        target = model(x).argmax(1)
    idx = torch.arange(8) // 2
    mask = (idx[:, None] * 4 + idx[None, :]).view(1, 1, 8, 8)
    rows = [
        ("occlusion 2x2, stride 1", lambda: integrand.occlusion(model, x, target, window=(1, 2, 2), batch_size=256),
         lambda: Occlusion(model).attribute(x, sliding_window_shapes=(1, 2, 2), target=target,
                                            perturbations_per_eval=256)),
        ("feature ablation, 16 groups", lambda: integrand.methods.feature_ablation(model, x, target, feature_mask=mask,
                                                                          batch_size=256),
         lambda: FeatureAblation(model).attribute(x, target=target, feature_mask=mask, perturbations_per_eval=256)),
        ("LIME, 16 groups, 200 samples",
         lambda: integrand.methods.lime(model, x, target, feature_mask=mask, n_samples=200, seed=0, batch_size=256),
         lambda: Lime(model).attribute(x, target=target, feature_mask=mask, n_samples=200,
                                       perturbations_per_eval=256)),
        ("KernelSHAP, 16 groups, 200 samples",
         lambda: integrand.methods.kernel_shap(model, x, target, feature_mask=mask, n_samples=200, seed=0,
                                               batch_size=256),
         lambda: KernelShap(model).attribute(x, target=target, feature_mask=mask, n_samples=200,
                                             perturbations_per_eval=256)),
    ]
    print("| method (batch 32) | integrand ms | Captum ms | Captum / integrand |")
    print("|---|---|---|---|")
    for name, ours, theirs in rows:
        a, b = best_of(ours), best_of(theirs)
        print(f"| {name} | {a * 1000:.0f} | {b * 1000:.0f} | {b / a:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
