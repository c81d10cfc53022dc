"""Normalised model inputs: one tensor or a mapping of named tensors, with a shared batch dim.

Internally every input set is a ``dict[str, Tensor]``; a plain tensor is stored under
``TENSOR_KEY`` and handed back as a tensor in results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import torch

from .errors import InputError, ModelError

TENSOR_KEY = "input"
Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class InputSet:
    """Validated inputs: named float tensors sharing batch size, device and dtype."""

    tensors: dict[str, torch.Tensor]
    named: bool

    @property
    def batch(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.tensors)

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.tensors.values())).dtype

    def sizes(self) -> list[int]:
        """Features per example of each input, in order."""
        return [t[0].numel() for t in self.tensors.values()]

    def flat(self) -> torch.Tensor:
        """All inputs of each example concatenated into one row: [batch, features]."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in self.tensors.values()], dim=1)

    def unflat(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`flat` for a [batch, features] tensor."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, t in self.tensors.items():
            n = t[0].numel()
            out[name] = rows[:, start : start + n].reshape(rows.shape[0], *t.shape[1:])
            start += n
        return out

    def public(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Hand tensors back in the user's form: a tensor or a dict."""
        return dict(tensors) if self.named else tensors[TENSOR_KEY]


def _check_tensor(name: str, t: Any) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(name, f"expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise InputError(
            name,
            f"expected a floating-point tensor, got {t.dtype}; integer inputs such as token ids "
            "cannot be interpolated: attribute their embedding layer instead (layer=...)",
        )
    if t.dim() < 1 or t.shape[0] < 1:
        raise InputError(name, f"expected a batch dimension first, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(name, "contains NaN or Inf")
    return t.detach()


def as_input_set(inputs: Inputs, argument: str = "inputs") -> InputSet:
    """Validate user inputs and wrap them."""
    if isinstance(inputs, torch.Tensor):
        return InputSet({TENSOR_KEY: _check_tensor(argument, inputs)}, named=False)
    if isinstance(inputs, Mapping):
        if not inputs:
            raise InputError(argument, "the mapping of named inputs is empty")
        tensors = {str(k): _check_tensor(f"{argument}[{k!r}]", v) for k, v in inputs.items()}
        first = next(iter(tensors.values()))
        for k, v in tensors.items():
            if v.shape[0] != first.shape[0] or v.device != first.device or v.dtype != first.dtype:
                raise InputError(
                    f"{argument}[{k!r}]",
                    "named inputs must share batch size, device and dtype; got "
                    f"{tuple(v.shape)} {v.dtype} {v.device} vs {tuple(first.shape)} {first.dtype} {first.device}",
                )
        return InputSet(tensors, named=True)
    raise InputError(argument, f"expected a tensor or a mapping of named tensors, got {type(inputs).__name__}")


def gather_kwargs(forward_kwargs: Mapping[str, Any] | None, batch: int, example: torch.Tensor) -> dict[str, Any]:
    """Forward kwargs for rows of examples ``example``: tensors whose first dim is the batch are indexed."""
    if not forward_kwargs:
        return {}
    out: dict[str, Any] = {}
    for key, value in forward_kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
            out[key] = value[example.to(value.device)]
        else:
            out[key] = value
    return out


def call_model(
    model: Callable[..., Any],
    inputs: InputSet,
    tensors: Mapping[str, torch.Tensor],
    kwargs: Mapping[str, Any],
) -> torch.Tensor:
    """Run the model on rows in ``tensors`` and return its output tensor."""
    output = model(**tensors, **kwargs) if inputs.named else model(tensors[TENSOR_KEY], **kwargs)
    if not isinstance(output, torch.Tensor):
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
        raise ModelError(
            "model", f"expected the model to return a tensor (or an object with .logits), got {type(output).__name__}"
        )
    if output.dim() == 0:
        raise ModelError("model", "returned a 0-d tensor; expected one row per example (batch dim first)")
    return output
