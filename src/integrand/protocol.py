"""One result protocol: every result type answers the same questions the same way.

``values`` (the canonical numbers), ``delta`` (completeness error), ``relative_error``, ``converged``
(``None`` where the result has no completeness notion: a method without a completeness property, a
query table, a comparison of methods), ``params`` (what was explained and how), ``summary() -> str``,
``to_dataframe()`` (tidy: one row per element of ``values``), ``to_json()``, ``to_html()``,
``save()``/``load()`` through :mod:`integrand.storage`, and a short ``repr``.

:class:`ResultMixin` implements the shared part from three hooks of each type: the ``values`` property,
``AXES`` (names of the leading axes of ``values``) and :meth:`ResultMixin.axis_labels`.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import torch

from . import storage
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd

FORMAT_VERSION = 1
_T = TypeVar("_T", bound="ResultMixin")

STORABLE: frozenset[str] = frozenset(
    {
        "integrand.result:Attribution",
        "integrand.generation.result:GenerationAttribution",
        "integrand.generation.comprehension:ComprehensionScore",
        "integrand.text.result:TokenAttribution",
        "integrand.circuits.result:PatchingResult",
        "integrand.circuits.result:Cost",
        "integrand.circuits.components:Component",
        "integrand.circuits.faithfulness:Faithfulness",
        "integrand.circuits.faithfulness:Correlation",
        "integrand.concepts:ConceptAttribution",
        "integrand.groups:GroupAttribution",
        "integrand.uncertainty:UncertainAttribution",
        "integrand.uncertainty:GaussianAttribution",
        "integrand.uncertainty:GroupSpread",
        "integrand.profiles:ActivationProfile",
        "integrand.steering.vector:SteeringVector",
        "integrand.recommend:Recommendation",
        "integrand.recommend:Candidate",
        "integrand.neighbourhoods:Point",
        "integrand.neighbourhoods:Gaussian",
        "integrand.neighbourhoods:Uniform",
        "integrand.neighbourhoods:StraightPath",
        "integrand.neighbourhoods:BernoulliMasks",
        "integrand.neighbourhoods:ShapleyCoalitions",
        "integrand.neighbourhoods:LeaveOneOut",
        "integrand.corpus.run:RunSummary",
        "integrand.corpus.store:Table",
        "integrand.unlearning:Unlearning",
        "integrand.sensor_failure:SensorFailure",
        "integrand.metrics.curves:Curve",
        "integrand.metrics.randomisation:Randomisation",
        "integrand.metrics.faithfulness:Faithfulness",
        "integrand.corpus.train:TrainReport",
        "integrand.corpus.train:TrainConfig",
        "integrand.corpus.screening:Screening",
        "integrand.generation.paraphrase:Choice",
    }
)
"""The only classes a result file may name (``module:qualname``); a file naming any other is refused."""


@runtime_checkable
class Result(Protocol):
    """What every integrand result offers (see the module docstring)."""

    @property
    def values(self) -> Any: ...

    @property
    def delta(self) -> Any: ...

    @property
    def relative_error(self) -> Any: ...

    @property
    def converged(self) -> Any: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def summary(self) -> str: ...

    def to_dataframe(self) -> pd.DataFrame: ...

    def to_json(self) -> str: ...

    def to_html(self) -> str: ...

    def save(self, path: str | Path) -> Path: ...


class ResultMixin:
    """The shared half of :class:`Result`; a type provides ``values``, ``AXES`` and maybe ``axis_labels``."""

    AXES: ClassVar[tuple[str, ...]] = ("example",)
    """Names of the leading axes of ``values``; further axes are ``dim1``, ``dim2``, ..."""

    UNSTORED: ClassVar[frozenset[str]] = frozenset()
    """Fields that :meth:`save` does not write (they load as ``None``), e.g. a model."""

    def axis_labels(self) -> dict[str, Sequence[str]]:
        """Optional labels per axis (tokens, class names, ...), added to :meth:`to_dataframe` as ``<axis>_label``."""
        return {}

    def _values(self) -> Any:
        return getattr(self, "values")  # noqa: B009 - each result type defines ``values``

    # -- numbers ---------------------------------------------------------------------------------
    def max_relative_error(self) -> float | None:
        """The largest relative completeness error, or ``None`` where there is none."""
        rel = getattr(self, "relative_error", None)
        if rel is None:
            return None
        if isinstance(rel, torch.Tensor):
            return None if rel.numel() == 0 else float(rel.detach().abs().max())
        return float(rel)

    def _shape(self) -> str:
        values = self._values()
        if isinstance(values, torch.Tensor):
            return "x".join(map(str, values.shape)) or "scalar"
        if isinstance(values, Mapping):
            return ", ".join(f"{k}: {'x'.join(map(str, v.shape))}" for k, v in values.items())
        return f"{len(values)} rows"

    def _method(self) -> str:
        method = getattr(self, "method", None)
        return method if isinstance(method, str) else type(self).__name__

    def __repr__(self) -> str:
        rel = self.max_relative_error()
        err = "n/a" if rel is None else f"{rel:.2g}"
        return f"{type(self).__name__}(shape={self._shape()}, method={self._method()!r}, max_relative_error={err})"

    def summary(self) -> str:
        """A few readable lines: what was explained, the shape, convergence and the largest values."""
        lines = [repr(self)]
        converged = getattr(self, "converged", None)
        if converged is not None:
            flags = converged if isinstance(converged, torch.Tensor) else torch.tensor(bool(converged))
            n_bad = int((~flags.bool()).sum())
            lines.append("converged" if n_bad == 0 else f"NOT CONVERGED: {n_bad} of {flags.numel()}")
        params = {k: v for k, v in dict(getattr(self, "params", {}) or {}).items() if _short(v)}
        if params:
            lines.append("params: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
        frame = self.to_dataframe()
        if "value" in frame and len(frame) and frame["value"].dtype.kind in "fiu":
            top = frame.reindex(frame["value"].abs().sort_values(ascending=False).index).head(3)
            keys = [c for c in frame.columns if c != "value"]
            for row in top.to_dict("records"):
                where = ", ".join(f"{k}={row[k]}" for k in keys)
                lines.append(f"  {where}: {row['value']:+.4g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    # -- tables and text ---------------------------------------------------------------------------
    def to_dataframe(self) -> pd.DataFrame:
        """Tidy table: one row per element of ``values``, one column per axis (plus labels), and ``value``."""
        return tidy_frame(self._values(), self.AXES, self.axis_labels())

    def to_json(self) -> str:
        """The protocol's fields (values, errors, flags, params) and the summary as one JSON document."""
        doc = {
            "type": type(self).__name__,
            "method": self._method(),
            "summary": self.summary(),
            "params": _plain(getattr(self, "params", {})),
            "values": _plain(self._values()),
            "delta": _plain(getattr(self, "delta", None)),
            "relative_error": _plain(getattr(self, "relative_error", None)),
            "converged": _plain(getattr(self, "converged", None)),
        }
        return json.dumps(doc, allow_nan=False, default=str)

    def to_html(self) -> str:
        """The summary and the tidy table (first 200 rows), escaped."""
        frame = self.to_dataframe()
        body = frame.head(200).to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}")
        more = f"<p>{len(frame) - 200} more rows</p>" if len(frame) > 200 else ""
        return f"<div class='integrand-result'><pre>{html.escape(self.summary())}</pre>{body}{more}</div>"

    def _repr_html_(self) -> str:
        return self.to_html()

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write one ``.safetensors`` file (tensors) with versioned JSON metadata; never pickle."""
        tensors: dict[str, torch.Tensor] = {}
        root = _encode(self, "root", tensors, self.UNSTORED)
        return storage.write(path, tensors, {"root": root}, _format(type(self)), FORMAT_VERSION)

    @classmethod
    def load(cls: type[_T], path: str | Path) -> _T:
        """Read a file written by :meth:`save` of this type."""
        what = f"an integrand {cls.__name__}"
        stored, meta = storage.read(path, _format(cls), FORMAT_VERSION, what)
        with storage.parsing(path, what):
            result = _decode(meta["root"], stored)
            if not isinstance(result, cls):
                raise TypeError(f"the file holds {type(result).__name__}, not {cls.__name__}")
            return result


class NoCompleteness(ResultMixin):
    """A result with no completeness notion (an edit, a metric, a table): ``delta``, ``relative_error``
    and ``converged`` are ``None`` rather than a flag that could never be False."""

    @property
    def delta(self) -> None:
        return None

    @property
    def relative_error(self) -> None:
        return None

    @property
    def converged(self) -> None:
        return None


FORMATS: dict[str, str] = {"integrand.metrics.faithfulness:Faithfulness": "integrand.metrics.Faithfulness"}
"""File format names of result types whose class name another result type already uses."""


def _format(cls: type) -> str:
    return FORMATS.get(f"{cls.__module__}:{cls.__qualname__}", f"integrand.{cls.__name__}")


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 60


def _plain(value: Any) -> Any:
    """JSON-ready copy: tensors as nested lists, non-finite floats as None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return _plain(value.tolist()) if value.dim() else _plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


