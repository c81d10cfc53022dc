"""Text helpers shared by every view: visible token labels, quoted token lists, evidence on both sides.

Token strings are shown as they are except for whitespace, which would otherwise print as a blank
label: a newline becomes "⏎", a tab "⇥", and a token made only of spaces (or other blank characters)
shows one "␣" per character.
Token lists in captions are quoted strings (``' Paris'``), never Python tuple reprs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

NEWLINE, TAB, SPACE, EMPTY = "⏎", "⇥", "␣", "∅"
# Where a result records the foil (contrast) tokens of a contrastive attribution, in order of preference.
FOIL_KEYS = ("foil_tokens", "contrast_tokens", "foil", "contrast")


def visible_token(token: str) -> str:
    """A label that never renders blank: newlines, tabs and all-space tokens become visible marks."""
    out = token.replace("\r\n", NEWLINE).replace("\n", NEWLINE).replace("\r", NEWLINE).replace("\t", TAB)
    if not out:
        return EMPTY
    return SPACE * len(out) if out.isspace() else out


def quote_tokens(tokens: str | Sequence[str]) -> str:
    """``' Paris'`` for one token, ``' Paris', ' is'`` for several: each quoted with visible whitespace marks."""
    items = [tokens] if isinstance(tokens, str) else list(tokens)
    return ", ".join("'" + str(t).replace("\r\n", NEWLINE).replace("\n", NEWLINE).replace("\t", TAB) + "'"
                     for t in items)


def foil_tokens(params: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    """The foil tokens a contrastive result recorded in its ``params`` (``None`` for other results)."""
    for key in FOIL_KEYS:
        value = (params or {}).get(key)
        if isinstance(value, str) and value:
            return (value,)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return None


def versus(targets: Sequence[str], foils: Sequence[str] | None) -> str:
    """``' Paris' vs ' Lyon'`` (or just ``' Paris'`` without a foil)."""
    fact = quote_tokens(targets)
    return fact if not foils else f"{fact} vs {quote_tokens(foils)}"


@dataclass(frozen=True)
class Evidence:
    """The strongest evidence on each side: ``supporting`` (positive scores) and ``opposing`` (negative
    scores), each strongest first by magnitude. A zero score is on neither side."""

    supporting: tuple[tuple[str, float], ...]
    opposing: tuple[tuple[str, float], ...]

    def rows(self) -> list[tuple[str, str, str, str]]:
        """Side-by-side table rows: (supporting name, score, opposing name, score), blanks where a side ends and
        "(none)" heading a side that has nothing, so an empty side reads as a finding, not a rendering gap."""
        n = max(len(self.supporting), len(self.opposing))
        out = []
        for i in range(n):
            s = self.supporting[i] if i < len(self.supporting) else ("(none)" if i == 0 else "", None)
            o = self.opposing[i] if i < len(self.opposing) else ("(none)" if i == 0 else "", None)
            out.append((s[0], _signed(s[1]), o[0], _signed(o[1])))
        return out

    def line(self) -> str:
        """One line of plain text naming both sides."""
        def side(items: tuple[tuple[str, float], ...]) -> str:
            return ", ".join(f"{n} ({_signed(v)})" for n, v in items) or "none"

        return f"for: {side(self.supporting)}; against: {side(self.opposing)}"


def _signed(x: float | None) -> str:
    return "" if x is None else f"{x:+.3g}"


def evidence(names: Sequence[str], scores: Any, k: int = 5) -> Evidence:
    """The ``k`` largest positive and the ``k`` most negative scores with their names (labels made visible)."""
    s = torch.as_tensor(scores).detach().cpu().double().reshape(-1)
    if s.numel() != len(names):
        from ..errors import InputError

        raise InputError("scores", f"{s.numel()} scores for {len(names)} names")
    finite = torch.isfinite(s)
    pos = [i for i in s.argsort(descending=True).tolist() if finite[i] and s[i] > 0][:k]
    neg = [i for i in s.argsort().tolist() if finite[i] and s[i] < 0][:k]
    return Evidence(
        tuple((visible_token(names[i]), float(s[i])) for i in pos),
        tuple((visible_token(names[i]), float(s[i])) for i in neg),
    )


def two_sided_order(scores: Any, top: int) -> list[int]:
    """Indices of up to ``top`` scores, strongest magnitude first, with both signs represented: each side is
    guaranteed its ``top // 2`` strongest entries (fewer if it has fewer), the remaining places go by
    magnitude, and zeros or non-finite scores come last. A long run of one sign never hides the other."""
    s = torch.as_tensor(scores).detach().cpu().double().reshape(-1)
    finite = torch.isfinite(s)
    pos = [i for i in s.argsort(descending=True).tolist() if finite[i] and s[i] > 0]
    neg = [i for i in s.argsort().tolist() if finite[i] and s[i] < 0]
    half = top // 2
    chosen = pos[:half] + neg[:half]
    others = sorted(pos[half:] + neg[half:], key=lambda i: -abs(float(s[i])))
    chosen = sorted(chosen + others[: max(0, top - len(chosen))], key=lambda i: -abs(float(s[i])))
    signed = set(pos) | set(neg)
    rest = [i for i in range(s.numel()) if i not in signed][: top - len(chosen)]
    return chosen + rest
