"""Agreement with Captum 0.9 (and PAIR's saliency library for Guided IG / Blur IG) at equal settings.

Stochastic methods are compared with identical randomness: the test replays Captum's draws
(NumPy and torch global generators, in Captum's order) and injects them into integrand's
evaluation functions.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

import integrand
from integrand.methods.gradient_shap import Draws, as_references, sampled_paths
from integrand.methods.gradient_support import prepare
from integrand.methods.noise_tunnel import tunnel
from tests.models import cnn, mlp

ca = pytest.importorskip("captum.attr")
F64 = torch.float64


@pytest.fixture(autouse=True)
def _quiet_captum() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _models() -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    tabular = mlp(act=nn.ReLU).double()
    image = cnn(act=nn.ReLU).double()
    sig = nn.Sequential(nn.Linear(6, 10), nn.Sigmoid(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    return [
        (tabular, torch.randn(4, 6, dtype=F64), torch.tensor([0, 1, 2, 1])),
        (image, torch.rand(3, 1, 8, 8, dtype=F64), torch.tensor([4, 0, 2])),
        (sig, torch.randn(5, 6, dtype=F64), torch.tensor([2, 2, 0, 1, 0])),
    ]


MODELS = _models()


@pytest.mark.parametrize("case", range(len(MODELS)))
def test_plain_gradient_methods_match_captum(case: int) -> None:
    model, x, target = MODELS[case]
    pairs: list[tuple[Callable[..., integrand.Attribution], Any, dict[str, Any], dict[str, Any]]] = [
        (integrand.saliency, ca.Saliency, {}, {"abs": False}),
        (integrand.saliency, ca.Saliency, {"absolute": True}, {"abs": True}),
        (integrand.methods.input_x_gradient, ca.InputXGradient, {}, {}),
        (integrand.methods.guided_backprop, ca.GuidedBackprop, {}, {}),
        (integrand.methods.deconvnet, ca.Deconvolution, {}, {}),
    ]
    for mine, theirs, kw_mine, kw_theirs in pairs:
        ours = mine(model, x, target, **kw_mine).values
        ref = theirs(model).attribute(x.clone(), target=target, **kw_theirs)
        assert torch.allclose(ours, ref, atol=1e-12), mine.__name__


@pytest.mark.parametrize("case", range(len(MODELS)))
@pytest.mark.parametrize("baseline", [0.0, 0.3, "tensor"])
def test_deeplift_matches_captum(case: int, baseline: Any) -> None:
    model, x, target = MODELS[case]
    if baseline == "tensor":
        baseline = torch.rand_like(x)
    ours = integrand.methods.deeplift(model, x, target, baseline=baseline)
    ref, delta = ca.DeepLift(model).attribute(
        x.clone(), baselines=baseline, target=target, return_convergence_delta=True
    )
    assert torch.allclose(ours.values, ref, atol=1e-12)
    assert ours.delta is not None and torch.allclose(ours.delta.abs(), delta.abs(), atol=1e-12)


def _captum_noise(x: torch.Tensor, samples: int, stdev: float, seed: int) -> torch.Tensor:
    """The noise Captum's NoiseTunnel draws after ``torch.manual_seed(seed)`` (rows repeat-interleaved)."""
    torch.manual_seed(seed)
    expanded = (x.shape[0] * samples,) + tuple(x.shape[1:])
    return torch.normal(0, torch.tensor(stdev).repeat(expanded))


@pytest.mark.parametrize("case", range(len(MODELS)))
@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("base", ["gradient", "input_x_gradient"])
def test_noise_tunnel_matches_captum_with_identical_noise(case: int, kind: str, base: str) -> None:
    model, x, target = MODELS[case]
    samples, stdev = 6, 0.3
    inner = ca.Saliency(model) if base == "gradient" else ca.InputXGradient(model)
    extra = {"abs": False} if base == "gradient" else {}
    torch.manual_seed(11)
    ref = ca.NoiseTunnel(inner).attribute(
        x.clone(), nt_type=kind, nt_samples=samples, stdevs=stdev, target=target, **extra
    )
    noise = _captum_noise(x, samples, stdev, 11).to(F64)
    setup = prepare(model, x, target, batch_size=4, memory_budget=None, forward_kwargs=None)
    ours = tunnel(setup, kind, base, samples, lambda e: {"input": noise[e * samples : (e + 1) * samples]})
    assert torch.allclose(setup.inputs.unflat(ours)["input"], ref, atol=1e-12)


