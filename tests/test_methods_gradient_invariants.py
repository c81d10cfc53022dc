"""Invariants of every gradient method in the registry: shapes, batching, chunking, state, dtype."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import integrand
from tests.conftest import ModelState
from tests.models import TwoInputs, cnn

F64 = torch.float64
REFS = torch.rand(5, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0))

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "saliency": ("saliency", {}),
    "saliency_abs": ("saliency", {"absolute": True}),
    "input_x_gradient": ("input_x_gradient", {}),
    "smoothgrad": ("smoothgrad", {"samples": 4, "stdev": 0.1, "seed": 0}),
    "smoothgrad_sq": ("smoothgrad_sq", {"samples": 4, "stdev": 0.1, "seed": 0}),
    "vargrad": ("vargrad", {"samples": 4, "stdev": 0.1, "seed": 0}),
    "smoothgrad_ixg": ("smoothgrad", {"samples": 3, "base": "input_x_gradient", "seed": 1}),
    "guided_backprop": ("guided_backprop", {}),
    "deconvnet": ("deconvnet", {}),
    "deeplift": ("deeplift", {"baseline": 0.1}),
    "gradient_shap": ("gradient_shap", {"baselines": REFS, "samples": 4, "stdev": 0.1, "seed": 0}),
    "expected_gradients": ("expected_gradients", {"baselines": REFS, "samples": 4, "seed": 0}),
    "guided_ig": ("guided_ig", {"steps": 8}),
    "blur_ig": ("blur_ig", {"steps": 8, "max_sigma": 4.0}),
    "idgi": ("idgi", {"steps": 6}),
    "idgi_guided": ("idgi", {"path": "guided_ig", "steps": 6}),
    "idgi_blur": ("idgi", {"path": "blur_ig", "steps": 6, "max_sigma": 4.0}),
}
STOCHASTIC = {"smoothgrad", "smoothgrad_sq", "vargrad", "smoothgrad_ixg", "gradient_shap", "expected_gradients"}
PATH = {"deeplift", "gradient_shap", "expected_gradients", "guided_ig", "blur_ig", "idgi", "idgi_guided", "idgi_blur"}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return cnn(act=nn.ReLU).double()


def _x() -> torch.Tensor:
    return torch.rand(3, 1, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))


def _run(case: str, model: Any, x: Any, target: Any = 2, **extra: Any) -> integrand.Attribution:
    name, params = CASES[case]
    return integrand.attribute(model, x, target, method=name, **{**params, **extra})


def test_every_gradient_method_is_registered() -> None:
    names = {info.name for info in integrand.list_methods()}
    assert {name for name, _ in CASES.values()} <= names
    info = {i.name: i for i in integrand.list_methods()}
    assert info["smoothgrad"].params["seed"] is None and "stdev" in info["smoothgrad"].params
    assert info["guided_ig"].summary.startswith("Guided IG")


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_and_result_fields(case: str) -> None:
    model, x = _model(), _x()
    result = _run(case, model, x)
    assert isinstance(result.values, torch.Tensor) and result.values.shape == x.shape
    assert result.values.dtype == x.dtype and torch.isfinite(result.values).all()
    assert result.method == CASES[case][0] and result.batch == 3
    assert (result.delta is not None) == (case in PATH)
    if case in PATH:
        assert result.score_baseline is not None and result.score_baseline.shape == (3,)
    if case in STOCHASTIC:
        assert result.params["seed"] == CASES[case][1]["seed"]


@pytest.mark.parametrize("case", sorted(c for c in CASES if c != "blur_ig" and c != "idgi_blur"))
def test_named_inputs_give_named_values(case: str) -> None:
    torch.manual_seed(2)
    model = TwoInputs().double()
    inputs = {"image": torch.rand(2, 1, 6, 6, dtype=F64), "vector": torch.randn(2, 4, dtype=F64)}
    extra: dict[str, Any] = {}
    if "baselines" in CASES[case][1]:
        extra["baselines"] = {"image": torch.rand(3, 1, 6, 6, dtype=F64), "vector": torch.randn(3, 4, dtype=F64)}
    if case == "deeplift":
        extra["baseline"] = {"image": 0.1, "vector": 0.0}
    result = _run(case, model, inputs, 1, **extra)
    assert isinstance(result.values, dict) and set(result.values) == {"image", "vector"}
    for name, value in result.values.items():
        assert value.shape == inputs[name].shape


@pytest.mark.parametrize("case", sorted(set(CASES) - STOCHASTIC))
def test_batch_of_one_equals_batched(case: str) -> None:
    # Stochastic methods draw per position in the batch, so they agree only in distribution.
    model, x = _model(), _x()
    batched = _run(case, model, x, torch.tensor([2, 0, 4])).values
    for e, t in enumerate([2, 0, 4]):
        single = _run(case, model, x[e : e + 1], t).values
        assert torch.allclose(single[0], batched[e], atol=1e-12, rtol=1e-9), e


@pytest.mark.parametrize("case", sorted(CASES))
def test_chunked_equals_unchunked(case: str) -> None:
    model, x = _model(), _x()
    whole = _run(case, model, x, batch_size=1000)
    chunked = _run(case, model, x, batch_size=1)
    odd = _run(case, model, x, batch_size=5)
    assert torch.allclose(whole.values, chunked.values, atol=1e-12, rtol=1e-9)
    assert torch.allclose(whole.values, odd.values, atol=1e-12, rtol=1e-9)


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_state_is_unchanged(case: str, state_guard: type[ModelState]) -> None:
    model, x = _model(), _x()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    model[0].weight.grad = torch.ones_like(model[0].weight)
    model.train()
    model.eval()
    guard = state_guard(model)
    _run(case, model, x)
    guard.assert_unchanged()


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_close_to_float64(case: str) -> None:
    model, x = _model(), _x()
    params = CASES[case][1]
    extra = {"baselines": REFS.float()} if "baselines" in params else {}
    high = _run(case, model, x).values
    low = _run(case, model.float(), x.float(), **extra).values
    assert low.dtype == torch.float32
    scale = high.abs().max().item()
    assert (low.double() - high).abs().max().item() <= 1e-4 * scale + 1e-6


class _Fails(nn.Module):
    """A ReLU network whose second gradient-recording forward fails (the first is the probe)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double()
        self.recorded = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if torch.is_grad_enabled():
            self.recorded += 1
            if self.recorded >= 2:
                raise RuntimeError("boom")
        return out


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "deeplift"])
def test_hooks_are_removed_when_the_model_raises(method: str, state_guard: type[ModelState]) -> None:
    model = _Fails()
    guard = state_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        integrand.attribute(model, torch.randn(2, 4, dtype=F64), 0, method=method)
    assert model.recorded == 2
    guard.assert_unchanged()
