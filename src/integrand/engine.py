"""Scores and input gradients of a model at blocks of points, and how many points go in a block.

Every gradient method on model inputs evaluates through ``Engine``; the integrator and
``paths.accumulate`` do the weighting, and ``column_gradients`` is the one reverse-mode loop that
every evaluator (this one, generation's ``Scorer``, the circuits runner) runs its backward passes
through. ``Engine.gradients`` evaluates the target score and its gradient w.r.t. the inputs at a
block of points, one chunk of ``chunk`` points per forward/backward. ``Engine.along`` presents the
straight-line paths in the evaluation protocol of ``integrate`` (points in, contributions and
scores out), which reduces each chunk as it arrives, so gradients for all points never need to
live in memory at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch

from .checks import check_call
from .errors import InputError, ModelError
from .inputs import InputSet, call_model, gather_kwargs
from .integrate import Evaluate
from .paths import line
from .targets import Target, select

DEFAULT_MEMORY_FRACTION = 0.25
"""Share of currently available memory (host RAM, or free GPU memory) used when no budget is given."""

BYTES_PER_SAVED = 3 << 19
"""On CPU, the autograd memory a chunk should hold per tensor autograd saves: 1.5 MiB (``bench/chunks.py``).

Each saved tensor stands for one operation of the forward and backward passes, and each operation
has a fixed dispatch cost besides its work on the chunk's data. A chunk is large enough once that
work dominates; larger chunks then stop paying and only cost memory. Measured with one thread on
five models, from the digits CNN (best at ~1000 points per pass) to a 512-token GPT-2-like model
(best at 2): 1 MiB and 1.5 MiB land within 7% and 4% of the fastest fixed chunk; 2 MiB puts 39
points in a chunk of the 32x32 CNN, whose best is 32, for 20% more memory."""


def available_memory(device: torch.device) -> int:
    """Bytes currently free on ``device`` (host RAM for CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 8 << 30


def default_memory_budget(device: torch.device) -> int:
    return int(available_memory(device) * DEFAULT_MEMORY_FRACTION)


def _parameter_storages(model: Any) -> set[int]:
    if isinstance(model, torch.nn.Module):
        return {p.untyped_storage().data_ptr() for p in model.parameters()} | {
            b.untyped_storage().data_ptr() for b in model.buffers()
        }
    return set()


@dataclass(frozen=True)
class Probe:
    """The model output at the inputs, the autograd memory one point costs and how many tensors
    autograd saves in one pass (a count of the pass's operations)."""

    output: torch.Tensor
    bytes_per_point: int
    saved_tensors: int = 1


T = TypeVar("T")


def autograd_bytes(model: Any, run: Callable[[], T]) -> tuple[T, int, int]:
    """Run ``run()`` with autograd on; count the bytes autograd saves (parameters and buffers excluded)
    and the tensors it saves (all of them)."""
    shared = _parameter_storages(model)
    seen: set[int] = set()
    saved = 0
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved, count
        count += 1
        ptr = t.untyped_storage().data_ptr()
        if ptr not in shared and ptr not in seen:
            seen.add(ptr)
            saved += t.untyped_storage().nbytes()
        # Not ``t`` itself: a saved output would then hold its own grad_fn, a cycle that leaks the graph.
        return t.detach()

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return out, saved, count


def probe(model: Callable[..., Any], inputs: InputSet, forward_kwargs: Mapping[str, Any] | None) -> Probe:
    """Forward the inputs with autograd on, counting the bytes autograd saves per example.

    Every method's first forward pass: the model call is checked here first (``checks.check_call``).
    """
    check_call(model, inputs, forward_kwargs)
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.tensors.items()}
    example = torch.arange(inputs.batch, device=inputs.device)
    kwargs = gather_kwargs(forward_kwargs, inputs.batch, example)
    output, saved, count = autograd_bytes(model, lambda: call_model(model, inputs, leaves, kwargs))
    # Inputs, their gradients and the output count too; autograd buffers roughly double at backward.
    per_point = 2 * saved // inputs.batch + 3 * sum(inputs.sizes()) * inputs.tensors[inputs.names[0]].element_size()
    return Probe(output=output.detach(), bytes_per_point=max(1, per_point), saved_tensors=max(1, count))


