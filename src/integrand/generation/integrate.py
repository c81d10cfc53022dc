"""Gradients of every target token from one forward pass per integration point.

A causal LM's logits at position ``p`` depend only on embeddings at positions ``<= p``. So
running the interpolated full sequence (prompt + all targets) at one ``alpha`` gives, at each
score position, exactly what the interpolated prefix alone would give: one forward per point
serves every target, followed by one backward per target on the retained graph. ``Scorer.along``
presents this in the evaluation protocol of ``integrand.integrate``, which does the path integrals.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..engine import column_gradients
from ..errors import InputError, ModelError
from ..integrate import Evaluate
from ..paths import line
from .runner import Batch, Runner
from .steps import StepArgs, StepFunction

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(gradient [points, L, H], rows [points]) -> per-position contribution [points, L]."""


class Scorer:
    """Target scores ``[points, T]`` and their per-position gradient contributions, chunked."""

    def __init__(
        self,
        runner: Runner,
        batch: Batch,
        step_fn: StepFunction,
        contrast_ids: torch.Tensor | None,
        contrast_logprobs: torch.Tensor | None,
        chunk: int,
    ) -> None:
        self.runner = runner
        self.batch = batch
        self.step_fn = step_fn
        self.contrast_ids = contrast_ids
        self.contrast_logprobs = contrast_logprobs
        self.chunk = chunk

    def _columns(self, logits: list[torch.Tensor], rows: torch.Tensor, step_fn: StepFunction) -> list[torch.Tensor]:
        """One score tensor [points] per target column, zero where the target is padding."""
        cols = []
        for k, lk in enumerate(logits):
            args = StepArgs(
                logits=lk,
                target_ids=self.batch.target_ids[rows, k],
                contrast_ids=None if self.contrast_ids is None else self.contrast_ids[rows, k],
                contrast_logprobs=None if self.contrast_logprobs is None else self.contrast_logprobs[rows, k],
            )
            s = step_fn(args)
            if not isinstance(s, torch.Tensor) or s.shape != (rows.shape[0],):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(
                    "score", f"a step function must return one score per row ({rows.shape[0]},), got {got}"
                )
            valid = self.batch.valid[rows, k]
            if not bool(torch.isfinite(s[valid]).all()):
                raise ModelError("model", "the target score is NaN or Inf along the path")
            cols.append(s * valid)
        return cols

    def _score(self, logits: list[torch.Tensor], rows: torch.Tensor, step_fn: StepFunction) -> torch.Tensor:
        return torch.stack(self._columns(logits, rows, step_fn), dim=1)

    def scores(self, rows: torch.Tensor, embeds: torch.Tensor, step_fn: StepFunction | None = None) -> torch.Tensor:
        """Scores without gradients at given points (chunked)."""
        out = []
        with torch.no_grad():
            for start in range(0, rows.shape[0], self.chunk):
                r = rows[start : start + self.chunk]
                logits = self.runner.logits(self.batch, r, embeds[start : start + self.chunk])
                out.append(self._score(logits, r, step_fn or self.step_fn))
        return torch.cat(out)

    def gradients(self, rows: torch.Tensor, embeds: torch.Tensor, reduce: Reduce) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk: scores [points, T] and contributions [points, T, L] (one backward per target)."""
        leaf = embeds.detach().requires_grad_(True)
        n_targets = self.batch.target_ids.shape[1]
        contrib = embeds.new_zeros(rows.shape[0], n_targets, embeds.shape[1])
        with torch.enable_grad():
            # Each backward starts from its own column: from a stacked tensor, every target's backward
            # would also run (with zero gradients) through all the other targets' heads.
            cols = self._columns(self.runner.logits(self.batch, rows, leaf), rows, self.step_fn)
            live = [k for k in range(n_targets) if bool(self.batch.valid[rows, k].any())]
            grads = column_gradients(
                [cols[k] for k in live], [leaf], argument="model",
                problem="the target score does not depend on the input embeddings",
            )  # fmt: skip
            for k, (grad,) in zip(live, grads):
                contrib[:, k] = reduce(grad, rows)
        return torch.stack([c.detach() for c in cols], dim=1), contrib

    def along(self, inputs: torch.Tensor, baselines: torch.Tensor, reduce: Reduce) -> Evaluate:
        """The integrator's ``evaluate`` on the straight lines from ``baselines`` to ``inputs`` [B, L, H]."""

        def evaluate(rows: torch.Tensor, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scores, contrib = self.gradients(rows, line(baselines[rows], inputs[rows], alphas), reduce)
            return contrib, scores

        return evaluate
