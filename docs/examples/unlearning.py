"""Unlearning a class of a concept bottleneck model: which concepts to remove, chosen by IG, by weight or at random.

Two concept bottleneck models with known concepts:

* the synthetic animals of ``docs/examples/concepts.py`` (12 concepts, 4 classes, 2 planted concepts
  per class);
* the wine recognition data of scikit-learn (13 chemical measurements as concepts, 3 cultivars): the
  concept layer standardises the measurements, so the baseline 0 is the training mean.

For every class in turn, the ``k`` concepts to remove are chosen by concept IG (on the training
data), by the head's weight magnitude ``|W[c, k]|``, or at random (10 seeds), and removed with each
strategy of ``integrand.unlearning``. Forget-class and retain-class accuracy are measured on the
test data and averaged over the forgotten classes.

Run: ``python docs/examples/unlearning.py [--quiet]`` (about a minute on one CPU thread).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

import integrand
from integrand.concepts import ConceptAttribution, concept_attribution
from integrand.unlearning import STRATEGIES, select_concepts, unlearn

SEEDS = 10


def load_concepts_example() -> ModuleType:
    path = Path(__file__).resolve().parent / "concepts.py"
    spec = importlib.util.spec_from_file_location("example_concepts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Task:
    """A trained concept bottleneck with its data and concept IG (on the training data)."""

    name: str
    model: nn.Module
    concepts: tuple[str, ...]
    classes: tuple[str, ...]
    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    attribution: ConceptAttribution


def animals(epochs: int = 400, train_size: int = 3000) -> Task:
    """The concepts example's model, data regenerated with the same seed (so identical)."""
    ex = load_concepts_example()
    cfg = ex.Config(train=train_size, epochs=epochs)
    model, test, _ = ex.train(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    mixing = torch.randn(cfg.features, len(ex.CONCEPTS), generator=gen)
    x, _, y = ex.make_data(cfg.train, cfg, gen, mixing)
    attribution = concept_attribution(model, x, layer="concepts", concepts=ex.CONCEPTS, classes=ex.CLASSES,
                                      labels=y, steps=8)
    return Task("animals (synthetic)", model, ex.CONCEPTS, ex.CLASSES, (x, y), (test[0], test[2]), attribution)


class Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (x - self.mean) / self.std
        return out


class WineBottleneck(nn.Module):
    """Measurements -> standardised measurements (the ``concepts`` layer) -> linear head."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.concepts = Standardise(mean, std)
        self.head = nn.Linear(mean.shape[0], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.concepts(x))
        return out


def wine(seed: int = 0, epochs: int = 500) -> Task:
    from sklearn.datasets import load_wine

    data = load_wine()
    x_all = torch.tensor(data.data, dtype=torch.float32)
    y_all = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(seed))
    cut = int(0.6 * len(order))
    tr, te = order[:cut], order[cut:]
    x, y = x_all[tr], y_all[tr]
    torch.manual_seed(seed)
    model = WineBottleneck(x.mean(dim=0), x.std(dim=0), 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    concepts = tuple(str(n) for n in data.feature_names)
    classes = tuple(f"cultivar_{n}" for n in range(3))
    attribution = concept_attribution(model, x, layer="concepts", concepts=concepts, classes=classes, labels=y,
                                      steps=8)
    return Task("wine (scikit-learn)", model, concepts, classes, (x, y), (x_all[te], y_all[te]), attribution)


def run(task: Task, strategy: str, selection: str, forget: str, k: int, seed: int = 0) -> tuple[float, float]:
    weight = task.model.get_parameter("head.weight")
    remove = select_concepts(selection, forget, k, concepts=task.concepts, classes=task.classes,
                             attribution=task.attribution, weight=weight, seed=seed)
    result = unlearn(task.model, task.test, layer="concepts", concepts=task.concepts, classes=task.classes,
                     forget=forget, remove=remove, strategy=strategy, selection=selection, head="head",
                     train=task.train, epochs=150, lr=0.05)
    return result.forget_accuracy_after, result.retain_accuracy_after


def sweep(task: Task, ks: tuple[int, ...], progress: Any) -> list[dict[str, Any]]:
    """Mean over forgotten classes of forget/retain accuracy after removal, per strategy, k and selection."""
    rows = []
    for strategy in STRATEGIES:
        for k in ks:
            cell: dict[str, Any] = {"task": task.name, "strategy": strategy, "k": k}
            for selection, seeds in (("ig", [0]), ("weight", [0]), ("random", list(range(SEEDS)))):
                per_seed = []
                for seed in seeds:
                    runs = [run(task, strategy, selection, cls, k, seed) for cls in task.classes]
                    per_seed.append(tuple(statistics.fmean(v) for v in zip(*runs)))
                    progress(len(task.classes))
                forget = [f for f, _ in per_seed]
                retain = [r for _, r in per_seed]
                cell[selection] = (statistics.fmean(forget), statistics.pstdev(forget),
                                   statistics.fmean(retain), statistics.pstdev(retain))
            rows.append(cell)
    return rows


def baseline_accuracy(task: Task) -> tuple[float, float]:
    with torch.no_grad():
        pred = task.model(task.test[0]).argmax(dim=1)
    y = task.test[1]
    per_class = [float((pred[y == c] == c).float().mean()) for c in range(len(task.classes))]
    retain = [float((pred[y != c] == y[y != c]).float().mean()) for c in range(len(task.classes))]
    return statistics.fmean(per_class), statistics.fmean(retain)


def fmt(value: tuple[float, float, float, float], random: bool) -> tuple[str, str]:
    if random:
        return f"{value[0]:.2f} ± {value[1]:.2f}", f"{value[2]:.2f} ± {value[3]:.2f}"
    return f"{value[0]:.2f}", f"{value[2]:.2f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    tasks = [(animals(), (1, 2, 3, 4)), (wine(), (1, 2, 3, 4, 6))]
    trained = time.perf_counter() - start
    print(f"integrand {integrand.__version__}; trained and attributed in {trained:.1f} s (1 thread)")
    for task, _ in tasks:
        forget0, retain0 = baseline_accuracy(task)
        tops = "; ".join(f"{c}: {', '.join(task.attribution.top(c, 3))}" for c in task.classes)
        print(f"{task.name}: test forget-class accuracy {forget0:.2f}, retain accuracy {retain0:.2f} "
              f"(means over classes); IG top-3: {tops}")
    total = sum(len(STRATEGIES) * len(ks) * (2 + SEEDS) * len(t.classes) for t, ks in tasks)
    from rich.progress import Progress

    rows = []
    with Progress(disable=args.quiet, transient=True) as bar:
        job = bar.add_task("unlearning", total=total)
        for task, ks in tasks:
            rows += sweep(task, ks, lambda n: bar.advance(job, n))
    print(f"sweep done in {time.perf_counter() - start - trained:.1f} s")
    print("| data | strategy | k | forget acc: IG | weight | random | retain acc: IG | weight | random |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        (fi, ri), (fw, rw), (fr, rr) = fmt(row["ig"], False), fmt(row["weight"], False), fmt(row["random"], True)
        print(f"| {row['task']} | {row['strategy']} | {row['k']} | {fi} | {fw} | {fr} | {ri} | {rw} | {rr} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
