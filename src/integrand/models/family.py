"""The description of a model family, and of one model's blocks found through it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError


@dataclass(frozen=True)
class Gate:
    """A gated MLP ``down(act(gate(x)) * up(x))``: module paths of the activation, up and down projections."""

    act: str
    up: str
    down: str


@dataclass(frozen=True)
class Family:
    """One model family: the class names of its blocks and the module paths of their parts.

    Part paths are dotted names relative to a block; a negative number counts from the end of a
    list (T5 keeps its MLP in the block's last sub-layer: ``"layer.-1.DenseReluDense"``).
    ``attention``, ``attn_out`` (the attention's output projection) and ``mlp`` (the module whose
    output the block adds to the residual stream) must exist in every block when given; ``q``,
    ``k``, ``v``, ``qkv`` (a fused ``[q | k | v]`` projection) and ``gate`` are read where present.
    ``embedding`` is the path (or path suffix) of the token embedding, used when the model has no
    ``get_input_embeddings()``. ``model_types``, when given, restricts the family to models that
    contain a module of one of those classes (for a block class as common as ``LSTM``).
    """

    name: str
    block_types: tuple[str, ...]
    attention: str | None = None
    attn_out: str | None = None
    mlp: str | None = None
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    gate: Gate | None = None
    embedding: str | None = None
    model_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("family", f"expected a non-empty family name, got {self.name!r}")
        for what in ("block_types", "model_types"):
            value = getattr(self, what)
            if not isinstance(value, tuple) or not all(isinstance(x, str) and x for x in value):
                raise InputError("family", f"{what} must be a tuple of class names, got {value!r}")
        if not self.block_types:
            raise InputError("family", f"family {self.name!r} names no block class")
        for what in ("attention", "attn_out", "mlp", "q", "k", "v", "qkv", "embedding"):
            value = getattr(self, what)
            if value is not None and (not isinstance(value, str) or not value):
                raise InputError("family", f"{what} must be a dotted module path or None, got {value!r}")
        if self.gate is not None and not isinstance(self.gate, Gate):
            raise InputError("family", f"gate must be a Gate or None, got {type(self.gate).__name__}")


@dataclass(frozen=True)
class Block:
    """One block of a model: its path and its parts' paths from the model root (None where absent).

    ``stack`` is ``"encoder"`` or ``"decoder"`` in an encoder-decoder model, ``""`` otherwise.
    """

    path: str
    stack: str
    attention: str | None
    attn_out: str | None
    mlp: str | None
    q: str | None
    k: str | None
    v: str | None
    qkv: str | None
    gate: Gate | None


@dataclass(frozen=True)
class Structure:
    """What the adapter found in one model: family, embedding path, blocks in forward order, head count."""

    family: str
    embedding: str | None
    blocks: tuple[Block, ...]
    n_heads: int | None
    encoder_decoder: bool

    def paths(self, part: str) -> tuple[str, ...]:
        """The non-missing paths of one part (``"attn_out"``, ``"q"``, ...) over all blocks."""
        return tuple(p for b in self.blocks if (p := getattr(b, part)) is not None)


def locate(block: nn.Module, path: str) -> str | None:
    """The concrete dotted name of ``path`` inside ``block`` (negative list indices resolved), or None."""
    module, parts = block, []
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children and part.lstrip("-").isdigit():
            keys = list(children)
            index = int(part)
            if not -len(keys) <= index < len(keys):
                return None
            part = keys[index]
        if part not in children:
            return None
        module = children[part]
        parts.append(part)
    return ".".join(parts)
