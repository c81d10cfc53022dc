"""Reading saved results for the viewer: an explicit format registry, a small cache, and filters.

Result files are safetensors with a JSON ``integrand`` metadata entry naming their format; the
format picks the loader from ``LOADERS`` (never from anything inside the file), so no file can make
the viewer import or unpickle arbitrary code.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..viz.adapters import as_view
from ..viz.views import ExampleInfo, ResultView
from .files import RESULT_SUFFIX, ResultsDir
from .schema import ResultSummary, example_out

# format written by a result type's ``save`` -> "module:Class" with a ``load(path)`` classmethod.
LOADERS: dict[str, str] = {
    "integrand.Attribution": "integrand.result:Attribution",
    "integrand.TokenAttribution": "integrand.text:TokenAttribution",
    "integrand.GenerationAttribution": "integrand.generation:GenerationAttribution",
}


@dataclass(frozen=True)
class Filters:
    """Example filters; ``None`` means "any". Examples without a recorded error fail error bounds."""

    label: str | None = None
    prediction: str | None = None
    min_error: float | None = None
    max_error: float | None = None
    kind: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.label, self.prediction, self.min_error, self.max_error, self.kind))

    def keep(self, info: ExampleInfo) -> bool:
        if self.label is not None and info.label != self.label:
            return False
        if self.prediction is not None and info.prediction != self.prediction:
            return False
        err = info.relative_error
        if self.min_error is not None and (err is None or err < self.min_error):
            return False
        return not (self.max_error is not None and (err is None or err > self.max_error))


@dataclass(frozen=True)
class Loaded:
    path: str
    size: int
    format: str | None
    view: ResultView | None
    error: str | None


def read_format(path: Path) -> str | None:
    """The ``format`` field of a result file's metadata (reads only the safetensors header)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = (fh.metadata() or {}).get("integrand")
    if raw is None:
        return None
    meta = json.loads(raw)
    fmt = meta.get("format") if isinstance(meta, dict) else None
    return fmt if isinstance(fmt, str) else None


def load_view(path: Path, fmt: str) -> ResultView:
    module, _, name = LOADERS[fmt].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return as_view(cls.load(path), title=path.stem)


class ResultStore:
    """Loads result files into views, caching by (path, size, mtime) so edits on disk are picked up."""

    def __init__(self, results: ResultsDir, capacity: int = 64) -> None:
        self.results = results
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, int, int], Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, relative: str, real: Path) -> Loaded:
        stat = real.stat()
        key = (str(real), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        loaded = self._read(relative, real, stat.st_size)
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return loaded

    @staticmethod
    def _read(relative: str, real: Path, size: int) -> Loaded:
        try:
            fmt = read_format(real)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # corrupt files (even Rust panics) are reported in the listing, never a 500
            return Loaded(relative, size, None, None, f"unreadable: {type(exc).__name__}")
        if fmt is None:
            return Loaded(relative, size, None, None, "not an integrand result (no 'integrand' metadata)")
        if fmt not in LOADERS:
            return Loaded(relative, size, fmt, None, f"no viewer for format {fmt!r}")
        try:
            return Loaded(relative, size, fmt, load_view(real, fmt), None)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # same: report, do not crash the listing
            return Loaded(relative, size, fmt, None, f"could not load: {type(exc).__name__}: {exc}"[:300])

    def all(self) -> list[Loaded]:
        out = []
        for rel in self.results.files(RESULT_SUFFIX):
            real = self.results.resolve(rel, suffix=RESULT_SUFFIX)
            if real is not None:
                out.append(self.load(rel, real))
        return out

    def get(self, relative: str) -> Loaded | None:
        real = self.results.resolve(relative, suffix=RESULT_SUFFIX)
        return None if real is None else self.load(relative, real)


def summary(loaded: Loaded, filters: Filters) -> ResultSummary:
    view = loaded.view
    examples = [] if view is None else [e.info for e in view.examples if filters.keep(e.info)]
    return ResultSummary(
        path=loaded.path,
        format=loaded.format,
        kind=None if view is None else view.kind,
        method=None if view is None else view.method,
        title=None if view is None else view.title,
        size=loaded.size,
        examples=[example_out(i) for i in examples],
        total_examples=0 if view is None else len(view.examples),
        error=loaded.error,
    )


def visible(loaded: Loaded, filters: Filters) -> bool:
    """A file is listed unless filters are set and none of its examples pass them."""
    if not filters.active:
        return True
    view = loaded.view
    if view is None:
        return False
    if filters.kind is not None and view.kind != filters.kind:
        return False
    return any(filters.keep(e.info) for e in view.examples)


def params_text(params: dict[str, Any]) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in params.items()}
