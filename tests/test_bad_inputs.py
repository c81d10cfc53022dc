"""A catalogue of bad inputs to the Python API: each is one case with its error type and the argument it names."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError, IntegrandError, ModelError
from integrand.methods import REGISTRY
from integrand.quadrature import MAX_STEPS, make_rule
from tests.conftest import ModelState
from tests.models import TwoInputs, mlp

F64 = torch.float64


class Scaled(nn.Module):
    """A model with a keyword argument (``scale``) next to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp().double()

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.net(x) * scale


class Scalar(nn.Module):
    """A model that wrongly returns one number for the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp().double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).sum()


def _x() -> torch.Tensor:
    return torch.rand(2, 6, dtype=F64, generator=torch.Generator().manual_seed(0))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return mlp().double().eval()


def _two() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.rand(2, 1, 6, 6, dtype=F64, generator=g), "vector": torch.rand(2, 4, dtype=F64, generator=g)}


def _two_model() -> nn.Module:
    torch.manual_seed(0)
    return TwoInputs().double().eval()


def _ig(target: Any = 0, **kw: Any) -> Callable[[], Any]:
    return lambda: integrand.integrated_gradients(_model(), _x(), target, **kw)


def _attr(method: str = "integrated_gradients", model: Any = None, **kw: Any) -> Callable[[], Any]:
    return lambda: integrand.attribute(_model() if model is None else model, _x(), 0, method=method, **kw)


def _patch(component: str) -> Callable[[], Any]:
    from integrand.circuits import logit_diff, patching
    from tests.reference.circuit_models import tiny_gpt2, token_pairs

    return lambda: patching(tiny_gpt2(), *token_pairs(), logit_diff([3], [6]), components=[component])


CASES: dict[str, tuple[Callable[[], Any], type[IntegrandError], str, str]] = {
    # misspelt or misplaced method parameters
    "misspelt_steps": (_attr(stepz=10), InputError, "stepz", "did you mean 'steps'"),
    "misspelt_baseline": (_attr(basline=0.0), InputError, "basline", "did you mean 'baseline'"),
    "misspelt_saliency_param": (_attr("saliency", absolut=True), InputError, "absolut", "did you mean 'absolute'"),
    "steps_on_saliency": (_attr("saliency", steps=10), InputError, "steps", "not a parameter"),
    "misspelt_smoothgrad_samples": (
        _attr("smoothgrad", sample=3),
        InputError,
        "sample",
        "did you mean 'samples'",
    ),
    "layer_side_without_layer": (_attr("saliency", layer_side="input"), InputError, "layer_side", "layer="),
    "reuse_without_layer": (_attr("occlusion", reuse=False), InputError, "reuse", "layer="),
    "misspelt_steps_direct_ig": (_ig(stepz=3), InputError, "stepz", "did you mean 'steps'"),
    "misspelt_tol_direct_layer_ig": (_ig(layer="1", tl=1e-2), InputError, "tl", "did you mean 'tol'"),
    "misspelt_rules_direct_lrp": (
        lambda: integrand.methods.lrp(_model(), _x(), 0, ruls=None),
        InputError,
        "ruls",
        "did you mean 'rules'",
    ),
    "misspelt_samples_direct_smoothgrad": (
        lambda: integrand.smoothgrad(_model(), _x(), 0, sample=2),
        InputError,
        "sample",
        "did you mean 'samples'",
    ),
    "method_none": (_attr(None), InputError, "method", "method name"),  # type: ignore[arg-type]
    "method_int": (_attr(3), InputError, "method", "method name"),  # type: ignore[arg-type]
    # the model itself
    "model_none_ig": (lambda: integrand.integrated_gradients(None, _x(), 0), InputError, "model", "callable"),
    "model_none_attribute": (lambda: integrand.attribute(None, _x(), 0), InputError, "model", "callable"),
    "model_none_saliency": (lambda: integrand.saliency(None, _x(), 0), InputError, "model", "callable"),
    "model_none_occlusion": (lambda: integrand.occlusion(None, _x(), 0), InputError, "model", "callable"),
    "model_string": (lambda: integrand.integrated_gradients("mlp", _x(), 0), InputError, "model", "callable"),
    "scalar_output_ig": (
        lambda: integrand.integrated_gradients(Scalar().eval(), _x()),
        ModelError,
        "model",
        "0-d",
    ),
    "scalar_output_saliency": (lambda: integrand.saliency(Scalar().eval(), _x()), ModelError, "model", "0-d"),
    "scalar_output_occlusion": (
        lambda: integrand.occlusion(Scalar().eval(), _x(), batch_size=4),
        ModelError,
        "model",
        "0-d",
    ),
    # named inputs
    "named_missing_key": (
        lambda: integrand.integrated_gradients(_two_model(), {"image": _two()["image"]}, 0, steps=4),
        InputError,
        "inputs",
        "vector",
    ),
    "named_extra_key": (
        lambda: integrand.integrated_gradients(_two_model(), {**_two(), "mask": _x()}, 0, steps=4),
        InputError,
        "inputs['mask']",
        "not a parameter",
    ),
    "named_misspelt_key": (
        lambda: integrand.saliency(_two_model(), {"image": _two()["image"], "vectr": _two()["vector"]}, 0),
        InputError,
        "inputs['vectr']",
        "did you mean 'vector'",
    ),
    "forward_kwargs_clash_with_input": (
        lambda: integrand.integrated_gradients(_two_model(), _two(), 0, forward_kwargs={"vector": 1}),
        InputError,
        "forward_kwargs",
        "named inputs",
    ),
    # forward_kwargs
    "forward_kwargs_unknown": (
        lambda: integrand.integrated_gradients(Scaled().eval(), _x(), 0, forward_kwargs={"scal": 2.0}),
        InputError,
        "forward_kwargs['scal']",
        "did you mean 'scale'",
    ),
    "forward_kwargs_list": (
        lambda: integrand.integrated_gradients(Scaled().eval(), _x(), 0, forward_kwargs=[("scale", 2.0)]),
        InputError,
        "forward_kwargs",
        "mapping",
    ),
    "forward_kwargs_list_layer": (
        lambda: integrand.integrated_gradients(_model(), _x(), 0, layer="1", forward_kwargs=["scale"]),
        InputError,
        "forward_kwargs",
        "mapping",
    ),
    "forward_kwargs_unknown_deeplift": (
        lambda: integrand.methods.deeplift(_model(), _x(), 0, forward_kwargs={"mask": 1}),
        InputError,
        "forward_kwargs['mask']",
        "not a parameter",
    ),
    "forward_kwargs_unknown_kernel_shap": (
        lambda: integrand.methods.kernel_shap(_model(), _x(), 0, n_samples=8, forward_kwargs={"mask": 1}),
        InputError,
        "forward_kwargs['mask']",
        "not a parameter",
    ),
    # neuron=
    "neuron_zero_step": (
        _ig(None, layer="1", neuron=(slice(0, 4, 0),)),
        InputError,
        "neuron",
        "step 0",
    ),
    # dtypes
    "float32_input_float64_model": (
        lambda: integrand.integrated_gradients(_model(), _x().float(), 0),
        InputError,
        "inputs",
        "float32",
    ),
    "float64_input_float32_model": (
        lambda: integrand.integrated_gradients(mlp().eval(), _x(), 0),
        InputError,
        "inputs",
        "float64",
    ),
    "float64_input_float32_model_saliency": (
        lambda: integrand.saliency(mlp().eval(), _x(), 0),
        InputError,
        "inputs",
        "float64",
    ),
    "float64_input_float32_model_occlusion": (
        lambda: integrand.occlusion(mlp().eval(), _x(), 0, batch_size=4),
        InputError,
        "inputs",
        "float64",
    ),
    "float64_input_float32_model_neuron": (
        lambda: integrand.integrated_gradients(mlp().eval(), _x(), layer="1", neuron=0),
        InputError,
        "inputs",
        "float64",
    ),
    # circuit component names: layer numbers are ASCII digits ('²'.isdigit() is True but int('²') fails)
    "component_superscript_layer": (_patch("mlp.²"), InputError, "components", "unknown component 'mlp.²'"),
    "component_arabic_indic_layer": (_patch("head.0.\u0661"), InputError, "components", "unknown component"),
    # bounded work
    "steps_above_bound": (_ig(steps=MAX_STEPS + 1), InputError, "steps", "at most"),
    "steps_million": (_ig(steps=10**6), InputError, "steps", "at most"),
    "steps_above_bound_trapezoid": (_ig(steps=10**7, rule="trapezoid"), InputError, "steps", "at most"),
    "max_steps_above_bound": (_ig(tol=1e-3, max_steps=10**6), InputError, "max_steps", "100,000"),
    # train mode
    "train_dropout_ig": (
        lambda: integrand.integrated_gradients(nn.Sequential(mlp(), nn.Dropout(0.1)).double(), _x(), 0),
        ModelError,
        "model",
        "module '1' (Dropout) is in training mode",
    ),
    "train_dropout_deeplift": (
        lambda: integrand.methods.deeplift(nn.Sequential(mlp(), nn.Dropout(0.1)).double(), _x(), 0),
        ModelError,
        "model",
        "training mode",
    ),
    "train_dropout_layer_ig": (
        lambda: integrand.integrated_gradients(nn.Sequential(mlp(), nn.Dropout(0.1)).double(), _x(), 0, layer="0"),
        ModelError,
        "model",
        "training mode",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_typed_error_naming_the_argument(case: str) -> None:
    call, kind, argument, fragment = CASES[case]
    with pytest.raises(kind) as info:
        call()
    assert isinstance(info.value, IntegrandError)
    assert getattr(info.value, "argument", None) == argument, str(info.value)
    assert fragment in str(info.value)


def _batchnorm_model() -> nn.Module:
    """A model whose BatchNorm is in training mode (everything else in eval mode)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double().eval()
    model[1].train()
    return model


