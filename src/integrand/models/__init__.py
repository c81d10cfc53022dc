"""One model adapter: what integrand knows about a model family, in one place.

- :func:`logits_of` reads the logits from any model output (a tensor, a tuple, a mapping or a
  ``transformers`` ``ModelOutput``);
- :func:`embedding_layer` finds the module whose output is the model's token embeddings
  (:func:`stack_embeddings` the two an encoder-decoder's stacks call);
- :func:`structure` lists the transformer blocks and, inside each, the attention, MLP and the
  projections the LRP rules rewire (q/k/v/o, gate/up/down);
- :func:`decoder_blocks` gives the blocks whose output a steering vector edits.

A family is a frozen :class:`Family` description (block class names plus module paths inside a
block), one small module per family (``gpt2``, ``llama``, ``bert``, ``t5``, ``bart``, ``bilstm``).
:data:`FAMILIES` is the registry the rest of the package asks; ``FAMILIES.register(family)`` adds one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import InputError, ModelError
from .family import Block, Family, Gate, Structure, locate

__all__ = [
    "FAMILIES",
    "Block",
    "Families",
    "Family",
    "Gate",
    "Structure",
    "decoder_blocks",
    "embedding_layer",
    "family_of",
    "logits_of",
    "stack_embeddings",
    "structure",
]

LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output.

    The tensor itself, else ``output.logits``, else ``output["logits"]``, else its first element.
    """
    if isinstance(output, torch.Tensor):
        return output
    found = getattr(output, "logits", None)
    if found is None and isinstance(output, Mapping):
        found = output.get("logits")
        if found is None and hasattr(output, "to_tuple"):  # a ModelOutput without logits: its first field
            first = output.to_tuple()
            found = first[0] if first else None
    elif found is None and isinstance(output, (tuple, list)) and output:
        found = output[0]
    if not isinstance(found, torch.Tensor):
        raise ModelError(
            "model",
            f"cannot read logits from a {type(output).__name__}: expected a tensor, an output with .logits "
            "or a tuple whose first element is the logits",
        )
    return found


class Families:
    """Name -> :class:`Family`. Built explicitly; a family module registers nothing on import."""

    def __init__(self, families: Iterable[Family] = ()) -> None:
        self._families: dict[str, Family] = {}
        for family in families:
            self.register(family)

    def register(self, family: Family) -> None:
        """Add ``family``; its name and block class names must be new."""
        if not isinstance(family, Family):
            raise InputError("family", f"expected a models.Family, got {type(family).__name__}")
        if family.name in self._families:
            raise InputError("family", f"a family named {family.name!r} is already registered")
        for other in self._families.values():
            shared = set(other.block_types) & set(family.block_types)
            if shared and not (other.model_types or family.model_types):
                raise InputError("family", f"block types {sorted(shared)} already belong to family {other.name!r}")
        self._families[family.name] = family

    def unregister(self, name: str) -> None:
        """Remove the family registered as ``name``."""
        if name not in self._families:
            raise InputError("name", f"no family named {name!r}; registered: {', '.join(self.names())}")
        del self._families[name]

    def names(self) -> list[str]:
        return sorted(self._families)

    def find(self, model: Any) -> Family | None:
        """The one family whose blocks (and model class, where it names one) the model contains, or None."""
        if not isinstance(model, nn.Module):
            return None
        found = self._matching(model)
        if len(found) > 1:
            raise ModelError(
                "model", f"the model matches several families ({', '.join(f.name for f in found)}); pass its layers"
            )
        return found[0] if found else None

    def match(self, model: Any) -> Family:
        """The model's family, or a ModelError naming ``model`` that lists the known families."""
        if not isinstance(model, nn.Module):
            raise ModelError("model", f"expected a torch.nn.Module, got {type(model).__name__}")
        family = self.find(model)
        if family is None:
            raise ModelError(
                "model",
                f"{type(model).__name__} belongs to no known model family (known: {self.describe()}); "
                "register one with integrand.models.FAMILIES.register(Family(...))",
            )
        return family

    def describe(self) -> str:
        return "; ".join(f"{f.name} ({', '.join(f.block_types)})" for f in self._families.values())

    def _matching(self, model: nn.Module) -> list[Family]:
        types = {type(m).__name__ for m in model.modules()}
        return [
            f
            for f in self._families.values()
            if types & set(f.block_types) and (not f.model_types or types & set(f.model_types))
        ]


def _builtin() -> Families:
    from . import bart, bert, bilstm, gpt2, llama, t5

    return Families(module.FAMILY for module in (gpt2, llama, bert, t5, bart, bilstm))


FAMILIES = _builtin()
"""The families the package knows; ``FAMILIES.register(Family(...))`` adds one."""


def family_of(model: Any) -> Family:
    """The registered family of ``model`` (a ModelError naming ``model`` and listing the families if none)."""
    return FAMILIES.match(model)


