"""Shared fixtures. One torch thread: the build machines' two cores are often shared."""

from __future__ import annotations

import copy
from typing import Iterator

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class ModelState:
    """Snapshot of everything integrand promises to leave unchanged on a module."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.params = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.requires_grad = {k: p.requires_grad for k, p in model.named_parameters()}
        self.grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
        self.training = {k: m.training for k, m in model.named_modules()}
        self.hooks = {k: self._hook_count(m) for k, m in model.named_modules()}

    @staticmethod
    def _hook_count(m: torch.nn.Module) -> int:
        return sum(
            len(getattr(m, name))
            for name in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_backward_hooks",
                "_backward_pre_hooks",
            )
            if hasattr(m, name)
        )

    def assert_unchanged(self) -> None:
        now = ModelState(self.model)
        assert now.params.keys() == self.params.keys()
        for k in self.params:
            assert torch.equal(now.params[k], self.params[k]), k
        assert now.requires_grad == self.requires_grad
        for k, g in self.grads.items():
            other = now.grads[k]
            assert (g is None and other is None) or (g is not None and other is not None and torch.equal(g, other)), k
        assert now.training == self.training
        assert now.hooks == self.hooks


@pytest.fixture
def state_guard() -> Iterator[type[ModelState]]:
    yield ModelState


def clone(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests run only with RUN_SLOW=1 (CI sets it when they fit its time budget)."""
    import os

    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow; set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
