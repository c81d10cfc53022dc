"""Completeness of IG patching paths: each path's integral against the metric change at its end.

A path runs from the corrupted activation ``a_corr`` to ``a_corr + shift`` at one site; the
integral of ``dm/da . shift`` over it must equal ``m(corrupted + shift) - m(corrupted)``. The
endpoint costs one forward pass per path (batched ``copies`` paths per pass); the verdict is the
rule of :mod:`integrand.convergence`. Jobs are ``patching._Job`` objects (``site``, ``delta`` (the
full shift), ``comps``: the indices of the components scored on the path).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..convergence import noise_floor, relative_error, within_tolerance
from ..integrate import NOISE_ULPS
from .components import Site, intervene


def _adder(shift: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda a: a + shift.to(a.dtype)


def endpoints(run: Any, corrupted: Any, jobs: Sequence[Any], copies: int) -> list[float]:
    """The metric with each path's whole shift applied (its alpha = 1 end), ``copies`` paths per pass."""
    n = corrupted.n
    out: list[float] = []
    for start in range(0, len(jobs), copies):
        chunk = jobs[start : start + copies]
        shifts: dict[Site, torch.Tensor] = {}
        for j, job in enumerate(chunk):
            if job.site not in shifts:
                shifts[job.site] = job.delta.new_zeros((len(chunk) * n, *job.delta.shape[1:]))
            shifts[job.site][j * n : (j + 1) * n] = job.delta

        with torch.no_grad(), intervene(run.model, run.layout, {s: _adder(t) for s, t in shifts.items()}):
            out += [float(v) for v in run.values(corrupted, len(chunk))]
    return out


def judge(
    jobs: Sequence[Any],
    labels: Sequence[str],
    sums: Sequence[float],
    magnitudes: Sequence[float],
    ends: Sequence[float],
    m_corr: float,
    n_comps: int,
    tol: float | None,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per component: its path's relative completeness error and flag; and the paths that missed ``tol``."""
    total = torch.tensor([e - m_corr for e in ends], dtype=torch.float64)
    delta = total - torch.tensor(list(sums), dtype=torch.float64)
    magnitude = torch.tensor(list(magnitudes), dtype=torch.float64) + abs(m_corr) + torch.tensor(list(ends)).abs()
    ok = within_tolerance(delta, total, tol, 0.0, noise_floor(magnitude, jobs[0].delta.dtype, NOISE_ULPS))
    rel = relative_error(delta, total)
    rel_per = torch.zeros(n_comps, dtype=torch.float64)
    ok_per = torch.ones(n_comps, dtype=torch.bool)
    for j, job in enumerate(jobs):
        rel_per[list(job.comps)] = rel[j]
        ok_per[list(job.comps)] = bool(ok[j])
    bad = [label for label, good in zip(labels, ok.tolist()) if not good]
    return rel_per, ok_per, bad
