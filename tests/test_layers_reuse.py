"""Reuse of the frozen part: equal to full recomputation, lower modules run once per example, safe fallback."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import integrand
from integrand.errors import ConvergenceWarning

from .test_layers_models import Counting, D, tiny_bert, tiny_gpt2, token_batch


def _attributable(model: nn.Module) -> list[str]:
    """Every module that runs exactly once and has a batch-first tensor to attribute."""
    names = []
    for name, module in model.named_modules():
        if not name or isinstance(module, nn.ModuleList) or name.endswith("position_embeddings"):
            continue
        if name in ("bert", "transformer", "transformer.wpe") or name.endswith("attn_dropout"):
            continue  # several outputs (named in the test below) or no batch dim
        if name.endswith("self.dropout"):
            continue  # SDPA attention does not call its dropout module
        names.append(name)
    return names


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2], ids=["bert", "gpt2"])
def test_reuse_equals_full_recomputation_for_every_layer(build: Any) -> None:
    model = build()
    x = token_batch()
    names = _attributable(model)
    assert len(names) >= 28  # tiny BERT: 58, tiny GPT-2: 28
    for name in names:
        reused = integrand.integrated_gradients(model, x, 1, layer=name, steps=6, batch_size=7)
        full = integrand.integrated_gradients(model, x, 1, layer=name, steps=6, batch_size=7, reuse=False)
        assert reused.params["reuse"] == "frozen-prefix", name
        assert full.params["reuse"] == "off (reuse=False)"
        scale = float(full.values.abs().max())
        assert scale > 0, name
        assert float((reused.values - full.values).abs().max()) <= 1e-6 * scale, name
        torch.testing.assert_close(reused.score_input, full.score_input, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(reused.score_baseline, full.score_baseline, rtol=1e-12, atol=1e-12)


def test_reuse_with_input_side_and_error_control() -> None:
    model = tiny_bert()
    x = token_batch(batch=2)
    kwargs: dict[str, Any] = {"layer": "bert.encoder.layer.2.output.dense", "layer_side": "input", "tol": 1e-7}
    reused = integrand.integrated_gradients(model, x, 0, **kwargs)
    full = integrand.integrated_gradients(model, x, 0, reuse=False, **kwargs)
    assert reused.params["reuse"] == "frozen-prefix"
    assert bool(reused.converged.all()) and float(reused.relative_error.max()) <= 1e-7
    torch.testing.assert_close(reused.values, full.values, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(reused.steps, full.steps)


def test_lower_modules_run_once_per_example() -> None:
    model = tiny_bert()
    x = token_batch(batch=3)
    layers = model.bert.encoder.layer
    spy = Counting({"embeddings": model.bert.embeddings, "block0": layers[0], "block1": layers[1],
                    "block2": layers[2], "classifier": model.classifier})
    try:
        steps = 20
        integrand.integrated_gradients(model, x, 1, layer="bert.encoder.layer.1", steps=steps, batch_size=8)
        reused = dict(spy.rows)
        spy.rows = dict.fromkeys(spy.rows, 0)
        integrand.integrated_gradients(model, x, 1, layer="bert.encoder.layer.1", steps=steps, batch_size=8,
                                       reuse=False)
        full = dict(spy.rows)
        spy.rows = dict.fromkeys(spy.rows, 0)
        integrand.integrated_gradients(model, x, 1, layer="bert.encoder.layer.1", steps=steps,
                                       input_baseline={"input_ids": 0})
        with_input_baseline = dict(spy.rows)
    finally:
        spy.close()
    # One recording forward; the layer itself is not recomputed either.
    assert reused["embeddings"] == reused["block0"] == reused["block1"] == 3
    assert with_input_baseline["embeddings"] == with_input_baseline["block0"] == 6  # plus the baseline's
    # The part above runs at every point (plus a few scoring passes).
    assert 3 * steps <= reused["block2"] == reused["classifier"] <= 3 * steps + 20
    # The spy does see every point when the lower part is recomputed.
    assert full["embeddings"] >= 3 * steps and full["block0"] >= 3 * steps


class _TableModel(nn.Module):
    """A lower module returns a [length, dim] table: batch-free, but its first dim can equal the batch size."""

    def __init__(self, pooled: bool) -> None:
        super().__init__()
        self.pooled = pooled
        self.embed = nn.Embedding(20, 5)
        self.table = _Table()
        self.mix = nn.Linear(5, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        table = self.table(ids)
        h = torch.tanh(self.mix(self.embed(ids)))
        return self.head((h + (table.mean(dim=0) if self.pooled else table)).mean(dim=1))


class _Table(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 5))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[: ids.shape[1]]


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("batch,length", [(4, 4), (1, 1), (3, 6)])
def test_replay_check_catches_batch_like_tensors(batch: int, length: int, pooled: bool) -> None:
    torch.manual_seed(0)
    model = _TableModel(pooled).to(D)
    ids = torch.randint(0, 20, (batch, length))
    reused = integrand.integrated_gradients(model, ids, 1, layer="mix", steps=12, batch_size=5)
    full = integrand.integrated_gradients(model, ids, 1, layer="mix", steps=12, batch_size=5, reuse=False)
    torch.testing.assert_close(reused.values, full.values, rtol=1e-10, atol=1e-12)
    if batch == length > 1:
        # The table's rows would be sliced as if they were examples: the check sees it and recomputes.
        failure = "replayed output differs" if pooled else "replaying the frozen part failed"
        assert reused.params["reuse"].startswith(f"off ({failure}")
    else:
        assert reused.params["reuse"] == "frozen-prefix"


def test_chunking_and_batch_of_one_agree() -> None:
    model = tiny_gpt2()
    x = token_batch(batch=3)
    whole = integrand.integrated_gradients(model, x, 1, layer="transformer.h.0", steps=10)
    chunked = integrand.integrated_gradients(model, x, 1, layer="transformer.h.0", steps=10, batch_size=3)
    torch.testing.assert_close(chunked.values, whole.values, rtol=1e-10, atol=1e-12)
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in x.items()}
        alone = integrand.integrated_gradients(model, one, 1, layer="transformer.h.0", steps=10)
        torch.testing.assert_close(alone.values[0], whole.values[i], rtol=1e-8, atol=1e-10)


def test_float32_matches_float64() -> None:
    x = token_batch()
    wide = integrand.integrated_gradients(tiny_bert(), x, 2, layer="bert.encoder.layer.0", steps=12)
    narrow = integrand.integrated_gradients(tiny_bert(dtype=torch.float32), x, 2, layer="bert.encoder.layer.0",
                                            steps=12)
    assert narrow.values.dtype == torch.float32
    scale = float(wide.values.abs().max())
    assert float((narrow.values.double() - wide.values).abs().max()) <= 1e-4 * scale


def test_error_control_warns_like_input_ig() -> None:
    model = tiny_bert()
    with pytest.warns(ConvergenceWarning):
        got = integrand.integrated_gradients(model, token_batch(), 1, layer="bert.embeddings", tol=1e-14, max_steps=9)
    assert not bool(got.converged.all())
    assert got.quadrature_error is not None and got.steps.max() <= 9


def test_forward_kwargs_follow_the_examples() -> None:
    model = tiny_bert()
    x = token_batch()
    named = integrand.integrated_gradients(model, x, 1, layer="bert.encoder.layer.1", steps=8, batch_size=5)
    as_kwargs = integrand.integrated_gradients(
        model, {"input_ids": x["input_ids"]}, 1, layer="bert.encoder.layer.1", steps=8, batch_size=5,
        forward_kwargs={"attention_mask": x["attention_mask"]},
    )
    assert as_kwargs.params["reuse"] == "frozen-prefix"
    torch.testing.assert_close(as_kwargs.values, named.values, rtol=1e-12, atol=1e-12)


class _Leaky(nn.Module):
    """Keeps weak references to the tensors its forward produces (tanh/softmax save their outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Linear(6, 6)
        self.high = nn.Linear(6, 3)
        self.made: list[Any] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import weakref

        h = torch.tanh(self.low(x))
        out = torch.softmax(self.high(h), dim=-1)
        self.made += [weakref.ref(h), weakref.ref(out)]
        return out


@pytest.mark.parametrize("layer", [None, "low"])
def test_no_activation_outlives_the_call(layer: str | None) -> None:
    # The memory probe once saved outputs that referenced their own grad_fn: a cycle leaking every probe's graph.
    import gc

    model = _Leaky().to(D)
    integrand.integrated_gradients(model, torch.randn(4, 6, dtype=D), 1, layer=layer, steps=8)
    gc.collect()
    assert model.made and all(ref() is None for ref in model.made)
