"""DeepLIFT with the rescale rule (Shrikumar et al. 2017).

Each example and its reference go through the model in one pass (rows ``[inputs; references]``).
Linear layers keep their gradient; every elementwise activation module gets the multiplier
``Δy/Δx`` (difference of its output over difference of its input between example and
reference) instead of its derivative, falling back to the derivative where ``|Δx| < eps``.
Then ``attribution = (x - reference) ⊙ multiplier`` sums to ``f(x) - f(reference)`` exactly
for networks of linear layers and these activations ("summation-to-delta"); ``delta`` reports
how far a given model is from that (max-pooling, softmax, attention and functional activations
keep their gradients).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_positive
from ..errors import ModelError
from ..inputs import Inputs, as_input_set
from ..result import Attribution
from ..targets import TargetSpec
from .activation_hooks import replace_activations
from .gradient_support import flat, prepare, require_module, result

RESCALE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
)
"""Elementwise activations that get the rescale multiplier."""

DEFAULT_EPS = 1e-10


def _derivative(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Elementwise derivative of an activation module at ``x`` (its ``forward`` bypasses hooks)."""
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        # A clone, because in-place activations may not overwrite a leaf that requires grad.
        y = module.forward(leaf.clone())
        (grad,) = torch.autograd.grad(y.sum(), leaf)
    return grad


def _rescale_rule(eps: float) -> Any:
    def rule(module: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        if x.dim() == 0 or rows % 2 or output.shape != x.shape:
            raise ModelError(
                "model",
                f"DeepLIFT needs batch-first, shape-preserving activations; {type(module).__name__} saw "
                f"input {tuple(x.shape)} and output {tuple(output.shape)}",
            )
        half = rows // 2
        xd, yd = x.detach(), output.detach()
        dx = xd[:half] - xd[half:]
        dy = yd[:half] - yd[half:]
        small = dx.abs() < eps
        multiplier = dy / torch.where(small, torch.ones_like(dx), dx)
        if bool(small.any()):
            multiplier = torch.where(small, _derivative(module, xd[:half]), multiplier)
        multiplier = torch.cat([multiplier, multiplier])
        # Same values as the output; the gradient w.r.t. the input is the multiplier.
        return yd + multiplier * (x - xd)

    return rule


def deeplift(
    model: nn.Module,
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    baseline: BaselineSpec = "zeros",
    eps: float = DEFAULT_EPS,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Attribution:
    """DeepLIFT (rescale rule): contributions of ``x - baseline`` through activation multipliers.

    Args:
        baseline: the reference input, any baseline spec accepted by ``integrated_gradients``.
        eps: below this ``|Δx|`` an activation uses its derivative instead of ``Δy/Δx``.
        batch_size: examples per forward/backward pass (each pass runs examples and references).
        memory_budget, forward_kwargs: as for ``integrated_gradients``.
        seed: seed of the "uniform" baseline.
    """
    module = require_module(model, "deeplift")
    check_positive("eps", eps)
    input_set = as_input_set(inputs)
    baselines = make_baselines(input_set, baseline, seed=seed)
    setup = prepare(
        model,
        input_set,
        target,
        batch_size=batch_size,
        memory_budget=memory_budget,
        forward_kwargs=forward_kwargs,
        points_per_pass=2,
    )
    engine = setup.engine
    score_baseline = engine.scores(baselines, setup.example)
    diff = input_set.flat() - flat(baselines)
    values = torch.zeros_like(diff)
    with replace_activations(module, RESCALE_MODULES, _rescale_rule(eps)) as count:
        for start in range(0, input_set.batch, engine.chunk):
            ex = setup.example[start : start + engine.chunk]
            points = {n: torch.cat([x[ex], baselines[n][ex]]) for n, x in input_set.tensors.items()}
            block = engine.gradients(points, torch.cat([ex, ex]))
            values[ex] = flat(block.grads)[: ex.shape[0]] * diff[ex]
    params = {"eps": eps, "rescaled_modules": count}
    return result(
        setup,
        values,
        method="deeplift",
        params=params,
        steps=1,
        baseline=baselines,
        score_baseline=score_baseline,
        path=True,
    )
