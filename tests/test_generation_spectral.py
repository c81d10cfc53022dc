"""Error control of generation attribution: the nested Clenshaw-Curtis phase and its hand-over to bisection."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from integrand import ConvergenceWarning
from integrand import integrate as integrate_module
from integrand.generation import GenerationExplainer

from .reference.generation_oracle import tiny_gpt2, tiny_lm, word_tokenizer

PROMPT = "the capital of france is"
TARGET = "paris city of the"


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: Any) -> tuple[Any, Any]:
    return tiny_lm(request.param)


def _true_error(res: Any, exact: Any) -> torch.Tensor:
    """Per target: max over sources of |attribution - exact|, relative to |F(x) - F(b)|."""
    total = (res.score_input - res.score_baseline).abs()
    return (res.matrix - exact.matrix).abs().amax(dim=1) / total


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_smooth_paths_converge_in_the_spectral_phase_within_tolerance(lm: tuple[Any, Any], tol: float) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=tol)
    exact = gx(
        PROMPT, target=TARGET, method="integrated_gradients", steps=128
    )  # float64 Gauss-Legendre: exact to ~1e-15 on these paths
    assert bool(res.converged.all())
    # Clenshaw-Curtis levels have 3, 5, 9, 17 and 33 nodes: a smooth path never reaches bisection.
    assert int(res.steps[0]) in (5, 9, 17, 33)
    assert bool((_true_error(res, exact) <= tol).all()), _true_error(res, exact)
    assert res.delta is not None and bool((res.delta.abs() <= tol * (res.score_input - res.score_baseline).abs()).all())


def test_the_spectral_estimate_is_not_optimistic(lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after each level in turn, the reported error bounds the true error of that estimate."""
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    exact = gx(PROMPT, target=TARGET, method="integrated_gradients", steps=128)
    for levels in [(2, 4), (2, 4, 8), (2, 4, 8, 16), (2, 4, 8, 16, 32)]:
        monkeypatch.setattr(integrate_module, "LEVELS", levels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=1e-14, max_steps=levels[-1] + 1)
        assert int(res.steps[0]) == levels[-1] + 1
        assert res.quadrature_error is not None
        # The claim may be pessimistic, never optimistic by more than a factor of 2 (above 1e-6: the
        # Llama's RMSNorm computes in float32, so its float64 integrand carries float32 rounding).
        assert bool((_true_error(res, exact) <= 2 * res.quadrature_error + 1e-6).all()), (
            levels,
            _true_error(res, exact),
            res.quadrature_error,
        )


def test_rows_that_stop_converging_spectrally_finish_by_bisection(
    lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    exact = gx(PROMPT, target=TARGET, method="integrated_gradients", steps=128)
    # A shrink factor no estimate can meet sends every row to bisection after the 5-node level.
    monkeypatch.setattr(integrate_module, "SHRINK", 0.0)
    res = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=1e-6)
    assert bool(res.converged.all())
    # 5 Clenshaw-Curtis nodes, 2 quarter points, then 4 per bisection.
    assert int(res.steps[0]) > 9 and (int(res.steps[0]) - 7) % 4 == 0
    assert bool((_true_error(res, exact) <= 1e-6).all())


def test_batched_rows_converge_independently(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    prompts, targets = [PROMPT, "paris is"], [TARGET, "the capital"]
    together = gx(prompts, target=targets, method="integrated_gradients", tol=1e-8)
    for p, t, res in zip(prompts, targets, together):
        alone = gx(p, target=t, method="integrated_gradients", tol=1e-8)
        assert torch.equal(alone.steps, res.steps)
        assert torch.allclose(alone.matrix, res.matrix, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_paths_with_jumps_meet_the_tolerance(tol: float) -> None:
    """ReLU MLPs make the integrand jump: bisection's ``fine - coarse`` estimate still bounds the error.

    (On such intervals Simpson converges at first order, so the usual ``(fine - coarse) / 15`` with a
    Richardson step would be optimistic: it was measured here at 3-4x below the true error.)
    """
    tok = word_tokenizer(add_bos=False)
    model = tiny_gpt2(len(tok), seed=3)
    for block in model.transformer.h:
        block.mlp.act = torch.nn.ReLU()
    gx = GenerationExplainer(model, tok)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=tol, max_steps=4097)
    # Across jumps every fixed rule converges at first order; 16384 midpoints agree with 8192 to ~1e-4.
    exact = gx(PROMPT, target=TARGET, method="integrated_gradients", steps=16384, rule="middle")
    assert bool(res.converged.all())
    assert bool((_true_error(res, exact) <= tol).all()), (_true_error(res, exact), res.quadrature_error)


def test_bisection_learns_the_order_of_smooth_paths(lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Observed order > 1 on smooth paths: fewer points than assuming first order, and still within ``tol``."""
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    exact = gx(PROMPT, target=TARGET, method="integrated_gradients", steps=128)
    monkeypatch.setattr(integrate_module, "SHRINK", 0.0)  # straight to bisection
    learned = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=1e-5, max_steps=4097)
    monkeypatch.setattr(integrate_module, "MAX_ORDER", 1.0)
    first_order = gx(PROMPT, target=TARGET, method="integrated_gradients", tol=1e-5, max_steps=4097)
    assert bool(learned.converged.all()) and bool(first_order.converged.all())
    assert int(learned.steps[0]) < int(first_order.steps[0])
    assert bool((_true_error(learned, exact) <= 1e-5).all())
