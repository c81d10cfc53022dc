"""Concept attribution on a concept bottleneck model trained here on data with planted concepts.

Each of four animal classes is defined by two planted concepts; four distractor concepts occur at
random in every class. Inputs are noisy random mixtures of the concept indicators. A concept
bottleneck (encoder -> sigmoid concept scores -> linear class head) is trained jointly on class
and concept labels, then IG over the concept layer ranks each class's concepts.

Run: ``python docs/examples/concepts.py`` (about two seconds on one CPU thread).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

import integrand
from integrand.concepts import ConceptAttribution, concept_attribution

CLASSES = ("bird", "fish", "cat", "insect")
PLANTED = {"bird": ("feathers", "beak"), "fish": ("scales", "fins"), "cat": ("fur", "whiskers"),
           "insect": ("six_legs", "antennae")}
DISTRACTORS = ("striped", "large", "spotted", "nocturnal")
CONCEPTS = tuple(c for cls in CLASSES for c in PLANTED[cls]) + DISTRACTORS


@dataclass(frozen=True)
class Config:
    train: int = 3000
    test: int = 400
    features: int = 32
    noise: float = 0.4
    epochs: int = 400
    steps: int = 32
    seed: int = 0


def make_data(n: int, cfg: Config, gen: torch.Generator, mixing: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Inputs ``[n, features]``, concept indicators ``[n, concepts]`` and class labels ``[n]``."""
    labels = torch.randint(0, len(CLASSES), (n,), generator=gen)
    planted = torch.zeros(len(CLASSES), len(CONCEPTS))
    for c, cls in enumerate(CLASSES):
        for name in PLANTED[cls]:
            planted[c, CONCEPTS.index(name)] = 1.0
    # A class shows its own concepts 90% of the time, another class's 5%; distractors 30% everywhere.
    prob = torch.where(planted[labels] > 0, 0.9, 0.05)
    prob[:, -len(DISTRACTORS):] = 0.3
    concepts = (torch.rand(n, len(CONCEPTS), generator=gen) < prob).float()
    x = concepts @ mixing.T + cfg.noise * torch.randn(n, cfg.features, generator=gen)
    return x, concepts, labels


class ConceptBottleneck(nn.Module):
    """x -> concept scores in [0, 1] (the ``concepts`` layer) -> class logits (linear head)."""

    def __init__(self, features: int, concepts: int, classes: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, concepts))
        self.concepts = nn.Sigmoid()
        self.head = nn.Linear(concepts, classes)

    def concept_logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.concepts(self.encoder(x)))
        return out


def train(cfg: Config) -> tuple[ConceptBottleneck, tuple[torch.Tensor, ...], dict[str, float]]:
    gen = torch.Generator().manual_seed(cfg.seed)
    mixing = torch.randn(cfg.features, len(CONCEPTS), generator=gen)
    x, c, y = make_data(cfg.train, cfg, gen, mixing)
    test = make_data(cfg.test, cfg, gen, mixing)
    torch.manual_seed(cfg.seed)
    model = ConceptBottleneck(cfg.features, len(CONCEPTS), len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + nn.functional.binary_cross_entropy_with_logits(
            model.concept_logits(x), c
        )
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tx, tc, ty = test
    with torch.no_grad():
        accuracy = float((model(tx).argmax(1) == ty).float().mean())
        concept_accuracy = float(((model.concept_logits(tx) > 0).float() == tc).float().mean())
    return model, test, {"class_accuracy": accuracy, "concept_accuracy": concept_accuracy}


def explain(model: ConceptBottleneck, test: tuple[torch.Tensor, ...], cfg: Config) -> ConceptAttribution:
    x, _, y = test
    return concept_attribution(model, x, layer="concepts", concepts=CONCEPTS, classes=CLASSES, labels=y,
                               steps=cfg.steps)


def linear_head_gap(model: ConceptBottleneck, result: ConceptAttribution) -> float:
    """Largest |IG - W[c] * s| over classes and examples: the closed form for a linear head."""
    gap = 0.0
    for c, r in enumerate(result.results):
        scores = r.inputs  # layer IG reports the concept scores at the inputs
        assert isinstance(scores, torch.Tensor) and isinstance(r.values, torch.Tensor)
        gap = max(gap, float((r.values - model.head.weight[c] * scores).abs().max()))
    return gap


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    cfg = Config()
    start = time.perf_counter()
    model, test, quality = train(cfg)
    trained = time.perf_counter() - start
    result = explain(model, test, cfg)
    total = time.perf_counter() - start
    print(f"integrand {integrand.__version__}; trained in {trained:.1f} s, total {total:.1f} s (1 thread)")
    print(f"test class accuracy {quality['class_accuracy']:.3f}, concept accuracy {quality['concept_accuracy']:.3f}")
    print(f"max completeness error {result.max_relative_error():.1e}; "
          f"linear-head closed form gap {linear_head_gap(model, result):.1e}")
    print("| class | planted | top-ranked concepts (mean IG over the class's test examples) | planted on top |")
    print("|---|---|---|---|")
    for cls in CLASSES:
        ranked = result.ranked(cls)
        top = ", ".join(f"{n} {v:+.2f}" for n, v in ranked[:4])
        hit = set(result.top(cls, 2)) == set(PLANTED[cls])
        print(f"| {cls} | {', '.join(PLANTED[cls])} | {top} | {'yes' if hit else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
