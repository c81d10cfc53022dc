"""Label columns and the multi-label policy shared by ``integrand train`` and ``integrand run``.

A multi-label row holds its labels in one cell separated by ``SEPARATOR`` (``"finance|logistics"``).
A multi-label model predicts every label whose sigmoid probability is at least the threshold; a
document with no such label is predicted ``NONE``.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import InputError

SEPARATOR = "|"
NONE = "none"
DEFAULT_THRESHOLD = 0.5


def split_labels(raw: str | None, separator: str = SEPARATOR) -> tuple[str, ...]:
    """The labels of one cell: split on ``separator``, stripped, empty parts and duplicates dropped."""
    if raw is None:
        return ()
    out: list[str] = []
    for part in str(raw).split(separator):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return tuple(out)


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise InputError("threshold", f"expected a probability strictly between 0 and 1, got {threshold!r}")
    return float(threshold)


def check_separator(separator: str) -> str:
    if not isinstance(separator, str) or not separator or separator.isspace():
        raise InputError("separator", f"expected a non-blank string, got {separator!r}")
    return separator


def above_threshold(probabilities: Sequence[float], labels: Sequence[str], threshold: float) -> tuple[str, ...]:
    """The labels a multi-label model predicts: probability >= ``threshold``, in label order."""
    return tuple(name for name, p in zip(labels, probabilities) if p >= threshold)


def f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0.0 where a denominator is zero)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score
