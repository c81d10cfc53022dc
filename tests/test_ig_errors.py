"""Bad input raises integrand errors naming the argument; the model is left exactly as it was."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

import integrand
from integrand import InputError, IntegrandError, ModelError

from .models import mlp

D = torch.float64


class SometimesNaN(torch.nn.Module):
    """Finite at the input and the baseline, NaN at interior points of the path."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        interior = (x.abs().sum(dim=1) > 1e-9) & ((x - 1).abs().sum(dim=1) > 1e-9)
        return torch.where(interior[:, None], out * float("nan"), out)


CASES: list[tuple[str, Callable[[torch.nn.Module, torch.Tensor], Any], str, type[Exception]]] = [
    (
        "baseline shape",
        lambda m, x: integrand.integrated_gradients(m, x, baseline=torch.zeros(3, 7, dtype=D)),
        "baseline",
        InputError,
    ),
    ("integer inputs", lambda m, x: integrand.integrated_gradients(m, x.long()), "inputs", InputError),
    ("target range", lambda m, x: integrand.integrated_gradients(m, x, target=3), "target", InputError),
    ("target negative", lambda m, x: integrand.integrated_gradients(m, x, target=-1), "target", InputError),
    (
        "target tensor shape",
        lambda m, x: integrand.integrated_gradients(m, x, target=torch.tensor([0, 1])),
        "target",
        InputError,
    ),
    (
        "target callable shape",
        lambda m, x: integrand.integrated_gradients(m, x, target=lambda o: o),
        "target",
        InputError,
    ),
    ("nan input", lambda m, x: integrand.integrated_gradients(m, x.clone().fill_(float("nan"))), "inputs", InputError),
    ("inf baseline", lambda m, x: integrand.integrated_gradients(m, x, baseline=float("inf")), "baseline", InputError),
    ("steps zero", lambda m, x: integrand.integrated_gradients(m, x, steps=0), "steps", InputError),
    ("unknown rule", lambda m, x: integrand.integrated_gradients(m, x, rule="simpson"), "rule", InputError),
    ("tol zero", lambda m, x: integrand.integrated_gradients(m, x, tol=0.0), "tol", InputError),
    ("tol negative", lambda m, x: integrand.integrated_gradients(m, x, tol=-1e-3), "tol", InputError),
    ("steps and tol", lambda m, x: integrand.integrated_gradients(m, x, steps=8, tol=1e-3), "steps", InputError),
    ("batch size", lambda m, x: integrand.integrated_gradients(m, x, batch_size=0), "batch_size", InputError),
    ("unknown baseline", lambda m, x: integrand.integrated_gradients(m, x, baseline="noise"), "baseline", InputError),
]


@pytest.mark.parametrize("name,call,argument,kind", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name: str, call: Callable[..., Any], argument: str, kind: type[Exception], state_guard: Any) -> None:
    model = mlp().to(D)
    model.train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model[2].bias.requires_grad_(False)
    guard = state_guard(model)
    with pytest.raises(kind) as err:
        call(model, torch.randn(4, 6, dtype=D))
    assert isinstance(err.value, IntegrandError)
    assert err.value.argument == argument  # type: ignore[attr-defined]
    assert argument in str(err.value)
    guard.assert_unchanged()


def test_nan_output_along_the_path(state_guard: Any) -> None:
    model = SometimesNaN()
    guard = state_guard(model)
    with pytest.raises(ModelError, match="NaN or Inf along the path") as err:
        integrand.integrated_gradients(model, torch.ones(2, 3, dtype=D), target=0, steps=4)
    assert err.value.argument == "model"
    guard.assert_unchanged()


def test_output_that_does_not_depend_on_the_input() -> None:
    const = torch.nn.Linear(6, 3).double()

    def model(x: torch.Tensor) -> torch.Tensor:
        return const(torch.ones_like(x).detach())

    with pytest.raises(ModelError, match="no gradient path"):
        integrand.integrated_gradients(model, torch.randn(2, 6, dtype=D), target=0)
    with pytest.raises(ModelError, match="no gradient path"):
        integrand.integrated_gradients(
            lambda x: torch.zeros(x.shape[0], 3, dtype=D), torch.randn(2, 6, dtype=D), target=0
        )


def test_model_returning_wrong_batch() -> None:
    with pytest.raises(ModelError) as err:
        integrand.integrated_gradients(lambda x: x.sum(dim=0), torch.randn(4, 6, dtype=D))
    assert err.value.argument == "model"


def test_state_unchanged_after_success(state_guard: Any) -> None:
    model = mlp().to(D)
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    model[2].weight.requires_grad_(False)
    model[1].train()
    guard = state_guard(model)
    integrand.integrated_gradients(model, torch.randn(3, 6, dtype=D), target=1, steps=8)
    integrand.integrated_gradients(model, torch.randn(3, 6, dtype=D), target=1, tol=1e-4)
    guard.assert_unchanged()
