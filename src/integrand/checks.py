"""Argument checks and seeds shared by every method and metric (one behaviour, one place)."""

from __future__ import annotations

import difflib
import inspect
import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Mapping

import torch

from .errors import InputError, ModelError
from .inputs import InputSet

SEED_BOUND = 2**62


def check_count(argument: str, value: Any, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools refused), or an ``InputError`` naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(argument, f"expected an integer >= {minimum}, got {value!r}")
    return value


def check_positive(argument: str, value: Any, what: str | None = None, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``); ``what`` replaces the default description."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or value < 0 or (value == 0 and not allow_zero):
        expected = what or f"a finite number {'>= 0' if allow_zero else '> 0'}"
        raise InputError(argument, f"expected {expected}, got {value!r}")
    return float(value)


def resolve_seed(seed: int | None) -> int:
    """The seed to use: ``seed`` itself, or one drawn from torch's global generator when ``None``.

    Drawing from the global generator makes unseeded runs follow ``torch.manual_seed`` (as in
    Captum); the seed actually used is recorded in ``params["seed"]`` so any run can be repeated.
    """
    if seed is None:
        return int(torch.randint(0, SEED_BOUND, (1,)).item())
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InputError("seed", f"expected None or an integer in [0, 2**63), got {seed!r}")
    return seed


def generator(seed: int) -> torch.Generator:
    """A CPU generator: draws do not depend on the device the model runs on."""
    return torch.Generator(device="cpu").manual_seed(seed)


_TRAINING_ALLOWED: ContextVar[frozenset[int]] = ContextVar("integrand_training_allowed", default=frozenset())
"""Ids of modules allowed in training mode within the current context (see :func:`training_allowed`)."""


@contextmanager
def training_allowed(modules: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Within this context, ``modules`` may be in training mode (the explicit opt-in of MC dropout).

    Everything else still has to be in eval mode. The allowance is a context variable, so it ends
    with the block, on every exit path, and does not leak into other threads or tasks.
    """
    token = _TRAINING_ALLOWED.set(_TRAINING_ALLOWED.get() | {id(m) for m in modules})
    try:
        yield
    finally:
        _TRAINING_ALLOWED.reset(token)


MODE_DEPENDENT: tuple[type[torch.nn.Module], ...] = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
    torch.nn.RReLU,
)
"""Modules that draw random numbers in training mode (norm layers are recognised by their running statistics)."""


def mode_dependent(module: torch.nn.Module) -> bool:
    """Whether ``module`` computes differently in training mode: dropout, RReLU, or running statistics."""
    if isinstance(module, MODE_DEPENDENT):
        return True
    if getattr(module, "track_running_stats", False):
        return True
    return any(name in ("running_mean", "running_var") for name, _ in module.named_buffers(recurse=False))


def check_model(model: Any, argument: str = "model") -> None:
    """A callable model with no mode-dependent module in training mode, or a typed error naming ``argument``.

    integrand refuses train mode instead of switching the model to eval itself: dropout would make
    two identical calls differ, BatchNorm would update its running statistics, and the user's model
    is never modified. The check runs before any forward pass, so a refused call changes nothing.
    Modules that compute the same in both modes (Linear, ReLU, containers) are not judged by their flag.
    """
    if model is None or not callable(model):
        raise InputError(argument, f"expected an nn.Module or a callable, got {type(model).__name__}")
    if not isinstance(model, torch.nn.Module):
        return
    allowed = _TRAINING_ALLOWED.get()
    for name, module in model.named_modules():
        if module.training and id(module) not in allowed and mode_dependent(module):
            where = f"module {name!r}" if name else "the model itself"
            raise ModelError(
                argument,
                f"{where} ({type(module).__name__}) is in training mode: dropout would make attributions random "
                "and batch norm would update its running statistics; call model.eval() first",
            )


def _parameter_dtype(model: Any) -> torch.dtype | None:
    if not isinstance(model, torch.nn.Module):
        return None
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _signature(model: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(model.forward if isinstance(model, torch.nn.Module) else model)
    except (TypeError, ValueError):
        return None


def check_call(model: Any, inputs: InputSet, forward_kwargs: Any, *, interpolated: bool = True) -> None:
    """Check a model call before running it: eval mode, argument names, and (for ``interpolated`` inputs) dtype.

    Named inputs and ``forward_kwargs`` must match the parameters of ``model.forward`` (unless it
    takes ``**kwargs``); every required parameter must be given.
    """
    check_model(model)
    if forward_kwargs is not None and not isinstance(forward_kwargs, Mapping):
        raise InputError(
            "forward_kwargs", f"expected a mapping of keyword arguments, got {type(forward_kwargs).__name__}"
        )
    kwargs = dict(forward_kwargs or {})
    for key in kwargs:
        if not isinstance(key, str):
            raise InputError("forward_kwargs", f"keys must be argument names (str), got {key!r}")
    clash = sorted(set(kwargs) & set(inputs.names)) if inputs.named else []
    if clash:
        raise InputError("forward_kwargs", f"{clash} are named inputs already")
    dtype = _parameter_dtype(model)
    if interpolated and dtype is not None and inputs.dtype.is_floating_point and inputs.dtype != dtype:
        raise InputError(
            "inputs",
            f"are {inputs.dtype} but the model's parameters are {dtype}; convert the inputs (e.g. .to({dtype})): "
            "integrand never changes the model's dtype",
        )
    sig = _signature(model)
    if sig is None:
        return
    params = list(sig.parameters.values())
    if not inputs.named:
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if positional:
            params = [p for p in params if p is not positional[0]]
        elif not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise InputError("model", f"its forward{sig} takes no positional argument for the input tensor")
    given = {**{n: "inputs" for n in (inputs.names if inputs.named else ())}, **{k: "forward_kwargs" for k in kwargs}}
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for key, source in given.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {names}"
                raise InputError(f"{source}[{key!r}]", f"{key!r} is not a parameter of the model's forward{hint}")
    missing = [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty and p.name not in given
    ]
    if missing:
        argument = "inputs" if inputs.named else "forward_kwargs"
        raise InputError(argument, f"the model's forward needs {missing}, which are not given")
