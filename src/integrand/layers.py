"""Layers: find a module by name, read or replace its input/output, run the model around it.

Every hook or patched ``forward`` lives inside a context manager and is removed on every
exit path. ``FrozenPrefix`` implements layer attribution's reuse of the frozen part: one
recorded forward caches the outputs of the modules that finish before the layer starts,
and later forwards return those cached outputs instead of recomputing them
(see docs/layers.md).
"""

from __future__ import annotations

import difflib
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence, Union

import torch
from torch import nn

from .errors import InputError, ModelError

Side = Literal["output", "input"]
Element = Union[int, str, None]
SIDES = ("output", "input")


# ---------------------------------------------------------------- names


def resolve_layer(model: Any, layer: nn.Module | str) -> tuple[str, nn.Module]:
    """``(dotted name, module)`` for a module object or a dotted name inside ``model``."""
    if isinstance(layer, str):
        if not isinstance(model, nn.Module):
            raise InputError("layer", "a layer given by name needs an nn.Module model; pass the module itself")
        modules = dict(model.named_modules())
        if layer not in modules:
            names = [n for n in modules if n]
            close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
            close += [n for n in names if n.endswith("." + layer) and n not in close][: 5 - len(close)]
            hint = f"; close matches: {', '.join(close)}" if close else f"; some valid names: {', '.join(names[:8])}"
            raise InputError("layer", f"the model has no module named {layer!r}{hint}")
        return layer, modules[layer]
    if isinstance(layer, nn.Module):
        if isinstance(model, nn.Module):
            for name, module in model.named_modules():
                if module is layer:
                    return name or "<model>", module
            raise InputError("layer", f"{type(layer).__name__} is not a submodule of the model")
        return type(layer).__name__, layer
    raise InputError("layer", f"expected an nn.Module or a dotted module name, got {type(layer).__name__}")


# ---------------------------------------------------------------- elements of outputs and inputs


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"Tensor{list(value.shape)} {value.dtype}"
    return type(value).__name__


def _keys(output: Any) -> list[Any]:
    """Addressable elements of a structured output: tuple positions or mapping keys (ModelOutput: keys)."""
    if isinstance(output, Mapping):
        return list(output.keys())
    if isinstance(output, (tuple, list)):
        return list(range(len(output)))
    return []


def output_key(output: Any, index: Element, layer: str) -> Element:
    """The key of the attributed element of ``output`` (None for a plain tensor)."""
    if isinstance(output, torch.Tensor):
        if index is not None:
            raise InputError("layer_output_index", f"layer {layer!r} returns one tensor; leave layer_output_index=None")
        return None
    keys = _keys(output)
    if not keys:
        raise ModelError("layer", f"layer {layer!r} returns {describe(output)}, not a tensor, tuple or mapping")
    listing = ", ".join(f"{k!r}: {describe(output[k])}" for k in keys)
    if index is None:
        tensors = [k for k in keys if isinstance(output[k], torch.Tensor)]
        if len(tensors) == 1:  # e.g. HF attention's (output, None)
            return tensors[0]  # type: ignore[no-any-return]
        raise InputError("layer_output_index", f"layer {layer!r} returns several elements ({listing}); choose one")
    if isinstance(output, Mapping) and isinstance(index, int) and not isinstance(index, bool):
        # ModelOutput indexes its non-None fields by position.
        if not -len(keys) <= index < len(keys):
            raise InputError("layer_output_index", f"index {index} out of range; elements are {listing}")
        return keys[index]  # type: ignore[no-any-return]
    if index not in keys or isinstance(index, bool):
        raise InputError("layer_output_index", f"no element {index!r} in the output of {layer!r}; it has {listing}")
    return index


def get_element(output: Any, key: Element) -> Any:
    return output if key is None else output[key]


def set_element(output: Any, key: Element, value: Any) -> Any:
    """A copy of ``output`` with element ``key`` replaced (tuples, namedtuples, lists, mappings, ModelOutput)."""
    if key is None:
        return value
    if isinstance(output, Mapping):
        return set_elements(output, {k: (value if k == key else v) for k, v in output.items()})
    assert isinstance(key, int)
    items_list = [value if i == key else v for i, v in enumerate(output)]
    if hasattr(output, "_fields"):
        return type(output)(*items_list)
    return type(output)(items_list)


def input_key(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: Element, layer: str) -> Element:
    """Which argument of a layer call is attributed: a position, or a keyword name."""
    if index is None:
        if args:
            return 0
        tensors = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise InputError("layer_output_index", f"layer {layer!r} is called with keyword tensors {tensors}; name one")
    if isinstance(index, int) and not isinstance(index, bool) and -len(args) <= index < len(args):
        return index % len(args)
    if isinstance(index, str) and index in kwargs:
        return index
    raise InputError(
        "layer_output_index",
        f"layer {layer!r} has {len(args)} positional arguments and keywords {sorted(kwargs)}; got {index!r}",
    )


