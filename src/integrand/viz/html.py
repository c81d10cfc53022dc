"""Self-contained HTML views. Every piece of user or model text goes through ``escape``.

Renders the panels of :mod:`integrand.viz.views`; needs only torch and the standard library.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from .adapters import as_view
from .color import css_rgb, diverging_rgb, overlay_rgb, png_base64, png_bytes, symmetric_limit
from .labels import evidence, two_sided_order, visible_token
from .views import (
    ExampleInfo,
    FeaturePanel,
    ImagePanel,
    MatrixPanel,
    Panel,
    ResultView,
    SeriesPanel,
    TokenPanel,
)

if TYPE_CHECKING:
    from ..result import Attribution

__all__ = [
    "STYLE",
    "attribution_html",
    "diverging_rgb",
    "heatmap_img",
    "page",
    "panel_html",
    "png_bytes",
    "result_html",
    "table",
    "view_html",
]

STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 6px;font-size:12px;text-align:right}"
    ".grid{display:flex;flex-wrap:wrap;gap:14px}.card{border:1px solid #eee;padding:6px}"
    "img.heat{image-rendering:pixelated;width:128px;height:128px}.bad{color:#b00}"
    ".tokens{line-height:1.9;max-width:60em}.tok{padding:1px 2px;margin:0 1px;border-radius:3px;white-space:pre}"
    "td.cell{min-width:1.2em}th.src{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left}"
    ".bar{display:inline-block;height:10px}.legend{font-size:11px;color:#555}"
    "figure.img{display:inline-block;margin:0 8px 0 0;text-align:center}"
    "figure.img figcaption{font-size:11px;color:#555}"
    "table.evidence{margin-top:4px}</style>"
)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def heatmap_img(values: torch.Tensor, alt: str, limit: float | None = None) -> str:
    """An <img> tag with a signed heatmap of a 2-D tensor (colour limits symmetric around 0)."""
    data = png_base64(diverging_rgb(values, limit))
    return f'<img class="heat" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _legend(limit: float) -> str:
    """Colour bar of a signed map; its limits are symmetric so white is exactly 0."""
    lim = escape(f"{limit:.3g}")
    return f'<div class="legend">colour limits: blue -{lim} · white 0 · red +{lim}</div>'


def image_html(panel: ImagePanel) -> str:
    limit = symmetric_limit(panel.values)
    heat = heatmap_img(panel.values, f"{panel.name} attribution", limit)
    parts = [f'<figure class="img">{heat}<figcaption>attribution</figcaption></figure>']
    if panel.image is not None:
        data = png_base64(overlay_rgb(panel.image, panel.values, limit))
        img = f'<img class="heat" alt="{escape(panel.name)} overlay" src="data:image/png;base64,{data}">'
        parts.append(f'<figure class="img">{img}<figcaption>overlay on the input</figcaption></figure>')
    return f'<div class="image" data-panel="image">{"".join(parts)}{_legend(limit)}</div>'


def evidence_html(panel: TokenPanel, top: int = 5) -> str:
    """The strongest tokens on both sides of the score: the most positive beside the most negative."""
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for row in evidence(panel.tokens, panel.scores, top).rows()
    )
    head = "<tr><th>for (+)</th><th>score</th><th>against (−)</th><th>score</th></tr>"
    return f'<table class="evidence" data-table="evidence">{head}{rows}</table>'


def token_html(panel: TokenPanel) -> str:
    limit = symmetric_limit(panel.scores)
    colours = diverging_rgb(panel.scores, limit)
    spans = "".join(
        f'<span class="tok" style="background:{css_rgb(colours[i])}" title="{escape(_fmt(s))}">'
        f"{escape(visible_token(t))}</span>"
        for i, (t, s) in enumerate(zip(panel.tokens, panel.scores.tolist()))
    )
    return f'<div class="tokens" data-panel="tokens">{spans}</div>{_legend(limit)}{evidence_html(panel)}'


def matrix_html(panel: MatrixPanel) -> str:
    limit = symmetric_limit(panel.values)
    colours = diverging_rgb(panel.values, limit)
    head = "<th></th>" + "".join(f'<th class="src">{escape(visible_token(s))}</th>' for s in panel.sources)
    rows = []
    for i, target in enumerate(panel.targets):
        cells = "".join(
            '<td class="cell"></td>' if v != v else
            f'<td class="cell" style="background:{css_rgb(colours[i, j])}" title="{escape(_fmt(v))}"></td>'
            for j, v in enumerate(panel.values[i].tolist())
        )
        rows.append(f"<tr><th>{escape(visible_token(target))}</th>{cells}</tr>")
    return f'<table class="matrix" data-panel="matrix"><tr>{head}</tr>{"".join(rows)}</table>{_legend(limit)}'


def features_html(panel: FeaturePanel, top: int = 20) -> str:
    limit = symmetric_limit(panel.scores)
    order = two_sided_order(panel.scores, top)
    rows = []
    for i in order:
        v = float(panel.scores[i])
        colour = "#c33" if v > 0 else "#36c"
        bar = f'<span class="bar" style="width:{100 * abs(v) / limit:.1f}px;background:{colour}"></span>'
        rows.append(f"<tr><td>{escape(visible_token(panel.features[i]))}</td><td>{escape(_fmt(v))}</td><td>{bar}</td></tr>")
    head = f"<tr><th>feature</th><th>{escape(panel.name)}</th><th></th></tr>"
    return f'<table data-panel="features">{head}{"".join(rows)}</table>'


def series_html(panel: SeriesPanel, width: int = 480, height: int = 60) -> str:
    """One inline SVG per channel: attribution as coloured columns, the input signal as a line."""
    limit = symmetric_limit(panel.values)
    colours = diverging_rgb(panel.values, limit)
    out = []
    t = panel.values.shape[1]
    dx = width / t
    for c, channel in enumerate(panel.channels):
        rects = "".join(
            f'<rect x="{i * dx:.2f}" y="0" width="{dx + 0.05:.2f}" height="{height}" fill="{css_rgb(colours[c, i])}"/>'
            for i in range(t)
        )
        line = ""
        if panel.signal is not None:
            s = panel.signal[c]
            lo, hi = float(s.min()), float(s.max())
            span = hi - lo or 1.0
            ys = [height - 4 - (height - 8) * (v - lo) / span for v in s.tolist()]
            pts = " ".join(f"{(i + 0.5) * dx:.2f},{y:.2f}" for i, y in enumerate(ys))
            line = f'<polyline points="{pts}" fill="none" stroke="#222" stroke-width="1"/>'
        out.append(
            f"<div>{escape(channel)}</div>"
            f'<svg width="{width}" height="{height}" role="img"><title>{escape(channel)}</title>{rects}{line}</svg>'
        )
    return f'<div data-panel="series">{"".join(out)}{_legend(limit)}</div>'


def panel_html(panel: Panel) -> str:
    """HTML for one panel of any type."""
    if isinstance(panel, ImagePanel):
        return image_html(panel)
    if isinstance(panel, TokenPanel):
        return token_html(panel)
    if isinstance(panel, MatrixPanel):
        return matrix_html(panel)
    if isinstance(panel, FeaturePanel):
        return features_html(panel)
    return series_html(panel)


def info_html(info: ExampleInfo) -> str:
    parts = [f"example {info.index}"]
    if info.label is not None:
        parts.append(f"label {info.label}")
    if info.prediction is not None:
        parts.append(f"prediction {info.prediction}")
    if info.score is not None:
        parts.append(f"score {_fmt(info.score)}")
    parts.append(f"rel. error {_fmt(info.relative_error)}")
    if info.steps is not None:
        parts.append(f"steps {info.steps}")
    status = ' <span class="bad">not converged</span>' if info.converged is False else ""
    return f'<div class="info">{escape(", ".join(parts))}{status}</div>'


def view_html(view: ResultView, *, max_examples: int | None = None) -> str:
    """An HTML fragment: a heading and one card per example."""
    cards = []
    for ex in view.examples[:max_examples]:
        body = "".join(f'<div class="panel"><div>{escape(p.name)}</div>{panel_html(p)}</div>' for p in ex.panels)
        cards.append(f'<div class="card">{info_html(ex.info)}{body}</div>')
    return f'<h2>{escape(view.title)}</h2><div class="grid">{"".join(cards)}</div>'


def result_html(
    result: Any,
    *,
    title: str | None = None,
    layout: str | Mapping[str, str] | None = None,
    max_examples: int | None = None,
) -> str:
    """A self-contained HTML fragment (style included) for any result type."""
    return STYLE + view_html(as_view(result, layout=layout, title=title), max_examples=max_examples)


def attribution_html(result: Attribution, title: str | None = None) -> str:
    """HTML for an ``Attribution``: heatmaps for images, token colours, bars for features, per-channel series."""
    return result_html(result, title=title)


def page(body: str, title: str) -> str:
    """A complete HTML document around an already-escaped ``body``."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{STYLE}</head>"
        f"<body>{body}</body></html>"
    )
