"""Forward-mode contributions: one directional derivative per source position, for all targets at once.

IG and input x gradient only need, per source position ``j``, the derivative of every target score
along "direction at ``j``, zero elsewhere" (IG: input - baseline; input x gradient: the input). A
Jacobian-vector product gives that for every target in one dual pass, so a point costs one pass
with one tangent per source instead of one backward pass per target. The model body runs in
forward mode up to its *frontier* (the hidden states at the score positions with a split head,
else the logits); the head and step function are pulled back in reverse mode, one backward pass
for all targets (each target's score depends only on its own column), so the vocabulary
projection is never applied to tangents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..engine import column_gradients
from ..errors import InputError, ModelError
from .integrate import Reduce, Scorer

GRADIENT_MODES: tuple[str, ...] = ("auto", "reverse", "forward")
FORWARD_METHODS: tuple[str, ...] = ("integrated_gradients", "input_x_gradient")
TANGENTS_PER_POINT = 4
"""Tangent rows allowed per point of the reverse-mode chunk.

A reverse-mode point keeps every layer's saved activations until its last backward pass; a
tangent row of a dual pass without a graph only holds the current op's primal and tangent. On
the 6-layer benchmark model with ``batch_size=2`` the peak RSS growth was 50 MiB for 8 tangent
rows per pass (with the head pulled back at 2 points) against 61 MiB for 2 reverse points
(``bench/generation_modes.py``).
"""


def check_gradient_mode(mode: object, method: str) -> str:
    """``mode`` if it is a known gradient mode usable with ``method``, else an InputError."""
    if not isinstance(mode, str) or mode not in GRADIENT_MODES:
        raise InputError("gradient_mode", f"expected one of {', '.join(GRADIENT_MODES)}, got {mode!r}")
    if mode == "forward" and method not in FORWARD_METHODS:
        raise InputError(
            "gradient_mode",
            f"{method} needs the full gradient vector at each position; forward mode gives one directional "
            "derivative per position (use 'reverse' or 'auto')",
        )
    return mode


def source_positions(direction: torch.Tensor, score_positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B, S] positions with a non-zero direction that reach some valid target score; -1 pads."""
    reach = torch.where(valid, score_positions, torch.full_like(score_positions, -1)).amax(dim=1)
    pos = torch.arange(direction.shape[1], device=direction.device)
    live = (direction != 0).any(dim=-1) & (pos[None] <= reach[:, None])
    n = int(live.sum(dim=1).max()) if live.numel() else 0
    out = torch.full((direction.shape[0], n), -1, dtype=torch.long, device=direction.device)
    for b in range(direction.shape[0]):
        idx = live[b].nonzero()[:, 0]
        out[b, : idx.numel()] = idx
    return out


