"""Adapters from each result type to a :class:`~integrand.viz.views.ResultView`, and the ``as_view`` dispatch."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import torch

from ..errors import InputError
from .labels import foil_tokens, versus
from .views import (
    LAYOUTS,
    ExampleInfo,
    ExampleView,
    FeaturePanel,
    ImagePanel,
    Layout,
    Panel,
    ResultView,
    SeriesPanel,
    TokenPanel,
    Viewable,
    finite_or_none,
    item_or_none,
    matrix_view,
    str_or_none,
    to_tensor,
    token_view,
)


def detect_layout(shape: Sequence[int], labels: Sequence[str] | None) -> Layout:
    """Pick a panel for one input from its per-example shape and feature labels.

    ``[C, H, W]`` or a squarish unlabelled ``[H, W]`` is an image; ``[C, T]`` with channel labels or
    ``T >= 4`` a time series; anything else tabular features. Token embeddings ``[L, D]`` look like a
    series, so tokens are never guessed: ask for ``layout="tokens"`` (or store it in ``params["layout"]``).
    """
    s = tuple(int(d) for d in shape)
    if len(s) == 2 and labels is not None and len(labels) == s[0] and s[1] >= 4:
        return "series"
    if len(s) == 3 and min(s[1:]) >= 4:
        return "image"
    if len(s) == 2 and min(s) >= 4 and max(s) <= 4 * min(s):
        return "image"
    if len(s) == 2 and s[1] >= 4:
        return "series"
    return "features"


def _panel(name: str, layout: str, v: torch.Tensor, x: torch.Tensor | None, labels: Sequence[str] | None) -> Panel:
    """The panel for one example's values ``v`` (batch dim removed) and input ``x``."""
    if layout == "image":
        if v.dim() not in (2, 3):
            raise InputError("layout", f"{name!r}: an image needs [H, W] or [C, H, W] values, got {tuple(v.shape)}")
        values = v.sum(dim=0) if v.dim() == 3 else v
        return ImagePanel(name, values, None if x is None or x.shape != v.shape else x)
    if layout == "series":
        if v.dim() not in (1, 2):
            raise InputError("layout", f"{name!r}: a series needs [T] or [C, T] values, got {tuple(v.shape)}")
        values = v if v.dim() == 2 else v[None]
        signal = None if x is None or x.shape != v.shape else x.reshape(values.shape)
        n = values.shape[0]
        channels = tuple(labels) if labels is not None and len(labels) == n else tuple(f"{name}[{c}]" for c in range(n))
        return SeriesPanel(name, channels, values, signal)
    if layout == "tokens":
        scores = v.reshape(v.shape[0], -1).sum(dim=1) if v.dim() > 1 else v
        if labels is None or len(labels) != scores.shape[0]:
            raise InputError("layout", f"{name!r}: tokens need one label per position ({scores.shape[0]})")
        return TokenPanel(name, tuple(labels), scores)
    if layout == "features":
        flat = v.reshape(-1)
        names = tuple(labels) if labels is not None and len(labels) == flat.numel() else tuple(
            str(i) for i in range(flat.numel())
        )
        return FeaturePanel(name, names, flat)
    raise InputError("layout", f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")


def attribution_view(
    result: Any, *, layout: str | Mapping[str, str] | None = None, title: str | None = None
) -> ResultView:
    """The view of an ``Attribution``: one panel per named input, laid out by ``layout`` or by shape.

    ``layout`` is one of "image", "series", "features", "tokens", or a mapping input name -> layout;
    when not given, ``params["layout"]`` (saved with the result, so the viewer honours it) is used.

    Per-example class labels and predictions are read from ``params["example_labels"]`` and
    ``params["predictions"]`` when present (lists with one string per example).
    """
    values = result.values if isinstance(result.values, dict) else {"input": result.values}
    inputs = result.inputs if isinstance(result.inputs, dict) else {"input": result.inputs}
    if isinstance(layout, Mapping):
        unknown = sorted(set(layout) - set(values))
        if unknown:
            raise InputError("layout", f"unknown inputs {unknown}; the result has {sorted(values)}")
    labels = result.labels or {}
    rel = result.relative_error
    params = dict(result.params or {})
    stored = params.get("layout")
    if layout is None and isinstance(stored, (str, dict)):
        layout = stored
    examples = []
    for b in range(result.batch):
        panels = []
        for name, v in values.items():
            v_b = to_tensor(v[b], "values")
            x = inputs.get(name)
            x_b = None if x is None else to_tensor(x[b], "inputs")
            lay = layout.get(name) if isinstance(layout, Mapping) else layout
            lay = lay or detect_layout(v_b.shape, labels.get(name))
            panels.append(_panel(name, lay, v_b, x_b, labels.get(name)))
        info = ExampleInfo(
            index=b,
            label=str_or_none(item_or_none(params.get("example_labels"), b)),
            prediction=str_or_none(item_or_none(params.get("predictions"), b)),
            score=finite_or_none(result.score_input[b]),
            relative_error=None if rel is None else finite_or_none(rel[b]),
            converged=bool(result.converged[b]) if result.converged is not None else None,
            steps=int(result.steps[b]) if result.steps is not None else None,
        )
        examples.append(ExampleView(info, tuple(panels)))
    return ResultView(title or result.method, result.method, tuple(examples), params)


def _per_example(obj: Any, names: Sequence[str]) -> Any:
    for n in names:
        value = getattr(obj, n, None)
        if isinstance(value, str):
            return [value]
        if value is not None:
            return value.tolist() if isinstance(value, torch.Tensor) else value
    return None


def _flat_item(obj: Any, name: str, b: int) -> float | None:
    value = getattr(obj, name, None)
    if value is None:
        return None
    t = torch.as_tensor(value).detach().cpu().double().reshape(-1)
    return float(t[b]) if b < t.numel() else None


LABEL_FIELDS = ("gold_labels", "gold_label", "example_labels", "target")
PREDICTION_FIELDS = ("predicted_labels", "predicted_label", "predictions", "predicted")


def _common_info(obj: Any, b: int) -> ExampleInfo:
    """Label (gold label if stored, else the attributed target), prediction, error and convergence of example b."""
    conv = _flat_item(obj, "converged", b)
    return ExampleInfo(
        index=b,
        label=str_or_none(item_or_none(_per_example(obj, LABEL_FIELDS), b)),
        prediction=str_or_none(item_or_none(_per_example(obj, PREDICTION_FIELDS), b)),
        relative_error=finite_or_none(_flat_item(obj, "relative_error", b)),
        converged=None if conv is None else bool(conv),
    )


def _generation_info(obj: Any, b: int) -> ExampleInfo:
    """Errors and convergence are per target token; an example reports its worst token."""
    label = str_or_none(item_or_none(_per_example(obj, LABEL_FIELDS), b))
    prediction = str_or_none(item_or_none(_per_example(obj, PREDICTION_FIELDS), b))
    batched = to_tensor(obj.matrix, "matrix").dim() == 3

    def rows(name: str) -> torch.Tensor | None:
        value = getattr(obj, name, None)
        if value is None:
            return None
        t = torch.as_tensor(value).detach().cpu().double()
        t = t.reshape(t.shape[0], -1) if batched else t.reshape(1, -1)
        return t[b] if b < t.shape[0] else None

    rel, conv = rows("relative_error"), rows("converged")
    worst = None
    if rel is not None and bool(torch.isfinite(rel).any()):
        worst = float(rel[torch.isfinite(rel)].max())
    converged = None if conv is None else bool(conv.bool().all())
    return ExampleInfo(b, label, prediction, None, worst, converged, None)


def _token_result_view(result: Any, title: str | None) -> ResultView:
    """Text results: a token panel, plus a word panel when words and word scores are stored."""
    method = str(getattr(result, "method", ""))
    base = token_view(result.tokens, result.scores, title=title or method or "tokens", method=method)
    words, word_scores = getattr(result, "words", None), getattr(result, "word_scores", None)
    examples = []
    for b, ex in enumerate(base.examples):
        panels: tuple[Panel, ...] = ex.panels
        if words is not None and word_scores is not None and len(base.examples) == 1:
            word_scores_t = to_tensor(word_scores, "word_scores").reshape(-1)
            panels += (TokenPanel("words", tuple(str(w) for w in words), word_scores_t),)
        info = _common_info(result, b)
        prediction = _multi_label_prediction(result) if len(base.examples) == 1 else None
        score = _flat_item(result, "score_input", b)
        steps = _flat_item(result, "steps", b)
        examples.append(ExampleView(ExampleInfo(
            b, info.label, prediction or info.prediction, None if score is None else finite_or_none(score),
            info.relative_error,
            info.converged, None if steps is None else int(steps),
        ), panels))
    params = dict(getattr(result, "params", None) or {})
    return ResultView(base.title, method, tuple(examples), params)


def _multi_label_prediction(result: Any) -> str | None:
    """A multi-label text result's prediction under the one multi-label policy: the labels with probability
    >= 0.5 joined by ", ", or "none" (``None`` for other results)."""
    labels, probs = getattr(result, "labels", None), getattr(result, "probabilities", None)
    if not getattr(result, "multi_label", False) or labels is None or probs is None:
        return None
    from ..text.toxicity import predicted_labels

    return ", ".join(predicted_labels(to_tensor(probs, "probabilities"), labels=tuple(str(x) for x in labels)))


def generation_caption(result: Any) -> str:
    """What a generation result attributes: ``' Paris'``, or ``' Paris' vs ' Lyon'`` for a contrastive one."""
    targets = [str(t) for t in getattr(result, "target_tokens", ())]
    return versus(targets, foil_tokens(getattr(result, "params", None)))


def _generation_result_view(result: Any, title: str | None) -> ResultView:
    """Generation results; with ``n_prompt``, cells of sources after a target's own position are blank (NaN).
    The default title names the method and the target tokens, with the foil of a contrastive result."""
    matrix = to_tensor(result.matrix, "matrix")
    n_prompt = getattr(result, "n_prompt", None)
    if isinstance(n_prompt, int) and matrix.dim() == 2:
        later = torch.arange(matrix.shape[1])[None, :] >= n_prompt + torch.arange(matrix.shape[0])[:, None]
        matrix = matrix.masked_fill(later, float("nan"))
    method = str(getattr(result, "method", ""))
    foil = foil_tokens(getattr(result, "params", None))
    view = matrix_view(
        list(result.source_tokens), list(result.target_tokens), matrix,
        title=title or f"{method or 'generation'}: {generation_caption(result)}",
        method=method, info=lambda b: _generation_info(result, b),
    )
    examples = view.examples
    if foil:  # the panel names what is attributed, so the viewer and every renderer show the foil
        name = generation_caption(result)
        examples = tuple(dataclasses.replace(e, panels=tuple(dataclasses.replace(p, name=name) for p in e.panels))
                         for e in examples)
    return ResultView(view.title, view.method, examples, dict(getattr(result, "params", None) or {}))


def _group_result_view(result: Any, title: str | None) -> ResultView:
    """Group results (``names`` and ``sums [batch, groups]``): one bar panel per example."""
    sums = to_tensor(result.sums, "sums")
    sums = sums[None] if sums.dim() == 1 else sums
    names = tuple(str(n) for n in result.names)
    if sums.shape[-1] != len(names):
        raise InputError("result", f"{len(names)} group names but sums of shape {tuple(sums.shape)}")
    method = str(getattr(result, "method", ""))
    examples = tuple(
        ExampleView(_common_info(result, b), (FeaturePanel("groups", names, sums[b]),)) for b in range(sums.shape[0])
    )
    return ResultView(title or f"{method} by group", method, examples)


def as_view(result: Any, *, layout: str | Mapping[str, str] | None = None, title: str | None = None) -> ResultView:
    """Dispatch any result to its ``ResultView``.

    ``ResultView`` passes through; ``Attribution`` uses :func:`attribution_view`; a :class:`Viewable`
    describes itself. Other results are recognised by their documented arrays: ``kind == "tokens"``
    (``tokens``, ``scores``; optional ``words``/``word_scores``), generations (``source_tokens``,
    ``target_tokens``, ``matrix``) and groups (``names``, ``sums``).
    """
    from ..result import Attribution

    if isinstance(result, ResultView):
        return result
    if isinstance(result, Attribution):
        return attribution_view(result, layout=layout, title=title)
    if isinstance(result, Viewable):
        view = result.result_view()
        if not isinstance(view, ResultView):
            raise InputError("result", f"{type(result).__name__}.result_view() returned {type(view).__name__}")
        return view
    if getattr(result, "kind", None) == "tokens" and hasattr(result, "tokens") and hasattr(result, "scores"):
        return _token_result_view(result, title)
    if all(hasattr(result, a) for a in ("source_tokens", "target_tokens", "matrix")):
        return _generation_result_view(result, title)
    if hasattr(result, "names") and hasattr(result, "sums"):
        return _group_result_view(result, title)
    raise InputError("result", f"cannot show a {type(result).__name__}; expected an integrand result or a ResultView")
