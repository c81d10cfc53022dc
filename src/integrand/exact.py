"""Exact Integrated Gradients for piecewise-linear networks.

Along the straight path ``x(α) = baseline + α (input - baseline)`` a network built from affine
layers, ReLU/LeakyReLU and max-pooling is affine in α between *breakpoints*, the α where some
unit's activation pattern changes (a ReLU pre-activation crosses 0, another max-pool candidate
overtakes the maximum). The gradient is constant on each piece, so the IG integral is the finite sum
``Σ_k (α_{k+1} - α_k) ∇f(x(α_k⁺)) ⊙ (input - baseline)``.

One forward pass with forward-mode AD (tangent ``input - baseline``) gives every kink unit's
value ``z`` and slope ``dz/dα`` at the start of a piece; hooks on the kink modules fix the pattern
just *after* α (units at a crossing take the side their slope leads to) and collect the nearest
crossing ahead, ``-z / dz`` for ReLU units, the first overtaking candidate of each max-pool window.
The backward pass of the same forward gives the piece's gradient. All examples advance together,
one piece each per pass (the rows of a pass are independent, so each keeps its own breakpoints);
an example leaves the batch when it reaches α = 1, so a pass costs one forward and one backward
over the examples still on their way.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.autograd.forward_ad as fwad
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .engine import column_gradients
from .errors import ModelError
from .inputs import InputSet, call_model, gather_kwargs
from .paths import accumulate, line
from .progress import bar
from .targets import Target, select

MAX_PIECES = 100_000
"""Linear pieces per example before exact IG gives up (a typed error, or the fallback with tol=)."""

TIE_ULPS = 256
"""Crossings closer than ``TIE_ULPS * eps(dtype)`` in α count as the current breakpoint: their
side is decided by the direction of travel, and every piece is at least that wide."""

_AFFINE = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Identity,
)
_KINKS = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d)
_EVAL_ONLY = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)


def not_piecewise_linear(model: Any) -> str | None:
    """Why exact IG does not apply to ``model`` (None: it does): the first module it cannot vouch for.

    A model qualifies when it is an ``nn.Sequential`` tree whose leaves are affine layers, eval-mode
    BatchNorm/Dropout, ReLU, LeakyReLU or max-pooling (no ``ceil_mode``, no ``return_indices``).
    """
    if not isinstance(model, nn.Module):
        return f"the model is a {type(model).__name__}, not an nn.Module (pass piecewise_linear=True to declare it)"
    modules = [(name or "model", m) for name, m in model.named_modules()]
    for name, module in modules:
        if isinstance(module, nn.Sequential) or next(module.children(), None) is not None:
            continue
        kind = type(module).__name__
        if not isinstance(module, _AFFINE + _KINKS + _EVAL_ONLY):
            return f"module {name!r} ({kind}) is not piecewise linear"
        if isinstance(module, _EVAL_ONLY) and module.training:
            return f"module {name!r} ({kind}) is in training mode (call model.eval())"
        if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)) and (module.ceil_mode or module.return_indices):
            return f"module {name!r} ({kind}) uses ceil_mode or return_indices"
    for name, module in modules:
        if not isinstance(module, nn.Sequential) and next(module.children(), None) is not None:
            return (
                f"module {name!r} ({type(module).__name__}) has its own forward (pass piecewise_linear=True "
                "if it only combines piecewise-linear operations)"
            )
    return None


def nonlinear_target(target: Target) -> str | None:
    """Why the score is not linear in the model output (None: it is a logit, a difference of logits or the output)."""
    if getattr(target, "__name__", None) == "identity" or getattr(target, "transform", None) == "logit":
        return None
    parts = [getattr(target, "first", None), getattr(target, "second", None)]
    if all(p is not None and nonlinear_target(p) is None for p in parts):
        return None
    return (
        f"the target {target!r} is not known to be linear in the model output (use a logit or a difference of logits)"
    )


class _Kinks:
    """Hooks on the kink modules of a model: fix the pattern after α, collect the nearest crossing per row."""

    def __init__(self, tie: float) -> None:
        self.tie = tie
        self.step: torch.Tensor | None = None
        self._stash: dict[int, list[torch.Tensor]] = {}

    def reset(self, rows: int, device: torch.device) -> None:
        self.step = torch.full((rows,), math.inf, dtype=torch.float64, device=device)

    def _record(self, t: torch.Tensor) -> None:
        assert self.step is not None
        self.step = torch.minimum(self.step, t.reshape(t.shape[0], -1).min(dim=1).values.double())

    def pre(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        self._stash.setdefault(id(module), []).append(args[0])
        return (args[0].clone(),) + tuple(args[1:])  # the module may work in place; its output is replaced

    def post(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        z = self._stash[id(module)].pop()
        primal, tangent = fwad.unpack_dual(z)  # type: ignore[no-untyped-call]
        p = primal.detach()
        d = torch.zeros_like(p) if tangent is None else tangent.detach()
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            return z * self._unit_pattern(p, d, getattr(module, "negative_slope", 0.0))
        assert isinstance(module, (nn.MaxPool1d, nn.MaxPool2d))
        return self._max_pool(module, z, p, d, output)

    def _unit_pattern(self, p: torch.Tensor, d: torch.Tensor, slope: float) -> torch.Tensor:
        at = p.abs() <= self.tie * d.abs()  # crossing now: the slope decides the side
        on = torch.where(at, d > 0, p > 0)
        moving = ~at & (p * d < 0)
        # masked_fill, not torch.where with a Python scalar: that goes through a slow Python decomposition
        self._record((-p / torch.where(moving, d, torch.ones_like(d))).masked_fill(~moving, math.inf))
        return torch.where(on, torch.ones_like(p), torch.full_like(p, slope))

    def _max_pool(
        self, module: nn.Module, z: torch.Tensor, p: torch.Tensor, d: torch.Tensor, output: Any
    ) -> torch.Tensor:
        one_d = isinstance(module, nn.MaxPool1d)

        def view(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(-2) if one_d else t

        settings = (module.kernel_size, module.stride, module.padding, module.dilation)
        if one_d:  # a 1-d pool is a 2-d pool over a height-1 image: padding 0, the other sizes 1 along it
            k, s, pad, dil = ((0 if i == 2 else 1, int(_pair(v)[0])) for i, v in enumerate(settings))
        else:
            k, s, pad, dil = (_pair(v) for v in settings)
        pv, dv = view(p), view(d)
        if pv.dim() != 4:
            raise ModelError("model", f"exact IG needs batched inputs to {type(module).__name__}, got {tuple(p.shape)}")
        n, c, h, w = pv.shape
        index = torch.arange(h * w, dtype=p.dtype, device=p.device).view(1, 1, h, w)

        def windows(t: torch.Tensor, fill: float) -> torch.Tensor:
            if pad != (0, 0):  # by hand: F.pad costs ~1 ms of Python per call
                padded = t.new_full((*t.shape[:2], h + 2 * pad[0], w + 2 * pad[1]), fill)
                padded[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + w] = t
                t = padded
            cols = F.unfold(t.reshape(-1, 1, *t.shape[-2:]), k, dilation=dil, stride=s)
            # [batch, channels, windows, window elements]: reductions over the last, contiguous dim
            return cols.view(t.shape[0], t.shape[1], cols.shape[1], cols.shape[2]).transpose(2, 3).contiguous()

        zw, dw, iw = windows(pv, -math.inf), windows(dv, 0.0), windows(index, -1.0).long()
        top = zw.argmax(dim=-1, keepdim=True)
        gap, speed = zw.gather(-1, top) - zw, dw - dw.gather(-1, top)
        near = ((speed > 0) & (gap <= self.tie * speed)).scatter_(-1, top, True)
        win = dw.masked_fill(~near, -math.inf).argmax(dim=-1, keepdim=True)
        gap, speed = zw.gather(-1, win) - zw, dw - dw.gather(-1, win)
        ahead = (speed > 0) & (gap > self.tie * speed)
        self._record((gap / torch.where(ahead, speed, torch.ones_like(speed))).masked_fill(~ahead, math.inf))
        flat = iw.expand(n, c, -1, -1).gather(-1, win)[..., 0]
        picked = view(z).flatten(2).gather(2, flat)
        return picked.reshape(output.shape)


@contextlib.contextmanager
def _kink_hooks(model: Any, tie: float) -> Iterator[_Kinks]:
    kinks = _Kinks(tie)
    handles = []
    try:
        if isinstance(model, nn.Module):
            for module in model.modules():
                if isinstance(module, _KINKS):
                    handles.append(module.register_forward_pre_hook(kinks.pre))
                    handles.append(module.register_forward_hook(kinks.post))
        yield kinks
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class ExactPaths:
    """Path-averaged gradients (``Σ width_k ∇f_k``, [batch, features], float64) and pieces per example."""

    averaged: torch.Tensor
    pieces: torch.Tensor


def exact_paths(
    model: Callable[..., Any],
    inputs: InputSet,
    baselines: Mapping[str, torch.Tensor],
    target: Target,
    forward_kwargs: Mapping[str, Any] | None,
    chunk: int,
    max_pieces: int = MAX_PIECES,
) -> ExactPaths:
    """Walk every example's path piece by piece; raise :class:`ModelError` beyond ``max_pieces``."""
    batch, device = inputs.batch, inputs.device
    tie = TIE_ULPS * torch.finfo(inputs.dtype).eps
    alpha = torch.zeros(batch, dtype=torch.float64, device=device)
    averaged = torch.zeros(batch, sum(inputs.sizes()), dtype=torch.float64, device=device)
    pieces = torch.zeros(batch, dtype=torch.long)
    diff = {n: inputs.tensors[n] - baselines[n] for n in inputs.names}
    with _kink_hooks(model, tie) as kinks, bar("exact IG: examples", batch) as progress:
        active = torch.arange(batch, device=device)
        while active.numel():
            for rows in torch.split(active, chunk):
                a = alpha[rows]
                leaves = {
                    n: line(baselines[n][rows], inputs.tensors[n][rows], a).requires_grad_(True) for n in inputs.names
                }
                kinks.reset(rows.shape[0], device)
                kwargs = gather_kwargs(forward_kwargs, batch, rows)
                with fwad.dual_level(), torch.enable_grad():
                    duals = {n: fwad.make_dual(leaves[n], diff[n][rows]) for n in inputs.names}  # type: ignore[no-untyped-call]
                    output = fwad.unpack_dual(call_model(model, inputs, duals, kwargs)).primal  # type: ignore[no-untyped-call]
                    scores = select(target, rows)(output)
                    (grads,) = column_gradients(
                        [scores], list(leaves.values()), argument="model", need_some=True,
                        problem="the target score does not depend on the inputs (no gradient path)",
                    )  # fmt: skip
                assert kinks.step is not None
                end = torch.clamp(a + kinks.step, max=1.0)
                end = torch.where(1.0 - end <= tie, torch.ones_like(end), end)
                flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)
                accumulate(averaged, rows, flat, end - a)  # the gradient is constant on [a, end]
                alpha[rows] = end
                pieces[rows.cpu()] += 1
            done = alpha[active] >= 1.0
            progress.advance(int(done.sum()))
            active = active[~done]
            over = pieces[active.cpu()] > max_pieces
            if bool(over.any()):
                raise ModelError(
                    "model",
                    f"more than {max_pieces:,} linear pieces along the path for examples "
                    f"{active.cpu()[over].tolist()}: exact IG stops here (use tol= or steps=)",
                )
    return ExactPaths(averaged=averaged, pieces=pieces)
