"""Unlearning a class of a concept bottleneck model by removing the concepts it relies on.

Concept IG (``integrand.concepts``) ranks the concepts of a class. Removing the top ones makes the
model forget that class; the strategies are explicit:

* ``"prune"``: zero the linear head's weights from the chosen concepts into the forgotten class only.
  The other classes' logits do not change; the forgotten class's logit changes by exactly minus the
  IG of the chosen concepts (baseline 0), ``-sum_k W[c, k] * s_k``.
* ``"ablate"``: clamp the chosen concepts to their baseline in the bottleneck, for every class (works
  with any head; the retained classes lose those concepts too).
* ``"retrain"``: clamp the chosen concepts to their baseline and refit the linear head on the retained
  classes' training examples only (the reference point of "exact" unlearning of the head).

The user's model is never changed: every strategy edits a deep copy, returned in the result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .concepts import ConceptAttribution
from .errors import InputError
from .inputs import Inputs
from .layers import LayerSpec, resolve_layer, run_to_layer
from .protocol import NoCompleteness

STRATEGIES = ("prune", "ablate", "retrain")
SELECTIONS = ("ig", "weight", "random")


@dataclass(frozen=True, repr=False)
class Unlearning(NoCompleteness):
    """Accuracies on the forgotten class and on the retained classes before and after removing ``removed``.

    ``logit_change`` is ``[batch, classes]``: the edited model's logits minus the original's on the
    evaluation data. ``model`` is the edited copy (the original is untouched); ``save()`` does not store
    it, so a loaded result has ``model=None``.
    """

    strategy: str
    selection: str
    forget: str
    removed: tuple[str, ...]
    forget_accuracy_before: float
    forget_accuracy_after: float
    retain_accuracy_before: float
    retain_accuracy_after: float
    logit_change: torch.Tensor
    model: nn.Module | None

    AXES = ("example", "class")
    UNSTORED = frozenset({"model"})

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``logit_change``: [examples, classes]."""
        return self.logit_change

    @property
    def params(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "selection": self.selection, "forget": self.forget,
                "removed": list(self.removed)}

    @property
    def method(self) -> str:
        return self.strategy

    def row(self) -> dict[str, str | float]:
        return {
            "strategy": self.strategy, "selection": self.selection, "forget": self.forget, "k": len(self.removed),
            "removed": ", ".join(self.removed),
            "forget acc before": self.forget_accuracy_before, "forget acc after": self.forget_accuracy_after,
            "retain acc before": self.retain_accuracy_before, "retain acc after": self.retain_accuracy_after,
        }


