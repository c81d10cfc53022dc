"""Reuse of the frozen part in layer attribution: run the part below a layer once per example.

Along a layer-attribution path only the layer's tensor changes; everything computed before
the layer starts depends on the (fixed) input alone. ``FrozenPrefix.record`` runs the model
once, without autograd, with every module's ``forward`` wrapped to note its calls. The calls
that *finish before the layer starts* and are not nested in another such call (the maximal
frozen calls: the embeddings, the blocks below, ...) keep their outputs. ``replay`` then
patches only those modules to return their cached outputs (rows of the examples in the
chunk) and the layer to return the integration point, so a forward runs just the code
above the layer plus the cheap non-module glue below it. ``check`` compares a replayed
forward with the recorded one on permuted and repeated examples; on any mismatch the caller
falls back to full recomputation (see docs/layers.md).
"""

from __future__ import annotations

import itertools
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .errors import InputError
from .inputs import InputSet, call_model
from .layers import (
    Element,
    LayerSpec,
    describe,
    get_element,
    get_input,
    input_key,
    output_key,
    patched_forward,
    replace_layer,
    rows,
    set_element,
    set_input,
)

EXAMPLE_KWARG = "_integrand_example"
"""Keyword the engine indexes like any batch-first forward kwarg; it tells the callable which examples a chunk holds."""


@dataclass
class _Call:
    module: nn.Module
    parent: _Call | None
    output: Any = None
    ended: bool = False
    children: list[_Call] = field(default_factory=list)


