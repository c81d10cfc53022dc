"""HTML and terminal views of ``TokenAttribution`` (colour = signed score, symmetric around zero)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from ..viz.html import STYLE, diverging_rgb, table

if TYPE_CHECKING:
    from .result import TokenAttribution

_TOKEN_STYLE = (
    "<style>.tokens{line-height:2;max-width:60em}.tok{padding:1px 3px;margin:0 1px;border-radius:3px;"
    "white-space:pre-wrap}.tok.special{outline:1px dashed #999}.meta{margin:4px 0}</style>"
)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def summary_line(result: TokenAttribution) -> str:
    """One line of plain text: prediction, target and completeness error."""
    prob = float(result.probabilities[result.labels.index(result.predicted)])
    if result.multi_label:
        above = ", ".join(result.predicted_labels) or "none"
        predicted = f"labels with p >= 0.5: {above} (highest {result.predicted}, p={prob:.3f})"
    else:
        predicted = f"predicted {result.predicted} (p={prob:.3f})"
    parts = [
        predicted,
        f"attributed {result.target} ({result.score}): {_fmt(result.score_input)} at the text, "
        f"{_fmt(result.score_baseline)} at the {result.baseline} baseline",
        f"completeness error {_fmt(result.relative_error)} (relative), {result.steps} steps",
    ]
    if not result.converged:
        parts.append("NOT converged")
    if result.truncated:
        parts.append("text truncated to the model's maximum length")
    return "; ".join(parts)


def token_html(result: TokenAttribution, title: str | None = None) -> str:
    """Tokens as coloured spans (score in the tooltip), then the word and label tables."""
    colours = diverging_rgb(result.scores).tolist()
    spans = []
    for i, token in enumerate(result.tokens):
        r, g, b = colours[i]
        cls = "tok special" if bool(result.special[i]) else "tok"
        tip = f"{token}: {_fmt(float(result.scores[i]))}"
        spans.append(
            f'<span class="{cls}" style="background:rgb({r},{g},{b})" title="{escape(tip)}">{escape(token)}</span>'
        )
    words = table(["word", "score"], [[w, _fmt(float(s))] for w, s in zip(result.words, result.word_scores.tolist())])
    probs = table(
        ["label", "probability"], [[lab, f"{p:.4f}"] for lab, p in zip(result.labels, result.probabilities.tolist())]
    )
    bad = "" if result.converged and not result.truncated else ' class="bad"'
    return (
        f"{STYLE}{_TOKEN_STYLE}<div class=\"card\"><h3>{escape(title or result.text[:80])}</h3>"
        f"<div class=\"meta\"{bad}>{escape(summary_line(result))}</div>"
        f"<div class=\"tokens\">{''.join(spans)}</div>"
        f"<div class=\"grid\">{words}{probs}</div></div>"
    )


def token_rich(result: TokenAttribution) -> Any:
    """A ``rich`` group: coloured tokens (no markup parsing, so tokens print verbatim), top words, numbers."""
    try:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        raise MissingExtraError("rich", "text") from None
    colours = diverging_rgb(result.scores).tolist()
    line = Text()
    for i, token in enumerate(result.tokens):
        r, g, b = colours[i]
        line.append(token, style=f"black on rgb({r},{g},{b})")
        line.append(" ")
    words = Table("word", "score", title="top words")
    for word, score in result.top_words(8):
        words.add_row(Text(word), _fmt(score))
    return Group(Text(summary_line(result), style="bold" if result.converged else "bold red"), line, words)


def print_rich(result: TokenAttribution, console: Any = None) -> None:
    try:
        from rich.console import Console
    except ImportError:
        raise MissingExtraError("rich", "text") from None
    (console or Console()).print(token_rich(result))
