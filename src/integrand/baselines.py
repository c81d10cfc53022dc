"""Baselines: the reference point an attribution path starts from.

A baseline spec is ``"zeros"``, a float, a tensor broadcastable to the input, a callable
``inputs -> baseline``, ``"blur"``, ``"uniform"``, or (for named inputs) a mapping of those.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Union

import torch
import torch.nn.functional as F

from .errors import InputError
from .inputs import TENSOR_KEY, InputSet

BaselineSpec = Union[str, float, int, torch.Tensor, Callable[..., Any], Mapping[str, Any], None]
BASELINE_NAMES = ("zeros", "blur", "uniform")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur the last two (spatial) dims of ``x`` with a Gaussian of std ``sigma`` pixels (reflect padding)."""
    if x.dim() < 3:
        raise InputError(
            "baseline", f"'blur' needs image-shaped inputs [batch, (channels,) H, W], got {tuple(x.shape)}"
        )
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    shape = x.shape
    img = x.reshape(-1, 1, shape[-2], shape[-1])
    for dim in (-1, -2):
        size = shape[dim]
        pad = min(radius, size - 1)
        k = kernel[radius - pad : radius + pad + 1]
        if dim == -1:
            img = F.conv2d(F.pad(img, (pad, pad, 0, 0), mode="reflect" if pad else "constant"), k.view(1, 1, 1, -1))
        else:
            img = F.conv2d(F.pad(img, (0, 0, pad, pad), mode="reflect" if pad else "constant"), k.view(1, 1, -1, 1))
    return img.reshape(shape)


def _uniform(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    flat = x.reshape(x.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    high = flat.max(dim=1).values.view(-1, *([1] * (x.dim() - 1)))
    noise = torch.rand(x.shape, generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    return low + (high - low) * noise


def _one(name: str, x: torch.Tensor, spec: Any, seed: int) -> torch.Tensor:
    argument = "baseline" if name == TENSOR_KEY else f"baseline[{name!r}]"
    if spec is None or (isinstance(spec, str) and spec == "zeros"):
        return torch.zeros_like(x)
    if isinstance(spec, str):
        if spec == "blur":
            return gaussian_blur(x, sigma=max(x.shape[-2:]) / 4.0)
        if spec == "uniform":
            return _uniform(x, seed)
        raise InputError(
            argument,
            f"unknown baseline {spec!r}; expected one of {', '.join(BASELINE_NAMES)}, a number, a tensor or a callable",
        )
    if isinstance(spec, bool):
        raise InputError(argument, "expected a number, not a bool")
    if isinstance(spec, (int, float)):
        if not math.isfinite(spec):
            raise InputError(argument, f"must be finite, got {spec}")
        return torch.full_like(x, float(spec))
    if isinstance(spec, torch.Tensor):
        if not spec.is_floating_point():
            raise InputError(argument, f"expected a floating-point tensor, got {spec.dtype}")
        try:
            out = torch.broadcast_to(spec.detach().to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError:
            raise InputError(
                argument, f"shape {tuple(spec.shape)} does not broadcast to the input shape {tuple(x.shape)}"
            ) from None
        if not bool(torch.isfinite(out).all()):
            raise InputError(argument, "contains NaN or Inf")
        return out.clone()
    raise InputError(
        argument, f"expected 'zeros', 'blur', 'uniform', a number, a tensor or a callable, got {type(spec).__name__}"
    )


def make_baselines(inputs: InputSet, spec: BaselineSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """One baseline tensor per named input, shaped exactly like it."""
    if callable(spec) and not isinstance(spec, torch.Tensor):
        produced = spec(inputs.public(inputs.tensors))
        if inputs.named:
            if not isinstance(produced, Mapping):
                raise InputError("baseline", "a baseline callable for named inputs must return a mapping")
            spec = produced
        else:
            spec = produced
    if isinstance(spec, Mapping):
        if not inputs.named:
            raise InputError("baseline", "a mapping of baselines needs named inputs")
        unknown = set(spec) - set(inputs.names)
        if unknown:
            raise InputError("baseline", f"names {sorted(unknown)} are not inputs; inputs are {list(inputs.names)}")
        return {n: _one(n, x, spec.get(n), seed) for n, x in inputs.tensors.items()}
    return {n: _one(n, x, spec, seed) for n, x in inputs.tensors.items()}
