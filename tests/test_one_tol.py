"""One tolerance, one guarantee: every entry point's claimed error bounds its true error (float64 models).

Input IG, layer IG, TextExplainer and generation attribution all run on the one integrator; each result's
``quadrature_error`` (max over features, relative to ``|f(x) - f(baseline)|``) is compared with the true error
against a reference: many-point Gauss-Legendre on smooth models, the exact integral on a ReLU network (its
integrand is constant between the kinks, which are known in closed form). The claim may be pessimistic,
never optimistic by more than 2x.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import integrand
from integrand import ConvergenceWarning
from integrand.generation import GenerationExplainer
from integrand.text import TextExplainer

from .models import mlp
from .reference.generation_oracle import tiny_lm
from .test_layers_models import tiny_bert, token_batch

D = torch.float64
TOLS = [1e-2, 1e-3, 1e-4]
SLACK = 1e-10
"""Absolute room for the references' own error (Gauss-Legendre with 128-256 nodes on these paths: ~1e-14)."""

ig_module = importlib.import_module("integrand.methods.integrated_gradients")


def _true_error(values: torch.Tensor, reference: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Per example: max over features of |values - reference|, relative to |total|."""
    return (values - reference).abs().flatten(1).amax(dim=1) / total.abs()


def _check(true: torch.Tensor, claimed: torch.Tensor | None) -> None:
    assert claimed is not None
    assert bool((true <= 2 * claimed.double() + SLACK).all()), (true, claimed)


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _relu_exact_ig(model: nn.Sequential, x: torch.Tensor, target: int) -> torch.Tensor:
    """Exact IG from a zero baseline of Linear-ReLU-Linear: the integrand is constant between the kinks."""
    first = model[0]
    out = []
    for row in x:
        # Pre-activations are affine in alpha: bias + alpha * W x; each crosses zero at most once.
        slope, bias = first.weight @ row, first.bias
        kinks = (-bias / slope)[(slope != 0) & (-bias / slope > 0) & (-bias / slope < 1)]
        edges = torch.cat([torch.zeros(1, dtype=D), kinks.sort().values, torch.ones(1, dtype=D)])
        total = torch.zeros_like(row)
        for a, b in zip(edges[:-1], edges[1:]):
            point = ((a + b) / 2 * row).requires_grad_(True)
            (grad,) = torch.autograd.grad(model(point[None])[0, target], point)
            total += (b - a) * grad
        out.append(total * row)
    return torch.stack(out)


@pytest.mark.parametrize("tol", TOLS)
def test_input_ig_on_a_smooth_mlp_and_an_exact_relu_reference(tol: float) -> None:
    torch.manual_seed(0)
    smooth = mlp(inputs=8, hidden=32, act=nn.GELU).to(D)
    x = torch.randn(4, 8, dtype=D) * 2
    res = _quiet(integrand.integrated_gradients, smooth, x, target=1, tol=tol)
    ref = integrand.integrated_gradients(smooth, x, target=1, steps=256)
    _check(_true_error(res.values, ref.values, res.score_input - res.score_baseline), res.quadrature_error)
    relu = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3)).to(D)
    # piecewise_linear=False: the integrator itself, not the exact sum over linear pieces.
    res = _quiet(integrand.integrated_gradients, relu, x, target=1, tol=tol, max_steps=20_000, piecewise_linear=False)
    exact = _relu_exact_ig(relu, x, 1)
    assert res.params["rule"] == "clenshaw-curtis+bisection"
    _check(_true_error(res.values, exact, res.score_input - res.score_baseline), res.quadrature_error)


@pytest.mark.parametrize("tol", TOLS)
def test_layer_ig_on_a_tiny_bert(tol: float) -> None:
    model, x = tiny_bert(), token_batch()
    # From the pad tokens' activation: a path of normal-sized activations (from zero, the next
    # LayerNorm would see a vanishing input near alpha = 0, a near-jump no reference resolves).
    layer = {"layer": "bert.encoder.layer.0", "input_baseline": {"input_ids": 0}}
    res = _quiet(integrand.integrated_gradients, model, x, 2, tol=tol, **layer)
    ref = integrand.integrated_gradients(model, x, 2, steps=128, **layer)
    _check(_true_error(res.values, ref.values, res.score_input - res.score_baseline), res.quadrature_error)


@pytest.fixture(scope="module")
def text_explainer(tmp_path_factory: pytest.TempPathFactory) -> TextExplainer:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is", "not", "a", "film"]
    vocab = Path(tmp_path_factory.mktemp("one-tol")) / "vocab.txt"
    vocab.write_text("\n".join(words), encoding="utf-8")
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config).to(D).eval()
    return TextExplainer(model, BertTokenizer(str(vocab), model_max_length=12))


@pytest.mark.parametrize("tol", TOLS)
def test_text_explainer_through_layer_ig(
    text_explainer: TextExplainer, tol: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The explainer's underlying layer-IG results (all embedding coordinates) carry the claim."""
    seen: list[Any] = []
    real = ig_module.integrated_gradients

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(ig_module, "integrated_gradients", recording)
    texts = ["the movie is good", "not a bad film"]
    _quiet(text_explainer, texts, target="positive", tol=tol)
    text_explainer(texts, target="positive", steps=128)
    res, ref = seen
    _check(_true_error(res.values, ref.values, res.score_input - res.score_baseline), res.quadrature_error)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("tol", TOLS)
def test_generation_on_a_tiny_lm(kind: str, tol: float) -> None:
    model, tok = tiny_lm(kind)
    gx = GenerationExplainer(model, tok)
    res = _quiet(gx, "the capital of france is", target="paris city of", method="ig", tol=tol)
    ref = gx("the capital of france is", target="paris city of", method="ig", steps=128)
    assert res.score_baseline is not None
    true = (res.matrix - ref.matrix).abs().amax(dim=1) / (res.score_input - res.score_baseline).abs()
    # The Llama's RMSNorm computes in float32 even in a float64 model: its integrand carries that rounding.
    _check(true - (1e-6 if kind == "llama" else 0.0), res.quadrature_error)
