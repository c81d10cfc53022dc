"""Result files: safetensors for the tensors, JSON metadata for the rest, never pickle.

Every result type writes ``{"format": ..., "version": ..., **meta}`` under the ``integrand``
metadata key and reads it back through :func:`read`, which checks the format and version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import InputError

METADATA_KEY = "integrand"


def write(
    path: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], fmt: str, version: int
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) and ``meta`` as one ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = Path(path)
    header = {"format": fmt, "version": version, **meta}
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        str(path),
        metadata={METADATA_KEY: json.dumps(header, default=str)},
    )
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
    meta = json.loads(raw) if raw is not None else {}
    if meta.get("format") != fmt:
        found = "no integrand metadata" if raw is None else f"it holds {meta.get('format')!r}"
        raise InputError("path", f"{path} is not {what} file ({found})")
    if meta.get("version") != version:
        raise InputError("path", f"{path} has format version {meta.get('version')}; this integrand reads {version}")
    del meta["format"], meta["version"]
    return tensors, meta
