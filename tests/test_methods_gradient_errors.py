"""Bad input to the gradient methods raises integrand errors naming the argument; seeds reproduce runs."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError, ModelError
from tests.models import mlp

F64 = torch.float64


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return mlp(act=nn.ReLU).double()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 6, dtype=F64, generator=torch.Generator().manual_seed(1))


def _refs() -> torch.Tensor:
    return torch.randn(4, 6, dtype=F64)


def test_unknown_method_lists_the_gradient_methods(model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(InputError, match="valid methods") as info:
        integrand.attribute(model, x, 0, method="smoothgrads")
    message = str(info.value)
    for name in ("smoothgrad", "vargrad", "guided_ig", "blur_ig", "idgi", "deeplift", "expected_gradients"):
        assert name in message
    assert "Did you mean smoothgrad" in message


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("smoothgrad", {"stdev": 0.0}, "stdev"),
    ("smoothgrad", {"stdev": -0.1}, "stdev"),
    ("smoothgrad_sq", {"stdev": float("nan")}, "stdev"),
    ("vargrad", {"stdev": float("inf")}, "stdev"),
    ("vargrad", {"samples": 0}, "samples"),
    ("smoothgrad", {"samples": 2.5}, "samples"),
    ("smoothgrad", {"base": "ig"}, "base"),
    ("smoothgrad", {"seed": -1}, "seed"),
    ("smoothgrad", {"seed": 1.5}, "seed"),
    ("vargrad", {"seed": True}, "seed"),
    ("saliency", {"absolute": 1}, "absolute"),
    ("deeplift", {"eps": 0.0}, "eps"),
    ("deeplift", {"baseline": "nope"}, "baseline"),
    ("gradient_shap", {"baselines": _refs(), "stdev": -1.0}, "stdev"),
    ("gradient_shap", {"baselines": torch.randn(4, 5, dtype=F64)}, "baselines"),
    ("gradient_shap", {"baselines": [[0.0] * 6]}, "baselines"),
    ("expected_gradients", {"baselines": torch.zeros(4, 6, dtype=torch.long)}, "baselines"),
    ("expected_gradients", {"baselines": torch.full((2, 6), float("nan"), dtype=F64)}, "baselines"),
    ("expected_gradients", {"baselines": {"input": _refs()}}, "baselines"),
    ("expected_gradients", {"baselines": _refs(), "samples": 0}, "samples"),
    ("guided_ig", {"steps": 0}, "steps"),
    ("guided_ig", {"fraction": 0.0}, "fraction"),
    ("guided_ig", {"fraction": 1.5}, "fraction"),
    ("guided_ig", {"max_dist": -0.1}, "max_dist"),
    ("blur_ig", {}, "inputs"),
    ("idgi", {"path": "straight"}, "path"),
    ("idgi", {"max_sigma": 3.0}, "max_sigma"),
    ("idgi", {"path": "blur_ig", "baseline": 0.0}, "baseline"),
    ("idgi", {"fraction": 0.5}, "fraction"),
    ("idgi", {"steps": 0}, "steps"),
]


@pytest.mark.parametrize(("method", "params", "argument"), BAD, ids=[f"{m}-{a}-{i}" for i, (m, _, a) in enumerate(BAD)])
def test_bad_parameters_name_the_argument(
    model: nn.Module, x: torch.Tensor, method: str, params: dict[str, Any], argument: str
) -> None:
    with pytest.raises(InputError) as info:
        integrand.attribute(model, x, 0, method=method, **params)
    assert info.value.argument == argument


def test_blur_ig_rejects_bad_sigma_and_rule() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    image = torch.rand(1, 1, 4, 4, dtype=F64)
    with pytest.raises(InputError) as info:
        integrand.methods.blur_ig(model, image, 0, max_sigma=0.0)
    assert info.value.argument == "max_sigma"
    with pytest.raises(InputError) as info:
        integrand.methods.blur_ig(model, image, 0, rule="simpson")
    assert info.value.argument == "rule"


def test_smoothgrad_default_noise_needs_a_non_constant_input(model: nn.Module) -> None:
    x = torch.randn(2, 6, dtype=F64)
    x[1] = 0.5
    with pytest.raises(InputError, match=r"examples \[1\] are constant") as info:
        integrand.smoothgrad(model, x, 0, seed=0)
    assert info.value.argument == "stdev"
    # The default width is 15% of each example's range.
    result = integrand.smoothgrad(model, x[:1], 0, seed=0, samples=2)
    assert result.params["stdev"] == pytest.approx([0.15 * float(x[0].max() - x[0].min())])


def test_modified_backward_methods_need_a_module(x: torch.Tensor) -> None:
    def fn(z: torch.Tensor) -> torch.Tensor:
        return z.sum(dim=1)

    for method in (integrand.methods.guided_backprop, integrand.methods.deconvnet, integrand.methods.deeplift):
        with pytest.raises(InputError) as info:
            method(fn, x)  # type: ignore[arg-type]
        assert info.value.argument == "model"


def test_deeplift_rejects_activations_without_a_batch_dim_first() -> None:
    class Transposed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.act(z.T).T.sum(dim=1)

    with pytest.raises(ModelError, match="batch-first"):
        integrand.methods.deeplift(Transposed(), torch.randn(2, 3, dtype=F64))


def test_required_reference_set(model: nn.Module, x: torch.Tensor) -> None:
    with pytest.raises(InputError, match="^baselines: expected_gradients needs reference examples"):
        integrand.methods.expected_gradients(model, x, 0)


STOCHASTIC: list[tuple[Callable[..., integrand.Attribution], dict[str, Any]]] = [
    (integrand.smoothgrad, {"stdev": 0.3, "samples": 5}),
    (integrand.methods.smoothgrad_sq, {"stdev": 0.3, "samples": 5}),
    (integrand.methods.vargrad, {"samples": 5}),
    (integrand.methods.gradient_shap, {"baselines": _refs(), "samples": 5, "stdev": 0.2}),
    (integrand.methods.expected_gradients, {"baselines": _refs(), "samples": 5}),
]


@pytest.mark.parametrize(("fn", "params"), STOCHASTIC, ids=[f.__name__ for f, _ in STOCHASTIC])
def test_seeded_runs_are_bit_identical(model: nn.Module, x: torch.Tensor, fn: Any, params: dict[str, Any]) -> None:
    first = fn(model, x, 1, seed=123, **params)
    torch.manual_seed(999)  # the global generator must not matter once a seed is given
    second = fn(model, x, 1, seed=123, **params)
    assert torch.equal(first.values, second.values)
    other = fn(model, x, 1, seed=124, **params)
    assert not torch.equal(first.values, other.values)


@pytest.mark.parametrize(("fn", "params"), STOCHASTIC, ids=[f.__name__ for f, _ in STOCHASTIC])
def test_unseeded_runs_record_their_seed(model: nn.Module, x: torch.Tensor, fn: Any, params: dict[str, Any]) -> None:
    # Without a seed each call draws a fresh one from torch's global generator: calls differ, the
    # seed used is in params, and passing it back repeats the run exactly.
    first = fn(model, x, 1, **params)
    second = fn(model, x, 1, **params)
    assert first.params["seed"] != second.params["seed"]
    assert not torch.equal(first.values, second.values)
    again = fn(model, x, 1, seed=first.params["seed"], **params)
    assert torch.equal(first.values, again.values)
    # torch.manual_seed governs unseeded calls, as in Captum.
    torch.manual_seed(7)
    a = fn(model, x, 1, **params)
    torch.manual_seed(7)
    b = fn(model, x, 1, **params)
    assert torch.equal(a.values, b.values) and a.params["seed"] == b.params["seed"]
