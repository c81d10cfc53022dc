"""Layer and neuron IG: agreement with Captum (float64), element selection, bad input, model state."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import integrand
from integrand.errors import InputError

from .models import cnn
from .test_layers_models import D, tiny_bert, token_batch

captum_attr = pytest.importorskip("captum.attr")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _logits(model: nn.Module) -> Any:
    return lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits


def _no_patches(model: nn.Module) -> None:
    assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.fixture(scope="module")
def bert() -> nn.Module:
    return tiny_bert()


@pytest.mark.parametrize("layer", ["bert.embeddings.word_embeddings", "bert.embeddings", "bert.encoder.layer.1"])
@pytest.mark.parametrize("rule", [("gauss-legendre", "gausslegendre"), ("left", "riemann_left")])
def test_bert_layers_agree_with_captum(bert: nn.Module, layer: str, rule: tuple[str, str], state_guard: Any) -> None:
    x = token_batch()
    target = torch.tensor([0, 2, 1])
    guard = state_guard(bert)
    ours = integrand.integrated_gradients(bert, x, target, layer=layer, input_baseline={"input_ids": 0}, steps=16,
                                          rule=rule[0])
    guard.assert_unchanged()
    _no_patches(bert)
    module = dict(bert.named_modules())[layer]
    theirs = captum_attr.LayerIntegratedGradients(_logits(bert), module).attribute(
        x["input_ids"], baselines=torch.zeros_like(x["input_ids"]), target=target,
        additional_forward_args=(x["attention_mask"],), n_steps=16, method=rule[1],
    )
    assert ours.params["reuse"] == "frozen-prefix"
    assert ours.values.shape == theirs.shape
    # Captum keeps its step sizes in float32, hence ~1e-8 rather than ~1e-15.
    assert _rel(ours.values, theirs) <= 1e-5
    assert ours.method == "layer_integrated_gradients" and ours.params["layer"] == layer
    if rule[0] == "gauss-legendre":
        assert float(ours.relative_error.max()) < 1e-6


def test_cnn_middle_conv_agrees_with_captum(state_guard: Any) -> None:
    model = cnn(act=nn.Tanh).to(D)
    x = torch.randn(4, 1, 8, 8, dtype=D)
    base = torch.randn_like(x) * 0.1
    guard = state_guard(model)
    ours = integrand.integrated_gradients(model, x, 3, layer="2", input_baseline=base, steps=24, batch_size=7)
    guard.assert_unchanged()
    theirs = captum_attr.LayerIntegratedGradients(model, model[2]).attribute(x, baselines=base, target=3, n_steps=24)
    assert ours.values.shape == (4, 6, 8, 8)
    assert _rel(ours.values, theirs) <= 1e-5
    side = integrand.integrated_gradients(model, x, 3, layer=model[2], layer_side="input", input_baseline=base,
                                          steps=24)
    theirs_in = captum_attr.LayerIntegratedGradients(model, model[2]).attribute(
        x, baselines=base, target=3, n_steps=24, attribute_to_layer_input=True
    )
    assert side.values.shape == (4, 4, 8, 8) and _rel(side.values, theirs_in) <= 1e-5


def test_activation_baseline_is_input_ig_of_the_upper_part() -> None:
    # With baseline= in activation space, layer IG is plain IG of the layers above the layer.
    model = cnn(act=nn.Tanh).to(D)
    x = torch.randn(3, 1, 8, 8, dtype=D)
    ours = integrand.integrated_gradients(model, x, 1, layer="2", baseline=0.25, steps=20)
    with torch.no_grad():
        act = model[:3](x)
    upper = model[3:]
    theirs = captum_attr.IntegratedGradients(upper).attribute(act, baselines=0.25, target=1, n_steps=20,
                                                               method="gausslegendre")
    assert _rel(ours.values, theirs) <= 1e-5
    torch.testing.assert_close(ours.inputs, act)
    torch.testing.assert_close(ours.baseline, torch.full_like(act, 0.25))


def test_neuron_ig_agrees_with_captum(state_guard: Any) -> None:
    model = cnn(act=nn.Tanh).to(D)
    x = torch.randn(3, 1, 8, 8, dtype=D)
    guard = state_guard(model)
    ours = integrand.integrated_gradients(model, x, layer="3", neuron=(2, 4, 5), steps=20)
    guard.assert_unchanged()
    _no_patches(model)
    theirs = captum_attr.NeuronIntegratedGradients(model, model[3]).attribute(
        x, neuron_selector=(2, 4, 5), n_steps=20, method="gausslegendre"
    )
    assert ours.method == "neuron_integrated_gradients"
    assert _rel(ours.values, theirs) <= 1e-5
    with torch.no_grad():
        unit = model[:4](x)[:, 2, 4, 5] - model[:4](torch.zeros_like(x))[:, 2, 4, 5]
    torch.testing.assert_close(ours.score_input - ours.score_baseline, unit)
    flat = integrand.integrated_gradients(model, x, layer="3", neuron=2 * 64 + 4 * 8 + 5, steps=20)
    torch.testing.assert_close(flat.values, ours.values)
    summed = integrand.integrated_gradients(model, x, layer="3", neuron=(slice(0, 2), 4, 5), steps=20)
    parts = [integrand.integrated_gradients(model, x, layer="3", neuron=(c, 4, 5), steps=20).values for c in (0, 1)]
    torch.testing.assert_close(summed.values, parts[0] + parts[1])


def test_model_output_elements_select_by_name_or_position(bert: nn.Module) -> None:
    x = token_batch()
    at_pooler = integrand.integrated_gradients(bert, x, 1, layer="bert.pooler", steps=8)
    by_name = integrand.integrated_gradients(bert, x, 1, layer="bert", layer_output_index="pooler_output", steps=8)
    by_position = integrand.integrated_gradients(bert, x, 1, layer="bert", layer_output_index=1, steps=8)
    torch.testing.assert_close(by_name.values, at_pooler.values, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(by_position.values, at_pooler.values, rtol=1e-12, atol=1e-12)
    # HF attention returns (output, None): the one tensor is picked without an index.
    attn = integrand.integrated_gradients(bert, x, 1, layer="bert.encoder.layer.1.attention", steps=8)
    assert attn.values.shape == (3, 9, 16)


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, (h, _c) = self.lstm(self.embed(ids))
        return self.head(out.mean(dim=1) + h[0])


def test_tuple_output_element_of_a_recurrent_layer() -> None:
    torch.manual_seed(0)
    model = _LSTMNet().to(D).eval()
    ids = torch.randint(1, 30, (2, 7))
    with pytest.raises(InputError) as err:  # (h, c) is a tuple, not a tensor
        integrand.integrated_gradients(model, ids, 0, layer="lstm", layer_output_index=1, steps=8)
    assert err.value.argument == "layer_output_index" and "tuple" in str(err.value)
    default = integrand.integrated_gradients(model, ids, 0, layer="lstm", steps=32)  # the only tensor element
    got = integrand.integrated_gradients(model, ids, 0, layer="lstm", layer_output_index=0, steps=32)
    full = integrand.integrated_gradients(model, ids, 0, layer="lstm", layer_output_index=0, steps=32, reuse=False)
    assert got.values.shape == (2, 7, 6)
    torch.testing.assert_close(got.values, full.values, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(default.values, got.values)
    assert float(got.relative_error.max()) < 1e-6


# ---------------------------------------------------------------- bad input and state


def test_unknown_layer_name_lists_close_matches(bert: nn.Module, state_guard: Any) -> None:
    guard = state_guard(bert)
    with pytest.raises(InputError) as err:
        integrand.integrated_gradients(bert, token_batch(), 1, layer="bert.encoder.layers.1", steps=4)
    assert err.value.argument == "layer"
    assert "bert.encoder.layer.1" in str(err.value)
    with pytest.raises(InputError, match="word_embeddings"):
        integrand.integrated_gradients(bert, token_batch(), 1, layer="word_embedding", steps=4)
    guard.assert_unchanged()
    with pytest.raises(InputError, match="not a submodule"):
        integrand.integrated_gradients(bert, token_batch(), 1, layer=nn.Linear(2, 2), steps=4)


def _raises(argument: str, model: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InputError) as err:
        integrand.integrated_gradients(model, *args, **kwargs)
    assert err.value.argument == argument, str(err.value)
    return str(err.value)


def test_bad_arguments_name_the_argument(bert: nn.Module, state_guard: Any) -> None:
    x = token_batch()
    guard = state_guard(bert)
    message = _raises("baseline", bert, x, 1, layer="bert.encoder.layer.0", baseline=torch.zeros(3, 8, 16), steps=4)
    assert "activation shape (3, 9, 16)" in message
    _raises("input_baseline", bert, x, 1, layer="bert.embeddings", baseline=0.0, input_baseline={"input_ids": 0})
    _raises("layer_side", bert, x, 1, layer="bert.embeddings", layer_side="middle")
    _raises("layer_output_index", bert, x, 1, layer="bert.embeddings", layer_output_index=0)
    _raises("layer_output_index", bert, x, 1, layer="bert", layer_output_index="hidden")
    _raises("layer_output_index", bert, x, 1, layer="bert", layer_output_index=5)
    _raises("input_baseline", bert, x, 1, layer="bert.embeddings", input_baseline={"token_ids": 0})
    _raises("input_baseline[" + repr("input_ids") + "]", bert, x, 1, layer="bert.embeddings",
            input_baseline={"input_ids": 0.5})
    _raises("layer_side", bert, x, 1, layer="bert.embeddings.word_embeddings", layer_side="input")
    _raises("layer", bert, x, 1, layer="bert.encoder.layer", steps=4)  # a ModuleList never runs itself
    _raises("inputs", bert, [x["input_ids"]], 1, layer="bert.embeddings")
    short = {**x, "attention_mask": x["attention_mask"][:2]}
    _raises("inputs['attention_mask']", bert, short, 1, layer="bert.embeddings")
    guard.assert_unchanged()
    _no_patches(bert)


def test_neuron_errors() -> None:
    model = cnn().to(D)
    x = torch.randn(2, 1, 8, 8, dtype=D)
    assert "out of range" in _raises("neuron", model, x, layer="3", neuron=6 * 64)
    assert "dim 0 of size 6" in _raises("neuron", model, x, layer="3", neuron=(6, 0, 0))
    _raises("neuron", model, x, layer="3", neuron=(0, 0))
    _raises("neuron", model, x, layer="3", neuron=(slice(6, 9), 0, 0))
    _raises("neuron", model, x, layer="3", neuron="first")
    _raises("target", model, x, 1, layer="3", neuron=0)
    _raises("input_baseline", model, x, layer="3", neuron=0, input_baseline=0.0)
    _raises("neuron", model, x, neuron=0)
    _raises("input_baseline", model, x, 1, input_baseline=0.0)


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.tanh(self.block(x))))[:, 0]


def test_layer_running_twice_is_refused_and_state_restored(state_guard: Any) -> None:
    model = _Twice().to(D)
    guard = state_guard(model)
    assert "ran 2 times" in _raises("layer", model, torch.randn(2, 4, dtype=D), layer="block")
    guard.assert_unchanged()
    _no_patches(model)


class _Exploding(nn.Module):
    """Fails above the layer on the 3rd forward: the error must leave no patch or hook behind."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Linear(3, 3)
        self.high = nn.Linear(3, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.low(x)
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return self.high(h)[:, 0]


def test_state_unchanged_after_an_error_inside_the_model(state_guard: Any) -> None:
    model = _Exploding().to(D)
    model.low.weight.grad = torch.ones_like(model.low.weight)
    model.high.register_forward_hook(lambda m, i, o: None)
    guard = state_guard(model)
    with pytest.raises(RuntimeError, match="boom"):
        integrand.integrated_gradients(model, torch.randn(2, 3, dtype=D), layer="low", steps=4)
    guard.assert_unchanged()
    _no_patches(model)


def test_train_mode_model_is_refused_and_left_in_train_mode(state_guard: Any) -> None:
    model = tiny_bert(layers=2).train()
    guard = state_guard(model)
    # Dropout draws new masks at every forward: refused before any forward pass (docs/design.md).
    with pytest.raises(integrand.ModelError, match="training mode") as info:
        integrand.integrated_gradients(model, token_batch(), 1, layer="bert.encoder.layer.0", steps=4)
    assert info.value.argument == "model"
    guard.assert_unchanged()
    assert model.training and all(p.dtype == D for p in model.parameters())
