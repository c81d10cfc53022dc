"""Targets turn a model output into one score per example.

A target is any callable ``output -> Tensor[batch]``. The constructors here cover the
usual cases; ``resolve_target`` turns the convenience forms (int, LongTensor, None) into one.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

from .errors import InputError, ModelError

Target = Callable[[torch.Tensor], torch.Tensor]
TargetSpec = Union[int, torch.Tensor, Target, None]


def _check_2d(output: torch.Tensor, what: str) -> None:
    if output.dim() != 2:
        raise ModelError("model", f"{what} needs a 2-D output [batch, classes], got shape {tuple(output.shape)}")


def _check_index(output: torch.Tensor, index: torch.Tensor) -> None:
    n = output.shape[1]
    if bool(((index < 0) | (index >= n)).any()):
        raise InputError("target", f"class index out of range for {n} classes: {index.tolist()}")


class _ClassScore:
    """Picks one column per example of a transformed output (logit, probability, log-probability)."""

    def __init__(self, index: int | torch.Tensor, transform: str) -> None:
        self.index = index
        self.transform = transform

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        _check_2d(output, f"target {self.transform}")
        index = torch.as_tensor(self.index, device=output.device).long()
        if index.dim() == 0:
            index = index.expand(output.shape[0])
        elif index.shape[0] != output.shape[0]:
            # Integration points arrive in blocks; the engine passes per-point indices itself.
            raise InputError("target", f"expected {output.shape[0]} class indices, got {index.shape[0]}")
        _check_index(output, index)
        if self.transform == "probability":
            output = output.softmax(dim=-1)
        elif self.transform == "log-probability":
            output = output.log_softmax(dim=-1)
        return output.gather(1, index[:, None])[:, 0]

    def select(self, example: torch.Tensor) -> _ClassScore:
        """The same target for integration points that belong to examples ``example``."""
        if isinstance(self.index, int):
            return self
        return _ClassScore(self.index.to(example.device)[example], self.transform)

    def __repr__(self) -> str:
        return f"{self.transform}({self.index if isinstance(self.index, int) else 'per-example'})"


def logit(index: int | torch.Tensor) -> Target:
    """The raw output column ``index`` (the default for an integer target)."""
    return _ClassScore(index, "logit")


def class_index(index: int | torch.Tensor) -> Target:
    """Alias of :func:`logit`: the output column of a class."""
    return logit(index)


def probability(index: int | torch.Tensor) -> Target:
    """Softmax probability of class ``index``."""
    return _ClassScore(index, "probability")


def log_probability(index: int | torch.Tensor) -> Target:
    """Log-softmax of class ``index``."""
    return _ClassScore(index, "log-probability")


def label(name: str, labels: Sequence[str], transform: str = "logit") -> Target:
    """The class called ``name`` in ``labels`` (e.g. a model's ``id2label`` values)."""
    if name not in labels:
        raise InputError("target", f"unknown label {name!r}; expected one of {list(labels)}")
    return _ClassScore(list(labels).index(name), transform)


class _Difference:
    def __init__(self, first: Target, second: Target) -> None:
        self.first = first
        self.second = second

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.first(output) - self.second(output)

    def select(self, example: torch.Tensor) -> _Difference:
        return _Difference(select(self.first, example), select(self.second, example))

    def __repr__(self) -> str:
        return f"difference({self.first!r}, {self.second!r})"


def difference(preferred: int | torch.Tensor, other: int | torch.Tensor, transform: str = "logit") -> Target:
    """Contrastive score: class ``preferred`` minus class ``other`` (logits by default)."""
    return _Difference(_ClassScore(preferred, transform), _ClassScore(other, transform))


def identity(output: torch.Tensor) -> torch.Tensor:
    """The output itself, for models that return one score per example."""
    if output.dim() != 1:
        raise ModelError("model", f"target=None with a {output.dim()}-D output; pass a target")
    return output


def resolve_target(target: TargetSpec, output_at_input: torch.Tensor) -> Target:
    """Turn a target spec into a callable, checking it against the output at the input."""
    batch = output_at_input.shape[0]
    if target is None:
        if output_at_input.dim() == 1:
            return identity
        _check_2d(output_at_input, "target=None")
        return logit(output_at_input.argmax(dim=1))
    if isinstance(target, bool):
        raise InputError("target", "expected an int, a LongTensor, a callable or None, got a bool")
    if isinstance(target, int):
        _check_2d(output_at_input, "an integer target")
        index = torch.full((batch,), target, dtype=torch.long, device=output_at_input.device)
        _check_index(output_at_input, index)
        return logit(target)
    if isinstance(target, torch.Tensor):
        if target.dtype not in (torch.int64, torch.int32) or target.dim() != 1 or target.shape[0] != batch:
            raise InputError(
                "target", f"expected a LongTensor of shape [{batch}], got {target.dtype} {tuple(target.shape)}"
            )
        _check_2d(output_at_input, "a tensor target")
        index = target.to(output_at_input.device).long()
        _check_index(output_at_input, index)
        return logit(index)
    if callable(target):
        return target
    raise InputError("target", f"expected an int, a LongTensor, a callable or None, got {type(target).__name__}")


def select(target: Target, example: torch.Tensor) -> Target:
    """The target restricted to rows that belong to examples ``example``.

    Built-in targets carry per-example class indices and know how to follow the rows;
    a plain callable must score each row of the output on its own.
    """
    chooser = getattr(target, "select", None)
    return chooser(example) if callable(chooser) else target