class ConceptClamp(nn.Module):
    """Sets the masked concepts of a ``[batch, concepts]`` tensor to their baseline values."""

    def __init__(self, mask: torch.Tensor, baseline: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.register_buffer("baseline", baseline)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        mask, base = self.mask, self.baseline
        assert isinstance(mask, torch.Tensor) and isinstance(base, torch.Tensor)
        return torch.where(mask, base.to(scores.dtype).expand_as(scores), scores)


def _class_index(forget: int | str, classes: tuple[str, ...]) -> int:
    if isinstance(forget, str):
        if forget not in classes:
            raise InputError("forget", f"unknown class {forget!r}; classes are {list(classes)}")
        return classes.index(forget)
    if isinstance(forget, bool) or not isinstance(forget, int) or not 0 <= forget < len(classes):
        raise InputError("forget", f"expected a class name or an index in [0, {len(classes)}), got {forget!r}")
    return forget


def _linear_head(model: nn.Module, head: nn.Module | str | None, concepts: int, classes: int) -> tuple[str, nn.Linear]:
    if head is None:
        raise InputError("head", "this strategy or selection needs the linear class head (module or dotted name)")
    name, module = resolve_layer(model, head)
    if not isinstance(module, nn.Linear) or module.weight.shape != (classes, concepts):
        raise InputError("head", f"expected nn.Linear({concepts}, {classes}) from concepts to classes, got {module}")
    return name, module


def select_concepts(
    by: str,
    forget: int | str,
    k: int,
    *,
    concepts: Sequence[str],
    classes: Sequence[str],
    attribution: ConceptAttribution | None = None,
    weight: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[str, ...]:
    """The ``k`` concepts to remove for class ``forget``.

    ``"ig"``: largest mean concept IG of the class (``attribution``); ``"weight"``: largest ``|W[c, k]|``
    of the linear head (``weight``, ``[classes, concepts]``); ``"random"``: ``k`` concepts drawn with ``seed``.
    """
    names, labels = tuple(concepts), tuple(classes)
    c = _class_index(forget, labels)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(names):
        raise InputError("k", f"expected an integer in [1, {len(names)}], got {k!r}")
    if by == "ig":
        if attribution is None or attribution.concepts != names or attribution.classes != labels:
            raise InputError("attribution", "selection 'ig' needs a ConceptAttribution over these concepts and classes")
        return tuple(attribution.top(c, k))
    if by == "weight":
        if weight is None or tuple(weight.shape) != (len(labels), len(names)):
            raise InputError("weight", f"selection 'weight' needs the head weight [{len(labels)}, {len(names)}]")
        order = torch.argsort(weight[c].detach().abs().cpu(), descending=True, stable=True)
        return tuple(names[int(i)] for i in order[:k])
    if by == "random":
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))
        return tuple(names[int(i)] for i in order[:k])
    raise InputError("by", f"expected one of {SELECTIONS}, got {by!r}")


def _call(model: Callable[..., Any], inputs: Inputs) -> torch.Tensor:
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise InputError("model", "expected class logits [batch, classes]")
    return out


def _accuracies(logits: torch.Tensor, labels: torch.Tensor, c: int) -> tuple[float, float]:
    pred = logits.argmax(dim=1)
    forget, retain = labels == c, labels != c
    f = float((pred[forget] == c).float().mean()) if bool(forget.any()) else float("nan")
    r = float((pred[retain] == labels[retain]).float().mean()) if bool(retain.any()) else float("nan")
    return f, r


def _check_data(argument: str, data: Any, classes: int) -> tuple[Inputs, torch.Tensor]:
    if not isinstance(data, tuple) or len(data) != 2:
        raise InputError(argument, "expected a pair (inputs, integer labels)")
    inputs, labels = data
    integer = isinstance(labels, torch.Tensor) and labels.dtype in (torch.int64, torch.int32) and labels.dim() == 1
    if not integer or bool(((labels < 0) | (labels >= classes)).any()):
        raise InputError(argument, f"labels must be a 1-D integer tensor with values in [0, {classes})")
    return inputs, labels


def _insert_clamp(model: nn.Module, layer: str, clamp: ConceptClamp) -> None:
    parent_name, _, child = layer.rpartition(".")
    if not child or layer == "<model>":
        raise InputError("layer", "the concept layer must be a submodule of the model")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Sequential(getattr(parent, child), clamp))


