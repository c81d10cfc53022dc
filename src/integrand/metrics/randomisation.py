"""Model-randomisation sanity check (Adebayo et al. 2018): attributions must change with the weights.

Layers are re-initialised cumulatively from the top on a deep copy of the model (the caller's
model is never touched), and each step's attributions are compared with the original ones by
Spearman rank correlation, signed and of magnitudes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..inputs import Inputs, as_input_set, call_model
from ..protocol import NoCompleteness
from ..targets import TargetSpec, resolve_target
from ._common import MethodSpec, checked, explainer, flat_values, rank_correlation


@dataclass(frozen=True, repr=False)
class Randomisation(NoCompleteness):
    """``rank_correlation[i, b]``: example ``b``'s attributions after re-initialising ``layers[: i + 1]``
    versus the trained model's (``abs_rank_correlation``: the same for magnitudes).

    ``values`` is ``rank_correlation``; a sanity check has no completeness notion (``delta``,
    ``relative_error``, ``converged`` are ``None``).
    """

    method: str
    layers: tuple[str, ...]
    rank_correlation: torch.Tensor
    abs_rank_correlation: torch.Tensor

    AXES = ("layer", "example")

    @property
    def values(self) -> torch.Tensor:
        return self.rank_correlation

    @property
    def params(self) -> dict[str, Any]:
        return {"method": self.method, "layers": list(self.layers), "passed": self.passed()}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"layer": self.layers}

    def passed(self, threshold: float = 0.5) -> bool:
        """True when, all listed layers re-initialised, the mean |rank correlation| of magnitudes is < ``threshold``."""
        return bool(self.abs_rank_correlation[-1].abs().mean() < threshold)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "layers re-initialised": i + 1,
                "top layer": name,
                "rank corr": float(self.rank_correlation[i].mean()),
                "abs rank corr": float(self.abs_rank_correlation[i].mean()),
            }
            for i, name in enumerate(self.layers)
        ]


def _reinit(module: nn.Module, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in module.parameters(recurse=False):
            with torch.no_grad():
                p.normal_(0.0, 0.1)


def default_layers(model: nn.Module) -> list[str]:
    """Modules that own parameters, from the output side (last registered) to the input side."""
    names = [n for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def model_randomisation(
    model: nn.Module,
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    method: MethodSpec = "integrated_gradients",
    params: Mapping[str, Any] | None = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> Randomisation:
    """Cascading randomisation of ``layers`` (default: every parameterised module, top first).

    The target is fixed at the trained model's output (``None``: its argmax class), so each
    step explains the same class. ``params`` go to the method (fix ``seed`` for stochastic ones).
    """
    if not isinstance(model, nn.Module):
        raise InputError("model", "model randomisation needs an nn.Module (it re-initialises a copy's layers)")
    input_set = as_input_set(inputs)
    with torch.no_grad():
        output = call_model(model, input_set, input_set.tensors, {})
    resolve_target(target, output)
    if target is None and output.dim() == 2:
        target = output.argmax(dim=1)
    modules = dict(model.named_modules())
    chosen = list(default_layers(model) if layers is None else layers)
    unknown = [n for n in chosen if n not in modules or not n]
    if unknown or not chosen:
        raise InputError("layers", f"unknown or empty layer names {unknown}; choose from {default_layers(model)}")
    kwargs = dict(params or {})
    run = explainer(method)
    original = flat_values(checked(run(model, inputs, target, **kwargs)), input_set)
    shadow = copy.deepcopy(model)
    shadow_modules = dict(shadow.named_modules())
    signed, magnitude = [], []
    for i, name in enumerate(chosen):
        _reinit(shadow_modules[name], seed + i)
        values = flat_values(checked(run(shadow, inputs, target, **kwargs)), input_set)
        signed.append(rank_correlation(original, values))
        magnitude.append(rank_correlation(original.abs(), values.abs()))
    name = method if isinstance(method, str) else getattr(method, "__name__", repr(method))
    return Randomisation(name, tuple(chosen), torch.stack(signed), torch.stack(magnitude))
