"""Matplotlib figures by structure: axes, colour limits (symmetric for signed maps), labels, data."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import integrand
from integrand.viz import figure, show
from integrand.viz.figures import (
    bar_figure,
    comparison_grid,
    curves_figure,
    error_histogram,
    image_figure,
    matrix_figure,
    series_figure,
    token_figure,
)
from tests.test_viewer_data import XSS, _generation_result, _image_result, _text_result


def _main_image(fig):  # type: ignore[no-untyped-def]
    return fig.axes[0].images


def test_signed_image_has_symmetric_limits_and_a_colour_bar() -> None:
    values = torch.tensor([[0.5, -2.0], [1.0, 0.0]]).repeat(3, 3)
    fig = image_figure(values, title="grad")
    assert len(fig.axes) == 2  # the map and its colour bar
    (im,) = _main_image(fig)
    assert im.get_clim() == (-2.0, 2.0)
    assert im.get_cmap().name == "RdBu_r"
    assert fig.axes[0].get_title() == "grad" and fig.axes[1].get_ylabel() == "attribution"
    torch.testing.assert_close(torch.as_tensor(im.get_array()), values.double())


def test_absolute_and_overlay_modes() -> None:
    values = torch.randn(3, 5, 5, dtype=torch.float64)  # channels are summed
    summed = values.sum(0)
    limit = float(summed.abs().max())
    fig = image_figure(values, mode="absolute")
    (im,) = _main_image(fig)
    assert im.get_clim() == pytest.approx((0.0, limit))
    assert float(torch.as_tensor(im.get_array()).min()) >= 0
    fig = image_figure(values, torch.rand(3, 5, 5), mode="overlay")
    base, heat = _main_image(fig)
    assert base.get_array().shape == (5, 5, 3) and heat.get_alpha() == 0.6
    assert heat.get_clim() == pytest.approx((0.0, limit))
    with pytest.raises(integrand.InputError) as err:
        image_figure(values, mode="overlay")
    assert err.value.argument == "image"
    with pytest.raises(integrand.InputError) as err:
        image_figure(values, mode="loud")  # type: ignore[arg-type]
    assert err.value.argument == "mode"


def test_token_figure_writes_every_token_in_order() -> None:
    tokens = [f"t{i}" for i in range(15)] + [XSS]
    scores = torch.linspace(-1, 3, 16)
    fig = token_figure(tokens, scores, per_row=8)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == tokens  # matplotlib draws text, never markup
    (im,) = ax.images
    assert im.get_clim() == (-3.0, 3.0) and im.get_array().shape == (2, 8)


def test_matrix_figure_labels_sources_and_targets() -> None:
    gen = _generation_result()
    fig = matrix_figure(gen.source_tokens, gen.target_tokens, gen.matrix)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(gen.source_tokens)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(gen.target_tokens)
    limit = float(gen.matrix.abs().max())
    assert ax.images[0].get_clim() == pytest.approx((-limit, limit))
    assert ax.get_xlabel() == "source token" and ax.get_ylabel() == "target token"
    with pytest.raises(integrand.InputError):
        matrix_figure(gen.source_tokens[:-1], gen.target_tokens, gen.matrix)


def test_bar_figure_sorts_by_magnitude_and_colours_by_sign() -> None:
    names = ["a", "b", "c", "d", "e"]
    fig = bar_figure(names, torch.tensor([0.1, -5.0, 2.0, 0.0, -0.3]), top=3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["e", "c", "b"]  # largest magnitude at the top (last tick)
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([-0.3, 2.0, -5.0])
    colours = [p.get_facecolor()[:3] for p in ax.patches]
    assert colours[1][0] > colours[1][2] and colours[2][2] > colours[2][0]  # red positive, blue negative


def test_series_figure_one_row_per_channel_sharing_symmetric_limits() -> None:
    values = torch.randn(3, 50, dtype=torch.float64)
    signal = torch.sin(torch.linspace(0, 6, 150, dtype=torch.float64)).reshape(3, 50)
    fig = series_figure(["p", "q", "r"], values, signal)
    rows = fig.axes[:3]
    limit = float(values.abs().max())
    assert [ax.get_ylabel() for ax in rows] == ["p", "q", "r"]
    for c, ax in enumerate(rows):
        (im,) = ax.images
        assert im.get_clim() == pytest.approx((-limit, limit))
        (line,) = ax.lines
        torch.testing.assert_close(torch.as_tensor(line.get_ydata()), signal[c])
    assert len(fig.axes) == 4 and rows[-1].get_xlabel() == "time step"


def test_comparison_grid_rows_are_examples_columns_are_methods() -> None:
    base = _image_result()
    scaled = integrand.Attribution(**{**base.__dict__, "values": base.values * 100, "method": "x100"})  # type: ignore[operator]
    fig = comparison_grid({"ig": base, "ig x100": scaled}, examples=[0, 2])
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["input #0", "ig", "ig x100", "input #2", "ig", "ig x100"]
    # Each cell has its own symmetric limits: the x100 map's limit is 100 times larger.
    (a,), (b,) = titled[1].images, titled[2].images
    assert a.get_clim()[0] == -a.get_clim()[1] and b.get_clim()[1] == pytest.approx(100 * a.get_clim()[1])
    with pytest.raises(integrand.InputError) as err:
        comparison_grid({"ig": base}, examples=[5])
    assert err.value.argument == "examples"


def test_curves_figure_reports_auc() -> None:
    x = torch.linspace(0, 1, 11)
    fig = curves_figure({"ig": (x, 1 - x), "random": (x, torch.ones(11))}, kind="deletion")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["ig (AUC 0.5)", "random (AUC 1)"]
    assert ax.get_xlabel() == "fraction of features removed"
    with pytest.raises(integrand.InputError):
        curves_figure({"a": (x, x[:3])})
    with pytest.raises(integrand.InputError) as err:
        curves_figure({"a": (x, x)}, kind="sideways")  # type: ignore[arg-type]
    assert err.value.argument == "kind"


def test_error_histogram_counts_every_example() -> None:
    errors = torch.tensor([0.0, 1e-6, 1e-4, 1e-4, 1e-2, float("nan")])
    fig = error_histogram({"ig": errors, "image": _image_result()}, tol=1e-3)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    counts = [sum(p.get_height() for p in c) for c in ax.containers]
    assert counts == [5, 3]  # zero kept (at the smallest bin), NaN dropped; the result contributes 3 examples
    assert any(line.get_xdata()[0] == 1e-3 for line in ax.lines)


def test_result_figure_and_show_dispatch_by_type() -> None:
    fig = figure(_image_result())
    assert len([ax for ax in fig.axes if ax.images]) == 3
    text_fig = figure(_text_result())
    assert [t.get_text() for t in text_fig.axes[0].texts][:3] == ["[CLS]", "you", "are"]
    gen_fig = show(_generation_result(), backend="figure")
    assert gen_fig is not None and [t.get_text() for t in gen_fig.axes[0].get_yticklabels()] == [" Paris", " " + XSS]
    with pytest.raises(integrand.InputError) as err:
        show(_image_result(), backend="opera")  # type: ignore[arg-type]
    assert err.value.argument == "backend"


def test_heavy_dependencies_are_not_imported_with_the_package() -> None:
    code = (
        "import sys, integrand, integrand.viz, integrand.viewer, integrand.cli.serve\n"
        "print(sorted(m for m in ('matplotlib', 'fastapi', 'uvicorn', 'rich', 'duckdb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
