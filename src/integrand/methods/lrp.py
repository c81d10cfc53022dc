"""LRP (AttnLRP) of a transformer's score: one forward and one backward pass per batch of examples.

The rules of :data:`integrand.circuits.lrp.ATTNLRP` rewire the backward pass of the model (its
forward output stays bit for bit the same), so relevance is the attributed tensor times the
rewired gradient. Token ids are attributed at the input embeddings (the output of ``layer``,
default the model's ``get_input_embeddings()``), which is what the text explainer reports.

LRP has no baseline: relevance should sum to the score itself. ``delta = score - sum(values)``
is what it misses (biases, position embeddings, the softmax's dropped Taylor term, the epsilon
stabiliser), ``relative_error = |delta| / |score|`` and ``converged`` is judged against
:data:`integrand.circuits.lrp.LRP_TOL`; ``params["lrp_conservation"]`` is ``sum(values) / score``.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..checks import check_count, check_model
from ..circuits.lrp import ATTNLRP, LRP_TOL, LRPRules, conservation, lrp_layout, lrp_rules, warn_unconserved
from ..errors import InputError, ModelError
from ..inputs import TENSOR_KEY, InputSet, as_input_set, call_model, gather_kwargs
from ..layers import LayerSpec, replace_layer, resolve_layer, run_to_layer
from ..models import embedding_layer
from ..progress import bar as progress_bar
from ..result import Attribution
from ..targets import Target, TargetSpec, resolve_target, select
from .gradient_support import target_name


def lrp(
    model: Callable[..., Any],
    inputs: Any,
    target: TargetSpec = None,
    *,
    layer: nn.Module | str | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    rules: LRPRules = ATTNLRP,
    progress: bool | None = None,
) -> Attribution:
    """AttnLRP relevance (Achtibat et al. 2024) of a GPT-2, Llama-family or BERT transformer's score.

    Args:
        inputs: token ids ``[batch, length]`` (relevance at the output of ``layer``, the embedding
            layer by default, ``[batch, length, hidden]``), or float inputs: for a model whose
            ``forward`` takes ``inputs_embeds`` (Hugging Face) a tensor is passed as the token
            embeddings; a mapping is passed as named arguments.
        target: as for every method (class index, LongTensor, callable, None for the top class).
        layer: with token ids, the module (or dotted name) whose output is attributed.
        forward_kwargs: extra model arguments such as ``attention_mask``; batch-first tensors
            follow their examples.
        batch_size: examples per forward and backward pass (default: all at once).
        rules: the LRP rules (:class:`integrand.circuits.LRPRules`; default AttnLRP).
        progress: a bar of examples done (``integrand.progress``'s rule for None).

    ``delta`` is ``score - sum(values)`` (``score_baseline`` is 0: LRP has no baseline) and
    ``converged`` means ``|delta| <= LRP_TOL * |score|``; ``params["lrp_conservation"]`` is the
    share ``sum(values) / score`` of each example.
    """
    check_model(model)
    if not isinstance(model, nn.Module):
        raise InputError(
            "model", f"'lrp' rewires the model's modules and needs an nn.Module, got {type(model).__name__}"
        )
    layout = lrp_layout(model)
    if not isinstance(rules, LRPRules):
        raise InputError("rules", f"expected integrand.circuits.LRPRules, got {type(rules).__name__}")
    feed = _feed(model, inputs, layer, forward_kwargs)
    if isinstance(target, torch.Tensor) and (target.dim() != 1 or target.shape[0] != feed.batch):
        raise InputError("target", f"expected a LongTensor of shape [{feed.batch}], got {tuple(target.shape)}")
    chunk = feed.batch if batch_size is None else check_count("batch_size", batch_size)
    values: list[dict[str, torch.Tensor]] = []
    attributed: list[dict[str, torch.Tensor]] = []
    scores: list[torch.Tensor] = []
    resolved: Target | None = None
    with lrp_rules(model, layout, rules), progress_bar("LRP: examples", feed.batch, progress) as bar:
        for start in range(0, feed.batch, chunk):
            rows = torch.arange(start, min(start + chunk, feed.batch), device=feed.device)
            leaves, output = feed.run(rows)
            chosen = _target(target, output, rows)
            resolved = resolved or chosen
            score = chosen(output)
            if not isinstance(score, torch.Tensor) or score.shape != (rows.shape[0],):
                got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
                raise InputError("target", f"expected one score per example, got {got}")
            grads = torch.autograd.grad(score.sum(), list(leaves.values()))
            values.append({k: (x * g).detach() for (k, x), g in zip(leaves.items(), grads)})
            attributed.append({k: x.detach() for k, x in leaves.items()})
            scores.append(score.detach())
            bar.advance(rows.shape[0])
    joined = {k: torch.cat([v[k] for v in values]) for k in values[0]}
    score_input = torch.cat(scores)
    kept = conservation(sum(_row_sums(v) for v in joined.values()), score_input)  # type: ignore[arg-type]
    params: dict[str, Any] = {
        "target": target_name(target, resolved) if resolved is not None else repr(target),
        "rules": asdict(rules),
        "converged_tol": LRP_TOL,
        "lrp_conservation": kept.share.tolist(),
        **feed.params,
    }
    bad = [i for i, ok in enumerate(kept.converged.tolist()) if not ok]
    if bad:
        warn_unconserved("LRP: examples", bad, stacklevel=3)
    return Attribution(
        values=feed.public(joined),
        inputs=feed.public({k: torch.cat([v[k] for v in attributed]) for k in attributed[0]}),
        baseline=None,
        score_input=score_input,
        score_baseline=torch.zeros_like(score_input),
        delta=kept.delta.to(score_input.dtype),
        steps=torch.ones(feed.batch, dtype=torch.long),
        converged=kept.converged,
        method="lrp",
        params=params,
    )


def _row_sums(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(value.shape[0], -1).double().sum(dim=1)


@dataclass(frozen=True)
class _Feed:
    """How a batch of rows reaches the model: ``run(rows)`` gives the attributed leaves and the output."""

    batch: int
    device: torch.device
    run: Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor]]
    public: Callable[[dict[str, torch.Tensor]], Any]
    params: dict[str, Any]


def _feed(model: nn.Module, inputs: Any, layer: nn.Module | str | None, forward_kwargs: Any) -> _Feed:
    if isinstance(inputs, torch.Tensor) and not inputs.is_floating_point():
        return _ids_feed(model, inputs, _embedding_spec(model, layer), forward_kwargs)
    if layer is not None:
        raise InputError("layer", "applies to token ids; float inputs are attributed themselves")
    input_set = as_input_set(inputs)
    public: Callable[[dict[str, torch.Tensor]], Any] = input_set.public
    if not input_set.named and "inputs_embeds" in _parameters(model):
        # A Hugging Face model: a float tensor is the token embeddings.
        input_set = InputSet({"inputs_embeds": input_set.tensors[TENSOR_KEY]}, named=True)

        def public(tensors: dict[str, torch.Tensor]) -> Any:
            return tensors["inputs_embeds"]

    def run(rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        leaves = {k: v[rows].requires_grad_(True) for k, v in input_set.tensors.items()}
        output = call_model(model, input_set, leaves, gather_kwargs(forward_kwargs, input_set.batch, rows))
        return leaves, output

    return _Feed(input_set.batch, input_set.device, run, public, {})


def _ids_feed(model: nn.Module, ids: torch.Tensor, spec: LayerSpec, forward_kwargs: Any) -> _Feed:
    """Token ids: the output of ``spec`` (the embeddings) is recorded once and attributed."""
    if ids.dim() != 2 or ids.shape[0] < 1 or ids.dtype == torch.bool or ids.is_complex():
        raise InputError("inputs", f"token ids must be an integer tensor [batch, length], got {ids.dtype} "
                         f"{tuple(ids.shape)}")  # fmt: skip
    batch = ids.shape[0]

    def run(rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        sub = InputSet({TENSOR_KEY: ids[rows]}, named=False)
        kwargs = gather_kwargs(forward_kwargs, batch, rows)
        with torch.no_grad():
            leaf = run_to_layer(spec, lambda: call_model(model, sub, sub.tensors, kwargs)).detach()
        leaf.requires_grad_(True)
        with replace_layer(spec, leaf):
            return {TENSOR_KEY: leaf}, call_model(model, sub, sub.tensors, kwargs)

    return _Feed(batch, ids.device, run, lambda tensors: tensors[TENSOR_KEY], {"layer": spec.name})


def _embedding_spec(model: nn.Module, layer: nn.Module | str | None) -> LayerSpec:
    """The layer whose output token ids are attributed at (default the model's input embeddings)."""
    if layer is None:
        try:
            layer = embedding_layer(model)
        except ModelError:
            message = "token ids are attributed at the embedding layer: pass layer=<the embedding>"
            raise InputError("layer", message) from None
    name, module = resolve_layer(model, layer)
    return LayerSpec(name, module)


def _parameters(model: nn.Module) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}


def _target(spec: TargetSpec, output: torch.Tensor, rows: torch.Tensor) -> Target:
    """The target of examples ``rows``: a tensor target is sliced, a built-in callable follows the rows."""
    if isinstance(spec, torch.Tensor):
        return resolve_target(spec[rows.to(spec.device)], output)
    if callable(spec):
        return select(spec, rows.to(output.device))
    return resolve_target(spec, output)
