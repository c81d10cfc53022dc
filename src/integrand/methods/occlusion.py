"""Occlusion (Zeiler & Fergus 2014): slide a window over the input, replace it by the baseline.

Each feature gets the mean drop ``f(x) - f(x with the window at baseline)`` over every window
position that covers it. Windows move with ``strides``; the last position in each dim may hang
over the edge (it is clipped), so every element is covered.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence, Union

import torch

from ..baselines import BaselineSpec, make_baselines
from ..errors import InputError
from ..inputs import TENSOR_KEY, Inputs, InputSet, as_input_set
from ..result import Attribution
from ..targets import TargetSpec
from .perturb import Scorer, flat_baseline

Shape = Sequence[int]
WindowSpec = Union[Shape, Mapping[str, Shape], None]
StrideSpec = Union[int, Shape, Mapping[str, Union[int, Shape]]]


def _per_input(spec: Any, inputs: InputSet, argument: str) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        if not inputs.named:
            raise InputError(argument, "a mapping needs named inputs")
        missing = [n for n in inputs.names if n not in spec]
        unknown = [k for k in spec if k not in inputs.tensors]
        if missing or unknown:
            raise InputError(
                argument, f"expected one entry per input {list(inputs.names)}; missing {missing}, unknown {unknown}"
            )
        return {n: spec[n] for n in inputs.names}
    return {n: spec for n in inputs.names}


def _dims(argument: str, value: Any, shape: tuple[int, ...], allow_int: bool) -> tuple[int, ...]:
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * len(shape)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InputError(argument, f"expected a tuple of {len(shape)} positive integers, got {value!r}")
    dims = tuple(value)
    if len(dims) != len(shape) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in dims):
        raise InputError(
            argument, f"expected {len(shape)} positive integers for per-example shape {shape}, got {value!r}"
        )
    return dims


class _Windows:
    """Window positions over one input: ``counts[d]`` starts per dim, ``start = k * stride``."""

    def __init__(
        self, shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...], argument: str
    ) -> None:
        for size, w, s in zip(shape, window, strides):
            if w > size:
                raise InputError(argument, f"window {window} is larger than the per-example shape {shape}")
            if s > w and w < size:
                # A stride longer than the window would leave elements that no window covers.
                raise InputError(
                    "strides", f"stride {strides} exceeds the window {window}: some elements would never be occluded"
                )
        self.shape, self.window, self.strides = shape, window, strides
        self.counts = tuple(math.ceil((size - w) / s) + 1 for size, w, s in zip(shape, window, strides))
        self.total = math.prod(self.counts)

    def masks(self, index: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Boolean masks ``[len(index), numel]`` of window positions ``index`` (row-major over counts)."""
        mask = torch.ones(index.shape[0], *([1] * len(self.shape)), dtype=torch.bool, device=device)
        rest = index.clone()
        for d in reversed(range(len(self.shape))):
            k = rest % self.counts[d]
            rest = rest // self.counts[d]
            start = (k * self.strides[d]).view(-1, 1)
            pos = torch.arange(self.shape[d], device=device).view(1, -1)
            inside = (pos >= start) & (pos < start + self.window[d])
            view = [index.shape[0]] + [1] * len(self.shape)
            view[d + 1] = self.shape[d]
            mask = mask & inside.view(view)
        return mask.reshape(index.shape[0], -1)


def occlusion(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    window: WindowSpec = None,
    strides: StrideSpec = 1,
    baseline: BaselineSpec = "zeros",
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Occlusion: the mean score drop over every sliding-window position covering each feature.

    Args:
        window: per-example window shape (e.g. ``(1, 3, 3)`` for a [C, H, W] image), or a mapping per
            named input; default one element. Each named input is occluded on its own.
        strides: an int or a tuple per dim (or a mapping per input); at most the window where the
            window does not span the dim.
        baseline: what an occluded window is replaced by (see ``integrated_gradients``).
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.

    Deterministic: no seed.
    """
    input_set = as_input_set(inputs)
    baselines = make_baselines(input_set, baseline)
    windows_spec = _per_input(window, input_set, "window")
    strides_spec = _per_input(strides, input_set, "strides")
    layouts: list[tuple[int, int, _Windows]] = []
    offset = 0
    for name, x in input_set.tensors.items():
        shape = tuple(x.shape[1:])
        where = "window" if name == TENSOR_KEY else f"window[{name!r}]"
        w = windows_spec[name]
        dims = (1,) * len(shape) if w is None else _dims(where, w, shape, allow_int=False)
        steps = _dims("strides", strides_spec[name], shape, allow_int=True)
        layouts.append((offset, x[0].numel(), _Windows(shape, dims, steps, where)))
        offset += x[0].numel()
    scorer = Scorer(model, input_set, target, forward_kwargs, batch_size, memory_budget)
    score_input, score_baseline = scorer.inputs_and(baselines)
    x_flat, b_flat = input_set.flat(), flat_baseline(input_set, baselines)
    per_example = sum(w.total for _, _, w in layouts)
    total = torch.zeros_like(x_flat)
    count = torch.zeros_like(x_flat)
    # Position p of the flattened job list is (example, input, window) in that order.
    bounds = torch.tensor([0] + [w.total for _, _, w in layouts]).cumsum(0).tolist()

    def jobs(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, stop, device=x_flat.device)
        example = pos // per_example
        local = pos % per_example
        mask = torch.zeros(stop - start, x_flat.shape[1], dtype=torch.bool, device=x_flat.device)
        for i, (off, size, win) in enumerate(layouts):
            sel = (local >= bounds[i]) & (local < bounds[i + 1])
            if bool(sel.any()):
                rows = sel.nonzero()[:, 0]
                mask[rows, off : off + size] = win.masks(local[sel] - bounds[i], x_flat.device)
        return example, mask, torch.where(mask, b_flat[example], x_flat[example])

    n = input_set.batch * per_example
    for start in range(0, n, scorer.chunk):
        example, mask, rows = jobs(start, min(n, start + scorer.chunk))
        drop = score_input[example] - scorer.rows(rows, example)
        total.index_add_(0, example, mask.to(total.dtype) * drop[:, None])
        count.index_add_(0, example, mask.to(count.dtype))
    values = input_set.unflat(total / count)
    return Attribution(
        values=input_set.public(values),
        inputs=input_set.public(input_set.tensors),
        baseline=input_set.public(baselines),
        score_input=score_input,
        score_baseline=score_baseline,
        delta=None,
        steps=torch.full((input_set.batch,), per_example),
        converged=torch.ones(input_set.batch, dtype=torch.bool),
        method="occlusion",
        params={
            "window": {n: w.window for n, (_, _, w) in zip(input_set.names, layouts)},
            "strides": {n: w.strides for n, (_, _, w) in zip(input_set.names, layouts)},
            "explains": "attribution",
        },
    )
