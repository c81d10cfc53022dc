"""Demo section: error-controlled IG on a small CNN trained on scikit-learn's digits."""

from __future__ import annotations

import dataclasses
from html import escape
from pathlib import Path

import torch

from ..defaults import TOL
from ..methods.integrated_gradients import integrated_gradients
from .digits import DigitsConfig, accuracy, train_digits_cnn

TITLE = "Digits CNN: error-controlled Integrated Gradients"
TOLERANCE = TOL


def run(out: Path) -> str:
    model, data = train_digits_cnn(DigitsConfig())
    print(f"   digits CNN test accuracy {accuracy(model, data):.3f}")
    x, y = data.test_x[:8], data.test_y[:8]
    result = integrated_gradients(model, x, target=y, tol=TOLERANCE)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    # The views (report and viewer) read per-example labels and predictions from params.
    result = dataclasses.replace(result, params={
        **result.params, "example_labels": [str(int(v)) for v in y], "predictions": [str(int(v)) for v in predicted],
    })
    rel = result.relative_error
    assert rel is not None
    print(f"   {'example':>7} {'label':>5} {'predicted':>9} {'rel. completeness error':>24} {'steps':>6} "
          f"{'converged':>9}")
    for i in range(len(y)):
        ok = bool(result.converged[i])
        print(f"   {i:>7} {int(y[i]):>5} {int(predicted[i]):>9} {float(rel[i]):>24.2e} {int(result.steps[i]):>6} "
              f"{ok!s:>9}")
    print(f"   mean gradient evaluations per example: {float(result.steps.float().mean()):.1f} (tol={TOLERANCE})")
    result.save(out / "digits_ig.safetensors")
    note = (
        f"<p>IG with tol={TOLERANCE}: mean {float(result.steps.float().mean()):.1f} gradient evaluations per example, "
        f"max relative completeness error {float(rel.max()):.2e}. Labels: {escape(str(y.tolist()))}.</p>"
    )
    caption = (
        "<p>Each card: the signed attribution map (red raises the true label's logit, blue lowers it) and the same "
        "map's magnitude overlaid on the input digit; the card names the true label and the predicted class.</p>"
    )
    return note + caption + result.to_html(title="digits, target = true label")
