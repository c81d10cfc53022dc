"""The view model: every result type becomes a ``ResultView`` of per-example panels.

HTML, terminal, matplotlib and the web viewer render only these dataclasses, so a new result
type plugs in by providing ``result_view()`` (the :class:`Viewable` protocol) or, for the text and
generation results, by exposing the documented arrays (``kind`` plus tokens/scores or a
target x source matrix). Panels hold signed values; renderers choose signed or absolute colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, Union, runtime_checkable

import torch

from ..errors import InputError

Layout = Literal["image", "series", "features", "tokens"]
LAYOUTS: tuple[str, ...] = ("image", "series", "features", "tokens")


@dataclass(frozen=True)
class ImagePanel:
    """Attribution over an image, channels summed: ``values [H, W]``; ``image`` is the input for overlays."""

    name: str
    values: torch.Tensor
    image: torch.Tensor | None = None
    type: Literal["image"] = "image"


@dataclass(frozen=True)
class TokenPanel:
    """One score per token of a text."""

    name: str
    tokens: tuple[str, ...]
    scores: torch.Tensor
    type: Literal["tokens"] = "tokens"


@dataclass(frozen=True)
class MatrixPanel:
    """Attribution of each target token (rows) to each source token (columns); NaN where undefined."""

    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    values: torch.Tensor
    type: Literal["matrix"] = "matrix"


@dataclass(frozen=True)
class FeaturePanel:
    """One score per named tabular feature or feature group."""

    name: str
    features: tuple[str, ...]
    scores: torch.Tensor
    type: Literal["features"] = "features"


@dataclass(frozen=True)
class SeriesPanel:
    """Attribution along the time axis per channel: ``values [C, T]``; ``signal`` is the input series."""

    name: str
    channels: tuple[str, ...]
    values: torch.Tensor
    signal: torch.Tensor | None = None
    type: Literal["series"] = "series"


Panel = Union[ImagePanel, TokenPanel, MatrixPanel, FeaturePanel, SeriesPanel]


@dataclass(frozen=True)
class ExampleInfo:
    """What is known about one example besides its attributions (``None`` when not recorded)."""

    index: int
    label: str | None = None
    prediction: str | None = None
    score: float | None = None
    relative_error: float | None = None
    converged: bool | None = None
    steps: int | None = None


@dataclass(frozen=True)
class ExampleView:
    info: ExampleInfo
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class ResultView:
    """A renderer-neutral description of a result: title, method and one ``ExampleView`` per example."""

    title: str
    method: str
    examples: tuple[ExampleView, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The panel type shared by all panels, or ``"mixed"``."""
        kinds = {p.type for e in self.examples for p in e.panels}
        return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "empty")


@runtime_checkable
class Viewable(Protocol):
    """A result type that describes itself for the views."""

    def result_view(self) -> ResultView: ...


def to_tensor(x: Any, argument: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(argument, f"expected numbers, got {type(x).__name__}") from exc
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(argument, f"expected real numbers, got {t.dtype}")
    return t.detach().cpu().double()


def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def item_or_none(seq: Any, b: int) -> Any:
    """``seq[b]`` for per-example sequences; ``None`` when absent or of the wrong length."""
    if seq is None:
        return None
    try:
        return seq[b] if len(seq) > b else None
    except TypeError:
        return None


def str_or_none(x: Any) -> str | None:
    return None if x is None else str(x)


def _nested(tokens: Any, argument: str) -> list[list[str]]:
    """One token list per example (a single flat list means one example)."""
    if not isinstance(tokens, Sequence) or isinstance(tokens, str):
        raise InputError(argument, f"expected a list of tokens, got {type(tokens).__name__}")
    if tokens and all(isinstance(t, str) for t in tokens):
        return [list(tokens)]
    if not all(isinstance(row, Sequence) and not isinstance(row, str) for row in tokens):
        raise InputError(argument, "expected a list of tokens or one list of tokens per example")
    return [[str(t) for t in row] for row in tokens]


def token_view(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores: Any,
    *,
    title: str = "tokens",
    method: str = "",
    info: Callable[[int], ExampleInfo] | None = None,
) -> ResultView:
    """A view of token scores: ``tokens`` per example; ``scores [batch, L]`` (rows may be padded) or one list each."""
    rows = _nested(tokens, "tokens")
    per: list[torch.Tensor]
    nested = isinstance(scores, (list, tuple)) and all(isinstance(x, (torch.Tensor, list, tuple)) for x in scores)
    if nested and len(scores) == len(rows):
        per = [to_tensor(x, "scores").reshape(-1) for x in scores]
    else:
        per = list(to_tensor(scores, "scores").reshape(len(rows), -1))
    examples = []
    for b, (toks, sc) in enumerate(zip(rows, per)):
        if sc.numel() < len(toks):
            raise InputError("scores", f"example {b} has {len(toks)} tokens but {sc.numel()} scores")
        panel = TokenPanel("tokens", tuple(toks), sc[: len(toks)])
        examples.append(ExampleView(info(b) if info else ExampleInfo(b), (panel,)))
    return ResultView(title, method, tuple(examples))


def matrix_view(
    sources: Sequence[str] | Sequence[Sequence[str]],
    targets: Sequence[str] | Sequence[Sequence[str]],
    matrix: Any,
    *,
    title: str = "generation",
    method: str = "",
    info: Callable[[int], ExampleInfo] | None = None,
) -> ResultView:
    """A view of target x source attributions: ``matrix [T, S]`` or ``[batch, T, S]``."""
    m = to_tensor(matrix, "matrix")
    m = m[None] if m.dim() == 2 else m
    if m.dim() != 3:
        raise InputError("matrix", f"expected [targets, sources] or [batch, targets, sources], got {tuple(m.shape)}")
    src, tgt = _nested(sources, "sources"), _nested(targets, "targets")
    if len(src) != m.shape[0] or len(tgt) != m.shape[0]:
        raise InputError("matrix", f"{m.shape[0]} examples but {len(src)} source and {len(tgt)} target lists")
    examples = []
    for b in range(m.shape[0]):
        if m.shape[1:] != (len(tgt[b]), len(src[b])):
            raise InputError("matrix", f"example {b}: shape {tuple(m.shape[1:])} != ({len(tgt[b])}, {len(src[b])})")
        panel = MatrixPanel("generation", tuple(src[b]), tuple(tgt[b]), m[b])
        examples.append(ExampleView(info(b) if info else ExampleInfo(b), (panel,)))
    return ResultView(title, method, tuple(examples))


