"""Transformer components a circuit is made of, and the hooks that read or replace them.

A *site* is one tensor per layer:

- ``resid``: the residual stream entering block ``layer`` (layer 0 is the embedding output);
- ``attn``: the output of the attention output projection (before the residual add);
- ``head``: the input of that projection viewed as ``[batch, position, head, head_dim]``;
- ``mlp``: the MLP's contribution to the residual stream.

A *component* is one slice of a site: a position of ``resid``/``attn``/``mlp``, or one head of
``head`` (all aligned positions together). Components are named ``kind.layer.index``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ..errors import InputError, ModelError
from ..models import Gate, structure

KINDS: tuple[str, ...] = ("resid", "attn", "mlp", "head")
Site = tuple[str, int]
Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """Where a transformer's components live, as module paths relative to the model.

    ``qk`` lists modules whose output is a query or key, ``qkv`` fused projections whose output is
    ``[query | key | value]`` in equal thirds; both are only needed by the attention LRP rules,
    ``v`` (value projections next to ``qk``) only by the AttnLRP attention rule, ``gates`` only by
    the gated-MLP rule.
    """

    blocks: tuple[str, ...]
    attn_out: tuple[str, ...]
    mlp: tuple[str, ...]
    n_heads: int
    qk: tuple[str, ...] = ()
    qkv: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()
    v: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.blocks) == len(self.attn_out) == len(self.mlp):
            raise InputError("layout", "blocks, attn_out and mlp need one module path per layer each")
        if isinstance(self.n_heads, bool) or not isinstance(self.n_heads, int) or self.n_heads < 1:
            raise InputError("layout", f"n_heads must be an integer >= 1, got {self.n_heads!r}")

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def layout_for(model: torch.nn.Module) -> Layout:
    """The layout of a model of a registered family with one stack of attention blocks (``integrand.models``)."""
    try:
        info = structure(model)
    except ModelError as exc:
        raise InputError("model", f"no built-in layout ({exc}); pass layout=Layout(...) naming its modules") from None
    if info.encoder_decoder or not all(b.attn_out and b.mlp for b in info.blocks):
        kind = "an encoder-decoder" if info.encoder_decoder else "not an attention"
        raise InputError("model", f"the {info.family} family is {kind} model; pass layout=Layout(...)")
    if info.n_heads is None:
        raise InputError("model", "its config has no integer num_attention_heads; pass layout=Layout(...)")
    return Layout(
        blocks=info.paths("path"),
        attn_out=info.paths("attn_out"),
        mlp=info.paths("mlp"),
        n_heads=info.n_heads,
        qk=info.paths("q") + info.paths("k"),
        qkv=info.paths("qkv"),
        gates=tuple(b.gate for b in info.blocks if b.gate is not None),
        v=info.paths("v"),
    )


def get_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at ``path``; a missing path is a layout error."""
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise InputError("layout", f"the model has no module {path!r}") from exc


def check_layout(model: torch.nn.Module, layout: Layout) -> None:
    """Every path of the layout names a module of the model."""
    paths = [*layout.blocks, *layout.attn_out, *layout.mlp, *layout.qk, *layout.qkv, *layout.v]
    paths += [p for g in layout.gates for p in (g.act, g.up, g.down)]
    for path in paths:
        get_module(model, path)


@dataclass(frozen=True)
class Component:
    """One slice of a site: ``index`` is a corrupted-run position, or a head for kind ``head``."""

    kind: str
    layer: int
    index: int

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.layer}.{self.index}"

    @property
    def site(self) -> Site:
        return (self.kind, self.layer)


def resolve_components(spec: str | Sequence[str], layout: Layout, positions: Sequence[int]) -> tuple[Component, ...]:
    """Expand ``"kind"``, ``"kind.layer"`` or ``"kind.layer.index"`` entries into components.

    ``positions`` are the corrupted-run positions that have a clean counterpart.
    """
    entries = [spec] if isinstance(spec, str) else list(spec)
    if not entries:
        raise InputError("components", "no components requested")
    out: dict[str, Component] = {}
    for entry in entries:
        for comp in _expand(entry, layout, positions):
            out.setdefault(comp.name, comp)
    return tuple(out.values())


def _expand(entry: object, layout: Layout, positions: Sequence[int]) -> list[Component]:
    if not isinstance(entry, str):
        raise InputError("components", f"expected component names (str), got {type(entry).__name__}")
    parts = entry.split(".")
    kind = parts[0]
    if kind not in KINDS or len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
        raise InputError(
            "components",
            f"unknown component {entry!r}; expected 'kind', 'kind.layer' or 'kind.layer.index' with kind in {KINDS}",
        )
    numbers = [int(p) for p in parts[1:]]
    if numbers and numbers[0] >= layout.n_layers:
        raise InputError("components", f"{entry!r}: the model has {layout.n_layers} layers")
    layers = [numbers[0]] if numbers else list(range(layout.n_layers))
    valid = list(range(layout.n_heads)) if kind == "head" else list(positions)
    if len(numbers) == 2 and numbers[1] not in valid:
        what = f"{layout.n_heads} heads" if kind == "head" else f"patchable positions {list(positions)}"
        raise InputError("components", f"{entry!r} does not exist: the model has {what}")
    indices = [numbers[1]] if len(numbers) == 2 else valid
    return [Component(kind, layer, i) for layer in layers for i in indices]


def _resid_hook(edit: Edit) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}
        raise ModelError("layout", f"{type(module).__name__} was called without a hidden-state argument")

    return hook


def _head_hook(edit: Edit, n_heads: int) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> Any:
        x = args[0]
        if x.shape[-1] % n_heads:
            raise ModelError(
                "layout", f"attention output input width {x.shape[-1]} is not a multiple of {n_heads} heads"
            )
        heads = x.reshape(*x.shape[:-1], n_heads, x.shape[-1] // n_heads)
        return (edit(heads).reshape(x.shape), *args[1:])

    return hook


def _output_hook(edit: Edit) -> Callable[..., Any]:
    def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise ModelError("layout", f"{type(module).__name__} returned {type(output).__name__}, not a tensor")
        return edit(output)

    return hook


@contextmanager
def intervene(model: torch.nn.Module, layout: Layout, edits: Mapping[Site, Edit]) -> Iterator[None]:
    """Apply ``edits[site]`` to each site's activation during forward passes; hooks removed on exit."""
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for (kind, layer), edit in edits.items():
            if kind == "resid":
                block = get_module(model, layout.blocks[layer])
                handles.append(block.register_forward_pre_hook(_resid_hook(edit), with_kwargs=True))
            elif kind == "head":
                proj = get_module(model, layout.attn_out[layer])
                handles.append(proj.register_forward_pre_hook(_head_hook(edit, layout.n_heads)))
            elif kind == "attn":
                handles.append(get_module(model, layout.attn_out[layer]).register_forward_hook(_output_hook(edit)))
            elif kind == "mlp":
                handles.append(get_module(model, layout.mlp[layer]).register_forward_hook(_output_hook(edit)))
            else:
                raise InputError("components", f"unknown kind {kind!r}")
        yield
    finally:
        for handle in handles:
            handle.remove()


def recorder(store: dict[Site, torch.Tensor], site: Site) -> Edit:
    """An edit that keeps a detached copy of the site's activation and changes nothing."""

    def edit(a: torch.Tensor) -> torch.Tensor:
        store[site] = a.detach()
        return a

    return edit
