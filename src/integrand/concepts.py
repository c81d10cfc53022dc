"""Concept attribution: Integrated Gradients over the concept layer of a concept bottleneck model.

A concept bottleneck model computes named concept scores at one layer and predicts classes from
them. Attributing each class's score to that layer (layer IG from a concept baseline, "concept
absent" by default) ranks the concepts each class relies on. For a linear concept head
``logit_c = W[c] . s + b`` the attribution is exactly ``W[c, k] * (s_k - baseline_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .errors import InputError
from .inputs import Inputs
from .methods.integrated_gradients import integrated_gradients
from .protocol import ResultMixin
from .result import Attribution


@dataclass(frozen=True, repr=False)
class ConceptAttribution(ResultMixin):
    """Per class: the mean attribution of its score to each concept over that class's examples.

    ``importance[c, k]`` averages concept ``k``'s attribution to class ``c`` over ``examples[c]``
    (the examples labelled ``c``, or all examples when no labels were given).
    """

    concepts: tuple[str, ...]
    classes: tuple[str, ...]
    importance: torch.Tensor
    examples: tuple[torch.Tensor, ...]
    results: tuple[Attribution, ...]

    AXES = ("class", "concept")

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``importance``: [classes, concepts]."""
        return self.importance

    @property
    def delta(self) -> None:
        """``None``: importances are averages; each class's IG result in ``results`` has its own delta."""
        return None

    @property
    def relative_error(self) -> torch.Tensor:
        """Per class, the largest relative completeness error of its IG result."""
        return torch.tensor([_max_relative(r) for r in self.results], dtype=torch.float64)

    @property
    def converged(self) -> torch.Tensor:
        """Per class, whether every example of its IG result converged."""
        return torch.tensor([bool(r.converged.all()) for r in self.results])

    @property
    def params(self) -> dict[str, Any]:
        return {"concepts": list(self.concepts), "classes": list(self.classes), "method": "integrated_gradients"}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"class": self.classes, "concept": self.concepts}

    def ranked(self, cls: int | str) -> list[tuple[str, float]]:
        """Concepts of class ``cls`` by decreasing mean attribution (positive: raises the class score)."""
        row = self.importance[self._index(cls)]
        order = torch.argsort(row, descending=True, stable=True).tolist()
        return [(self.concepts[k], float(row[k])) for k in order]

    def top(self, cls: int | str, k: int = 3) -> list[str]:
        return [name for name, _ in self.ranked(cls)[:k]]

    def max_relative_error(self) -> float:
        """The worst completeness error over all classes and examples."""
        errors = [r.relative_error for r in self.results if r.relative_error is not None]
        return max(float(e.max()) for e in errors) if errors else float("nan")

    def table(self, k: int = 5) -> list[dict[str, str]]:
        """One row per class with its top-``k`` concepts and their mean attributions."""
        return [
            {"class": c, "top concepts": ", ".join(f"{n} ({v:+.3g})" for n, v in self.ranked(i)[:k])}
            for i, c in enumerate(self.classes)
        ]

    def to_html(self, k: int = 5) -> str:
        from .viz.html import table

        rows = self.table(k)
        err = f"max completeness error {self.max_relative_error():.2e}"
        return f"<div>concept attribution ({escape(err)})</div>" + table(
            ["class", "top concepts"], [[r["class"], r["top concepts"]] for r in rows]
        )

    def _index(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.classes:
                raise InputError("cls", f"unknown class {cls!r}; classes are {list(self.classes)}")
            return self.classes.index(cls)
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < len(self.classes):
            raise InputError("cls", f"expected a class index in [0, {len(self.classes)}) or a name, got {cls!r}")
        return cls


def _rows(inputs: Inputs, index: torch.Tensor) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return inputs[index.to(inputs.device)]
    return {k: v[index.to(v.device)] for k, v in inputs.items()}


def _batch(inputs: Inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else 0
    if isinstance(inputs, Mapping) and inputs:
        first = next(iter(inputs.values()))
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 0
    raise InputError("inputs", f"expected a tensor or a mapping of named tensors, got {type(inputs).__name__}")


def concept_attribution(
    model: Callable[..., Any],
    inputs: Inputs,
    *,
    layer: nn.Module | str,
    concepts: Sequence[str],
    classes: Sequence[str],
    labels: torch.Tensor | None = None,
    baseline: float | torch.Tensor = 0.0,
    steps: int | None = None,
    tol: float | None = None,
    batch_size: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> ConceptAttribution:
    """Rank the concepts of every class of a concept bottleneck model.

    Args:
        model: the full model, inputs -> class logits ``[batch, classes]``.
        layer: the concept layer (module or dotted name) whose output is ``[batch, concepts]``.
        concepts: concept names, one per unit of the layer.
        classes: class names, one per logit.
        labels: class of each example; class ``c`` is explained on its own examples. Without labels
            every class is explained on all examples.
        baseline: concept scores at the path start (default 0: every concept absent).
        steps, tol, batch_size, forward_kwargs: as for ``integrated_gradients``.
    """
    n = _batch(inputs)
    names, labels_of = tuple(str(c) for c in concepts), tuple(str(c) for c in classes)
    if not names or len(set(names)) != len(names):
        raise InputError("concepts", "expected unique, non-empty concept names")
    if not labels_of or len(set(labels_of)) != len(labels_of):
        raise InputError("classes", "expected unique, non-empty class names")
    if labels is not None:
        integer = isinstance(labels, torch.Tensor) and labels.dtype in (torch.int64, torch.int32)
        if not integer or labels.shape != (n,):
            raise InputError("labels", f"expected an integer tensor of shape ({n},)")
        if bool(((labels < 0) | (labels >= len(labels_of))).any()):
            raise InputError("labels", f"class indices must lie in [0, {len(labels_of)})")
    results, examples, rows = [], [], []
    for c in range(len(labels_of)):
        index = torch.arange(n) if labels is None else torch.nonzero(labels.cpu() == c)[:, 0]
        if index.numel() == 0:
            raise InputError("labels", f"class {labels_of[c]!r} has no examples")
        result = integrated_gradients(
            model,
            _rows(inputs, index),
            c,
            layer=layer,
            baseline=baseline,
            steps=steps,
            tol=tol,
            batch_size=batch_size,
            forward_kwargs=None if forward_kwargs is None else {
                k: v[index.to(v.device)] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v
                for k, v in forward_kwargs.items()
            },
        )
        values = result.values
        if not isinstance(values, torch.Tensor) or values.dim() != 2 or values.shape[1] != len(names):
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else "a mapping"
            raise InputError(
                "concepts", f"the concept layer gives {shape}; expected [batch, {len(names)}] concept scores"
            )
        results.append(result)
        examples.append(index)
        rows.append(values.detach().mean(dim=0))
    return ConceptAttribution(names, labels_of, torch.stack(rows), tuple(examples), tuple(results))


def _max_relative(result: Attribution) -> float:
    rel = result.relative_error
    return float("nan") if rel is None else float(rel.max())
