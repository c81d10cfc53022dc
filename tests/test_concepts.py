"""Concept attribution over the concept layer of a concept bottleneck model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from integrand.concepts import concept_attribution
from integrand.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "docs" / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Bottleneck(nn.Module):
    def __init__(self, features: int = 7, concepts: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, concepts))
        self.scores = nn.Sigmoid()
        self.head = nn.Linear(concepts, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.scores(self.encoder(x)))
        return out


NAMES = ("a", "b", "c", "d", "e")


@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_linear_head_closed_form(baseline: float, state_guard: type) -> None:
    torch.manual_seed(0)
    model = Bottleneck().double()
    guard = state_guard(model)
    x = torch.randn(6, 7, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    result = concept_attribution(
        model, x, layer="scores", concepts=NAMES, classes=["x", "y", "z"], labels=labels, baseline=baseline, steps=4
    )
    scores = model.scores(model.encoder(x)).detach()
    weight = model.head.weight.detach()
    for c in range(3):
        rows = labels == c
        expected = weight[c] * (scores[rows] - baseline)
        torch.testing.assert_close(result.results[c].values, expected, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(result.importance[c], expected.mean(dim=0), rtol=1e-12, atol=1e-13)
        assert result.examples[c].tolist() == torch.nonzero(rows)[:, 0].tolist()
    assert result.max_relative_error() < 1e-12
    ranked = result.ranked("y")
    assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
    guard.assert_unchanged()


def test_without_labels_every_class_uses_all_examples() -> None:
    torch.manual_seed(1)
    model = Bottleneck().double()
    x = torch.randn(4, 7, dtype=torch.float64)
    result = concept_attribution(model, x, layer=model.scores, concepts=NAMES, classes=["x", "y", "z"], steps=4)
    scores = model.scores(model.encoder(x)).detach()
    torch.testing.assert_close(result.importance, model.head.weight.detach() * scores.mean(dim=0))
    assert all(e.tolist() == [0, 1, 2, 3] for e in result.examples)


def test_table_and_html_escape_names() -> None:
    torch.manual_seed(2)
    model = Bottleneck().double()
    x = torch.randn(3, 7, dtype=torch.float64)
    result = concept_attribution(
        model, x, layer="scores", concepts=["<i>a</i>", "b", "c", "d", "e"], classes=["x", "y", "<z>"], steps=4
    )
    rows = result.table(k=2)
    assert [r["class"] for r in rows] == ["x", "y", "<z>"]
    html = result.to_html()
    assert "&lt;z&gt;" in html and "<z>" not in html and "<i>" not in html


def test_concepts_example_planted_concepts_are_top_ranked() -> None:
    example = load_example("concepts")
    cfg = example.Config(train=1500, test=200, epochs=250, steps=8)
    model, test, quality = example.train(cfg)
    assert quality["class_accuracy"] > 0.85
    result = example.explain(model, test, cfg)
    for cls in example.CLASSES:
        assert set(result.top(cls, 2)) == set(example.PLANTED[cls]), (cls, result.ranked(cls))
    assert example.linear_head_gap(model, result) < 1e-5


def test_concept_bad_input() -> None:
    model = Bottleneck().double()
    x = torch.randn(4, 7, dtype=torch.float64)
    kw = {"layer": "scores", "concepts": NAMES, "classes": ["x", "y", "z"], "steps": 4}
    with pytest.raises(InputError, match="no examples") as info:
        concept_attribution(model, x, labels=torch.tensor([0, 0, 1, 1]), **kw)  # type: ignore[arg-type]
    assert info.value.argument == "labels"
    for labels in (torch.tensor([0, 1, 3, 0]), torch.tensor([0, 1]), torch.tensor([0.0, 1.0, 2.0, 0.0])):
        with pytest.raises(InputError) as info:
            concept_attribution(model, x, labels=labels, **kw)  # type: ignore[arg-type]
        assert info.value.argument == "labels"
    with pytest.raises(InputError) as info:
        concept_attribution(model, x, layer="scores", concepts=["a", "b"], classes=["x", "y", "z"], steps=4)
    assert info.value.argument == "concepts"
    with pytest.raises(InputError) as info:
        concept_attribution(model, x, layer="scores", concepts=["a"] * 5, classes=["x", "y", "z"], steps=4)
    assert info.value.argument == "concepts"
    with pytest.raises(InputError) as info:
        concept_attribution(model, x, layer="score", concepts=NAMES, classes=["x", "y", "z"], steps=4)
    assert info.value.argument == "layer"
    with pytest.raises(InputError) as info:
        concept_attribution(model, x, layer="scores", concepts=NAMES, classes=[], steps=4)
    assert info.value.argument == "classes"
    result = concept_attribution(model, x, **kw)  # type: ignore[arg-type]
    with pytest.raises(InputError) as info:
        result.ranked(5)
    assert info.value.argument == "cls"
