"""Argument checks and seeds shared by every method and metric (one behaviour, one place)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .errors import InputError

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
