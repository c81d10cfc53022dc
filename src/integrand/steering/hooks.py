"""Decoder blocks of a causal LM: find them, read their output, steer it.

Every hook lives inside a context manager and is removed on every exit path.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import torch

from ..errors import InputError, ModelError
from ..models import decoder_blocks

__all__ = ["capture", "check_layers", "check_strength", "decoder_blocks", "steer", "steering"]


def check_layers(model: Any, layers: Any) -> tuple[int, ...]:
    """Validated, sorted, de-duplicated block indices (negative indices count from the end)."""
    blocks = decoder_blocks(model)
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise InputError("layers", f"expected a block index or a non-empty list of them, got {layers!r}")
    out = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError("layers", f"expected integer block indices, got {layer!r}")
        if not -len(blocks) <= layer < len(blocks):
            raise InputError("layers", f"block index {layer} is out of range: the model has {len(blocks)} blocks")
        out.add(layer % len(blocks))
    return tuple(sorted(out))


def _hidden(output: Any) -> torch.Tensor:
    value = output if isinstance(output, torch.Tensor) else output[0] if isinstance(output, (tuple, list)) else None
    if not isinstance(value, torch.Tensor):
        raise ModelError("model", f"a decoder block returned {type(output).__name__}, not a tensor or a tuple")
    return value


def _replace(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return hidden
    return type(output)((hidden, *output[1:]))


@contextmanager
def capture(model: Any, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Records each chosen block's output hidden states ``[batch, seq, hidden]`` at every forward."""
    blocks = decoder_blocks(model)
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = []
    try:
        for layer in layers:

            def hook(_m: torch.nn.Module, _a: Any, output: Any, layer: int = layer) -> None:
                records[layer].append(_hidden(output).detach())

            handles.append(blocks[layer].register_forward_hook(hook))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def steer(hidden: torch.Tensor, vector: torch.Tensor, strength: float) -> torch.Tensor:
    """``hidden + strength * vector``, each token rescaled to its original norm.

    With strength 0 the sum is exactly ``hidden`` and the ratio of equal norms is exactly 1,
    so the result is bit-identical (up to the sign of zeros).
    """
    steered = hidden + strength * vector.to(device=hidden.device, dtype=hidden.dtype)
    norm = hidden.norm(dim=-1, keepdim=True)
    new = steered.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(hidden.dtype).tiny)
    out: torch.Tensor = steered * (norm / new)
    return out


def check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise InputError("strength", f"expected a finite number, got {strength!r}")
    return float(strength)


@contextmanager
def steering(model: Any, vectors: Mapping[int, torch.Tensor], strength: float) -> Iterator[None]:
    """Adds ``strength * vectors[l]`` to block ``l``'s output with per-token norm preservation."""
    strength = check_strength(strength)
    blocks = decoder_blocks(model)
    for layer, vector in vectors.items():
        if not 0 <= layer < len(blocks):
            raise InputError("layers", f"block index {layer} is out of range: the model has {len(blocks)} blocks")
        width = getattr(getattr(model, "config", None), "hidden_size", None)
        if isinstance(width, int) and vector.shape != (width,):
            raise InputError(
                "vector", f"layer {layer} vector has shape {tuple(vector.shape)}; the model's hidden size is {width}"
            )
    handles = []
    try:
        for layer, vector in vectors.items():

            def hook(_m: torch.nn.Module, _a: Any, output: Any, v: torch.Tensor = vector) -> Any:
                hidden = _hidden(output)
                if hidden.shape[-1] != v.shape[0]:
                    raise ModelError("vector", f"hidden size {hidden.shape[-1]} != vector size {v.shape[0]}")
                return _replace(output, steer(hidden, v, strength))

            handles.append(blocks[layer].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
