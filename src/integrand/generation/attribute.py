"""Attribution of prepared rows (prompt + target token ids): the integration and the results.

``attribute_rows`` embeds the left-padded batch, runs the chosen method with one forward pass per
integration point for all target tokens, and returns one ``GenerationAttribution`` per row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

import torch

from ..engine import autograd_bytes, chunk_size
from ..errors import ConvergenceWarning
from ..quadrature import Rule
from .batching import Row, build_batch
from .forward_mode import select_scorer
from .integrate import NOISE_ULPS, Reduce, Scorer, adaptive, fixed_rule
from .result import GenerationAttribution
from .runner import Runner, embedding_override
from .steps import StepFunction

BaselineSpec = Union[str, int]


@dataclass(frozen=True)
class Request:
    """What to compute for every row: method, attributed and logged step functions, integration."""

    method: str
    score_name: str
    score_fn: StepFunction
    logged: Mapping[str, StepFunction]
    rule: Rule | None
    tol: float | None
    max_steps: int
    atol: float
    baseline: BaselineSpec
    baseline_id: int | None
    baseline_vector: torch.Tensor
    batch_size: int | None = None
    memory_budget: int | None = None
    gradient_mode: str = "auto"


def attribute_rows(
    model: Any,
    embedding: torch.nn.Module,
    tokenizer: Any,
    embed: Callable[[torch.Tensor], torch.Tensor],
    rows: list[Row],
    request: Request,
    contrast_logprobs: torch.Tensor | None,
    device: torch.device,
) -> list[GenerationAttribution]:
    """Attribute every target token of every row (``embed`` maps token ids to input embeddings)."""
    method, score_name, score_fn, logged = request.method, request.score_name, request.score_fn, request.logged
    rule_obj, tol, max_steps, atol = request.rule, request.tol, request.max_steps, request.atol
    batch, offsets, contrast_ids = build_batch(rows, tokenizer, device)
    inputs = embed(batch.ids)
    baselines = request.baseline_vector.to(inputs).expand_as(inputs)
    # Fixed (sink) and padding positions keep their real embedding along the whole path.
    keep = batch.attention_mask == 0
    for b, (r, off) in enumerate(zip(rows, offsets)):
        keep[b, off : off + r.fixed] = True
    baselines = torch.where(keep[..., None], inputs, baselines)
    diff = inputs - baselines
    all_rows = torch.arange(len(rows), device=device)

    with embedding_override(embedding) as slot:
        runner = Runner(model, slot)
        runner.try_split_head(batch, inputs)
        probe_scorer = Scorer(runner, batch, score_fn, contrast_ids, contrast_logprobs, chunk=len(rows))
        chunk = chunk_size(request.batch_size, request.memory_budget, bytes_per_point(probe_scorer, inputs), device)
        scorer = Scorer(runner, batch, score_fn, contrast_ids, contrast_logprobs, chunk)
        direction = diff if method == "integrated_gradients" else inputs
        scorer, mode = select_scorer(request.gradient_mode, method, scorer, direction, inputs)
        step_scores = {n: scorer.scores(all_rows, inputs, fn) for n, fn in logged.items()}
        score_input = step_scores[score_name]
        reduce: Reduce
        score_baseline = delta = qerr = floor = at_floor = None
        converged = batch.valid.cpu()
        n_steps = torch.ones(len(rows), dtype=torch.long)
        if method == "integrated_gradients":
            score_baseline = scorer.scores(all_rows, baselines)
            total = score_input - score_baseline

            def reduce(grad: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
                return (grad * diff[r]).sum(dim=-1)

            if rule_obj is not None:
                values = fixed_rule(scorer, inputs, baselines, rule_obj, reduce)
                n_steps = torch.full((len(rows),), rule_obj.steps)
            else:
                assert tol is not None
                outcome = adaptive(scorer, inputs, baselines, total, reduce, tol, atol, max_steps)
                values, n_steps, converged, qerr = (
                    outcome.values,
                    outcome.steps,
                    outcome.converged,
                    outcome.quadrature_error,
                )
                floor, at_floor = outcome.noise_floor, outcome.at_noise_floor
            # Summed in float64: the residual, not the summation order, is what delta reports.
            delta = (total.double() - values.double().sum(dim=-1)).to(total.dtype)
        else:

            def reduce(grad: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
                if method == "saliency":
                    norm: torch.Tensor = torch.linalg.vector_norm(grad, dim=-1)
                    return norm
                return (grad * inputs[r]).sum(dim=-1)

            _, values = scorer.gradients(all_rows, inputs, reduce)
        forwards, split = runner.forwards, runner.split_head is not None

    params = {
        "rule": None if method != "integrated_gradients" else (rule_obj.name if rule_obj else "adaptive-simpson"),
        "steps": rule_obj.steps if rule_obj else None,
        "tol": tol if method == "integrated_gradients" else None,
        "max_steps": max_steps if tol is not None else None,
        "noise_ulps": NOISE_ULPS if floor is not None else None,
        "atol": atol,
        "baseline": request.baseline,
        "baseline_token_id": request.baseline_id,
        "split_head": split,
        "forward_points": forwards,
        "gradient_mode": mode.mode,
        "gradient_mode_note": mode.note,
    }
    results = []
    for b, (r, off) in enumerate(zip(rows, offsets)):
        t = len(r.targets)
        seq = r.prompt + r.targets
        results.append(
            GenerationAttribution(
                tokens=tuple(tokenizer.decode([i]) for i in seq),
                token_ids=torch.tensor(seq),
                n_prompt=len(r.prompt),
                matrix=values[b, :t, off:-1].detach().cpu(),
                step_scores={n: v[b, :t].detach().cpu() for n, v in step_scores.items()},
                score_input=score_input[b, :t].detach().cpu(),
                score_baseline=None if score_baseline is None else score_baseline[b, :t].detach().cpu(),
                delta=None if delta is None else delta[b, :t].detach().cpu(),
                steps=n_steps[b].repeat(t),
                converged=converged[b, :t].clone(),
                method=method,
                score=score_name,
                fixed_positions=tuple(range(r.fixed)),
                params=params
                if floor is None or at_floor is None
                else {
                    **params,
                    "noise_floor": floor[b, :t].tolist(),
                    "at_noise_floor": at_floor[b, :t].tolist(),
                },
                quadrature_error=None if qerr is None else qerr[b, :t].clone(),
                source_groups=r.groups,
            )
        )
        if not bool(results[-1].converged.all()):
            bad = [k for k, ok in enumerate(results[-1].converged.tolist()) if not ok]
            warnings.warn(
                f"generation attribution: target tokens {bad} of prompt {b} did not reach tol={tol} within "
                f"max_steps={max_steps}; see result.converged and result.relative_error",
                ConvergenceWarning,
                stacklevel=3,
            )
    return results


def bytes_per_point(scorer: Scorer, inputs: torch.Tensor) -> int:
    """Autograd bytes of one point's forward pass plus its gradient buffers (measured on row 0)."""
    leaf = inputs[:1].detach().requires_grad_(True)
    rows = torch.zeros(1, dtype=torch.long, device=inputs.device)
    _, saved = autograd_bytes(scorer.runner.model, lambda: scorer.runner.logits(scorer.batch, rows, leaf))
    scorer.runner.forwards -= 1
    return max(1, 2 * saved + 4 * leaf.numel() * leaf.element_size())