@pytest.mark.parametrize("case", range(len(MODELS)))
@pytest.mark.parametrize("stdev", [0.0, 0.2])
def test_gradient_shap_matches_captum_with_identical_draws(case: int, stdev: float) -> None:
    model, x, target = MODELS[case]
    samples = 5
    references = torch.rand((7,) + tuple(x.shape[1:]), dtype=F64)
    np.random.seed(5)
    torch.manual_seed(5)
    ref, delta = ca.GradientShap(model).attribute(
        x.clone(), references, n_samples=samples, stdevs=stdev, target=target, return_convergence_delta=True
    )
    # Captum's order: reference rows (NumPy), then noise (torch), then α (NumPy).
    np.random.seed(5)
    rows = np.random.choice(references.shape[0], samples * x.shape[0]).tolist()
    noise = _captum_noise(x, samples, stdev, 5).to(F64)
    alpha = np.random.uniform(0.0, 1.0, samples * x.shape[0])
    draws = Draws(
        index=torch.tensor(rows).view(x.shape[0], samples),
        alpha=torch.tensor(alpha).view(x.shape[0], samples),
        noise=lambda e: {"input": noise[e * samples : (e + 1) * samples]},
    )
    setup = prepare(model, x, target, batch_size=3, memory_budget=None, forward_kwargs=None)
    values, _ = sampled_paths(setup, as_references(setup.inputs, references), draws)
    assert torch.allclose(setup.inputs.unflat(values)["input"], ref, atol=1e-12)


def _pair_guided_ig() -> Any:
    core = pytest.importorskip("saliency.core.guided_ig")
    quantile = np.quantile

    def compatible(a: Any, q: Any, interpolation: str = "linear", **kw: Any) -> Any:
        # saliency 0.2.1 passes NumPy's removed ``interpolation=`` keyword.
        return quantile(a, q, method=interpolation, **kw)

    return core, compatible


@pytest.mark.parametrize("max_dist", [0.02, 0.1, 1.0])
def test_guided_ig_matches_pair_saliency(monkeypatch: pytest.MonkeyPatch, max_dist: float) -> None:
    core, compatible = _pair_guided_ig()
    monkeypatch.setattr(core.np, "quantile", compatible)
    torch.manual_seed(3)
    model = mlp(inputs=12, act=nn.Tanh).double()
    x, base = torch.randn(2, 12, dtype=F64), torch.randn(2, 12, dtype=F64)
    ours = integrand.methods.guided_ig(model, x, 1, baseline=base, steps=40, fraction=0.3, max_dist=max_dist)
    for e in range(2):

        def grad(point: np.ndarray) -> np.ndarray:
            p = torch.tensor(point, dtype=F64, requires_grad=True)
            (g,) = torch.autograd.grad(model(p[None])[0, 1], p)
            return g.numpy()

        ref = core.guided_ig_impl(x[e].numpy(), base[e].numpy(), grad, steps=40, fraction=0.3, max_dist=max_dist)
        assert np.abs(ours.values[e].numpy() - ref).max() < 1e-12


def test_blur_ig_agrees_with_pair_saliency() -> None:
    blur = pytest.importorskip("saliency.core.blur_ig")
    torch.manual_seed(4)
    model = cnn(act=nn.Tanh).double()
    image = torch.rand(1, 1, 12, 12, dtype=F64)

    def call(batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict[str, Any]:
        # PAIR works on H x W x C images; the model on C x H x W.
        t = torch.tensor(batch, dtype=F64).permute(0, 3, 1, 2).requires_grad_(True)
        (g,) = torch.autograd.grad(model(t)[:, 2].sum(), t)
        return {blur.INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}

    ref = blur.BlurIG().GetMask(image[0].permute(1, 2, 0).numpy(), call, max_sigma=6.0, steps=400, grad_step=1e-4)
    ours = integrand.methods.blur_ig(model, image, 2, max_sigma=6.0, steps=100).values[0].permute(1, 2, 0).numpy()
    # PAIR: left Riemann sum with finite-difference path derivatives and a kernel truncated at 4σ.
    assert np.abs(ours - ref).max() < 0.02 * np.abs(ref).max()
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999
