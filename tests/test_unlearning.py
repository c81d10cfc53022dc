"""Unlearning a class of a concept bottleneck by removing concepts chosen by concept IG."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from integrand.concepts import concept_attribution
from integrand.errors import InputError
from integrand.unlearning import select_concepts, unlearn

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("a", "b", "c", "d", "e")
CLASSES = ("x", "y", "z")


class Bottleneck(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 5))
        self.scores = nn.Sigmoid()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.scores(self.encoder(x)))
        return out


def small() -> tuple[Bottleneck, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = Bottleneck().double().eval()
    x = torch.randn(12, 7, dtype=torch.float64)
    return model, x, torch.arange(12) % 3


def test_prune_changes_the_forgotten_logit_by_minus_the_ig_of_the_removed_concepts(state_guard: type) -> None:
    model, x, y = small()
    guard = state_guard(model)
    attribution = concept_attribution(model, x, layer="scores", concepts=NAMES, classes=CLASSES, steps=4)
    remove = select_concepts("ig", "y", 2, concepts=NAMES, classes=CLASSES, attribution=attribution)
    result = unlearn(model, (x, y), layer="scores", concepts=NAMES, classes=CLASSES, forget="y", remove=remove,
                     head="head")
    index = [NAMES.index(r) for r in remove]
    predicted = -attribution.results[1].values[:, index].sum(dim=1)  # IG = W[c, k] * s_k for a linear head
    torch.testing.assert_close(result.logit_change[:, 1], predicted, rtol=1e-12, atol=1e-12)
    assert torch.equal(result.logit_change[:, [0, 2]], torch.zeros(12, 2, dtype=torch.float64))
    assert result.removed == remove and result.strategy == "prune" and result.forget == "y"
    guard.assert_unchanged()


def test_ablate_moves_every_logit_by_the_removed_concepts_times_their_weights(state_guard: type) -> None:
    model, x, y = small()
    guard = state_guard(model)
    base = torch.tensor([0.5, 0.2, 0.5, 0.1, 0.3], dtype=torch.float64)
    result = unlearn(model, (x, y), layer=model.scores, concepts=NAMES, classes=CLASSES, forget=2,
                     remove=["b", "e"], strategy="ablate", baseline=base)
    with torch.no_grad():
        s = model.scores(model.encoder(x))
        expected = -(s[:, [1, 4]] - base[[1, 4]]) @ model.head.weight[:, [1, 4]].T
    torch.testing.assert_close(result.logit_change, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), model(x) + expected)
    guard.assert_unchanged()


def test_selection_by_weight_and_random() -> None:
    weight = torch.tensor([[0.1, -3.0, 2.0, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0], [0.0] * 5])
    assert select_concepts("weight", "x", 2, concepts=NAMES, classes=CLASSES, weight=weight) == ("b", "c")
    a = select_concepts("random", "x", 3, concepts=NAMES, classes=CLASSES, seed=4)
    assert a == select_concepts("random", "x", 3, concepts=NAMES, classes=CLASSES, seed=4)
    assert len(set(a)) == 3 and set(a) <= set(NAMES)
    draws = {select_concepts("random", "x", 3, concepts=NAMES, classes=CLASSES, seed=s) for s in range(8)}
    assert len(draws) > 1


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "docs" / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_ig_chosen_concepts_make_the_synthetic_model_forget_a_class() -> None:
    example = load_example("unlearning")
    task = example.animals(epochs=250, train_size=1500)
    common = dict(layer="concepts", concepts=task.concepts, classes=task.classes, head="head")
    after, random = [], []
    for forget in task.classes:
        chosen = select_concepts("ig", forget, 2, concepts=task.concepts, classes=task.classes,
                                 attribution=task.attribution)
        ig = unlearn(task.model, task.test, forget=forget, remove=chosen, strategy="ablate", **common)
        assert ig.forget_accuracy_before > 0.85
        assert ig.retain_accuracy_after >= ig.retain_accuracy_before - 0.02, ig.row()
        after.append(ig.forget_accuracy_after)
        random += [
            unlearn(task.model, task.test, forget=forget, strategy="ablate", **common,
                    remove=select_concepts("random", forget, 2, concepts=task.concepts, classes=task.classes,
                                           seed=s)).forget_accuracy_after
            for s in range(5)
        ]
    # Measured when written: IG mean 0.23 (bird 0.00 ... insect 0.47), random (5 draws per class) 0.94.
    assert statistics.fmean(after) < 0.4
    assert statistics.fmean(random) > statistics.fmean(after) + 0.4
    retrain = unlearn(task.model, task.test, forget="fish", strategy="retrain", train=task.train, epochs=100,
                      lr=0.05, remove=("scales", "fins"), **common)
    assert retrain.forget_accuracy_after < 0.05
    assert retrain.retain_accuracy_after > 0.85
    with torch.no_grad():
        assert torch.equal(task.model(task.test[0]).argmax(1) == task.test[1],
                           task.model(task.test[0]).argmax(1) == task.test[1])
    assert retrain.model is not task.model and retrain.model.head is not task.model.head


def test_typed_errors_name_the_argument() -> None:
    model, x, y = small()
    attribution = concept_attribution(model, x, layer="scores", concepts=NAMES, classes=CLASSES, steps=2)
    base = dict(layer="scores", concepts=NAMES, classes=CLASSES)
    cases = [
        ("forget", lambda: unlearn(model, (x, y), forget="dog", remove=["a"], head="head", **base)),
        ("forget", lambda: select_concepts("ig", 3, 1, concepts=NAMES, classes=CLASSES, attribution=attribution)),
        ("k", lambda: select_concepts("ig", "x", 0, concepts=NAMES, classes=CLASSES, attribution=attribution)),
        ("k", lambda: select_concepts("ig", "x", 6, concepts=NAMES, classes=CLASSES, attribution=attribution)),
        ("k", lambda: select_concepts("ig", "x", True, concepts=NAMES, classes=CLASSES, attribution=attribution)),
        ("by", lambda: select_concepts("gradient", "x", 1, concepts=NAMES, classes=CLASSES)),
        ("attribution", lambda: select_concepts("ig", "x", 1, concepts=NAMES, classes=CLASSES)),
        ("weight", lambda: select_concepts("weight", "x", 1, concepts=NAMES, classes=CLASSES)),
        ("strategy", lambda: unlearn(model, (x, y), forget="x", remove=["a"], strategy="erase", **base)),
        ("remove", lambda: unlearn(model, (x, y), forget="x", remove=["zz"], **base)),
        ("remove", lambda: unlearn(model, (x, y), forget="x", remove="a", **base)),
        ("head", lambda: unlearn(model, (x, y), forget="x", remove=["a"], **base)),
        ("head", lambda: unlearn(model, (x, y), forget="x", remove=["a"], head="encoder.0", **base)),
        ("train", lambda: unlearn(model, (x, y), forget="x", remove=["a"], strategy="retrain", head="head", **base)),
        ("data", lambda: unlearn(model, (x, y.float()), forget="x", remove=["a"], head="head", **base)),
        ("baseline", lambda: unlearn(model, (x, y), forget="x", remove=["a"], strategy="ablate",
                                     baseline=torch.zeros(3), **base)),
        ("layer", lambda: unlearn(model, (x, y), forget="x", remove=["a"], head="head", layer="nope",
                                  concepts=NAMES, classes=CLASSES)),
    ]
    for argument, call in cases:
        with pytest.raises(InputError) as info:
            call()
        assert info.value.argument == argument, (argument, info.value)