@dataclass(frozen=True)
class FrozenPrefix:
    """Outputs of the maximal module calls that finish before the layer starts, for ``batch`` examples.

    ``cache[module][ordinal]``: the output of that module's ``ordinal``-th call among the
    calls that still happen when cached ones are skipped. ``layer_output`` is the layer's
    whole output (output side), so elements other than the attributed one stay available.
    """

    spec: LayerSpec
    batch: int
    cache: dict[nn.Module, dict[int, Any]]
    layer_output: Any
    key: Element
    activation: torch.Tensor
    output: Any

    @classmethod
    def record(cls, model: nn.Module, spec: LayerSpec, run: Callable[[], Any], batch: int) -> FrozenPrefix:
        """Run ``run`` once without autograd and record the frozen calls; ``output`` is what it returned."""
        calls: list[_Call] = []  # every call that starts before the layer, in start order
        stack: list[_Call] = []
        ancestors: list[_Call] = []
        layer: dict[str, Any] = {"runs": 0}

        def make(module: nn.Module) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
                def forward(*args: Any, **kwargs: Any) -> Any:
                    if module is spec.module:
                        layer["runs"] += 1
                        if layer["runs"] > 1:
                            return original(*args, **kwargs)
                        ancestors.extend(stack)
                        if spec.side == "input":
                            layer["key"] = input_key(args, kwargs, spec.index, spec.name)
                            layer["value"] = get_input(args, kwargs, layer["key"])
                            return original(*args, **kwargs)
                        out = original(*args, **kwargs)
                        layer["key"] = output_key(out, spec.index, spec.name)
                        layer["value"], layer["output"] = get_element(out, layer["key"]), out
                        return out
                    if "key" in layer or layer["runs"]:
                        return original(*args, **kwargs)
                    call = _Call(module, stack[-1] if stack else None)
                    calls.append(call)
                    if call.parent is not None:
                        call.parent.children.append(call)
                    stack.append(call)
                    try:
                        out = original(*args, **kwargs)
                    finally:
                        stack.pop()
                    if not layer["runs"]:
                        call.output, call.ended = out, True
                        for inner in call.children:  # nested in a finished call: never replayed
                            inner.output = None
                        call.children = []
                    return out

                return forward

            return wrap

        modules = list(dict.fromkeys(m for _, m in model.named_modules()))
        with torch.no_grad(), ExitStack() as patches:
            for m in modules:
                patches.enter_context(patched_forward(m, make(m)))
            output = run()
        if layer["runs"] != 1:
            raise InputError(
                "layer",
                f"layer {spec.name!r} ran {layer['runs']} times in one forward pass; "
                "layer attribution needs a module that runs exactly once per forward",
            )
        value = layer["value"]
        if not isinstance(value, torch.Tensor):
            raise InputError(
                "layer_output_index", f"the attributed element of {spec.name!r} is {describe(value)}, not a tensor"
            )
        open_ids = {id(c) for c in ancestors}
        ordinals: dict[nn.Module, itertools.count[int]] = {}
        cache: dict[nn.Module, dict[int, Any]] = {}
        for call in calls:
            if call.parent is not None and id(call.parent) not in open_ids:
                continue  # nested inside a cached call: it does not run on replay
            ordinal = next(ordinals.setdefault(call.module, itertools.count()))
            if call.ended:
                cache.setdefault(call.module, {})[ordinal] = call.output
        return cls(spec, batch, cache, layer.get("output"), layer["key"], value, output)

    @contextmanager
    def replay(self, example: torch.Tensor, point: torch.Tensor) -> Iterator[None]:
        """Forwards inside return cached rows ``example`` for frozen calls and ``point`` at the layer."""
        spec = self.spec

        def cached(table: dict[int, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            counter = itertools.count()

            def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
                def forward(*args: Any, **kwargs: Any) -> Any:
                    ordinal = next(counter)
                    if ordinal in table:
                        return rows(table[ordinal], example, self.batch)
                    return original(*args, **kwargs)

                return forward

            return wrap

        grad = torch.is_grad_enabled()

        def at_layer(original: Callable[..., Any]) -> Callable[..., Any]:
            def forward(*args: Any, **kwargs: Any) -> Any:
                torch.set_grad_enabled(grad)  # autograd from the layer up; the surrounding no_grad restores it
                if spec.side == "input":
                    args, kwargs = set_input(args, kwargs, self.key, point)
                    return original(*args, **kwargs)
                if self.key is None:
                    return point
                return set_element(rows(self.layer_output, example, self.batch), self.key, point)

            return forward

        with torch.no_grad(), ExitStack() as patches:
            for module, table in self.cache.items():
                patches.enter_context(patched_forward(module, cached(table)))
            patches.enter_context(patched_forward(spec.module, at_layer))
            yield


class Above(nn.Module):
    """The model above a layer as a function of the layer's tensor (the "model" of layer IG).

    Called with points in activation space and ``_integrand_example`` (which examples the
    rows belong to); runs the wrapped model on those examples' inputs with the layer's
    tensor replaced, replaying the frozen prefix when one is given.
    """

    def __init__(self, model: Any, spec: LayerSpec, inputs: InputSet, prefix: FrozenPrefix | None) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.inputs = inputs
        self.prefix = prefix

    def forward(self, point: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        example = kwargs.pop(EXAMPLE_KWARG)
        tensors = {k: v[example] for k, v in self.inputs.tensors.items()}
        context = replace_layer(self.spec, point) if self.prefix is None else self.prefix.replay(example, point)
        with context:
            return call_model(self.model, self.inputs, tensors, kwargs)


def run_full(model: Any, inputs: InputSet, forward_kwargs: Mapping[str, Any] | None) -> Callable[[], torch.Tensor]:
    """A thunk that runs the model on all examples (what ``FrozenPrefix.record`` observes)."""
    return lambda: call_model(model, inputs, inputs.tensors, dict(forward_kwargs or {}))


def check(above: Above, prefix: FrozenPrefix, forward_kwargs: Mapping[str, Any] | None) -> str | None:
    """None if replaying the prefix reproduces the recorded output, else why not.

    Examples are permuted and one is repeated, so a cached tensor whose first dim only
    happens to equal the batch size (and is wrongly sliced by example) shows up as a mismatch.
    """
    if not prefix.cache and (prefix.spec.side == "input" or prefix.key is None):
        return None  # nothing cached, nothing sliced: a replay is the full forward with the layer replaced
    batch = prefix.batch
    n = min(batch, 8)
    example = torch.cat([torch.arange(n - 1, -1, -1), torch.zeros(1, dtype=torch.long)]).to(prefix.activation.device)
    kwargs = {k: (v[example] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch else v)
              for k, v in (forward_kwargs or {}).items()}
    reference = prefix.output
    if not isinstance(reference, torch.Tensor):
        reference = getattr(reference, "logits", None)
    if not isinstance(reference, torch.Tensor):
        return f"the model returned {describe(prefix.output)}"
    try:
        with torch.no_grad():
            got = above(prefix.activation[example], **kwargs, **{EXAMPLE_KWARG: example})
    except Exception as error:  # noqa: BLE001 - any failure means: do not reuse
        return f"replaying the frozen part failed ({type(error).__name__}: {error})"
    want = reference[example]
    if got.shape != want.shape:
        return f"replayed output shape {tuple(got.shape)} differs from {tuple(want.shape)}"
    rtol = {torch.float64: 1e-9, torch.float32: 1e-4}.get(want.dtype, 1e-2)
    scale = float(want.abs().max()) if want.numel() else 0.0
    if not torch.allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1.0)):
        return f"replayed output differs from the full forward by {float((got - want).abs().max()):.3g}"
    return None