def embedding_layer(model: Any) -> nn.Module:
    """The module whose output is the model's token embeddings.

    ``get_input_embeddings()`` where the model has it, else the family's embedding path, else the
    model's only ``nn.Embedding``; a ModelError naming ``model`` otherwise.
    """
    if not isinstance(model, nn.Module):
        raise ModelError("model", f"expected a torch.nn.Module, got {type(model).__name__}")
    getter = getattr(model, "get_input_embeddings", None)
    reason = "it has no get_input_embeddings()"
    if callable(getter):
        try:
            found = getter()
        except NotImplementedError:
            found, reason = None, "get_input_embeddings() is not implemented"
        if isinstance(found, nn.Module):
            return found
        if found is not None:
            reason = f"get_input_embeddings() returned {type(found).__name__}, not an nn.Module"
    family = FAMILIES.find(model)
    if family is not None and family.embedding is not None:
        suffix = "." + family.embedding
        named = [n for n, _ in model.named_modules() if n == family.embedding or n.endswith(suffix)]
        if len(named) == 1:
            return model.get_submodule(named[0])
    tables = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if len(tables) == 1:
        return model.get_submodule(tables[0])
    which = f"{len(tables)} nn.Embedding modules: {', '.join(tables)}" if tables else "no nn.Embedding"
    raise ModelError("model", f"the model has no input-embedding layer ({reason}, {which}); pass the layer")


def stack_embeddings(model: Any) -> tuple[nn.Module, nn.Module]:
    """An encoder-decoder's encoder and decoder token embeddings: the modules its two stacks call.

    They may be modules of their own that share ``get_input_embeddings()``'s weight (T5, BART).
    """
    layers = []
    for getter in ("get_encoder", "get_decoder"):
        stack = getattr(model, getter)() if callable(getattr(model, getter, None)) else None
        if not isinstance(stack, nn.Module):
            raise ModelError("model", f"expected an encoder-decoder model with {getter}(); this model has none")
        layer = getattr(stack, "embed_tokens", None)
        layers.append(layer if isinstance(layer, nn.Module) else embedding_layer(stack))
    return layers[0], layers[1]


def _n_heads(model: nn.Module, attention: nn.Module | None, block: nn.Module) -> int | None:
    # The model's config, or the outermost submodule's (an encoder wrapped with a head; modules() is pre-order).
    config = next((m.config for m in model.modules() if hasattr(m, "config")), None)
    sources = [(config, "num_attention_heads")] + [(m, n) for m in (attention, block) for n in ("num_heads", "n_heads")]
    for source, name in sources:
        value = getattr(source, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _encoder_modules(model: nn.Module) -> set[int]:
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return set()
    getter = getattr(model, "get_encoder", None)
    encoder = getter() if callable(getter) else None
    return {id(m) for m in encoder.modules()} if isinstance(encoder, nn.Module) else set()


def structure(model: Any) -> Structure:
    """The model's blocks and their parts, as module paths from the model (a ModelError naming ``model`` if unknown)."""
    family = FAMILIES.match(model)
    encoder = _encoder_modules(model)
    enc_dec = bool(encoder)
    blocks = []
    for name, module in model.named_modules():
        if type(module).__name__ not in family.block_types:
            continue
        stack = ("encoder" if id(module) in encoder else "decoder") if enc_dec else ""
        blocks.append(_block(family, name, module, stack))
    first = model.get_submodule(blocks[0].attention) if blocks[0].attention else None
    heads = _n_heads(model, first, model.get_submodule(blocks[0].path))
    try:
        embedding = embedding_layer(model)
        embed_name = next((n for n, m in model.named_modules() if m is embedding), None)
    except ModelError:
        embed_name = None
    return Structure(family.name, embed_name, tuple(blocks), heads, enc_dec)


def _block(family: Family, name: str, module: nn.Module, stack: str) -> Block:
    def path(rel: str | None, required: bool) -> str | None:
        if rel is None:
            return None
        found = locate(module, rel)
        if found is None and required:
            close = difflib.get_close_matches(rel, [n for n, _ in module.named_modules() if n], n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ModelError("model", f"{family.name} block {name!r} has no module {rel!r}{hint}")
        return None if found is None else f"{name}.{found}" if found else name

    gate = None
    if family.gate is not None:
        parts = [path(p, False) for p in (family.gate.act, family.gate.up, family.gate.down)]
        gate = Gate(*parts) if all(p is not None for p in parts) else None  # type: ignore[arg-type]
    return Block(
        path=name,
        stack=stack,
        attention=path(family.attention, True),
        attn_out=path(family.attn_out, True),
        mlp=path(family.mlp, True),
        q=path(family.q, False),
        k=path(family.k, False),
        v=path(family.v, False),
        qkv=path(family.qkv, False),
        gate=gate,
    )


def decoder_blocks(model: Any) -> tuple[nn.Module, ...]:
    """The blocks whose output is the residual stream a steering vector edits (the decoder's, for encoder-decoders).

    A model of no registered family still works when its blocks are the one ModuleList of identical
    modules as long as its config's layer count (any Hugging Face decoder has one).
    """
    if not isinstance(model, nn.Module):
        raise ModelError("model", f"expected a torch.nn.Module causal LM, got {type(model).__name__}")
    if FAMILIES.find(model) is not None:
        info = structure(model)
        return tuple(model.get_submodule(b.path) for b in info.blocks if b.stack != "encoder")
    config = getattr(model, "config", None)
    count = next(
        (v for v in (getattr(config, f, None) for f in LAYER_COUNT_FIELDS) if isinstance(v, int) and v > 0), None
    )
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    found = [(n, m) for n, m in lists if len({type(b) for b in m}) == 1 and (count is None or len(m) == count)]
    if not found:
        raise ModelError(
            "model",
            f"could not find the decoder blocks: {type(model).__name__} belongs to no known model family "
            f"(known: {FAMILIES.describe()}) and has no ModuleList of {count or 'n'} identical blocks; pass the "
            "language model itself (e.g. a vision-language model's decoder)",
        )
    # The outermost list wins: blocks may hold lists of their own (experts, heads).
    found.sort(key=lambda item: item[0].count("."))
    return tuple(found[0][1])
