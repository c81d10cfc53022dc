"""Bad input to circuit patching raises integrand errors naming the argument; the model is left unchanged."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from integrand import InputError, ModelError
from integrand.circuits import Layout, intervene, layout_for, logit_diff, patching
from tests.reference.circuit_models import tiny_gpt2, token_pairs

METRIC = logit_diff([3, 4, 5], [6, 7, 8])


def _raises(error: type[Exception], argument: str, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(error) as info:
        patching(*args, **kwargs)
    assert getattr(info.value, "argument", None) == argument, str(info.value)


def test_different_lengths_need_explicit_alignment(state_guard: Any) -> None:
    model = tiny_gpt2()
    guard = state_guard(model)
    clean, corrupted = token_pairs(length=6)
    longer = torch.cat([corrupted, corrupted[:, -1:]], dim=1)
    with pytest.raises(InputError, match="align=") as info:
        patching(model, clean, longer, METRIC)
    assert info.value.argument == "corrupted"
    # Aligned explicitly: clean position i corresponds to corrupted position i + 1 (one token inserted at 1).
    inserted = torch.cat([corrupted[:, :1], corrupted[:, :1], corrupted[:, 1:]], dim=1)
    align = [(0, 0)] + [(i, i + 1) for i in range(1, 6)]
    res = patching(model, clean, inserted, METRIC, components="resid.1", align=align)
    assert res.names == tuple(f"resid.1.{i}" for i in (0, 2, 3, 4, 5, 6))
    layout = layout_for(model)
    clean_acts: dict[Any, torch.Tensor] = {}
    with torch.no_grad(), intervene(model, layout, {("resid", 1): lambda a: clean_acts.setdefault("a", a)}):
        model(clean)

    def put(a: torch.Tensor) -> torch.Tensor:
        a = a.clone()
        a[:, 4] = clean_acts["a"][:, 3]
        return a

    with torch.no_grad(), intervene(model, layout, {("resid", 1): put}):
        patched = float(METRIC(model(inserted).logits))
    assert res.score("resid.1.4") == pytest.approx(patched - res.metric_corrupted, rel=1e-12)
    for bad in ([(0, 0), (1, 0)], [(0, 9)], [(0,)], "01", [], [(True, 0)]):
        _raises(InputError, "align", model, clean, inserted, METRIC, align=bad)
    guard.assert_unchanged()


@pytest.mark.parametrize("name", ["mlpp", "mlp.2", "mlp.0.6", "head.0.2", "resid.1.x", "attn.0.1.2", "", "mlp."])
def test_unknown_components(name: str) -> None:
    _raises(InputError, "components", tiny_gpt2(), *token_pairs(), METRIC, components=[name])


def test_empty_or_non_string_components() -> None:
    _raises(InputError, "components", tiny_gpt2(), *token_pairs(), METRIC, components=[])
    _raises(InputError, "components", tiny_gpt2(), *token_pairs(), METRIC, components=[("mlp", 0)])


@pytest.mark.parametrize("method", ["activation", "attribution", "ig", "relp"])
def test_metric_must_return_a_scalar(method: str, state_guard: Any) -> None:
    model = tiny_gpt2()
    guard = state_guard(model)
    per_pair = lambda logits: logits[:, -1, 3]  # noqa: E731 -- one value per pair, not a scalar
    with pytest.raises(InputError, match="0-dim") as info:
        patching(model, *token_pairs(), per_pair, method=method)
    assert info.value.argument == "metric"
    _raises(InputError, "metric", model, *token_pairs(), lambda logits: 1.0, method=method)
    _raises(InputError, "metric", model, *token_pairs(), "logit_diff", method=method)
    guard.assert_unchanged()


@pytest.mark.parametrize("method", ["attribution", "ig", "relp"])
def test_gradient_methods_need_a_differentiable_metric(method: str) -> None:
    detached = lambda logits: METRIC(logits).detach()  # noqa: E731
    _raises(ModelError, "metric", tiny_gpt2(), *token_pairs(), detached, method=method)


def test_non_finite_metric() -> None:
    _raises(ModelError, "metric", tiny_gpt2(), *token_pairs(), lambda logits: METRIC(logits) / 0.0)


def test_other_bad_arguments() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    _raises(InputError, "method", model, clean, corrupted, METRIC, method="gradient")
    _raises(InputError, "ig_path", model, clean, corrupted, METRIC, method="ig", ig_path="input")
    _raises(InputError, "steps", model, clean, corrupted, METRIC, method="ig", steps=0)
    _raises(InputError, "rule", model, clean, corrupted, METRIC, method="ig", rule="simpson")
    _raises(InputError, "batch_size", model, clean, corrupted, METRIC, batch_size=0)
    _raises(InputError, "rules", model, clean, corrupted, METRIC, method="attribution", rules=object())
    _raises(InputError, "corrupted", model, clean, corrupted[:2], METRIC)
    _raises(InputError, "clean", model, clean[0], corrupted, METRIC)
    _raises(InputError, "corrupted", model, clean, [1, 2], METRIC)
    _raises(InputError, "clean", model, {"input_ids": clean, "attention_mask": torch.ones(2, 6)}, corrupted, METRIC)
    _raises(InputError, "model", torch.nn.Linear(3, 3), clean, corrupted, METRIC)
    _raises(InputError, "layout", model, clean, corrupted, METRIC, layout=Layout(("nope",), ("nope",), ("nope",), 2))
    _raises(InputError, "layout", model, clean, corrupted, METRIC, layout="gpt2")
    model.train()
    _raises(InputError, "model", model, clean, corrupted, METRIC)


def test_named_inputs_and_forward_kwargs() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    mask = torch.ones_like(clean)
    plain = patching(model, clean, corrupted, METRIC, components="mlp")
    named = patching(
        model, {"input_ids": clean, "attention_mask": mask}, {"input_ids": corrupted, "attention_mask": mask},
        METRIC, components="mlp", batch_size=7,
    )  # fmt: skip
    kwargs = patching(model, clean, corrupted, METRIC, components="mlp", forward_kwargs={"attention_mask": mask})
    torch.testing.assert_close(named.scores, plain.scores)
    torch.testing.assert_close(kwargs.scores, plain.scores)


def test_layout_for_unknown_and_incomplete_layouts() -> None:
    with pytest.raises(InputError) as info:
        layout_for(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert info.value.argument == "model"
    with pytest.raises(InputError) as info:
        Layout(("a", "b"), ("a",), ("a", "b"), 2)
    assert info.value.argument == "layout"
    with pytest.raises(InputError):
        Layout((), (), (), 0)
