"""HTML and terminal views of ``TokenAttribution`` (colour = signed score, symmetric around zero)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from ..viz.html import STYLE, diverging_rgb, table
from ..viz.labels import Evidence, evidence, visible_token

if TYPE_CHECKING:
    from .result import TokenAttribution

_TOKEN_STYLE = (
    "<style>.tokens{line-height:2;max-width:60em}.tok{padding:1px 3px;margin:0 1px;border-radius:3px;"
    "white-space:pre-wrap}.tok.special{outline:1px dashed #999}.meta{margin:4px 0}</style>"
)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


TOP = 5


def prediction(result: TokenAttribution) -> str:
    """What the model predicts: the argmax label for single-label models; for multi-label models the
    labels at or above 0.5 (the policy of :func:`integrand.text.toxicity.predicted_labels`), or "none"."""
    if not result.multi_label:
        return result.predicted
    from .toxicity import predicted_labels

    return ", ".join(predicted_labels(result.probabilities, labels=result.labels))


def word_evidence(result: TokenAttribution, k: int = TOP) -> Evidence:
    """The ``k`` words that raise the attributed score most and the ``k`` that lower it most."""
    return evidence(result.words, result.word_scores, k)


def summary_line(result: TokenAttribution) -> str:
    """One line of plain text: prediction, target and completeness error."""
    prob = float(result.probabilities[result.labels.index(result.predicted)])
    if result.multi_label:
        predicted = f"predicted {prediction(result)} (labels with p >= 0.5; highest {result.predicted}, p={prob:.3f})"
    else:
        predicted = f"predicted {result.predicted} (p={prob:.3f})"
    parts = [
        predicted,
        f"attributed {result.target} ({result.score}): {_fmt(result.score_input)} at the text, "
        f"{_fmt(result.score_baseline)} at the {result.baseline} baseline",
        f"completeness error {_fmt(result.relative_error)} (relative), {result.steps} steps",
    ]
    if result.method == "lrp":  # no baseline, no integral: the share of the score the relevance keeps
        from ..circuits.lrp import conservation_line

        parts[1:] = [
            f"attributed {result.target} ({result.score}): {_fmt(result.score_input)}",
            conservation_line([result.params.get("lrp_conservation", float("nan"))]),
        ]
    elif not result.converged:
        parts.append("NOT converged")
    if result.truncated:
        parts.append("text truncated to the model's maximum length")
    return "; ".join(parts)


def summary_text(result: TokenAttribution, k: int = TOP) -> str:
    """Plain text: the summary line, then the strongest words for and against the attributed label."""
    ev = word_evidence(result, k)
    return f"{summary_line(result)}\nwords for {result.target}: {_side(ev.supporting)}\n" \
        f"words against {result.target}: {_side(ev.opposing)}"


def _side(items: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{w} ({v:+.3g})" for w, v in items) or "none"


def evidence_html(ev: Evidence, target: str) -> str:
    """A two-sided table: the words for the target (positive) beside the words against it (negative)."""
    return table([f"for {target}", "score", f"against {target}", "score"], ev.rows())


def token_html(result: TokenAttribution, title: str | None = None) -> str:
    """Tokens as coloured spans (score in the tooltip), then the word and label tables."""
    colours = diverging_rgb(result.scores).tolist()
    spans = []
    for i, token in enumerate(result.tokens):
        r, g, b = colours[i]
        cls = "tok special" if bool(result.special[i]) else "tok"
        label = visible_token(token)
        tip = f"{label}: {_fmt(float(result.scores[i]))}"
        spans.append(
            f'<span class="{cls}" style="background:rgb({r},{g},{b})" title="{escape(tip)}">{escape(label)}</span>'
        )
    both = evidence_html(word_evidence(result), result.target)
    words = table(["word", "score"], [[visible_token(w), _fmt(float(s))]
                                      for w, s in zip(result.words, result.word_scores.tolist())])
    probs = table(
        ["label", "probability"], [[lab, f"{p:.4f}"] for lab, p in zip(result.labels, result.probabilities.tolist())]
    )
    bad = "" if result.converged and not result.truncated else ' class="bad"'
    return (
        f"{STYLE}{_TOKEN_STYLE}<div class=\"card\"><h3>{escape(title or result.text[:80])}</h3>"
        f"<div class=\"meta\"{bad}>{escape(summary_line(result))}</div>"
        f"<div class=\"tokens\">{''.join(spans)}</div>"
        f"<div class=\"grid\">{both}{words}{probs}</div></div>"
    )


def token_rich(result: TokenAttribution) -> Any:
    """A ``rich`` group: coloured tokens (no markup parsing, so tokens print verbatim), the strongest words on
    both sides of the attributed label, numbers."""
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
        line.append(visible_token(token), style=f"black on rgb({r},{g},{b})")
        line.append(" ")
    words = Table(title="strongest words on both sides")
    for header in (f"for {result.target}", "score", f"against {result.target}", "score"):
        words.add_column(Text(header), justify="right" if header == "score" else "left")
    for row in word_evidence(result).rows():
        words.add_row(*(Text(c) for c in row))
    return Group(Text(summary_line(result), style="bold" if result.converged else "bold red"), line, words)


def print_rich(result: TokenAttribution, console: Any = None) -> None:
    try:
        from rich.console import Console
    except ImportError:
        raise MissingExtraError("rich", "text") from None
    (console or Console()).print(token_rich(result))
