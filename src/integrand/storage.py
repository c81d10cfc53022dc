"""Result files: safetensors for the tensors, JSON metadata for the rest, never pickle.

Every result type writes ``{"format": ..., "version": ..., **meta}`` under the ``integrand``
metadata key and reads it back through :func:`read`, which checks the format and version.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .errors import InputError, IntegrandError

METADATA_KEY = "integrand"


def write(
    path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], fmt: str, version: int
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) and ``meta`` as one ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("path", f"folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise InputError("path", f"{path} is a folder; expected a file name")
    header = {"format": fmt, "version": version, **meta}
    try:
        save_file(
            {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()},
            str(path),
            metadata={METADATA_KEY: json.dumps(header, default=str)},
        )
    except OSError as exc:
        raise InputError("path", f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def read(path: str | Path, fmt: str, version: int, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a file written by :func:`write` with the same ``fmt`` and ``version``.

    ``what`` names the expected content in errors ("an integrand result", "a steering vector").
    """
    from safetensors import safe_open

    if not Path(path).is_file():
        raise InputError("path", f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the caller's input error
        raise InputError("path", f"{path} is not a safetensors file: {exc}") from exc
    try:
        meta = json.loads(raw) if raw is not None else {}
    except json.JSONDecodeError as exc:
        raise InputError("path", f"{path} has malformed integrand metadata (not JSON: {exc})") from None
    if not isinstance(meta, dict):
        raise InputError(
            "path", f"{path} has malformed integrand metadata (a JSON {type(meta).__name__}, not an object)"
        )
    if meta.get("format") != fmt:
        found = "no integrand metadata" if raw is None else f"it holds {meta.get('format')!r}"
        raise InputError("path", f"{path} is not {what} file ({found})")
    if meta.get("version") != version:
        raise InputError("path", f"{path} has format version {meta.get('version')}; this integrand reads {version}")
    del meta["format"], meta["version"]
    return tensors, meta


def format_of(path: str | Path) -> str | None:
    """The format name a file written by :func:`write` declares, or ``None`` if it has no integrand metadata."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise InputError("path", f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY)
        meta = json.loads(raw) if raw is not None else {}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the caller's input error
        raise InputError("path", f"{path} is not a readable integrand result file: {exc}") from exc
    fmt = meta.get("format") if isinstance(meta, dict) else None
    return fmt if isinstance(fmt, str) else None


@contextmanager
def parsing(path: str | Path, what: str) -> Iterator[None]:
    """Turn a missing or ill-typed metadata field or tensor met while rebuilding a result into an ``InputError``.

    ``what`` names the content ("an integrand result"). Errors of integrand itself pass unchanged.
    """
    try:
        yield
    except IntegrandError:
        raise
    except KeyError as exc:
        raise InputError("path", f"{path} is not a complete {what} file: {exc.args[0]!r} is missing") from None
    except (TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        raise InputError("path", f"{path} holds inconsistent {what} metadata: {exc}") from None
