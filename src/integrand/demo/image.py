"""Demo section: error-controlled IG on a small CNN trained on scikit-learn's digits."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ..methods.integrated_gradients import integrated_gradients
from .digits import DigitsConfig, accuracy, train_digits_cnn

TITLE = "Digits CNN: error-controlled Integrated Gradients"
TOLERANCE = 3e-3


def run(out: Path) -> str:
    model, data = train_digits_cnn(DigitsConfig())
    print(f"   digits CNN test accuracy {accuracy(model, data):.3f}")
    x, y = data.test_x[:8], data.test_y[:8]
    result = integrated_gradients(model, x, target=y, tol=TOLERANCE)
    rel = result.relative_error
    assert rel is not None
    print(f"   {'example':>7} {'label':>5} {'rel. completeness error':>24} {'steps':>6} {'converged':>9}")
    for i in range(len(y)):
        ok = bool(result.converged[i])
        print(f"   {i:>7} {int(y[i]):>5} {float(rel[i]):>24.2e} {int(result.steps[i]):>6} {ok!s:>9}")
    print(f"   mean gradient evaluations per example: {float(result.steps.float().mean()):.1f} (tol={TOLERANCE})")
    result.save(out / "digits_ig.safetensors")
    note = (
        f"<p>IG with tol={TOLERANCE}: mean {float(result.steps.float().mean()):.1f} gradient evaluations per example, "
        f"max relative completeness error {float(rel.max()):.2e}. Labels: {escape(str(y.tolist()))}.</p>"
    )
    return note + result.to_html(title="digits, target = true label")
