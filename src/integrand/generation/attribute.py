"""Attribution of prepared rows (prompt + target token ids): the integration and the results.

``attribute_rows`` embeds the left-padded batch, runs the chosen method with one forward pass per
integration point for all target tokens, and returns one ``GenerationAttribution`` per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import torch

from ..convergence import DEFAULT_TOL, warn_unconverged
from ..engine import autograd_bytes, chunk_size
from ..integrate import NOISE_ULPS, adaptive, fixed, judge_fixed
from ..integration import Integration
from ..progress import bar as progress_bar
from ..quadrature import Rule
from .batching import Row, build_batch
from .forward_mode import select_scorer
from .integrate import Reduce, Scorer
from .lrp import lrp_relevance, warn_unconserved
from .result import GenerationAttribution
from .runner import Batch, Runner, embedding_override
from .steps import StepFunction

BaselineSpec = Union[str, int]


@dataclass(frozen=True)
class Request:
    """What to compute for every row: method, attributed and logged step functions, integration."""

    method: str
    score_name: str
    score_fn: StepFunction
    logged: Mapping[str, StepFunction]
    integration: Integration
    rule: Rule | None  # the fixed rule built from ``integration`` (None under error control)
    baseline: BaselineSpec
    baseline_id: int | None
    baseline_vector: torch.Tensor
    gradient_mode: str = "auto"
    progress: bool | None = None  # integrand.progress.enabled's rule


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
    batch, offsets, contrast_ids = build_batch(rows, tokenizer, device)
    inputs = embed(batch.ids)
    baselines = request.baseline_vector.to(inputs).expand_as(inputs)
    # Fixed (sink) and padding positions keep their real embedding along the whole path.
    keep = batch.attention_mask == 0
    for b, (r, off) in enumerate(zip(rows, offsets)):
        keep[b, off : off + r.fixed] = True
    baselines = torch.where(keep[..., None], inputs, baselines)

    with embedding_override(embedding) as slot:
        runner = Runner(model, slot)
        runner.try_split_head(batch, inputs)
        done = integrate_batch(runner, batch, inputs, baselines, request, contrast_ids, contrast_logprobs)
    results = []
    for b, (r, off) in enumerate(zip(rows, offsets)):
        seq = r.prompt + r.targets
        columns = range(off, off + len(seq) - 1)
        results.append(
            make_result(done, b, request, tokenizer, seq, len(r.prompt), columns, tuple(range(r.fixed)), r.groups)
        )
    return results


@dataclass(frozen=True)
class Integrated:
    """Per-batch outcome: contributions ``values`` [B, T, L] over batch positions, scores [B, T], ..."""

    values: torch.Tensor
    step_scores: dict[str, torch.Tensor]
    score_input: torch.Tensor
    score_baseline: torch.Tensor | None
    delta: torch.Tensor | None
    steps: torch.Tensor  # [B]
    converged: torch.Tensor  # [B, T]
    quadrature_error: torch.Tensor | None
    noise_floor: torch.Tensor | None
    at_noise_floor: torch.Tensor | None
    params: dict[str, Any]
    rules: list[str] | None = None  # per row: the rule that produced its values


def integrate_batch(
    runner: Runner,
    batch: Batch,
    inputs: torch.Tensor,
    baselines: torch.Tensor,
    request: Request,
    contrast_ids: torch.Tensor | None,
    contrast_logprobs: torch.Tensor | None,
) -> Integrated:
    """Run ``request``'s method on a prepared batch (``runner.logits`` reads embeddings [points, L, H])."""
    method, score_name, score_fn, logged = request.method, request.score_name, request.score_fn, request.logged
    config = request.integration
    rule_obj, tol, max_steps, atol = request.rule, config.tol, config.max_steps, config.atol
    diff = inputs - baselines
    n_rows = inputs.shape[0]
    all_rows = torch.arange(n_rows, device=inputs.device)
    probe_scorer = Scorer(runner, batch, score_fn, contrast_ids, contrast_logprobs, chunk=n_rows)
    per_point, saved = bytes_per_point(probe_scorer, inputs)
    chunk = chunk_size(config.batch_size, config.memory_budget, per_point, inputs.device, saved)
    scorer = Scorer(runner, batch, score_fn, contrast_ids, contrast_logprobs, chunk)
    direction = diff if method == "integrated_gradients" else inputs
    scorer, mode = select_scorer(request.gradient_mode, method, scorer, direction, inputs)
    step_scores = {n: scorer.scores(all_rows, inputs, fn) for n, fn in logged.items()}
    score_input = step_scores[score_name]
    reduce: Reduce
    score_baseline = delta = qerr = floor = at_floor = None
    rules: list[str] | None = None
    converged = batch.valid.cpu()
    n_steps = torch.ones(n_rows, dtype=torch.long)
    extra: dict[str, Any] = {}
    if method == "lrp":
        # No baseline: relevance should sum to the score itself (reference 0); delta is what it misses.
        relevance = lrp_relevance(scorer, inputs, score_input, batch.valid, request.progress)
        values, delta, converged, extra = relevance.values, relevance.delta, relevance.converged, relevance.params
        score_baseline = torch.zeros_like(score_input)
    elif method == "integrated_gradients":
        score_baseline = scorer.scores(all_rows, baselines)
        total = score_input - score_baseline

        def reduce(grad: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return (grad * diff[r]).sum(dim=-1)

        n_targets = int(batch.valid.sum())
        evaluate = scorer.along(inputs, baselines, reduce)
        if rule_obj is not None:
            total_points = n_rows * rule_obj.steps
            with progress_bar(f"IG, {n_targets} target tokens: points", total_points, request.progress) as bar:
                values = fixed(evaluate, n_rows, rule_obj, scorer.chunk, inputs.device, bar)
            n_steps = torch.full((n_rows,), rule_obj.steps)
            # Fixed rules are judged too (integrand.convergence): DEFAULT_TOL, above the rounding floor.
            residual = total.double() - values.double().sum(dim=-1)
            magnitude = score_input.abs() + score_baseline.abs() + values.abs().sum(dim=-1)
            converged = judge_fixed(residual, total, magnitude.to(values.dtype), atol) & converged
            rules = [rule_obj.name] * n_rows
        else:
            assert tol is not None
            with progress_bar(f"IG to tol {tol:g}: points", None, request.progress) as bar:
                bar.update(note=f"0/{n_targets} targets converged")
                outcome = adaptive(
                    evaluate,
                    total,
                    tol=tol,
                    atol=atol,
                    max_steps=max_steps,
                    chunk=scorer.chunk,
                    valid=batch.valid,
                    bar=bar,
                )
            values, n_steps, converged, qerr = (
                outcome.values,
                outcome.steps,
                outcome.converged,
                outcome.quadrature_error,
            )
            floor, at_floor, rules = outcome.noise_floor, outcome.at_noise_floor, outcome.rules()
        # Summed in float64: the residual, not the summation order, is what delta reports.
        delta = (total.double() - values.double().sum(dim=-1)).to(total.dtype)
    else:

        def reduce(grad: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            if method == "saliency":
                norm: torch.Tensor = torch.linalg.vector_norm(grad, dim=-1)
                return norm
            return (grad * inputs[r]).sum(dim=-1)

        _, values = scorer.gradients(all_rows, inputs, reduce)

    params = {
        "rule": None if rules is None else rules[0],
        "steps": rule_obj.steps if rule_obj else None,
        "tol": tol if method == "integrated_gradients" else None,
        "converged_tol": (DEFAULT_TOL if tol is None else tol) if method == "integrated_gradients" else None,
        "max_steps": max_steps if tol is not None else None,
        "noise_ulps": NOISE_ULPS if floor is not None else None,
        "atol": atol,
        "integration": config.as_params() if method == "integrated_gradients" else None,
        "baseline": request.baseline,
        "baseline_token_id": request.baseline_id,
        "split_head": runner.split_head is not None or getattr(runner, "head", None) is not None,
        "forward_points": runner.forwards,
        "gradient_mode": mode.mode,
        "gradient_mode_note": mode.note,
        **extra,
    }
    return Integrated(
        values,
        step_scores,
        score_input,
        score_baseline,
        delta,
        n_steps,
        converged,
        qerr,
        floor,
        at_floor,
        params,
        rules,
    )


def make_result(
    done: Integrated,
    b: int,
    request: Request,
    tokenizer: Any,
    seq: list[int],
    n_prompt: int,
    columns: Sequence[int],
    fixed_positions: tuple[int, ...],
    groups: dict[str, tuple[int, int]] | None,
    n_encoder: int | None = None,
) -> GenerationAttribution:
    """Row ``b``'s result: ``seq`` is its tokens, ``columns`` the batch positions of ``seq[:-1]``."""
    t = len(seq) - n_prompt
    cols = torch.as_tensor(list(columns), dtype=torch.long, device=done.values.device)
    params = done.params if done.rules is None else {**done.params, "rule": done.rules[b]}
    if done.noise_floor is not None and done.at_noise_floor is not None:
        params = {
            **params,
            "noise_floor": done.noise_floor[b, :t].tolist(),
            "at_noise_floor": done.at_noise_floor[b, :t].tolist(),
        }
    result = GenerationAttribution(
        tokens=tuple(tokenizer.decode([i]) for i in seq),
        token_ids=torch.tensor(seq),
        n_prompt=n_prompt,
        matrix=done.values[b, :t][:, cols].detach().cpu(),
        step_scores={n: v[b, :t].detach().cpu() for n, v in done.step_scores.items()},
        score_input=done.score_input[b, :t].detach().cpu(),
        score_baseline=None if done.score_baseline is None else done.score_baseline[b, :t].detach().cpu(),
        delta=None if done.delta is None else done.delta[b, :t].detach().cpu(),
        steps=done.steps[b].repeat(t),
        converged=done.converged[b, :t].clone(),
        method=request.method,
        score=request.score_name,
        fixed_positions=fixed_positions,
        params=params,
        quadrature_error=None if done.quadrature_error is None else done.quadrature_error[b, :t].clone(),
        source_groups=groups,
        n_encoder=n_encoder,
    )
    if not bool(result.converged.all()):
        targets = result.target_tokens
        bad = [f"{k} {targets[k]!r}" for k, ok in enumerate(result.converged.tolist()) if not ok]
        if request.method == "lrp":
            warn_unconserved(f"LRP of prompt {b}: target tokens", bad, stacklevel=5)
            return result
        tol = request.integration.tol
        budget = "" if tol is None else f" within max_steps={request.integration.max_steps}"
        warn_unconverged(f"generation attribution of prompt {b}{budget}: target tokens", bad, tol, stacklevel=5)
    return result


def bytes_per_point(scorer: Scorer, inputs: torch.Tensor) -> tuple[int, int]:
    """Autograd bytes of one point's forward pass plus its gradient buffers, and the tensors autograd
    saves in that pass (measured on row 0)."""
    leaf = inputs[:1].detach().requires_grad_(True)
    rows = torch.zeros(1, dtype=torch.long, device=inputs.device)
    _, saved, count = autograd_bytes(scorer.runner.model, lambda: scorer.runner.logits(scorer.batch, rows, leaf))
    scorer.runner.forwards -= 1
    return max(1, 2 * saved + 4 * leaf.numel() * leaf.element_size()), max(1, count)
