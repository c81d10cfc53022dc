"""Guided backpropagation (Springenberg et al. 2015) and deconvnet (Zeiler & Fergus 2014).

Both are the input gradient with the backward pass of every ``torch.nn.ReLU`` module changed:
guided backprop passes only positive gradients through units that were active in the forward
pass; deconvnet passes positive gradients regardless of the forward activation. ReLUs applied
as functions (``F.relu``, ``torch.relu``) are invisible to module hooks and keep their usual
gradient; ``result.params["relu_modules"]`` says how many modules were changed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from ..inputs import Inputs
from ..result import Attribution
from ..targets import TargetSpec
from .activation_hooks import replace_activations
from .gradient_support import input_gradients, prepare, require_module, result


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = ctx.saved_tensors[0]
        return grad.clamp_min(0) * (out > 0).to(grad.dtype)


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


def _guided(module: torch.nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _GuidedReLU.apply(x)  # type: ignore[no-untyped-call]
    return out


def _deconv(module: torch.nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = _DeconvReLU.apply(x)  # type: ignore[no-untyped-call]
    return out


def _modified_relu(
    name: str,
    rule: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
) -> Attribution:
    module = require_module(model, name)
    setup = prepare(
        model, inputs, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    with replace_activations(module, (torch.nn.ReLU,), rule) as count:
        grads, _ = input_gradients(setup)
    return result(setup, grads, method=name, params={"relu_modules": count}, steps=1)


def guided_backprop(
    model: torch.nn.Module,
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Guided backpropagation: the input gradient with only positive signals through active ReLUs.

    Args:
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    return _modified_relu("guided_backprop", _guided, model, inputs, target, batch_size, memory_budget, forward_kwargs)


def deconvnet(
    model: torch.nn.Module,
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Deconvnet: the input gradient with every ReLU's backward replaced by a ReLU of the gradient.

    Args:
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    return _modified_relu("deconvnet", _deconv, model, inputs, target, batch_size, memory_budget, forward_kwargs)
