"""IG patching's paths through the one integrator, and their completeness.

A path (a :class:`Job`) runs from the corrupted activation ``a_corr`` to ``a_corr + delta`` at one
site. :func:`path_evaluate` presents the paths in the evaluation protocol of ``integrand.integrate``
(row ``j`` is job ``j``; a point's contributions are ``dm/da * delta`` over the site's elements, zero
padded to the widest site), so a fixed rule or error control integrates them like every other path
in the package. The integral of ``dm/da . delta`` must equal ``m(corrupted + delta) - m(corrupted)``;
the endpoint costs one forward pass per path (batched ``copies`` paths per pass) and the verdict is
the rule of :mod:`integrand.convergence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..convergence import noise_floor, relative_error, within_tolerance
from ..integrate import NOISE_ULPS, Evaluate, adaptive, fixed
from ..integration import Integration
from ..paths import line
from ..quadrature import make_rule
from .components import Component, Site, intervene


@dataclass(frozen=True)
class Job:
    """One path: ``site``, its whole shift ``delta`` and the indices of the components scored on it."""

    site: Site
    delta: torch.Tensor
    comps: tuple[int, ...]


@dataclass(frozen=True)
class Integrals:
    """Per job: ``dm/da * delta`` integrated over the path, in the site's shape (float64)."""

    values: list[torch.Tensor]
    steps: list[int]
    rule: str
    converged: torch.Tensor | None  # [jobs] under error control (quadrature and completeness), else None


def path_evaluate(run: Any, corrupted: Any, jobs: Sequence[Job]) -> Evaluate:
    """``evaluate(rows, alphas)`` of the integrator over ``jobs``: one forward and backward per call."""
    n = corrupted.n
    width = max(job.delta.numel() for job in jobs)
    zero = torch.zeros((), dtype=jobs[0].delta.dtype, device=jobs[0].delta.device)

    def evaluate(rows: torch.Tensor, alphas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points = rows.tolist()  # the job of each point
        shifts: dict[Site, torch.Tensor] = {}
        for p, j in enumerate(points):
            job = jobs[j]
            if job.site not in shifts:
                shifts[job.site] = job.delta.new_zeros((len(points) * n, *job.delta.shape[1:]))
            shifts[job.site][p * n : (p + 1) * n] = line(zero, job.delta, alphas[p : p + 1])
        grads, values = run.gradients(corrupted, len(points), shifts, list(shifts), torch.ones(len(points)))
        contrib = torch.zeros(len(points), 1, width, dtype=torch.float64, device=zero.device)
        for p, j in enumerate(points):
            job = jobs[j]
            g = grads[job.site][p * n : (p + 1) * n]
            contrib[p, 0, : job.delta.numel()] = (g.double() * job.delta.double()).reshape(-1)
        return contrib, values.detach().double()[:, None]

    return evaluate


def integrate_jobs(
    run: Any, corrupted: Any, jobs: Sequence[Job], config: Integration, total: torch.Tensor, copies: int
) -> Integrals:
    """Every job's integral: ``config``'s fixed rule, or error control to ``config.tol`` given each
    path's ``total`` (its metric change, [jobs])."""
    evaluate = path_evaluate(run, corrupted, jobs)
    device = jobs[0].delta.device
    if config.steps is not None:
        rule = make_rule(config.rule, config.steps)
        summed = fixed(evaluate, len(jobs), rule, copies, device)[:, 0]
        steps, name, converged = [rule.steps] * len(jobs), rule.name, None
    else:
        assert config.tol is not None
        outcome = adaptive(
            evaluate, total.to(device)[:, None], tol=config.tol, atol=config.atol, max_steps=config.max_steps,
            chunk=copies, unit="paths",
        )  # fmt: skip
        summed, steps, name = outcome.values[:, 0], [int(s) for s in outcome.steps], outcome.rule()
        converged = outcome.converged[:, 0].cpu()
    values = [summed[j, : job.delta.numel()].reshape(job.delta.shape) for j, job in enumerate(jobs)]
    return Integrals(values, steps, name, converged)


def part(comp: Component, t: torch.Tensor) -> torch.Tensor:
    """The slice of a site tensor ``[N, seq, ...]`` that belongs to ``comp``."""
    return t[:, :, comp.index] if comp.kind == "head" else t[:, comp.index]


def component_scores(comps: Sequence[Component], jobs: Sequence[Job], integrals: Integrals) -> list[float]:
    """Each component's share of its path's integral."""
    scores = [0.0] * len(comps)
    for job, value in zip(jobs, integrals.values):
        for i in job.comps:
            scores[i] = float(part(comps[i], value).sum())
    return scores


def _adder(shift: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda a: a + shift.to(a.dtype)


def endpoints(run: Any, corrupted: Any, jobs: Sequence[Job], copies: int) -> list[float]:
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
    jobs: Sequence[Job],
    labels: Sequence[str],
    integrals: Integrals,
    ends: Sequence[float],
    m_corr: float,
    n_comps: int,
    tol: float | None,
    atol: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per component: its path's relative completeness error and flag; and the paths that missed ``tol``.

    Under error control a path must also have met the integrator's own error estimate.
    """
    total = torch.tensor([e - m_corr for e in ends], dtype=torch.float64)
    sums = torch.stack([v.sum() for v in integrals.values]).cpu()
    magnitude = torch.stack([v.abs().sum() for v in integrals.values]).cpu() + abs(m_corr)
    magnitude = magnitude + torch.tensor(list(ends), dtype=torch.float64).abs()
    delta = total - sums
    ok = within_tolerance(delta, total, tol, atol, noise_floor(magnitude, jobs[0].delta.dtype, NOISE_ULPS))
    if integrals.converged is not None:
        ok = ok & integrals.converged
    rel = relative_error(delta, total)
    rel_per = torch.zeros(n_comps, dtype=torch.float64)
    ok_per = torch.ones(n_comps, dtype=torch.bool)
    for j, job in enumerate(jobs):
        rel_per[list(job.comps)] = rel[j]
        ok_per[list(job.comps)] = bool(ok[j])
    bad = [label for label, good in zip(labels, ok.tolist()) if not good]
    return rel_per, ok_per, bad
