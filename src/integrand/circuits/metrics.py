"""Circuit metrics: plain functions from a batch of logits to one scalar (the mean over pairs).

A metric sees the logits of the N pairs of one run, ``[N, seq, vocab]`` (or ``[N, vocab]`` for a
model that returns one row per sequence), and returns a 0-dim tensor. Patching scores are
differences of this scalar, so a mean makes scores comparable across data set sizes.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

from ..errors import InputError

Metric = Callable[[torch.Tensor], torch.Tensor]
Tokens = Union[int, Sequence[int], torch.Tensor]


def _ids(tokens: Tokens, argument: str) -> torch.Tensor:
    if isinstance(tokens, bool):
        raise InputError(argument, "expected token ids, got a bool")
    t = torch.as_tensor(tokens)
    if t.is_floating_point() or t.is_complex() or t.dim() > 1 or t.numel() == 0:
        raise InputError(argument, f"expected an int or a 1-d sequence of token ids, got {tokens!r}")
    return t.reshape(-1).long()


def _positions(position: int | Sequence[int] | torch.Tensor, argument: str = "position") -> torch.Tensor:
    t = torch.as_tensor(position)
    if t.is_floating_point() or t.dim() > 1:
        raise InputError(argument, f"expected an int or a 1-d sequence of positions, got {position!r}")
    return t.reshape(-1).long()


def _rows(logits: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Logits at the scored position of each pair: ``[N, vocab]``."""
    if logits.dim() == 2:
        return logits
    if logits.dim() != 3:
        raise InputError("metric", f"expected logits [N, seq, vocab] or [N, vocab], got shape {tuple(logits.shape)}")
    n = logits.shape[0]
    pos = position.to(logits.device).expand(n) if position.numel() == 1 else position.to(logits.device)
    if pos.numel() != n:
        raise InputError("position", f"{pos.numel()} positions for {n} pairs")
    return logits[torch.arange(n, device=logits.device), pos]


def _per_pair(ids: torch.Tensor, n: int, argument: str) -> torch.Tensor:
    if ids.numel() not in (1, n):
        raise InputError(argument, f"{ids.numel()} token ids for {n} pairs")
    return ids.expand(n) if ids.numel() == 1 else ids


def logit_diff(correct: Tokens, wrong: Tokens, *, position: int | Sequence[int] = -1) -> Metric:
    """Mean over pairs of ``logit[correct] - logit[wrong]`` at ``position`` (per pair or shared)."""
    good, bad, pos = _ids(correct, "correct"), _ids(wrong, "wrong"), _positions(position)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        rows = _rows(logits, pos)
        n = rows.shape[0]
        idx = torch.arange(n, device=rows.device)
        g = _per_pair(good, n, "correct").to(rows.device)
        b = _per_pair(bad, n, "wrong").to(rows.device)
        return (rows[idx, g] - rows[idx, b]).mean()

    return metric


def normalised_logit_diff(
    correct: Tokens, wrong: Tokens, *, clean: float, corrupted: float, position: int | Sequence[int] = -1
) -> Metric:
    """Logit difference rescaled so the corrupted run scores 0 and the clean run 1.

    ``clean`` and ``corrupted`` are :func:`logit_diff` values of the two unpatched runs.
    """
    if not clean - corrupted:
        raise InputError("clean", "clean and corrupted logit differences are equal; nothing to normalise by")
    raw = logit_diff(correct, wrong, position=position)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (raw(logits) - corrupted) / (clean - corrupted)

    return metric


def log_prob(token: Tokens, *, position: int | Sequence[int] = -1) -> Metric:
    """Mean over pairs of the log-probability of ``token`` (per pair or shared) at ``position``."""
    ids, pos = _ids(token, "token"), _positions(position)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        rows = torch.log_softmax(_rows(logits, pos), dim=-1)
        n = rows.shape[0]
        t = _per_pair(ids, n, "token").to(rows.device)
        return rows[torch.arange(n, device=rows.device), t].mean()

    return metric