def _gradient_shap_params() -> dict[str, Any]:
    return {"baselines": torch.zeros(3, 6, dtype=F64)}


EXTRA: dict[str, Callable[[], dict[str, Any]]] = {
    "gradient_shap": _gradient_shap_params,
    "expected_gradients": _gradient_shap_params,
    "lime": lambda: {"n_samples": 8},
    "c_lime": lambda: {"n_samples": 8},
    "kernel_shap": lambda: {"n_samples": 8},
}


@pytest.mark.parametrize("method", REGISTRY.names())
def test_every_method_refuses_train_mode_and_leaves_running_stats(method: str) -> None:
    model = _batchnorm_model()
    state = ModelState(model)
    with pytest.raises(ModelError, match=r"module '1' \(BatchNorm1d\) is in training mode") as info:
        integrand.attribute(model, _x(), 0, method=method, **EXTRA.get(method, dict)())
    assert info.value.argument == "model"
    state.assert_unchanged()


DIRECT: dict[str, Callable[[nn.Module], Any]] = {
    "integrated_gradients": lambda m: integrand.integrated_gradients(m, _x(), 0, steps=4),
    "layer_ig": lambda m: integrand.integrated_gradients(m, _x(), 0, layer="2", steps=4),
    "neuron_ig": lambda m: integrand.integrated_gradients(m, _x(), layer="2", neuron=0, steps=4),
    "at_layer_saliency": lambda m: integrand.attribute(m, _x(), 0, method="saliency", layer="2"),
    "deeplift": lambda m: integrand.methods.deeplift(m, _x(), 0),
    "guided_backprop": lambda m: integrand.methods.guided_backprop(m, _x(), 0),
    "smoothgrad": lambda m: integrand.smoothgrad(m, _x(), 0, samples=2),
    "occlusion_fixed_chunk": lambda m: integrand.occlusion(m, _x(), 0, batch_size=4),
    "ensemble": lambda m: integrand.uncertainty.ensemble([m, m], _x(), 0, steps=4),
}


