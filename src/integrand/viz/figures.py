"""Matplotlib figures of results. Matplotlib is imported only when a figure is asked for.

Figures are built on ``matplotlib.figure.Figure`` directly (not pyplot), so making one never
touches global pyplot state or needs a GUI backend. Signed maps always get colour limits
``[-m, m]`` with ``m = max |value|`` and a colour bar; absolute maps get ``[0, m]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch

from ..errors import InputError, MissingExtraError
from .adapters import as_view
from .color import image_rgb, symmetric_limit
from .labels import two_sided_order, visible_token
from .views import FeaturePanel, ImagePanel, MatrixPanel, Panel, ResultView, SeriesPanel, TokenPanel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Mode = Literal["signed", "absolute", "overlay"]
SIGNED_CMAP = "RdBu_r"
ABSOLUTE_CMAP = "Reds"


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError("matplotlib", "viz") from exc
    return Figure(figsize=(width, height), layout="constrained")


def _t(x: Any, argument: str) -> torch.Tensor:
    try:
        return torch.as_tensor(x).detach().cpu().double()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(argument, f"expected numbers, got {type(x).__name__}") from exc


def _check_mode(mode: str) -> None:
    if mode not in ("signed", "absolute", "overlay"):
        raise InputError("mode", f"unknown mode {mode!r}; expected 'signed', 'absolute' or 'overlay'")


def draw_image(ax: Axes, values: torch.Tensor, image: torch.Tensor | None = None, *, mode: Mode = "signed") -> Any:
    """Draw a ``[H, W]`` attribution on ``ax``; returns the mappable for a colour bar."""
    _check_mode(mode)
    v = _t(values, "values")
    if v.dim() != 2:
        raise InputError("values", f"expected [H, W], got {tuple(v.shape)}")
    limit = symmetric_limit(v)
    ax.set_xticks([])
    ax.set_yticks([])
    if mode == "signed":
        return ax.imshow(v.numpy(), cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
    if mode == "overlay":
        if image is None:
            raise InputError("image", "an overlay needs the input image")
        ax.imshow(image_rgb(_t(image, "image")).numpy(), interpolation="nearest")
        return ax.imshow(v.abs().numpy(), cmap=ABSOLUTE_CMAP, vmin=0, vmax=limit, alpha=0.6, interpolation="nearest")
    return ax.imshow(v.abs().numpy(), cmap=ABSOLUTE_CMAP, vmin=0, vmax=limit, interpolation="nearest")


def image_figure(
    values: Any, image: Any = None, *, mode: Mode = "signed", title: str | None = None
) -> Figure:
    """Heatmap of an image attribution (``[H, W]`` or ``[C, H, W]``, channels summed) with a colour bar.

    ``mode="signed"``: diverging colours with symmetric limits; ``"absolute"``: ``|value|`` from 0;
    ``"overlay"``: ``|value|`` over the input image.
    """
    v = _t(values, "values")
    v = v.sum(dim=0) if v.dim() == 3 else v
    fig = _figure(4, 3.4)
    ax = fig.add_subplot()
    mappable = draw_image(ax, v, None if image is None else _t(image, "image"), mode=mode)
    fig.colorbar(mappable, ax=ax, label="attribution" if mode == "signed" else "|attribution|")
    ax.set_title(title or f"attribution ({mode})")
    return fig


def draw_tokens(ax: Axes, tokens: Sequence[str], scores: torch.Tensor, *, per_row: int = 12) -> Any:
    """Tokens in reading order on a grid of cells coloured by score (symmetric limits)."""
    s = _t(scores, "scores").reshape(-1)
    if s.numel() != len(tokens):
        raise InputError("scores", f"{len(tokens)} tokens but {s.numel()} scores")
    rows = max(1, math.ceil(len(tokens) / per_row))
    grid = torch.full((rows, per_row), float("nan"), dtype=torch.float64)
    grid.view(-1)[: len(tokens)] = s
    limit = symmetric_limit(s)
    mappable = ax.imshow(grid.numpy(), cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, aspect="auto")
    for i, tok in enumerate(tokens):
        ax.text(i % per_row, i // per_row, visible_token(tok), ha="center", va="center", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return mappable


def token_figure(tokens: Sequence[str], scores: Any, *, title: str | None = None, per_row: int = 12) -> Figure:
    """Token heatmap of one text: each token in a cell coloured by its score."""
    rows = max(1, math.ceil(len(tokens) / per_row))
    fig = _figure(min(1.1 * per_row, 14), 0.6 * rows + 1.2)
    ax = fig.add_subplot()
    fig.colorbar(draw_tokens(ax, tokens, _t(scores, "scores"), per_row=per_row), ax=ax, label="attribution")
    ax.set_title(title or "token attribution")
    return fig


def draw_matrix(ax: Axes, sources: Sequence[str], targets: Sequence[str], matrix: torch.Tensor) -> Any:
    m = _t(matrix, "matrix")
    if m.shape != (len(targets), len(sources)):
        raise InputError("matrix", f"shape {tuple(m.shape)} != ({len(targets)} targets, {len(sources)} sources)")
    limit = symmetric_limit(m)
    mappable = ax.imshow(m.numpy(), cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(sources)), [visible_token(t) for t in sources], rotation=90, fontsize=8)
    ax.set_yticks(range(len(targets)), [visible_token(t) for t in targets], fontsize=8)
    ax.set_xlabel("source token")
    ax.set_ylabel("target token")
    return mappable


def matrix_figure(sources: Sequence[str], targets: Sequence[str], matrix: Any, *, title: str | None = None) -> Figure:
    """Target x source heatmap of a generation (NaN cells, e.g. later tokens, stay blank)."""
    fig = _figure(max(4, 0.35 * len(sources) + 2), max(3, 0.3 * len(targets) + 1.5))
    ax = fig.add_subplot()
    fig.colorbar(draw_matrix(ax, sources, targets, _t(matrix, "matrix")), ax=ax, label="attribution")
    ax.set_title(title or "generation attribution")
    return fig


def draw_bars(ax: Axes, names: Sequence[str], scores: torch.Tensor, *, top: int = 20) -> None:
    s = _t(scores, "scores").reshape(-1)
    if s.numel() != len(names):
        raise InputError("scores", f"{len(names)} names but {s.numel()} scores")
    order = two_sided_order(s, top)[::-1]
    vals = [float(s[i]) for i in order]
    ax.barh(range(len(order)), vals, color=["#c33" if v > 0 else "#36c" for v in vals])
    ax.set_yticks(range(len(order)), [visible_token(names[i]) for i in order], fontsize=8)
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_xlabel("attribution")


def bar_figure(names: Sequence[str], scores: Any, *, title: str | None = None, top: int = 20) -> Figure:
    """Horizontal bars for tabular features or groups: up to ``top``, the strongest of both signs, largest on top."""
    fig = _figure(5, 0.25 * min(top, len(names)) + 1.2)
    draw_bars(fig.add_subplot(), names, _t(scores, "scores"), top=top)
    fig.axes[0].set_title(title or "feature attribution")
    return fig


def series_figure(
    channels: Sequence[str], values: Any, signal: Any = None, *, title: str | None = None
) -> Figure:
    """Attribution along the time axis, one row per channel: the signal as a line over a colour strip.

    All channels share one symmetric colour scale, so strips are comparable across channels.
    """
    v = _t(values, "values")
    v = v[None] if v.dim() == 1 else v
    if v.dim() != 2 or v.shape[0] != len(channels):
        raise InputError("values", f"expected [{len(channels)} channels, T], got {tuple(v.shape)}")
    sig = None if signal is None else _t(signal, "signal").reshape(v.shape)
    limit = symmetric_limit(v)
    fig = _figure(7, 1.2 * len(channels) + 0.8)
    axes = fig.subplots(len(channels), 1, sharex=True, squeeze=False)[:, 0]
    t = v.shape[1]
    mappable = None
    for c, ax in enumerate(axes):
        lo, hi = (float(sig[c].min()), float(sig[c].max())) if sig is not None else (-1.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        mappable = ax.imshow(
            v[c][None].numpy(), cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, aspect="auto",
            extent=(-0.5, t - 0.5, lo, hi), interpolation="nearest",
        )
        if sig is not None:
            ax.plot(range(t), sig[c].numpy(), color="#222", linewidth=1)
        ax.set_ylim(lo, hi)
        ax.set_ylabel(channels[c], rotation=0, ha="right", fontsize=8)
    axes[-1].set_xlabel("time step")
    assert mappable is not None
    fig.colorbar(mappable, ax=list(axes), label="attribution")
    fig.suptitle(title or "attribution over time")
    return fig


def _draw_panel(ax: Axes, panel: Panel, mode: Mode) -> Any:
    if isinstance(panel, ImagePanel):
        # An overlay needs the input; without it the signed map is the honest fallback.
        usable = mode if panel.image is not None or mode != "overlay" else "signed"
        return draw_image(ax, panel.values, panel.image, mode=usable)
    if isinstance(panel, TokenPanel):
        return draw_tokens(ax, panel.tokens, panel.scores)
    if isinstance(panel, MatrixPanel):
        return draw_matrix(ax, panel.sources, panel.targets, panel.values)
    if isinstance(panel, FeaturePanel):
        draw_bars(ax, panel.features, panel.scores, top=10)
        return None
    limit = symmetric_limit(panel.values)
    return ax.imshow(
        panel.values.numpy(), cmap=SIGNED_CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest"
    )


def result_figure(
    result: Any, *, mode: Mode = "signed", max_examples: int = 8, layout: str | Mapping[str, str] | None = None
) -> Figure:
    """One figure for any result: a row per example, a column per panel, each map with its colour bar."""
    _check_mode(mode)
    view = as_view(result, layout=layout)
    examples = view.examples[:max_examples]
    if not examples or not examples[0].panels:
        raise InputError("result", "the result has no examples to draw")
    if len(examples) == 1 and len(examples[0].panels) == 1:
        p = examples[0].panels[0]
        if isinstance(p, SeriesPanel):
            return series_figure(p.channels, p.values, p.signal, title=view.title)
    cols = max(len(e.panels) for e in examples)
    fig = _figure(3.6 * cols, 2.8 * len(examples))
    axes = fig.subplots(len(examples), cols, squeeze=False)
    for r, ex in enumerate(examples):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(ex.panels):
                ax.set_axis_off()
                continue
            panel = ex.panels[c]
            mappable = _draw_panel(ax, panel, mode)
            if mappable is not None:
                fig.colorbar(mappable, ax=ax)
            err = ex.info.relative_error
            suffix = "" if err is None else f" (rel. err {err:.2g})"
            ax.set_title(f"{panel.name} #{ex.info.index}{suffix}", fontsize=9)
    fig.suptitle(view.title)
    return fig


def comparison_grid(
    results: Mapping[str, Any],
    *,
    examples: Sequence[int] | None = None,
    mode: Mode = "signed",
    input_name: str | None = None,
) -> Figure:
    """Methods side by side: a row per example, a column per method (plus the input image first).

    Each cell has its own symmetric colour limits, because methods differ in scale.
    """
    _check_mode(mode)
    if not results:
        raise InputError("results", "need at least one result to compare")
    views = {name: as_view(r) for name, r in results.items()}
    first = next(iter(views.values()))
    rows = list(examples) if examples is not None else list(range(len(first.examples)))
    for name, v in views.items():
        if len(v.examples) != len(first.examples):
            raise InputError("results", f"{name!r} has {len(v.examples)} examples, expected {len(first.examples)}")
    bad = [i for i in rows if not 0 <= i < len(first.examples)]
    if bad:
        raise InputError("examples", f"indices {bad} out of range for {len(first.examples)} examples")

    def pick(v: ResultView, i: int) -> Panel:
        panels = v.examples[i].panels
        chosen = [p for p in panels if input_name is None or p.name == input_name]
        if not chosen:
            raise InputError("input_name", f"no input named {input_name!r}; have {[p.name for p in panels]}")
        return chosen[0]

    show_input = all(isinstance(pick(first, i), ImagePanel) and pick(first, i).image is not None for i in rows)  # type: ignore[union-attr]
    cols = len(views) + int(show_input)
    fig = _figure(2.6 * cols, 2.4 * len(rows))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, i in enumerate(rows):
        if show_input:
            panel = pick(first, i)
            assert isinstance(panel, ImagePanel) and panel.image is not None
            axes[r, 0].imshow(image_rgb(panel.image).numpy(), interpolation="nearest")
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            axes[r, 0].set_title(f"input #{i}", fontsize=9)
        for c, (name, v) in enumerate(views.items(), start=int(show_input)):
            mappable = _draw_panel(axes[r, c], pick(v, i), mode)
            if mappable is not None:
                fig.colorbar(mappable, ax=axes[r, c])
            axes[r, c].set_title(name, fontsize=9)
    return fig


def _auc(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(torch.trapezoid(y, x))


def curves_figure(
    curves: Mapping[str, tuple[Any, Any]],
    *,
    kind: Literal["deletion", "insertion"] = "deletion",
    title: str | None = None,
) -> Figure:
    """Deletion or insertion curves, one line per method: score against the fraction of features changed.

    The legend gives each curve's area under the curve (lower is better for deletion, higher for insertion).
    """
    if kind not in ("deletion", "insertion"):
        raise InputError("kind", f"expected 'deletion' or 'insertion', got {kind!r}")
    if not curves:
        raise InputError("curves", "need at least one curve")
    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    for name, (xs, ys) in curves.items():
        x, y = _t(xs, "curves").reshape(-1), _t(ys, "curves").reshape(-1)
        if x.shape != y.shape or x.numel() < 2:
            raise InputError("curves", f"{name!r}: x and y need the same length >= 2, got {x.numel()} and {y.numel()}")
        ax.plot(x.numpy(), y.numpy(), marker=".", label=f"{name} (AUC {_auc(x, y):.3g})")
    ax.set_xlabel(f"fraction of features {'removed' if kind == 'deletion' else 'inserted'}")
    ax.set_ylabel("target score")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{kind} curves")
    return fig


def error_histogram(
    errors: Any, *, tol: float | None = None, bins: int = 30, title: str | None = None
) -> Figure:
    """Histogram of relative completeness errors on a log axis; ``errors`` is a tensor, or a mapping name -> tensor.

    Results (``Attribution``) are accepted too and contribute their ``relative_error``. Exact zeros are
    counted at the smallest positive error shown, so no example disappears from the plot.
    """
    groups = errors if isinstance(errors, Mapping) else {"relative error": errors}
    fig = _figure(5, 3.2)
    ax = fig.add_subplot()
    data = {}
    for name, e in groups.items():
        e = getattr(e, "relative_error", e)
        if e is None:
            raise InputError("errors", f"{name!r} has no completeness error")
        t = _t(e, "errors").reshape(-1)
        t = t[torch.isfinite(t)].abs()
        if t.numel() == 0:
            raise InputError("errors", f"{name!r} has no finite errors")
        data[name] = t
    positive = torch.cat([t[t > 0] for t in data.values()])
    lo = float(positive.min()) if positive.numel() else 1e-12
    hi = max(float(positive.max()) if positive.numel() else 1.0, lo * 10)
    edges = torch.logspace(math.log10(lo) - 0.05, math.log10(hi) + 0.05, bins + 1, dtype=torch.float64)
    for name, t in data.items():
        ax.hist(t.clamp_min(lo).numpy(), bins=edges.tolist(), alpha=0.6, label=name)
    ax.set_xscale("log")
    if tol is not None:
        ax.axvline(tol, color="#b00", linestyle="--", label=f"tol {tol:g}")
    ax.set_xlabel("relative completeness error |delta| / |f(x) - f(baseline)|")
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    ax.set_title(title or "completeness error")
    return fig