def get_input(args: tuple[Any, ...], kwargs: Mapping[str, Any], key: Element) -> Any:
    return kwargs[key] if isinstance(key, str) else args[key or 0]


def set_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], key: Element, value: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(key, str):
        return args, {**kwargs, key: value}
    position = key or 0
    return args[:position] + (value,) + args[position + 1 :], kwargs


# ---------------------------------------------------------------- hooks inside context managers


@dataclass(frozen=True)
class LayerSpec:
    """The attributed tensor: a module, which side of it, which element."""

    name: str
    module: nn.Module
    side: Side = "output"
    index: Element = None


@contextmanager
def patched_forward(module: nn.Module, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """Temporarily replace ``module.forward`` by ``make(original_forward)``; module hooks still run around it."""
    had = "forward" in module.__dict__
    previous = module.__dict__.get("forward")
    object.__setattr__(module, "forward", make(module.forward))
    try:
        yield
    finally:
        if had:
            object.__setattr__(module, "forward", previous)
        else:
            del module.__dict__["forward"]


class _Stop(Exception):
    """Raised inside the model to end a forward pass once the layer has run."""


def run_to_layer(spec: LayerSpec, run: Callable[[], Any]) -> torch.Tensor:
    """The layer's attributed tensor, running the model only up to the layer.

    The forward is cut short once the layer has run, so the part above it never runs.
    Autograd follows the caller's mode (neuron IG needs the graph from the inputs).
    """
    captured: list[Any] = []

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if spec.side == "input":
                captured.append(get_input(args, kwargs, input_key(args, kwargs, spec.index, spec.name)))
            else:
                out = original(*args, **kwargs)
                captured.append(get_element(out, output_key(out, spec.index, spec.name)))
            raise _Stop

        return forward

    with patched_forward(spec.module, make), suppress(_Stop):
        run()
    if not captured:
        raise ModelError("layer", f"layer {spec.name!r} did not run during the forward pass")
    value = captured[0]
    if not isinstance(value, torch.Tensor):
        raise InputError("layer_output_index", f"the attributed element of {spec.name!r} is {describe(value)}")
    return value


def rows(value: Any, example: torch.Tensor, batch: int) -> Any:
    """Rows ``example`` of every batch-first tensor in a (nested) value; other tensors are copied."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == batch:
            return value[example.to(value.device)]
        return value.clone()
    if isinstance(value, Mapping):
        return set_elements(value, {k: rows(v, example, batch) for k, v in value.items()})
    if isinstance(value, (tuple, list)):
        items = [rows(v, example, batch) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def set_elements(value: Mapping[Any, Any], items: dict[Any, Any]) -> Any:
    try:
        return type(value)(**items)
    except TypeError:
        try:
            return type(value)(items)  # type: ignore[call-arg]
        except TypeError:
            return dict(items)


@contextmanager
def replace_layer(spec: LayerSpec, point: torch.Tensor) -> Iterator[None]:
    """Run the model with the layer's attributed tensor replaced by ``point``.

    The forward runs without autograd until the layer, which restores the caller's mode: the
    lower part is recomputed (its result is discarded) but builds no graph.
    """
    with replace_layers([spec], [point]):
        yield


def _by_module(specs: Sequence[LayerSpec], values: Sequence[Any]) -> list[list[tuple[LayerSpec, Any]]]:
    """``(spec, value)`` pairs grouped by module (one patch per module), in first-seen order."""
    groups: dict[int, list[tuple[LayerSpec, Any]]] = {}
    for spec, value in zip(specs, values):
        groups.setdefault(id(spec.module), []).append((spec, value))
    return list(groups.values())


@contextmanager
def replace_layers(specs: Sequence[LayerSpec], points: Sequence[torch.Tensor]) -> Iterator[None]:
    """Run the model with several attributed tensors replaced at once (``specs[i]`` by ``points[i]``).

    Several specs may name elements of one module's output. The forward runs without autograd
    until the first replaced layer, which restores the caller's mode.
    """
    grad = torch.is_grad_enabled()

    def make(group: list[tuple[LayerSpec, Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def forward(*args: Any, **kwargs: Any) -> Any:
                torch.set_grad_enabled(grad)  # the surrounding no_grad restores the mode on exit
                if group[0][0].side == "input":
                    for spec, point in group:
                        args, kwargs = set_input(args, kwargs, input_key(args, kwargs, spec.index, spec.name), point)
                    return original(*args, **kwargs)
                with torch.no_grad():
                    out = original(*args, **kwargs)
                for spec, point in group:
                    out = set_element(out, output_key(out, spec.index, spec.name), point)
                return out

            return forward

        return wrap

    with ExitStack() as patches:
        for group in _by_module(specs, points):
            patches.enter_context(patched_forward(group[0][0].module, make(group)))
        patches.enter_context(torch.no_grad())
        yield


ALL = "all"
"""``layer_output_index="all"``: every floating-point tensor element of the output (or argument of the input)."""


def _all_keys(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], spec: LayerSpec) -> list[Element]:
    """The keys ``layer_output_index="all"`` stands for: every floating-point tensor element."""

    def floating(v: Any) -> bool:
        return isinstance(v, torch.Tensor) and v.is_floating_point()

    if spec.side == "input":
        keys: list[Element] = [i for i, a in enumerate(args) if floating(a)]
        keys += [k for k, v in kwargs.items() if floating(v)]
    elif isinstance(value, torch.Tensor):
        keys = [None]
    else:
        keys = [k for k in _keys(value) if floating(value[k])]
    if not keys:
        raise InputError("layer_output_index", f"the {spec.side} of {spec.name!r} has no floating-point tensor")
    return keys


@dataclass(frozen=True)
class Captured:
    """The attributed tensors of one forward: ``specs`` with concrete element keys, their values, the output.

    ``depends[j]``: the indices of the other tensors that tensor ``j`` is computed from (autograd).
    """

    specs: list[LayerSpec]
    values: list[torch.Tensor]
    output: Any
    depends: list[list[int]]


def capture_layers(specs: Sequence[LayerSpec], run: Callable[[], Any], *, dependence: bool) -> Captured:
    """Run the model once and capture several attributed tensors (``index="all"`` is expanded).

    With ``dependence``, each captured tensor is swapped for a leaf copy of itself, so that one
    backward pass tells which tensors are computed from which (the output does not change).
    Each module must run exactly once.
    """
    found: list[tuple[LayerSpec, torch.Tensor, torch.Tensor]] = []  # spec, value as computed, leaf
    runs: dict[int, int] = {}

    def leaf(spec: LayerSpec, value: Any) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise InputError("layer_output_index", f"the attributed element of {spec.name!r} is {describe(value)}")
        copy = value.detach().requires_grad_(dependence and value.is_floating_point())
        found.append((spec, value, copy))
        return copy

    def make(group: list[tuple[LayerSpec, Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        module = group[0][0].module

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def forward(*args: Any, **kwargs: Any) -> Any:
                runs[id(module)] = runs.get(id(module), 0) + 1
                if runs[id(module)] > 1:
                    return original(*args, **kwargs)
                out = None if group[0][0].side == "input" else original(*args, **kwargs)
                for spec, _ in group:
                    keys = _all_keys(out, args, kwargs, spec) if spec.index == ALL else [spec.index]
                    for key in keys:
                        one = LayerSpec(spec.name, spec.module, spec.side, key)
                        if spec.side == "input":
                            k = input_key(args, kwargs, key, spec.name)
                            args, kwargs = set_input(args, kwargs, k, leaf(one, get_input(args, kwargs, k)))
                        else:
                            k = output_key(out, key, spec.name)
                            out = set_element(out, k, leaf(one, get_element(out, k)))
                return original(*args, **kwargs) if group[0][0].side == "input" else out

            return forward

        return wrap

    with ExitStack() as patches:
        for group in _by_module(specs, specs):
            patches.enter_context(patched_forward(group[0][0].module, make(group)))
        with torch.enable_grad() if dependence else torch.no_grad():
            output = run()
    for spec in specs:
        if runs.get(id(spec.module), 0) != 1:
            raise InputError(
                "layer",
                f"layer {spec.name!r} ran {runs.get(id(spec.module), 0)} times in one forward pass; "
                "layer attribution needs a module that runs exactly once per forward",
            )
    depends: list[list[int]] = [[] for _ in found]
    leaves = [copy for _, _, copy in found]
    for j, (_, value, _) in enumerate(found):
        if dependence and value.requires_grad and len(found) > 1:
            others = [i for i in range(len(found)) if i != j and leaves[i].requires_grad]
            grads = torch.autograd.grad(value.sum(), [leaves[i] for i in others], allow_unused=True, retain_graph=True)
            depends[j] = [i for i, g in zip(others, grads) if g is not None]
    specs_out = [s for s, _, _ in found]
    values = [v.detach() for _, v, _ in found]
    return Captured(specs_out, values, output, depends)
