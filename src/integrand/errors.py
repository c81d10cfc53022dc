"""The one exception family of integrand; every error names the argument at fault."""

from __future__ import annotations

import os
import sys


class IntegrandError(Exception):
    """Base class of every error raised by integrand."""


class InputError(IntegrandError, ValueError):
    """An argument has the wrong type, shape, dtype or value.

    ``argument`` names the offending argument so callers and tests can match on it.
    """

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class ModelError(IntegrandError, RuntimeError):
    """The model misbehaved: no gradient path, wrong output shape, NaN/Inf along the path."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class QueryError(InputError):
    """A query over a corpus store was refused or failed: not exactly one read-only statement, or it
    tried to reach something other than the store's own views. The message names the statement."""


class StoreError(InputError):
    """A corpus store is damaged or unverifiable: a shard differs from the manifest's record, or shards
    sit in a folder without a manifest. The message names the shard."""


class MissingExtraError(IntegrandError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(f"this feature needs the optional package {module!r}: pip install 'integrand[{extra}]'")


class ConvergenceWarning(UserWarning):
    """A path result missed its completeness tolerance (``integrand.convergence``), or too many of
    the results an aggregate is built on did."""


class StoreWarning(UserWarning):
    """A resumed corpus run found damaged or foreign shards and recomputes them (named in the message)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_PASS_THROUGH = (os.sep + "contextlib.py", os.sep + "functools.py")


def caller_stacklevel() -> int:
    """The ``stacklevel`` for the caller's ``warnings.warn`` that names the first frame outside integrand.

    Warnings passed this level point at the user's own call, however many integrand layers
    (method wrappers, registries, explainers) lie between it and the code that warns.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_PACKAGE) or filename.endswith(_PASS_THROUGH)):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return 1
