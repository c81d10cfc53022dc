"""Shared plumbing of the gradient methods: set-up, chunked point streams, seeds and results.

Every gradient method here is a stream of points (each tagged with the example it belongs to)
whose gradients are combined with per-point data. ``evaluate`` re-chunks any stream to the
engine's chunk size, so chunked and unchunked runs see the same points in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from ..convergence import DEFAULT_TOL, noise_floor, warn_unconverged, within_tolerance
from ..engine import Engine, GradientBlock, chunk_size, probe
from ..errors import InputError
from ..inputs import Inputs, InputSet, as_input_set
from ..integrate import NOISE_ULPS
from ..result import Attribution
from ..targets import Target, TargetSpec, resolve_target


@dataclass(frozen=True)
class Setup:
    """Validated inputs, the resolved target, the engine and the score at the inputs."""

    inputs: InputSet
    engine: Engine
    target: Target
    target_name: str
    score_input: torch.Tensor

    @property
    def example(self) -> torch.Tensor:
        return torch.arange(self.inputs.batch, device=self.inputs.device)


def baseline_setting(spec: Any) -> Any:
    """How a baseline was asked for, as plain data for ``params["baseline"]``: its name ("zeros" for
    ``None``), the number, ``"tensor"``, ``"callable <name>"``, or a mapping of these per named input."""
    if spec is None:
        return "zeros"
    if isinstance(spec, (str, bool)):
        return spec
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, torch.Tensor):
        return "tensor"
    if isinstance(spec, Mapping):
        return {str(k): baseline_setting(v) for k, v in spec.items()}
    if callable(spec):
        return f"callable {getattr(spec, '__name__', type(spec).__name__)}"
    return type(spec).__name__


def target_setting(spec: TargetSpec) -> Any:
    """How the target was asked for, as plain data: ``"default"``, the class index, the per-example
    class indices (a list), or ``"callable <name>"``."""
    if spec is None:
        return "default"
    if isinstance(spec, torch.Tensor):
        return spec.detach().cpu().reshape(-1).tolist()
    if callable(spec):
        return f"callable {getattr(spec, '__name__', type(spec).__name__)}"
    return spec if isinstance(spec, (int, str)) else repr(spec)


def target_name(spec: TargetSpec, resolved: Target) -> str:
    if callable(spec) and not isinstance(spec, torch.Tensor):
        return str(getattr(spec, "__name__", repr(spec)))
    return repr(resolved)


def prepare(
    model: Callable[..., Any],
    inputs: Inputs | InputSet,
    target: TargetSpec,
    *,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
    points_per_pass: int = 1,
) -> Setup:
    """Validate, probe the model once, resolve the target and size the chunks.

    ``points_per_pass`` is how many forward rows one point costs (DeepLIFT runs input and
    reference together), so the memory budget is shared correctly.
    """
    input_set = inputs if isinstance(inputs, InputSet) else as_input_set(inputs)
    measured = probe(model, input_set, forward_kwargs)
    resolved = resolve_target(target, measured.output)
    chunk = chunk_size(
        batch_size, memory_budget, measured.bytes_per_point * points_per_pass, input_set.device, measured.saved_tensors
    )
    engine = Engine(model, input_set, resolved, forward_kwargs, chunk)
    example = torch.arange(input_set.batch, device=input_set.device)
    score_input = engine.scores(input_set.tensors, example)
    return Setup(input_set, engine, resolved, target_name(target, resolved), score_input)


def require_module(model: Callable[..., Any], method: str) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        raise InputError(
            "model", f"{method} modifies activation modules and needs a torch.nn.Module, got {type(model).__name__}"
        )
    return model


def flat(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Named per-point tensors concatenated into one row per point: [points, features]."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors.values()], dim=1)


@dataclass(frozen=True)
class Points:
    """Points to evaluate, the example of each, and per-point data that travels with them."""

    tensors: dict[str, torch.Tensor]
    example: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.example.shape[0])

    def rows(self, start: int, stop: int) -> Points:
        return Points(
            {k: v[start:stop] for k, v in self.tensors.items()},
            self.example[start:stop],
            {k: v[start:stop] for k, v in self.aux.items()},
        )

    @staticmethod
    def cat(parts: list[Points]) -> Points:
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return Points(
            {k: torch.cat([p.tensors[k] for p in parts]) for k in first.tensors},
            torch.cat([p.example for p in parts]),
            {k: torch.cat([p.aux[k] for p in parts]) for k in first.aux},
        )


def evaluate(engine: Engine, stream: Iterable[Points]) -> Iterator[tuple[GradientBlock, Points]]:
    """Gradients of a stream of points, ``engine.chunk`` points per pass, in stream order."""
    buffer: list[Points] = []
    filled = 0
    for points in stream:
        start = 0
        while start < points.size:
            take = min(points.size - start, engine.chunk - filled)
            buffer.append(points.rows(start, start + take))
            filled += take
            start += take
            if filled == engine.chunk:
                merged = Points.cat(buffer)
                yield engine.gradients(merged.tensors, merged.example), merged
                buffer, filled = [], 0
    if buffer:
        merged = Points.cat(buffer)
        yield engine.gradients(merged.tensors, merged.example), merged


def input_gradients(setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gradients [batch, features] and scores at the inputs themselves."""
    inputs = setup.inputs
    grads = torch.zeros(inputs.batch, sum(inputs.sizes()), dtype=inputs.dtype, device=inputs.device)
    scores = torch.zeros(inputs.batch, dtype=setup.score_input.dtype, device=inputs.device)
    for block, points in evaluate(setup.engine, [Points(dict(inputs.tensors), setup.example)]):
        grads[points.example] = flat(block.grads)
        scores[points.example] = block.scores
    return grads, scores


def result(
    setup: Setup,
    values: torch.Tensor,
    *,
    method: str,
    params: Mapping[str, Any],
    steps: int,
    baseline: Mapping[str, torch.Tensor] | None = None,
    score_baseline: torch.Tensor | None = None,
    path: bool = False,
    stacklevel: int = 4,
) -> Attribution:
    """Assemble an ``Attribution`` from flat values; path methods get their completeness error.

    A path result's ``converged`` follows ``integrand.convergence`` at ``DEFAULT_TOL``; examples that
    miss it are named in a ``ConvergenceWarning`` (``stacklevel`` points it at the user's call).
    """
    inputs = setup.inputs
    delta = None
    converged = torch.ones(inputs.batch, dtype=torch.bool)
    if path:
        assert score_baseline is not None
        total = (setup.score_input - score_baseline).detach()
        delta = (total - values.sum(dim=1)).detach()
        # The rule of integrand.convergence at DEFAULT_TOL, above the rounding floor of the sums.
        magnitude = setup.score_input.abs() + score_baseline.abs() + values.abs().sum(dim=1)
        floor = noise_floor(magnitude.detach(), values.dtype, NOISE_ULPS)
        converged = within_tolerance(delta, total, None, 0.0, floor)
        bad = [i for i, ok in enumerate(converged.tolist()) if not ok]
        warn_unconverged(f"{method}: examples", bad, None, stacklevel=stacklevel)
        params = {**params, "converged_tol": DEFAULT_TOL}
    return Attribution(
        values=inputs.public(inputs.unflat(values.detach())),
        inputs=inputs.public(inputs.tensors),
        baseline=None if baseline is None else inputs.public(dict(baseline)),
        score_input=setup.score_input.detach(),
        score_baseline=None if score_baseline is None else score_baseline.detach(),
        delta=delta,
        steps=torch.full((inputs.batch,), steps),
        converged=converged,
        method=method,
        params={"target": setup.target_name, **params},
    )
