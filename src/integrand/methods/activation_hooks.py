"""Swap the backward pass of activation modules, inside a context manager.

A forward pre-hook keeps each activation's input (a differentiable clone for in-place modules,
whose input is overwritten), and a forward hook returns ``rule(module, input, output)`` as the
module's output: same values, new backward. Because the replacement is built from the *input*,
the rule decides the whole backward of the activation (the original one is bypassed). All hooks
are removed on every exit path.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

Rule = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(module, input, output) -> replacement output`` with equal values and a modified backward."""


@contextmanager
def replace_activations(model: torch.nn.Module, kinds: tuple[type[torch.nn.Module], ...], rule: Rule) -> Iterator[int]:
    """Apply ``rule`` to every submodule of the given types while the block runs; yields their count.

    Rules act only when autograd records (gradient passes); plain forward passes are untouched.
    """
    pending: dict[int, list[torch.Tensor]] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def before(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            pending.setdefault(id(module), []).append(x.clone() if getattr(module, "inplace", False) else x)

    def after(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        stack = pending.get(id(module))
        if not stack or not isinstance(output, torch.Tensor):
            return None
        return rule(module, stack.pop(), output)

    try:
        count = 0
        for module in model.modules():
            if isinstance(module, kinds):
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after))
                count += 1
        yield count
    finally:
        for handle in handles:
            handle.remove()
        pending.clear()