def chunk_size(
    batch_size: int | None,
    memory_budget: int | None,
    bytes_per_point: int,
    device: torch.device,
    saved_tensors: int = 1,
) -> int:
    """Points per forward/backward: ``batch_size`` if given, else what fits the memory budget; on CPU
    no more than it takes for ``BYTES_PER_SAVED`` per saved tensor (``saved_tensors`` per pass)."""
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
        return batch_size
    if memory_budget is not None:
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
            raise InputError("memory_budget", f"expected a positive number of bytes, got {memory_budget!r}")
        budget = memory_budget
    else:
        budget = default_memory_budget(device)
    fits = max(1, budget // bytes_per_point)
    if device.type == "cpu":
        return min(fits, max(1, -(-saved_tensors * BYTES_PER_SAVED // bytes_per_point)))
    return fits


def column_gradients(
    columns: Sequence[torch.Tensor],
    leaves: Sequence[torch.Tensor],
    *,
    argument: str,
    problem: str,
    need_some: bool = False,
) -> list[list[torch.Tensor]]:
    """Per score column, the gradient of its sum w.r.t. each leaf: the one reverse-mode loop.

    Every gradient evaluator runs its backward passes here (input-space ``Engine``, generation's
    per-target ``Scorer``, the circuits runner's activation sites). Columns share one graph, kept
    until the last backward; an unused leaf gets zeros. A column without a gradient path (or, with
    ``need_some``, whose gradients are all unused) is a ModelError naming ``argument``: ``problem``.
    """
    out = []
    for i, column in enumerate(columns):
        if not column.requires_grad:
            raise ModelError(argument, problem)
        grads = torch.autograd.grad(column.sum(), list(leaves), retain_graph=i < len(columns) - 1, allow_unused=True)
        if need_some and all(g is None for g in grads):
            raise ModelError(argument, problem)
        out.append([torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)])
    return out


@dataclass(frozen=True)
class GradientBlock:
    """Scores and input gradients at a chunk of points; ``example`` maps each point to its example."""

    example: torch.Tensor
    scores: torch.Tensor
    grads: dict[str, torch.Tensor]


class Engine:
    """Evaluates ``target(model(points))`` and its input gradients, chunk by chunk."""

    def __init__(
        self,
        model: Callable[..., Any],
        inputs: InputSet,
        target: Target,
        forward_kwargs: Mapping[str, Any] | None,
        chunk: int,
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.target = target
        self.forward_kwargs = forward_kwargs
        self.chunk = chunk
        self.evaluations = 0

    def scores(self, tensors: Mapping[str, torch.Tensor], example: torch.Tensor) -> torch.Tensor:
        """Target scores at points, without gradients."""
        out = []
        with torch.no_grad():
            for start in range(0, example.shape[0], self.chunk):
                rows = slice(start, start + self.chunk)
                ex = example[rows]
                output = self._forward({k: v[rows] for k, v in tensors.items()}, ex)
                out.append(self._score(output, ex))
        return torch.cat(out)

    def gradients(self, tensors: Mapping[str, torch.Tensor], example: torch.Tensor) -> GradientBlock:
        """Scores and gradients at the given points (one chunk; callers split larger sets)."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in tensors.items()}
        with torch.enable_grad():
            output = self._forward(leaves, example)
            scores = self._score(output, example)
            (grads,) = column_gradients(
                [scores], list(leaves.values()), argument="model", need_some=True,
                problem="the target score does not depend on the inputs (no gradient path)",
            )  # fmt: skip
        self.evaluations += example.shape[0]
        return GradientBlock(example=example, scores=scores.detach(), grads=dict(zip(leaves, grads)))

    def along(self, baselines: Mapping[str, torch.Tensor], diff: torch.Tensor | None) -> Evaluate:
        """The integrator's ``evaluate`` on the straight lines from ``baselines`` to the inputs (T = 1).

        Contributions are the flat gradients times ``diff`` (input - baseline), or the gradients
        themselves when ``diff`` is None (a fixed rule multiplies the weighted sum once, at the end).
        """

        def evaluate(rows: torch.Tensor, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            points = {name: line(baselines[name][rows], x[rows], alphas) for name, x in self.inputs.tensors.items()}
            block = self.gradients(points, rows)
            del points  # only the gradients need to outlive the forward/backward
            grad = torch.cat([g.reshape(g.shape[0], -1) for g in block.grads.values()], dim=1)
            contrib = grad if diff is None else grad * diff[rows]
            return contrib[:, None], block.scores[:, None]

        return evaluate

    def _forward(self, tensors: Mapping[str, torch.Tensor], example: torch.Tensor) -> torch.Tensor:
        kwargs = gather_kwargs(self.forward_kwargs, self.inputs.batch, example)
        output = call_model(self.model, self.inputs, tensors, kwargs)
        if output.dim() < 1 or output.shape[0] != example.shape[0]:
            raise ModelError(
                "model", f"expected an output with batch dim {example.shape[0]} first, got shape {tuple(output.shape)}"
            )
        return output

    def _score(self, output: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(output).all()):
            bad = sorted({int(e) for e in example[~torch.isfinite(output.reshape(output.shape[0], -1)).all(dim=1)]})
            raise ModelError("model", f"the model output is NaN or Inf along the path for examples {bad}")
        scores = select(self.target, example)(output)
        if not isinstance(scores, torch.Tensor) or scores.shape != (example.shape[0],):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise InputError(
                "target", f"the target must return one score per row, shape ({example.shape[0]},); got {shape}"
            )
        return scores