class ForwardScorer(Scorer):
    """A ``Scorer`` whose ``gradients`` are forward-mode products with a fixed ``direction`` [B, L, H].

    The contribution of position ``j`` is ``<d score / d e_j, direction_j>``: the ``reduce`` that
    callers pass (the reverse-mode form of the same product) is not used.
    """

    def __init__(self, base: Scorer, direction: torch.Tensor) -> None:
        super().__init__(base.runner, base.batch, base.step_fn, base.contrast_ids, base.contrast_logprobs, base.chunk)
        self.direction = direction
        self.sources = source_positions(direction, base.batch.score_positions, base.batch.valid)
        self.tangent_rows = max(1, base.chunk) * TANGENTS_PER_POINT

    def _frontier(self, rows: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Embeddings [P, L, H] -> what the head reads at the score positions [P, T, Z]."""
        runner, batch = self.runner, self.batch

        def run(embeds: torch.Tensor) -> torch.Tensor:
            if runner.split_head is not None:
                out = runner._call(runner.split_head[0], batch, rows, embeds)
                hidden: torch.Tensor = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
                index = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
                return hidden[index, batch.score_positions[rows]]
            return torch.stack(runner._full(batch, rows, embeds), dim=1)

        return run

    def _pullback(self, rows: torch.Tensor, frontier: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [P, T] and d score_k / d frontier_k [P, T, Z], one backward pass for all targets."""
        head = self.runner.split_head[1] if self.runner.split_head is not None else None
        with torch.enable_grad():
            z = frontier.detach().requires_grad_(True)
            logits = z if head is None else head(z)  # one projection for all targets
            # unbind, not indexing: its backward stacks the columns' gradients once, while each
            # index's backward would fill a zero tensor of the full [P, T, V] size.
            scores = self._score(list(logits.unbind(dim=1)), rows, self.step_fn)
            ((grad,),) = column_gradients(
                [scores], [z], argument="model", problem="the target score does not depend on the input embeddings"
            )
        return scores.detach(), grad

    def _tangents(self, rows: torch.Tensor, src: torch.Tensor, length: int) -> torch.Tensor:
        """[G, P, L, H]: tangent ``g`` of point ``p`` is the direction at ``src[p, g]``, zero elsewhere."""
        p_idx, g_idx = (src >= 0).nonzero(as_tuple=True)
        pos = src[p_idx, g_idx]
        out = self.direction.new_zeros(src.shape[1], src.shape[0], length, self.direction.shape[2])
        out[g_idx, p_idx, pos] = self.direction[rows[p_idx], pos]
        return out

    def gradients(self, rows: torch.Tensor, embeds: torch.Tensor, reduce: Reduce) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [points, T] and contributions [points, T, L]: one dual pass per group of tangents."""
        del reduce  # the direction given at construction plays its part
        src_all = self.sources[rows]
        n_src = int((src_all >= 0).sum(dim=1).max()) if src_all.numel() else 0
        src_all = src_all[:, :n_src]
        n_targets, length = self.batch.target_ids.shape[1], embeds.shape[1]
        # The pullback runs once for all points of the chunk: the head's weights are read once,
        # not once per small pass of tangents.
        with torch.no_grad():
            frontier = self._frontier(rows)(embeds)
        self.runner.forwards += int(rows.shape[0])
        scores, pull = self._pullback(rows, frontier)
        contrib = embeds.new_zeros(rows.shape[0], n_targets, length)
        group = max(1, min(n_src, self.tangent_rows))
        per_pass = max(1, self.tangent_rows // max(1, n_src))
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
            for start in range(0, rows.shape[0] if n_src else 0, per_pass):
                sl = slice(start, start + per_pass)
                r, run = rows[sl], self._frontier(rows[sl])
                positions = self.batch.score_positions[r][:, :, None]
                for g0 in range(0, n_src, group):
                    src = src_all[sl, g0 : g0 + group]
                    _, tangents = jvp_batched(run, embeds[sl], self._tangents(r, src, length))
                    values = torch.einsum("ptz,sptz->pts", pull[sl], tangents)
                    # Exact zeros where no contribution exists: padding sources and targets, and
                    # sources after a target's score position (causality holds analytically, not bitwise).
                    keep = (src[:, None, :] >= 0) & (src[:, None, :] <= positions) & self.batch.valid[r][:, :, None]
                    values = torch.where(keep, values, torch.zeros_like(values))
                    contrib[sl].scatter_add_(2, src.clamp_min(0)[:, None, :].expand_as(values), values)
        return scores, contrib


def jvp_batched(
    fn: Callable[[torch.Tensor], torch.Tensor], primal: torch.Tensor, tangents: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fn(primal)`` once, and its JVP along each ``tangents[i]`` stacked on dim 0."""

    def one(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = torch.func.jvp(fn, (primal,), (tangent,))
        return result[0], result[1]

    # The primal does not depend on the tangent: out_dims None keeps a single copy of it.
    out, tan = torch.func.vmap(one, out_dims=(None, 0))(tangents)  # type: ignore[arg-type]
    return out, tan


@dataclass(frozen=True)
class ModeChoice:
    """The gradient mode used and, when it differs from a plain choice, why."""

    mode: str
    note: str | None


def forward_ad_failure(scorer: ForwardScorer, inputs: torch.Tensor) -> str | None:
    """Why forward mode fails on this model (one dual pass at row 0 of ``inputs``, one tangent), or None."""
    rows = torch.zeros(1, dtype=torch.long, device=inputs.device)
    src = scorer.sources[:1, :1]
    if src.numel() == 0 or int(src[0, 0]) < 0:
        return None
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
            tangent = scorer._tangents(rows, src, inputs.shape[1])[0]
            torch.func.jvp(scorer._frontier(rows), (inputs[:1],), (tangent,))
    except (NotImplementedError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def select_scorer(
    requested: str, method: str, scorer: Scorer, direction: torch.Tensor, inputs: torch.Tensor
) -> tuple[Scorer, ModeChoice]:
    """The scorer for ``requested`` ("auto", "reverse", "forward") and the choice made.

    "auto" takes forward mode when fewer positions have a non-zero direction (and reach a target)
    than there are target tokens, the method allows it and the model has forward-AD formulas.
    """
    if requested == "reverse":
        return scorer, ModeChoice("reverse", None)
    if method not in FORWARD_METHODS:
        check_gradient_mode(requested, method)
        return scorer, ModeChoice("reverse", f"{method} needs full gradient vectors")
    candidate = ForwardScorer(scorer, direction)
    n_src, n_targets = int(candidate.sources.shape[1]), int(scorer.batch.target_ids.shape[1])
    counts = f"{n_src} source positions {'<' if n_src < n_targets else '>='} {n_targets} target tokens"
    if requested == "auto" and n_src >= n_targets:
        return scorer, ModeChoice("reverse", counts)
    failure = forward_ad_failure(candidate, inputs)
    if failure is not None:
        if requested == "forward":
            raise ModelError("model", f"forward-mode AD is not available for this model ({failure})")
        return scorer, ModeChoice("reverse", f"forward-mode AD unavailable: {failure}")
    return candidate, ModeChoice("forward", counts)