@pytest.mark.parametrize("entry", sorted(DIRECT))
def test_direct_entry_points_refuse_train_mode_without_touching_buffers(entry: str) -> None:
    model = _batchnorm_model()
    state = ModelState(model)
    with pytest.raises(ModelError, match="training mode"):
        DIRECT[entry](model)
    state.assert_unchanged()


@pytest.mark.parametrize("entry", sorted(DIRECT))
def test_eval_mode_entry_points_leave_running_stats(entry: str) -> None:
    model = _batchnorm_model().eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
    state = ModelState(model)
    DIRECT[entry](model)
    state.assert_unchanged()


def test_train_mode_without_mode_dependent_modules_is_accepted() -> None:
    """Linear, Tanh and containers compute the same in both modes: their flag alone is not refused."""
    model = mlp().double()
    assert model.training
    got = integrand.integrated_gradients(model, _x(), 0, steps=8)
    assert got.values.shape == (2, 6) and model.training


def test_two_identical_calls_agree() -> None:
    model = nn.Sequential(mlp(), nn.Dropout(0.5)).double().eval()
    first = integrand.integrated_gradients(model, _x(), 0, steps=8)
    second = integrand.integrated_gradients(model, _x(), 0, steps=8)
    assert torch.equal(first.values, second.values)


