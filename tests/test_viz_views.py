"""The view model: each result type becomes panels that keep its numbers exactly."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import integrand
from integrand.viz import (
    FeaturePanel,
    ImagePanel,
    MatrixPanel,
    ResultView,
    SeriesPanel,
    TokenPanel,
    as_view,
    matrix_view,
    token_view,
)
from integrand.viz.adapters import detect_layout
from tests.models import Quadratic
from tests.test_viewer_data import TOKENS, _generation_result, _text_result, _token_ig


def _quadratic_result(shape: tuple[int, ...], labels: dict[str, list[str]] | None = None) -> integrand.Attribution:
    n = math.prod(shape[1:])
    model = Quadratic(torch.linspace(-1, 1, n, dtype=torch.float64), torch.ones(n, dtype=torch.float64))
    x = torch.randn(*shape, dtype=torch.float64)
    res = integrand.integrated_gradients(lambda z: model(z.reshape(z.shape[0], -1)), x, steps=8)
    return replace(res, labels=labels)


@pytest.mark.parametrize(
    ("shape", "labels", "expected"),
    [
        ((8, 8), None, "image"),
        ((3, 5, 5), None, "image"),
        ((2, 50), None, "series"),
        ((10,), None, "features"),
        ((4, 4, 2, 2), None, "features"),
        ((7, 16), ["t"] * 7, "series"),
        ((7, 3), ["t"] * 7, "features"),
        ((2, 3), None, "features"),
    ],
)
def test_detect_layout(shape: tuple[int, ...], labels: list[str] | None, expected: str) -> None:
    assert detect_layout(shape, labels) == expected


def test_image_view_sums_channels_and_keeps_input_and_info() -> None:
    res = _quadratic_result((2, 3, 6, 6))
    res = replace(res, params={**res.params, "example_labels": ["a", "b"], "predictions": ["b", "b"]})
    view = as_view(res)
    assert view.kind == "image" and len(view.examples) == 2
    for b, ex in enumerate(view.examples):
        (panel,) = ex.panels
        assert isinstance(panel, ImagePanel)
        torch.testing.assert_close(panel.values, res.values[b].sum(dim=0))  # type: ignore[index]
        assert panel.image is not None and torch.equal(panel.image, res.inputs[b])  # type: ignore[index]
        assert ex.info.relative_error == pytest.approx(float(res.relative_error[b]))  # type: ignore[index]
        assert ex.info.score == pytest.approx(float(res.score_input[b]))
        assert ex.info.steps == 8 and ex.info.converged is True
    assert [e.info.label for e in view.examples] == ["a", "b"]
    assert [e.info.prediction for e in view.examples] == ["b", "b"]


def test_token_layout_keeps_completeness() -> None:
    res = _token_ig()
    view = as_view(res)
    (panel,) = view.examples[0].panels  # laid out by the params["layout"] saved with the result
    assert isinstance(panel, TokenPanel) and panel.tokens == TOKENS
    # Summing over the embedding dim loses nothing: token scores add up to the total attribution.
    torch.testing.assert_close(panel.scores.sum(), res.total()[0])


def test_series_and_features_layouts() -> None:
    res = _quadratic_result((2, 3, 40), labels={"input": ["pressure", "flow", "temp"]})
    (panel,) = as_view(res).examples[1].panels
    assert isinstance(panel, SeriesPanel) and panel.channels == ("pressure", "flow", "temp")
    assert panel.values.shape == (3, 40) and panel.signal is not None
    torch.testing.assert_close(panel.values, res.values[1])  # type: ignore[index]
    res = _quadratic_result((2, 4), labels={"input": ["age", "bmi", "bp", "s1"]})
    (panel,) = as_view(res).examples[0].panels
    assert isinstance(panel, FeaturePanel) and panel.features == ("age", "bmi", "bp", "s1")
    # An explicit layout overrides the shape heuristic.
    (panel,) = as_view(_quadratic_result((1, 8, 8)), layout="series").examples[0].panels
    assert isinstance(panel, SeriesPanel) and len(panel.channels) == 8


def test_named_inputs_get_one_panel_each_and_bad_layouts_raise() -> None:
    model = lambda image, vec: image.flatten(1).sum(1) + (vec**2).sum(1)  # noqa: E731
    inputs = {"image": torch.randn(2, 1, 6, 6, dtype=torch.float64), "vec": torch.randn(2, 3, dtype=torch.float64)}
    res = integrand.integrated_gradients(model, inputs, steps=4)
    panels = as_view(res).examples[0].panels
    assert [(p.name, p.type) for p in panels] == [("image", "image"), ("vec", "features")]
    with pytest.raises(integrand.InputError) as err:
        as_view(res, layout={"nope": "image"})
    assert err.value.argument == "layout"
    with pytest.raises(integrand.InputError) as err:
        as_view(res, layout="circle")
    assert err.value.argument == "layout"
    with pytest.raises(integrand.InputError) as err:
        as_view(res, layout={"vec": "image"})
    assert err.value.argument == "layout"


def test_token_attribution_view() -> None:
    text = _text_result()
    view = as_view(text)
    assert view.kind == "tokens"
    tokens, words = view.examples[0].panels
    assert isinstance(tokens, TokenPanel) and tokens.tokens == text.tokens
    torch.testing.assert_close(tokens.scores, text.scores.double())
    assert isinstance(words, TokenPanel) and words.tokens == text.words
    info = view.examples[0].info
    assert (info.label, info.prediction) == ("toxic", "toxic")
    assert info.relative_error == pytest.approx(text.relative_error)
    assert info.score == pytest.approx(text.score_input) and info.steps == 32


def test_generation_view_blanks_later_sources() -> None:
    gen = _generation_result()
    view = as_view(gen)
    (panel,) = view.examples[0].panels
    assert isinstance(panel, MatrixPanel)
    assert panel.sources == gen.source_tokens and panel.targets == gen.target_tokens
    for k in range(len(gen.target_tokens)):
        assert bool(panel.values[k, gen.n_prompt + k :].isnan().all())
        torch.testing.assert_close(panel.values[k, : gen.n_prompt + k], gen.matrix[k, : gen.n_prompt + k])
    info = view.examples[0].info
    assert info.relative_error == pytest.approx(float(gen.relative_error.max()))
    assert info.converged is False  # one target token did not converge


def test_group_like_results_become_bars() -> None:
    groups = SimpleNamespace(
        names=("sensor", "control"), sums=torch.tensor([[1.0, -2.0], [0.5, 0.5]]), method="ig",
        relative_error=torch.tensor([1e-3, 2e-3]),
    )
    view = as_view(groups)
    assert view.kind == "features" and len(view.examples) == 2
    (panel,) = view.examples[0].panels
    assert isinstance(panel, FeaturePanel) and panel.features == ("sensor", "control")
    assert view.examples[1].info.relative_error == pytest.approx(2e-3)


def test_builders_validate_shapes() -> None:
    view = token_view([["a", "b"], ["c"]], torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    assert [p.tokens for e in view.examples for p in e.panels] == [("a", "b"), ("c",)]  # type: ignore[union-attr]
    assert view.examples[1].panels[0].scores.tolist() == [3.0]  # type: ignore[union-attr]
    with pytest.raises(integrand.InputError) as err:
        token_view(["a", "b", "c"], [1.0, 2.0])
    assert err.value.argument == "scores"
    with pytest.raises(integrand.InputError) as err:
        matrix_view(["a", "b"], ["c"], torch.zeros(2, 2))
    assert err.value.argument == "matrix"
    with pytest.raises(integrand.InputError) as err:
        token_view("abc", [1.0])
    assert err.value.argument == "tokens"


def test_viewable_protocol_and_unknown_results() -> None:
    custom = ResultView("mine", "m", ())

    class Custom:
        def result_view(self) -> ResultView:
            return custom

    assert as_view(Custom()) is custom
    assert as_view(custom) is custom
    with pytest.raises(integrand.InputError) as err:
        as_view(object())
    assert err.value.argument == "result"
