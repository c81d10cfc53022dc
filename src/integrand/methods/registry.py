"""The explicit method registry: ``register`` a function once, look it up by name."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import InputError
from ..result import Attribution

MethodFn = Callable[..., Attribution]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its function, a one-line summary and its keyword parameters with defaults."""

    name: str
    fn: MethodFn
    summary: str
    params: dict[str, Any]


class Registry:
    """Name -> method. Instances are built explicitly; nothing registers itself on import."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodInfo] = {}

    def register(self, name: str, fn: MethodFn) -> None:
        if name in self._methods:
            raise InputError("name", f"method {name!r} is already registered")
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        params = {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        self._methods[name] = MethodInfo(name=name, fn=fn, summary=doc[0] if doc else "", params=params)

    def get(self, name: str) -> MethodInfo:
        if not isinstance(name, str):
            raise InputError(
                "method",
                f"expected a method name (str), got {type(name).__name__}; valid methods: {', '.join(self.names())}",
            )
        if name not in self._methods:
            close = difflib.get_close_matches(name, list(self._methods), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                "method", f"unknown method {name!r}; valid methods: {', '.join(sorted(self._methods))}.{hint}"
            )
        return self._methods[name]

    def names(self) -> list[str]:
        return sorted(self._methods)

    def infos(self) -> list[MethodInfo]:
        return [self._methods[n] for n in self.names()]


def check_params(info: MethodInfo, params: Mapping[str, Any], extra: Iterable[str] = ()) -> None:
    """Every key of ``params`` is a keyword parameter of ``info`` (or in ``extra``); close matches are suggested."""
    valid = sorted({*info.params, *extra})
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid parameters: {', '.join(valid)}"
            raise InputError(key, f"not a parameter of method {info.name!r}; {hint}")