def test_mc_dropout_still_opts_in() -> None:
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double().eval()
    got = integrand.uncertainty.mc_dropout(model, _x(), 0, samples=2, steps=4)
    assert len(got.members) == 2 and not any(m.training for m in model.modules())


def test_gauss_legendre_twenty_thousand_nodes_is_fast() -> None:
    start = time.perf_counter()
    rule = make_rule("gauss-legendre", 20_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, elapsed
    assert rule.steps == 20_000 and abs(sum(rule.weights) - 1.0) < 1e-12
    assert all(0.0 < a < b < 1.0 for a, b in zip(rule.nodes, rule.nodes[1:]))
    # exact on a polynomial of high degree: ∫ t^999 dt = 1/1000
    assert rule.integrate(lambda t: t**999) == pytest.approx(1e-3, rel=1e-12)


def test_gauss_legendre_matches_numpy_where_numpy_is_accurate() -> None:
    import numpy as np

    for n in (1, 2, 3, 7, 50, 128):
        rule = make_rule("gauss-legendre", n)
        nodes, weights = np.polynomial.legendre.leggauss(n)
        np.testing.assert_allclose(rule.nodes, (nodes + 1) / 2, rtol=0, atol=1e-15)
        np.testing.assert_allclose(rule.weights, weights / 2, rtol=1e-10, atol=0)


def test_generation_and_steering_refuse_train_mode_without_touching_the_model() -> None:
    from integrand.generation import GenerationExplainer
    from integrand.steering import fit
    from tests.reference.generation_oracle import tiny_lm
    from tests.test_steering_models import tiny_gpt2, word_tokenizer

    model, tok = tiny_lm("gpt2")
    model.train()
    state = ModelState(model)
    with pytest.raises(ModelError, match="training mode") as info:
        GenerationExplainer(model, tok)("the cat sat on", max_new_tokens=2, method="ig", steps=4)
    assert info.value.argument == "model"
    state.assert_unchanged()

    tok = word_tokenizer(add_bos=False)
    lm = tiny_gpt2(len(tok)).train()
    state = ModelState(lm)
    with pytest.raises(ModelError, match="training mode"):
        fit(lm, tok, [("the capital of france is", "paris", "rome")], layers=[0], k=1, steps=4)
    state.assert_unchanged()
