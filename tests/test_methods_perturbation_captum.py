"""Agreement with Captum 0.9 at equal settings; LIME and KernelSHAP get identical perturbations."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import torch

import integrand
from integrand.checks import generator
from integrand.neighbourhoods import BernoulliMasks, ShapleyCoalitions, lime_kernel
from tests.models import cnn, mlp

captum_attr = pytest.importorskip("captum.attr")
linear_model = pytest.importorskip("captum._utils.models.linear_model")


@pytest.mark.parametrize(("window", "strides"), [((1, 2, 2), 1), ((1, 3, 3), (1, 2, 2)), ((1, 4, 3), (1, 3, 3))])
def test_occlusion_matches_captum(window: tuple[int, ...], strides: Any) -> None:
    torch.manual_seed(0)
    model = cnn().double()
    x = torch.randn(3, 1, 8, 7, dtype=torch.float64)
    target = torch.tensor([0, 2, 4])
    ours = integrand.occlusion(model, x, target, window=window, strides=strides, baseline=0.25)
    theirs = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=window, strides=strides, baselines=0.25, target=target
    )
    # Captum divides by the window counts in float32.
    torch.testing.assert_close(ours.values.float(), theirs, rtol=1e-5, atol=1e-6)


def test_feature_ablation_matches_captum_with_groups() -> None:
    torch.manual_seed(1)
    model = cnn().double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    mask = (torch.arange(8)[:, None] // 2 * 4 + torch.arange(8)[None, :] // 2).view(1, 1, 8, 8)
    base = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    ours = integrand.methods.feature_ablation(model, x, 3, feature_mask=mask, baseline=base)
    theirs = captum_attr.FeatureAblation(model).attribute(x, baselines=base, target=3, feature_mask=mask)
    torch.testing.assert_close(ours.values, theirs, rtol=1e-10, atol=1e-12)
    default = integrand.methods.feature_ablation(model, x, 3)
    torch.testing.assert_close(default.values, captum_attr.FeatureAblation(model).attribute(x, target=3))


def _feeder(rows: torch.Tensor) -> Any:
    """A Captum perturbation generator that yields our draws one by one."""

    def perturb(original: torch.Tensor, **kwargs: Any) -> Iterator[torch.Tensor]:
        for row in rows:
            yield row[None].long()

    return perturb


@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_lime_matches_captum_on_identical_masks(ridge: float) -> None:
    torch.manual_seed(2)
    model = mlp(inputs=6, hidden=12, classes=3)
    x = torch.randn(3, 6)
    mask = torch.tensor([0, 0, 1, 2, 3, 3])
    n, seed, width = 120, 5, 0.4
    ours = integrand.methods.lime(
        model, x, 1, feature_mask=mask, n_samples=n, kernel_width=width, ridge=ridge, baseline=0.1, seed=seed
    )
    z = BernoulliMasks(n_samples=n, kernel_width=width).sample(4, generator(seed)).xi

    def similarity(original: Any, perturbed: Any, interpretable: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return lime_kernel(interpretable.double(), width).float()

    fitter = linear_model.SkLearnLinearRegression() if ridge == 0 else linear_model.SkLearnRidge(alpha=ridge)
    explainer = captum_attr.Lime(model, interpretable_model=fitter, similarity_func=similarity, perturb_func=_feeder(z))
    for e in range(3):
        theirs = explainer.attribute(x[e : e + 1], target=1, n_samples=n, baselines=0.1, feature_mask=mask[None])
        torch.testing.assert_close(ours.values[e : e + 1], theirs, rtol=1e-4, atol=1e-5)


def test_kernel_shap_matches_captum_on_identical_coalitions() -> None:
    torch.manual_seed(3)
    model = mlp(inputs=7, hidden=12, classes=3)
    x = torch.randn(2, 7)
    n, seed = 200, 9
    ours = integrand.methods.kernel_shap(model, x, 2, n_samples=n, seed=seed)
    draws = ShapleyCoalitions(n_samples=n).sample(7, generator(seed)).xi  # [ones, zeros, sampled...]

    class Fed(captum_attr.KernelShap):  # type: ignore[misc]
        def kernel_shap_perturb_generator(self, original_inp: Any, **kwargs: Any) -> Iterator[torch.Tensor]:
            yield from _feeder(draws)(original_inp)

    for e in range(2):
        theirs = Fed(model).attribute(x[e : e + 1], target=2, n_samples=n + 2)
        # Captum weighs the empty and full coalitions by 1e6 instead of imposing them exactly.
        torch.testing.assert_close(ours.values[e : e + 1], theirs, rtol=2e-4, atol=2e-5)
