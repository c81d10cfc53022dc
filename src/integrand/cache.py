"""The one user cache folder of integrand (trained demo models, converted weights, fitted heads)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VARS = ("INTEGRAND_CACHE_DIR", "INTEGRAND_CACHE")
"""Environment variables that override the folder, first set one wins."""


def cache_dir() -> Path:
    """``$INTEGRAND_CACHE_DIR`` (or ``$INTEGRAND_CACHE``), else the platform's user cache dir for integrand."""
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return Path(value)
    try:
        from platformdirs import user_cache_dir
    except ImportError:
        return Path.home() / ".cache" / "integrand"
    return Path(user_cache_dir("integrand"))
