"""Every registered method at a layer: closed forms and Captum's layer methods."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import integrand
from integrand import InputError

from .models import cnn

captum_attr = pytest.importorskip("captum.attr")
D = torch.float64


def _activation_and_grad(model: torch.nn.Sequential, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv output model[2] and d logit_target / d that output, by a hand-written split."""
    lower = model[:3](x).detach().requires_grad_(True)
    out = model[3:](lower)[:, target].sum()
    (grad,) = torch.autograd.grad(out, lower)
    return lower.detach(), grad


def test_layer_saliency_and_input_x_gradient_closed_form(state_guard: Any) -> None:
    model = cnn(act=torch.nn.Tanh).to(D)
    x = torch.randn(3, 1, 8, 8, dtype=D)
    guard = state_guard(model)
    act, grad = _activation_and_grad(model, x, 1)
    sal = integrand.attribute(model, x, 1, method="saliency", layer="2")
    assert sal.method == "layer_saliency" and sal.params["layer"] == "2"
    assert sal.params["reuse"] == "frozen-prefix"
    torch.testing.assert_close(sal.values, grad, rtol=1e-12, atol=1e-14)
    ixg = integrand.attribute(model, x, 1, method="input_x_gradient", layer=model[2])
    torch.testing.assert_close(ixg.values, grad * act, rtol=1e-12, atol=1e-14)
    guard.assert_unchanged()


def test_layer_input_x_gradient_matches_captum() -> None:
    model = cnn(act=torch.nn.Tanh).to(D)
    x = torch.randn(4, 1, 8, 8, dtype=D)
    ours = integrand.attribute(model, x, 2, method="input_x_gradient", layer="2")
    theirs = captum_attr.LayerGradientXActivation(model, model[2]).attribute(x, target=2)
    torch.testing.assert_close(ours.values, theirs, rtol=1e-10, atol=1e-13)


def test_layer_feature_ablation_matches_captum() -> None:
    model = cnn(act=torch.nn.Tanh).to(D)
    x = torch.randn(2, 1, 8, 8, dtype=D)
    ours = integrand.attribute(model, x, 0, method="feature_ablation", layer="2")
    theirs = captum_attr.LayerFeatureAblation(model, model[2]).attribute(x, target=0)
    torch.testing.assert_close(ours.values, theirs, rtol=1e-10, atol=1e-12)


def test_layer_methods_run_the_lower_part_once_per_example() -> None:
    model = cnn(act=torch.nn.Tanh).to(D)
    # The first conv inside a container: replay patches the container, so its conv only runs when computed.
    model[0] = torch.nn.Sequential(model[0])
    x = torch.randn(3, 1, 8, 8, dtype=D)
    rows: list[int] = []
    handle = model[0][0].register_forward_hook(lambda m, i, o: rows.append(o.shape[0]))
    try:
        res = integrand.attribute(model, x, 1, method="smoothgrad", layer="2", samples=20, seed=0)
    finally:
        handle.remove()
    assert res.params["reuse"] == "frozen-prefix"
    assert sum(rows) == 3  # one recording forward over the 3 examples, never once per noisy sample


def test_unknown_layer_lists_close_matches() -> None:
    model = cnn().to(D)
    with pytest.raises(InputError, match="layer") as err:
        integrand.attribute(model, torch.randn(1, 1, 8, 8, dtype=D), 0, method="saliency", layer="22")
    assert err.value.argument == "layer"
