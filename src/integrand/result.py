"""The ``Attribution`` result: values plus everything needed to trust and reproduce them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from . import storage
from .convergence import relative_error as _relative_error
from .protocol import ResultMixin

FORMAT = "integrand.Attribution"
FORMAT_VERSION = 1
TensorOrDict = Union[torch.Tensor, dict[str, torch.Tensor]]


def _flat_sum(values: TensorOrDict) -> torch.Tensor:
    parts = values.values() if isinstance(values, dict) else [values]
    return sum(v.reshape(v.shape[0], -1).sum(dim=1) for v in parts)  # type: ignore[return-value]


@dataclass(frozen=True, repr=False)
class Attribution(ResultMixin):
    """Attribution of one batch of examples (the :class:`integrand.protocol.Result` protocol).

    ``delta`` is the completeness error ``(score_input - score_baseline) - sum(values)``
    for path methods (``None`` for methods without a completeness property, and then
    ``relative_error`` is ``None`` too). ``params`` records what was explained (target, baseline,
    contrast/foil) and the integration settings.
    """

    AXES = ("example",)

    values: TensorOrDict
    inputs: TensorOrDict
    baseline: TensorOrDict | None
    score_input: torch.Tensor
    score_baseline: torch.Tensor | None
    delta: torch.Tensor | None
    steps: torch.Tensor
    converged: torch.Tensor
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    quadrature_error: torch.Tensor | None = None
    labels: dict[str, list[str]] | None = None

    @property
    def relative_error(self) -> torch.Tensor | None:
        """``|delta| / |score_input - score_baseline|`` per example."""
        if self.delta is None or self.score_baseline is None:
            return None
        return _relative_error(self.delta, self.score_input - self.score_baseline)

    @property
    def batch(self) -> int:
        return int(self.score_input.shape[0])

    def total(self) -> torch.Tensor:
        """Sum of the attributions of each example."""
        return _flat_sum(self.values)

    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file: tensors plus JSON metadata (never pickle)."""
        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                tensors[f.name] = value
                kinds[f.name] = "tensor"
            elif isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
                tensors.update({f"{f.name}/{k}": v for k, v in value.items()})
                kinds[f.name] = "dict:" + json.dumps(list(value))
        meta = {"kinds": kinds, "method": self.method, "params": self.params, "labels": self.labels}
        return storage.write(path, tensors, meta, FORMAT, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> Attribution:
        """Read a file written by :meth:`save`."""
        what = "an integrand result"
        stored, meta = storage.read(path, FORMAT, FORMAT_VERSION, what)
        names = {f.name for f in fields(cls)}
        with storage.parsing(path, what):
            kwargs: dict[str, Any] = {"method": meta["method"], "params": meta["params"], "labels": meta["labels"]}
            if not isinstance(kwargs["method"], str) or not isinstance(kwargs["params"], dict):
                raise TypeError("'method' must be a string and 'params' an object")
            for name, kind in dict(meta["kinds"]).items():
                if name not in names:
                    raise ValueError(f"{name!r} is not a field of Attribution")
                if kind == "tensor":
                    kwargs[name] = stored[name]
                elif isinstance(kind, str) and kind.startswith("dict:"):
                    kwargs[name] = {k: stored[f"{name}/{k}"] for k in json.loads(kind[len("dict:") :])}
                else:
                    raise ValueError(f"unknown kind {kind!r} of field {name!r}")
            for required in ("values", "score_input"):
                if required not in kwargs:
                    raise KeyError(required)
            for f in fields(cls):
                kwargs.setdefault(f.name, None)
            batch = int(kwargs["score_input"].shape[0])
            for name in names:
                value = kwargs[name]
                for t in value.values() if isinstance(value, dict) else [value]:
                    if isinstance(t, torch.Tensor) and name != "params" and (t.dim() == 0 or t.shape[0] != batch):
                        raise ValueError(f"{name!r} has shape {tuple(t.shape)}, not {batch} examples first")
            return cls(**kwargs)

    def to_html(self, *, title: str | None = None) -> str:
        """A self-contained HTML view (heatmap for image-shaped inputs, a table otherwise)."""
        from .viz.html import attribution_html

        return attribution_html(self, title=title)

    def _repr_html_(self) -> str:
        return self.to_html()

    def numbers(self) -> Mapping[str, Any]:
        """Per-example numbers as plain Python lists (for printing and JSON)."""
        rel = self.relative_error
        return {
            "method": self.method,
            "score_input": self.score_input.tolist(),
            "relative_error": None if rel is None else rel.tolist(),
            "steps": self.steps.tolist(),
            "converged": self.converged.tolist(),
        }
