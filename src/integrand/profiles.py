"""Neuron activation profiles: how each unit of a layer responds to each class, and which units are dead.

A unit is one entry along dim 1 of the layer's output (a feature of a linear layer, a channel of a
conv layer; the remaining dims are averaged). The profile of class ``k`` is the unit's mean activation
over examples of class ``k`` minus its mean over all examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

import torch
from torch import nn

from .errors import InputError, MissingExtraError
from .layers import Element, LayerSpec, resolve_layer, run_to_layer
from .protocol import NoCompleteness

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Batch = Union[torch.Tensor, Mapping[str, torch.Tensor]]


@dataclass(frozen=True, repr=False)
class ActivationProfile(NoCompleteness):
    """Per-class mean activations of a layer's units, their deviation from the overall mean, dead units.

    ``dead[u]`` is true when unit ``u`` never exceeds ``threshold`` in absolute value on any example.
    """

    layer: str
    classes: tuple[str, ...]
    counts: torch.Tensor
    class_mean: torch.Tensor
    overall_mean: torch.Tensor
    profile: torch.Tensor
    max_abs: torch.Tensor
    active_fraction: torch.Tensor
    dead: torch.Tensor
    threshold: float

    AXES = ("class", "unit")

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``profile``: [classes, units]."""
        return self.profile

    @property
    def params(self) -> dict[str, Any]:
        return {"layer": self.layer, "threshold": self.threshold, "classes": list(self.classes)}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"class": self.classes}

    @property
    def units(self) -> int:
        return int(self.overall_mean.shape[0])

    def top_units(self, cls: int | str, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` live units most raised above their overall mean by class ``cls``."""
        index = self._class_index(cls)
        row = self.profile[index].masked_fill(self.dead, -math.inf)
        order = torch.argsort(row, descending=True, stable=True)[: min(k, int((~self.dead).sum()))]
        return [(int(u), float(row[u])) for u in order]

    def table(self) -> list[dict[str, float | int | bool]]:
        """One row per unit: overall mean, dead flag, active fraction, and the profile per class."""
        rows: list[dict[str, float | int | bool]] = []
        for u in range(self.units):
            row: dict[str, float | int | bool] = {
                "unit": u,
                "dead": bool(self.dead[u]),
                "active_fraction": float(self.active_fraction[u]),
                "overall_mean": float(self.overall_mean[u]),
            }
            row.update({f"profile[{c}]": float(self.profile[k, u]) for k, c in enumerate(self.classes)})
            rows.append(row)
        return rows

    def to_html(self) -> str:
        from .viz.html import table

        rows = self.table()
        headers = list(rows[0])
        body = [[f"{r[h]:.4g}" if isinstance(r[h], float) else r[h] for h in headers] for r in rows]
        dead = [u for u in range(self.units) if bool(self.dead[u])]
        head = f"<div>layer {escape(self.layer)}: {self.units} units, dead: {escape(str(dead))}</div>"
        return head + table(headers, body)

    def figure(self, *, title: str | None = None) -> Figure:
        """Heatmap classes × units of the profile (symmetric colour scale); dead units are hatched."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise MissingExtraError("matplotlib", "viz") from exc
        fig = Figure(figsize=(max(4.0, 0.25 * self.units + 2), 0.4 * len(self.classes) + 1.6), layout="constrained")
        ax = fig.add_subplot()
        limit = float(self.profile.abs().max()) or 1.0
        image = ax.imshow(self.profile.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for u in range(self.units):
            if bool(self.dead[u]):
                ax.axvspan(u - 0.5, u + 0.5, facecolor="none", edgecolor="#444", hatch="//", linewidth=0)
        ax.set_yticks(range(len(self.classes)), list(self.classes))
        ax.set_xlabel("unit")
        ax.set_title(title or f"activation profile of {self.layer} (class mean - overall mean)")
        fig.colorbar(image, ax=ax, label="activation difference")
        return fig

    def _class_index(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.classes:
                raise InputError("cls", f"unknown class {cls!r}; classes are {list(self.classes)}")
            return self.classes.index(cls)
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < len(self.classes):
            raise InputError("cls", f"expected a class index in [0, {len(self.classes)}) or a name, got {cls!r}")
        return cls


def _rows(inputs: Batch, start: int, stop: int) -> Batch:
    if isinstance(inputs, torch.Tensor):
        return inputs[start:stop]
    return {k: v[start:stop] for k, v in inputs.items()}


def _check_inputs(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        tensors = [inputs]
    else:
        tensors = list(inputs.values()) if isinstance(inputs, Mapping) else []
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise InputError("inputs", "expected a batched tensor or a non-empty mapping of batched tensors")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors) or n < 1:
        raise InputError("inputs", "every input needs the same, non-zero batch size")
    return int(n)


def activation_profiles(
    model: Callable[..., Any],
    inputs: Batch,
    labels: torch.Tensor,
    *,
    layer: nn.Module | str,
    classes: Sequence[str] | None = None,
    threshold: float = 0.0,
    layer_output_index: Element = None,
    batch_size: int = 256,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> ActivationProfile:
    """Activation profiles of ``layer``'s units over labelled examples.

    Args:
        inputs: a tensor or a mapping of named tensors (passed as keyword arguments), batch first;
            integer inputs such as token ids are fine (no gradients are taken).
        labels: class index per example, ``LongTensor[N]``.
        classes: class names (default "0", "1", ...); every class needs at least one example.
        threshold: a unit whose ``|activation|`` never exceeds this on any example is dead.
        batch_size: examples per forward pass (the forward stops at the layer).
    """
    n = _check_inputs(inputs)
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32) or labels.shape != (n,):
        raise InputError("labels", f"expected an integer tensor of shape ({n},)")
    if bool((labels < 0).any()):
        raise InputError("labels", "class indices must be >= 0")
    k = len(classes) if classes is not None else int(labels.max()) + 1
    if int(labels.max()) >= k:
        raise InputError("labels", f"class index {int(labels.max())} out of range for {k} classes")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise InputError("threshold", f"expected a number >= 0, got {threshold!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
    counts = torch.bincount(labels.cpu().long(), minlength=k)
    empty = [i for i in range(k) if int(counts[i]) == 0]
    if empty:
        raise InputError("labels", f"classes {empty} have no examples")
    name, module = resolve_layer(model, layer)
    spec = LayerSpec(name=name, module=module, side="output", index=layer_output_index)
    sums = peak = active = None
    for start in range(0, n, batch_size):
        chunk = _rows(inputs, start, start + batch_size)
        size = min(batch_size, n - start)
        kwargs = {
            key: value[start : start + size] if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n
            else value
            for key, value in (forward_kwargs or {}).items()
        }

        def run(chunk: Batch = chunk, kwargs: dict[str, Any] = kwargs) -> Any:
            return model(**chunk, **kwargs) if isinstance(chunk, Mapping) else model(chunk, **kwargs)

        with torch.no_grad():
            act = run_to_layer(spec, run).detach().double().cpu()
        if act.shape[0] != size:
            raise InputError("layer", f"{name!r} output has batch dim {act.shape[0]}, expected {size}")
        units = act.reshape(size, 1) if act.dim() == 1 else act.reshape(size, act.shape[1], -1).mean(dim=2)
        onehot = torch.nn.functional.one_hot(labels[start : start + size].cpu().long(), k).double()
        batch_sums = onehot.T @ units
        batch_max = units.abs().amax(dim=0)
        batch_active = (units.abs() > threshold).double().sum(dim=0)
        if sums is None or peak is None or active is None:
            sums, peak, active = batch_sums, batch_max, batch_active
        else:
            sums, peak, active = sums + batch_sums, torch.maximum(peak, batch_max), active + batch_active
    assert sums is not None and peak is not None and active is not None
    class_mean = sums / counts.double()[:, None]
    overall = sums.sum(dim=0) / n
    return ActivationProfile(
        layer=name,
        classes=tuple(classes) if classes is not None else tuple(str(i) for i in range(k)),
        counts=counts,
        class_mean=class_mean,
        overall_mean=overall,
        profile=class_mean - overall,
        max_abs=peak,
        active_fraction=active / n,
        dead=peak <= threshold,
        threshold=float(threshold),
    )
