"""The local web viewer: ``integrand serve RESULTS_DIR`` (FastAPI + one static page, no build step).

FastAPI and uvicorn are imported only when the app is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import MissingExtraError

if TYPE_CHECKING:
    from fastapi import FastAPI


def _require() -> None:
    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingExtraError(module, "viewer") from exc


def create_app(results_dir: str | Path, *, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The viewer app for ``results_dir`` (see :mod:`integrand.viewer.app`)."""
    _require()
    from .app import create_app as _create

    return _create(results_dir, allowed_hosts=allowed_hosts)


def serve(results_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``results_dir`` on ``host:port`` until interrupted (loopback only unless ``host`` says otherwise)."""
    _require()
    from .app import run_server

    run_server(results_dir, host=host, port=port)


__all__ = ["create_app", "serve"]