def unlearn(
    model: nn.Module,
    data: tuple[Inputs, torch.Tensor],
    *,
    layer: nn.Module | str,
    concepts: Sequence[str],
    classes: Sequence[str],
    forget: int | str,
    remove: Sequence[str],
    strategy: str = "prune",
    selection: str = "given",
    head: nn.Module | str | None = None,
    baseline: float | torch.Tensor = 0.0,
    train: tuple[Inputs, torch.Tensor] | None = None,
    epochs: int = 300,
    lr: float = 0.01,
) -> Unlearning:
    """Make ``model`` forget class ``forget`` by removing the concepts ``remove`` with ``strategy``.

    Args:
        data: ``(inputs, labels)`` on which forget and retain accuracy are measured.
        layer: the concept layer (module or dotted name), output ``[batch, concepts]``.
        remove: concept names to remove (e.g. from ``select_concepts``).
        selection: how ``remove`` was chosen; recorded in the result.
        head: the linear head from concepts to classes ("prune" and "retrain" need it).
        baseline: concept value meaning "absent" (a number or ``[concepts]``), used by "ablate"/"retrain".
        train: ``(inputs, labels)`` to refit the head on ("retrain" uses the retained classes' rows).
        epochs, lr: full-batch Adam steps and learning rate of the refit (deterministic).
    """
    if not isinstance(model, nn.Module):
        raise InputError("model", f"expected an nn.Module, got {type(model).__name__}")
    names, labels_of = tuple(str(c) for c in concepts), tuple(str(c) for c in classes)
    c = _class_index(forget, labels_of)
    if strategy not in STRATEGIES:
        raise InputError("strategy", f"expected one of {STRATEGIES}, got {strategy!r}")
    if isinstance(remove, str) or not remove or len(set(remove)) != len(remove):
        raise InputError("remove", "expected a non-empty sequence of distinct concept names")
    unknown = [r for r in remove if r not in names]
    if unknown:
        raise InputError("remove", f"unknown concepts {unknown}; concepts are {list(names)}")
    inputs, labels = _check_data("data", data, len(labels_of))
    layer_name, layer_module = resolve_layer(model, layer)
    mask = torch.zeros(len(names), dtype=torch.bool)
    mask[[names.index(r) for r in remove]] = True
    base = torch.as_tensor(baseline, dtype=torch.float64).detach().cpu().flatten()
    if base.numel() not in (1, len(names)):
        raise InputError("baseline", f"expected a number or {len(names)} values, got {base.numel()}")
    base = base.expand(len(names)).clone()
    with torch.no_grad():
        before = _call(model, inputs).detach()
    if before.shape[1] != len(labels_of):
        raise InputError("classes", f"the model gives {before.shape[1]} logits for {len(labels_of)} classes")
    edited = copy.deepcopy(model)
    device = next((p.device for p in model.parameters()), before.device)
    if strategy == "prune":
        head_name, _ = _linear_head(model, head, len(names), len(labels_of))
        edited_head = edited.get_submodule(head_name)
        assert isinstance(edited_head, nn.Linear)
        with torch.no_grad():
            edited_head.weight[c, mask.to(edited_head.weight.device)] = 0.0
    else:
        if strategy == "retrain":
            head_name, _ = _linear_head(model, head, len(names), len(labels_of))
            if train is None:
                raise InputError("train", "strategy 'retrain' needs training data (inputs, labels)")
            x_train, y_train = _check_data("train", train, len(labels_of))
            spec = LayerSpec(layer_name, layer_module)
            with torch.no_grad():
                scores = run_to_layer(spec, lambda: _call(model, x_train)).detach()
            if scores.dim() != 2 or scores.shape[1] != len(names):
                shape = tuple(scores.shape)
                raise InputError("layer", f"the concept layer gives {shape}, expected [batch, {len(names)}]")
            keep = y_train != c
            if not bool(keep.any()):
                raise InputError("train", "no training example of a retained class")
            clamped = torch.where(mask.to(scores.device), base.to(scores), scores)[keep]
            _refit(edited.get_submodule(head_name), clamped, y_train[keep].to(scores.device), epochs, lr)
        _insert_clamp(edited, layer_name, ConceptClamp(mask.to(device), base.to(device)))
    edited.eval()
    with torch.no_grad():
        after = _call(edited, inputs).detach()
    y = labels.to(before.device)
    f0, r0 = _accuracies(before, y, c)
    f1, r1 = _accuracies(after, y, c)
    return Unlearning(strategy, selection, labels_of[c], tuple(remove), f0, f1, r0, r1, after - before, edited)


def _refit(head: nn.Module, scores: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float) -> None:
    """Full-batch Adam on cross-entropy, warm-started from the current weights."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError("epochs", f"expected a positive integer, got {epochs!r}")
    if not lr > 0:
        raise InputError("lr", f"expected a positive learning rate, got {lr!r}")
    params = list(head.parameters())
    flags = [p.requires_grad for p in params]
    with torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(epochs):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(head(scores), labels)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    for p, flag in zip(params, flags):
        p.requires_grad_(flag)
        p.grad = None
