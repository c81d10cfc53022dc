"""What Captum users reach for: local IG, several layers at once, every part of a tuple output,
callable neuron selectors; checked against Captum 0.9 where the semantics match (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import integrand
from integrand.errors import InputError
from integrand.methods import integrated_gradients
from integrand.methods.gradient_shap import expected_gradients, gradient_shap

from .models import TwoInputs, mlp

captum_attr = pytest.importorskip("captum.attr")
D = torch.float64


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


class Branches(nn.Module):
    """Two parallel branches feeding one head: ``left`` and ``right`` form a cut."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
        self.right = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid())
        self.head = nn.Linear(11, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(torch.cat([self.left(x), self.right(x)], dim=1)))


class Pair(nn.Module):
    """A layer whose output is a tuple of two tensors (and a non-tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        return torch.tanh(self.a(x)), torch.sigmoid(self.b(x)), None


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair()
        self.head = nn.Linear(9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, _ = self.pair(x)
        return self.head(torch.cat([u * 2.0, v], dim=1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ---------------------------------------------------------------- multiply_by_inputs=False


@pytest.mark.parametrize("named", [False, True])
def test_local_ig_matches_captum(named: bool) -> None:
    target = torch.tensor([0, 2, 1])
    if named:
        model = TwoInputs().to(D)
        image, vector = torch.randn(3, 1, 6, 6, dtype=D), torch.randn(3, 4, dtype=D)
        ours = integrated_gradients(
            model, {"image": image, "vector": vector}, target, steps=16, multiply_by_inputs=False
        )
        theirs = captum_attr.IntegratedGradients(model, multiply_by_inputs=False).attribute(
            (image, vector), target=target, n_steps=16
        )
        assert _rel(ours.values["image"], theirs[0]) <= 1e-7
        assert _rel(ours.values["vector"], theirs[1]) <= 1e-7
        return
    model = mlp().to(D)
    x, base = torch.randn(3, 6, dtype=D), torch.randn(3, 6, dtype=D) * 0.1
    ours = integrated_gradients(model, x, target, baseline=base, steps=16, multiply_by_inputs=False)
    theirs = captum_attr.IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, baselines=base, target=target, n_steps=16
    )
    assert _rel(ours.values, theirs) <= 1e-7
    # values are averaged gradients; completeness is still judged on their product with x - baseline
    full = integrated_gradients(model, x, target, baseline=base, steps=16)
    torch.testing.assert_close(ours.values * (x - base), full.values)
    torch.testing.assert_close(ours.delta, full.delta)
    assert ours.params["multiply_by_inputs"] is False


def test_local_layer_and_neuron_ig_match_captum() -> None:
    model = mlp(hidden=8).to(D)
    x = torch.randn(4, 6, dtype=D)
    target = torch.tensor([0, 1, 2, 0])
    ours = integrated_gradients(model, x, target, layer="1", input_baseline=0.0, steps=12, multiply_by_inputs=False)
    theirs = captum_attr.LayerIntegratedGradients(model, model[1], multiply_by_inputs=False).attribute(
        x, target=target, n_steps=12
    )
    assert _rel(ours.values, theirs) <= 1e-7
    neuron = integrated_gradients(model, x, layer="1", neuron=3, steps=12, multiply_by_inputs=False)
    theirs_n = captum_attr.NeuronIntegratedGradients(model, model[1], multiply_by_inputs=False).attribute(
        x, neuron_selector=3, n_steps=12
    )
    assert _rel(neuron.values, theirs_n) <= 1e-7


def test_local_ig_refuses_error_control() -> None:
    with pytest.raises(InputError) as info:
        integrated_gradients(mlp().to(D), torch.randn(2, 6, dtype=D), 0, tol=1e-3, multiply_by_inputs=False)
    assert info.value.argument == "multiply_by_inputs"
    with pytest.raises(InputError) as info:
        integrated_gradients(mlp().to(D), torch.randn(2, 6, dtype=D), 0, multiply_by_inputs=1)  # type: ignore[arg-type]
    assert info.value.argument == "multiply_by_inputs"


# ---------------------------------------------------------------- several layers in one call


def test_several_layers_match_captum_and_complete() -> None:
    model = Branches().to(D)
    x = torch.randn(4, 5, dtype=D)
    target = torch.tensor([0, 1, 2, 1])
    ours = integrated_gradients(model, x, target, layer=["left", "right"], input_baseline=0.0, steps=24)
    theirs = captum_attr.LayerIntegratedGradients(model, [model.left, model.right]).attribute(
        x, target=target, n_steps=24
    )
    assert set(ours.values) == {"left", "right"}
    assert _rel(ours.values["left"], theirs[0]) <= 1e-7
    assert _rel(ours.values["right"], theirs[1]) <= 1e-7
    # the two branches form a cut: both layers together account for f(x) - f(0)
    total = ours.values["left"].sum(dim=1) + ours.values["right"].sum(dim=1)
    with torch.no_grad():
        change = model(x)[torch.arange(4), target] - model(torch.zeros_like(x))[torch.arange(4), target]
    torch.testing.assert_close(total, change, rtol=1e-6, atol=1e-9)
    assert ours.params["tensors"] == ["left", "right"]
    assert bool(ours.converged.all())


def test_several_layers_activation_baselines_and_modules() -> None:
    model = Branches().to(D)
    x = torch.randn(3, 5, dtype=D)
    by_name = integrated_gradients(model, x, 0, layer=["left", "right"], baseline={"left": 0.0, "right": 0.5}, steps=8)
    by_module = integrated_gradients(
        model, x, 0, layer=(model.left, model.right), baseline={"left": 0.0, "right": 0.5}, steps=8
    )
    torch.testing.assert_close(by_name.values["left"], by_module.values["left"])
    torch.testing.assert_close(by_name.baseline["right"], torch.full((3, 4), 0.5, dtype=D))


def test_layers_that_feed_each_other_are_refused() -> None:
    model = mlp().to(D)
    with pytest.raises(InputError, match="computed from") as info:
        integrated_gradients(model, torch.randn(2, 6, dtype=D), 0, layer=["0", "2"], steps=4)
    assert info.value.argument == "layer"


@pytest.mark.parametrize(
    ("layer", "kwargs", "argument"),
    [
        ([], {}, "layer"),
        (["left", "left"], {}, "layer"),
        (["left", "right"], {"neuron": 0}, "neuron"),
        (["left", "right"], {"baseline": torch.zeros(1)}, "baseline"),
        (["left", "nope"], {}, "layer"),
    ],
)
def test_several_layers_bad_input(layer: list[str], kwargs: dict[str, object], argument: str) -> None:
    with pytest.raises(InputError) as info:
        integrated_gradients(Branches().to(D), torch.randn(2, 5, dtype=D), 0, layer=layer, steps=4, **kwargs)
    assert info.value.argument == argument


# ---------------------------------------------------------------- every part of a tuple output


def test_all_parts_skip_non_tensors_and_complete() -> None:
    model = TupleNet().to(D)
    x = torch.randn(3, 5, dtype=D)
    ours = integrated_gradients(model, x, 1, layer="pair", layer_output_index="all", input_baseline=0.0, steps=20)
    assert list(ours.values) == ["pair[0]", "pair[1]"]  # the None element is not a tensor: left alone
    # the whole output of the layer is a cut: its parts together account for f(x) - f(0)
    total = ours.values["pair[0]"].sum(dim=1) + ours.values["pair[1]"].sum(dim=1)
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(total, change, rtol=1e-6, atol=1e-9)


class PureTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 6)
        self.b = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.a(x)), torch.sigmoid(self.b(x))


class PureTupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = PureTuple()
        self.head = nn.Linear(9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.pair(x)
        return self.head(torch.tanh(torch.cat([u * 2.0, v], dim=1)))


def test_all_parts_match_captum_on_a_pure_tuple() -> None:
    model = PureTupleNet().to(D)
    x = torch.randn(3, 5, dtype=D)
    ours = integrated_gradients(model, x, 1, layer="pair", layer_output_index="all", input_baseline=0.0, steps=20)
    theirs = captum_attr.LayerIntegratedGradients(model, model.pair).attribute(x, target=1, n_steps=20)
    assert isinstance(theirs, tuple) and len(theirs) == 2
    assert _rel(ours.values["pair[0]"], theirs[0]) <= 1e-7
    assert _rel(ours.values["pair[1]"], theirs[1]) <= 1e-7


def test_all_on_a_plain_tensor_layer_is_that_tensor() -> None:
    model = mlp().to(D)
    x = torch.randn(2, 6, dtype=D)
    joint = integrated_gradients(model, x, 0, layer="1", layer_output_index="all", steps=8)
    single = integrated_gradients(model, x, 0, layer="1", steps=8)
    torch.testing.assert_close(joint.values["1"], single.values)


# ---------------------------------------------------------------- callable neuron selectors


def test_callable_neuron_matches_captum() -> None:
    model = mlp(hidden=8).to(D)
    x = torch.randn(4, 6, dtype=D)

    def pick(a: torch.Tensor) -> torch.Tensor:
        return a[:, 2] - 0.5 * a[:, 5]

    ours = integrated_gradients(model, x, layer="1", neuron=pick, steps=10)
    theirs = captum_attr.NeuronIntegratedGradients(model, model[1]).attribute(x, neuron_selector=pick, n_steps=10)
    assert _rel(ours.values, theirs) <= 1e-7


def test_batch_summed_neuron_selector_is_refused_with_the_fix() -> None:
    model = mlp(hidden=8).to(D)
    with pytest.raises(InputError, match="one score per example") as info:
        integrated_gradients(model, torch.randn(3, 6, dtype=D), layer="1", neuron=lambda a: a[:, 2].sum(), steps=4)
    assert info.value.argument == "neuron"
    with pytest.raises(InputError) as info:
        integrated_gradients(model, torch.randn(3, 6, dtype=D), layer="1", neuron=lambda a: a, steps=4)
    assert info.value.argument == "neuron"


# ---------------------------------------------------------------- reference-set methods need references


@pytest.mark.parametrize("method", [gradient_shap, expected_gradients])
def test_reference_methods_name_missing_baselines(method: object) -> None:
    with pytest.raises(InputError) as info:
        method(mlp().to(D), torch.randn(2, 6, dtype=D), 0)  # type: ignore[operator]
    assert info.value.argument == "baselines"
    with pytest.raises(InputError) as info:
        integrand.attribute(mlp().to(D), torch.randn(2, 6, dtype=D), 0, method=method.__name__)  # type: ignore[attr-defined]
    assert info.value.argument == "baselines"


def test_joint_layers_leave_the_model_as_it_was(state_guard: type) -> None:
    model = Branches().to(D)
    guard = state_guard(model)
    integrated_gradients(model, torch.randn(2, 5, dtype=D), 0, layer=["left", "right"], steps=4)
    with pytest.raises(InputError):
        integrated_gradients(model, torch.randn(2, 5, dtype=D), 0, layer=["left", "head"], steps=4)
    guard.assert_unchanged()
    assert all("forward" not in m.__dict__ for m in model.modules())
