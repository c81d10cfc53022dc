"""Terminal views with rich: coloured tokens, block-character heatmaps, bar tables and sparklines.

Rich is imported lazily. All text is wrapped in ``Text`` objects, never parsed as markup,
so tokens such as ``[bold]`` print literally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch

from ..errors import MissingExtraError
from .adapters import as_view
from .color import diverging_rgb, symmetric_limit
from .labels import evidence, two_sided_order, visible_token
from .views import ExampleInfo, FeaturePanel, ImagePanel, MatrixPanel, Panel, SeriesPanel, TokenPanel

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text


SPARK = "▁▂▃▄▅▆▇█"


def _require_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError("rich", "viz") from exc


def _hex(rgb: torch.Tensor) -> str:
    r, g, b = (int(c) for c in rgb.tolist())
    return f"#{r:02x}{g:02x}{b:02x}"


def tokens_text(panel: TokenPanel) -> Text:
    """Tokens on a background coloured by score (blue negative, red positive)."""
    from rich.text import Text

    colours = diverging_rgb(panel.scores, symmetric_limit(panel.scores))
    text = Text()
    for i, tok in enumerate(panel.tokens):
        text.append(visible_token(tok), style=f"black on {_hex(colours[i])}")
        text.append(" ")
    return text


def evidence_table(panel: TokenPanel, top: int = 5) -> Table:
    """The strongest tokens on both sides: the ``top`` most positive beside the ``top`` most negative."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    for header in ("for (+)", "score", "against (-)", "score"):
        table.add_column(header, justify="right" if header == "score" else "left")
    for row in evidence(panel.tokens, panel.scores, top).rows():
        table.add_row(*(Text(c) for c in row))
    return table


def _downsample(v: torch.Tensor, max_cols: int) -> torch.Tensor:
    """Average-pool a [H, W] map so it is at most ``max_cols`` wide (and an even number of rows)."""
    h, w = v.shape
    k = max(1, -(-w // max_cols))
    v = torch.nn.functional.avg_pool2d(v[None, None], kernel_size=k, ceil_mode=True)[0, 0] if k > 1 else v
    if v.shape[0] % 2:
        v = torch.cat([v, torch.full((1, v.shape[1]), float("nan"), dtype=v.dtype)])
    return v


def image_text(panel: ImagePanel, max_cols: int = 48) -> Text:
    """A signed heatmap drawn with upper-half blocks: two map rows per text line."""
    from rich.text import Text

    limit = symmetric_limit(panel.values)
    v = _downsample(panel.values.double(), max_cols)
    colours = diverging_rgb(v, limit)
    text = Text()
    for r in range(0, v.shape[0], 2):
        for c in range(v.shape[1]):
            text.append("▀", style=f"{_hex(colours[r, c])} on {_hex(colours[r + 1, c])}")
        text.append("\n")
    text.append(f"colour limits ±{limit:.3g}")
    return text


def _bar(v: float, limit: float, width: int = 20) -> Text:
    from rich.text import Text

    n = round(width * abs(v) / limit)
    return Text("█" * n, style="red" if v > 0 else "blue")


def features_table(panel: FeaturePanel, top: int = 15) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(panel.name), show_edge=False)
    table.add_column("feature")
    table.add_column("score", justify="right")
    table.add_column("")
    limit = symmetric_limit(panel.scores)
    for i in two_sided_order(panel.scores, top):
        v = float(panel.scores[i])
        table.add_row(Text(visible_token(panel.features[i])), f"{v:.4g}", _bar(v, limit))
    return table


def series_text(panel: SeriesPanel, max_cols: int = 64) -> Text:
    """One sparkline of |attribution| per channel, coloured by sign."""
    from rich.text import Text

    limit = symmetric_limit(panel.values)
    text = Text()
    v = panel.values.double()
    k = max(1, -(-v.shape[1] // max_cols))
    if k > 1:
        v = torch.nn.functional.avg_pool1d(v[None], kernel_size=k, ceil_mode=True)[0]
    width = max(len(c) for c in panel.channels)
    for c, name in enumerate(panel.channels):
        text.append(name.ljust(width) + " ")
        for x in v[c].tolist():
            level = min(len(SPARK) - 1, int(abs(x) / limit * (len(SPARK) - 1) + 0.5))
            text.append(SPARK[level], style="red" if x > 0 else "blue")
        text.append("\n")
    return text


def matrix_table(panel: MatrixPanel) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("target \\ source")
    for s in panel.sources:
        table.add_column(Text(visible_token(s)), justify="center")
    colours = diverging_rgb(panel.values, symmetric_limit(panel.values))
    for i, t in enumerate(panel.targets):
        cells = [
            Text("  ") if v != v else Text("  ", style=f"on {_hex(colours[i, j])}")
            for j, v in enumerate(panel.values[i].tolist())
        ]
        table.add_row(Text(visible_token(t)), *cells)
    return table


def panel_renderable(panel: Panel) -> RenderableType:
    if isinstance(panel, TokenPanel):
        from rich.console import Group

        return Group(tokens_text(panel), evidence_table(panel))
    if isinstance(panel, ImagePanel):
        return image_text(panel)
    if isinstance(panel, FeaturePanel):
        return features_table(panel)
    if isinstance(panel, MatrixPanel):
        return matrix_table(panel)
    return series_text(panel)


def _info_text(info: ExampleInfo) -> Text:
    from rich.text import Text

    parts = [f"example {info.index}"]
    for name, value in (("label", info.label), ("prediction", info.prediction)):
        if value is not None:
            parts.append(f"{name} {value}")
    if info.score is not None:
        parts.append(f"score {info.score:.4g}")
    parts.append("rel. error n/a" if info.relative_error is None else f"rel. error {info.relative_error:.3g}")
    text = Text(", ".join(parts), style="bold")
    if info.converged is False:
        text.append("  not converged", style="bold red")
    return text


def render(result: Any, *, layout: str | Mapping[str, str] | None = None, max_examples: int = 8) -> RenderableType:
    """A rich renderable for any result."""
    _require_rich()
    from rich.console import Group
    from rich.text import Text

    view = as_view(result, layout=layout)
    items: list[Any] = [Text(view.title, style="bold underline")]
    for ex in view.examples[:max_examples]:
        items.append(_info_text(ex.info))
        for p in ex.panels:
            items.append(Text(p.name, style="dim"))
            items.append(panel_renderable(p))
    if len(view.examples) > max_examples:
        items.append(Text(f"... {len(view.examples) - max_examples} more examples", style="dim"))
    return Group(*items)


def print_result(
    result: Any,
    *,
    console: Console | None = None,
    layout: str | Mapping[str, str] | None = None,
    max_examples: int = 8,
) -> None:
    """Print any result to the terminal (or to ``console``)."""
    _require_rich()
    from rich.console import Console

    (console or Console()).print(render(result, layout=layout, max_examples=max_examples))
