"""The explicit method registry: ``register`` a function once, look it up by name."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..errors import InputError
from ..result import Attribution

MethodFn = Callable[..., Attribution]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its function, a one-line summary and its keyword parameters with defaults."""

    name: str
    fn: MethodFn = field(repr=False)
    summary: str
    params: dict[str, Any]


class Registry:
    """Name -> method. Instances are built explicitly; nothing registers itself on import."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodInfo] = {}

    def register(self, name: str, fn: MethodFn) -> None:
        """Add ``fn`` under ``name``: ``fn(model, inputs, target=None, *, keyword parameters) -> Attribution``."""
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError("name", f"expected a method name made of letters, digits and '_', got {name!r}")
        if name in self._methods:
            raise InputError("name", f"method {name!r} is already registered")
        _check_signature(fn)
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

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a method added by :meth:`register`)."""
        self.get(name)
        del self._methods[name]

    def names(self) -> list[str]:
        return sorted(self._methods)

    def infos(self) -> list[MethodInfo]:
        return [self._methods[n] for n in self.names()]


def _check_signature(fn: Any) -> None:
    """``fn`` takes ``(model, inputs, target)`` positionally and everything else by keyword (no ``**kwargs``)."""
    if not callable(fn):
        raise InputError("fn", f"expected a function, got {type(fn).__name__}")
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise InputError("fn", f"cannot read the signature of {fn!r}: {exc}") from None
    positional = [
        p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) != 3 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        raise InputError(
            "fn", "a method takes exactly three positional parameters (model, inputs, target) and keyword-only options"
        )
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise InputError("fn", "a method names its options as keyword-only parameters; **kwargs is not accepted")


def check_params(info: MethodInfo, params: Mapping[str, Any], extra: Iterable[str] = ()) -> None:
    """Every key of ``params`` is a keyword parameter of ``info`` (or in ``extra``); close matches are suggested."""
    valid = sorted({*info.params, *extra})
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid parameters: {', '.join(valid)}"
            raise InputError(key, f"not a parameter of method {info.name!r}; {hint}")