# -- tidy frames -------------------------------------------------------------------------------------
def _axis_names(axes: Sequence[str], ndim: int) -> list[str]:
    return [*axes[:ndim], *(f"dim{i}" for i in range(len(axes), ndim))]


def tidy_frame(values: Any, axes: Sequence[str], labels: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """One row per element of ``values`` (a tensor, or a mapping of named tensors: an ``input`` column)."""
    import numpy as np
    import pandas as pd

    if isinstance(values, Mapping):
        frames = []
        for name, tensor in values.items():
            frame = tidy_frame(tensor, axes, labels)
            frame.insert(0, "input", name)
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        out.attrs["integrand"] = {k: frames[i].attrs["integrand"] for i, k in enumerate(values)}
        return out
    if not isinstance(values, torch.Tensor):
        raise InputError("values", f"expected a tensor or a mapping of tensors, got {type(values).__name__}")
    t = values.detach().cpu()
    names = _axis_names(axes, t.dim())
    index = np.indices(tuple(t.shape)).reshape(t.dim(), -1)
    columns: dict[str, Any] = {}
    for i, name in enumerate(names):
        columns[name] = index[i]
        given = (labels or {}).get(name)
        if given is not None and len(given) == t.shape[i]:
            columns[f"{name}_label"] = np.asarray([str(v) for v in given], dtype=object)[index[i]]
    columns["value"] = t.reshape(-1).numpy()
    frame = pd.DataFrame(columns)
    frame.attrs["integrand"] = {"axes": names, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
    return frame


def values_from_dataframe(frame: pd.DataFrame) -> torch.Tensor | dict[str, torch.Tensor]:
    """The ``values`` tensor (or mapping) back from a :meth:`ResultMixin.to_dataframe` table, rows in any order."""
    info = frame.attrs.get("integrand")
    if "input" in frame.columns:
        out: dict[str, torch.Tensor] = {}
        names = list(info) if info else list(dict.fromkeys(frame["input"]))
        for name in names:
            part = frame[frame["input"] == name].drop(columns="input")
            part.attrs["integrand"] = (info or {}).get(name)
            tensor = values_from_dataframe(part)
            assert isinstance(tensor, torch.Tensor)
            out[str(name)] = tensor
        return out
    if info:
        axes, shape, dtype = list(info["axes"]), list(info["shape"]), getattr(torch, info["dtype"])
    else:
        axes = [c for c in frame.columns if c != "value" and not str(c).endswith("_label")]
        shape = [int(frame[a].max()) + 1 for a in axes]
        dtype = torch.float64
    out_t = torch.zeros(shape, dtype=dtype)
    index = tuple(torch.as_tensor(frame[a].to_numpy(copy=True), dtype=torch.long) for a in axes)
    out_t[index] = torch.as_tensor(frame["value"].to_numpy(copy=True)).to(dtype)
    return out_t


# -- storage encoding ---------------------------------------------------------------------------------
def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor], skip: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {"tensor": key}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, Path):
        return {"path": str(value)}
    if isinstance(value, (tuple, list)):
        items = [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
        return {"tuple": items} if isinstance(value, tuple) else {"list": items}
    if isinstance(value, Mapping):
        return {
            "items": [
                [_encode(k, f"{key}/k{i}", tensors), _encode(v, f"{key}/{i}", tensors)]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and _qualname(value) in STORABLE:
        fields = {
            f.name: None if f.name in skip else _encode(getattr(value, f.name), f"{key}.{f.name}", tensors)
            for f in dataclasses.fields(value)
            if f.init
        }
        return {"dataclass": _qualname(value), "fields": fields}
    raise InputError(
        "result", f"cannot store a {type(value).__name__} at {key!r} (not a tensor, number, text or result)"
    )


def _decode(node: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        raise ValueError("a bare list in the metadata")
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise ValueError(f"unreadable node {str(node)[:80]}")
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "float" in node:
        return float(node["float"])
    if "path" in node:
        return Path(node["path"])
    if "tuple" in node:
        return tuple(_decode(v, tensors) for v in node["tuple"])
    if "list" in node:
        return [_decode(v, tensors) for v in node["list"]]
    if "items" in node:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in node["items"]}
    if "dataclass" in node:
        name = node["dataclass"]
        if name not in STORABLE:
            raise ValueError(f"the file names {name!r}, which is not an integrand result type")
        module, qual = name.split(":")
        cls = getattr(importlib.import_module(module), qual)
        return cls(**{k: _decode(v, tensors) for k, v in dict(node["fields"]).items()})
    raise ValueError(f"unknown node {sorted(node)}")


LOADERS: dict[str, str] = {
    "integrand.Attribution": "integrand.result:Attribution",
    "integrand.GenerationAttribution": "integrand.generation.result:GenerationAttribution",
    "integrand.TokenAttribution": "integrand.text.result:TokenAttribution",
    "integrand.SteeringVector": "integrand.steering.vector:SteeringVector",
    **{FORMATS.get(_name, f"integrand.{_name.split(':')[1]}"): _name for _name in sorted(STORABLE)},
}
"""File format name -> the class that reads it."""


def load(path: str | Path) -> Any:
    """Read any integrand result file, whatever its type (the file's metadata names its format)."""
    fmt = storage.format_of(path)
    name = LOADERS.get(fmt or "")
    if name is None:
        found = "no integrand metadata" if fmt is None else f"format {fmt!r}"
        raise InputError("path", f"{path} is not an integrand result file ({found})")
    module, qual = name.split(":")
    cls = getattr(importlib.import_module(module), qual)
    if not hasattr(cls, "load"):
        raise InputError("path", f"{path} holds a {qual}, which is part of a result, not a result file")
    return cls.load(path)
