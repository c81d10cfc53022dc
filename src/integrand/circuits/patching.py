"""Activation, attribution, IG and relevance patching over transformer components.

All four estimate, per component c, ``m(corrupted run with c set to its clean value) - m(corrupted)``:

- ``activation``: runs that patched model once per component (exact, one forward per component);
- ``attribution``: ``(a_clean - a_corr) . dm/da`` at the corrupted run (one forward + one backward);
- ``ig``: the same product with the gradient averaged along ``a_corr + alpha (a_clean - a_corr)``;
  ``ig_path="site"`` interpolates a whole site (all positions or heads of one layer's tensor) per
  path, the usual practice; ``"component"`` gives every component its own path, which converges
  to activation patching exactly (fundamental theorem of calculus) at one path per component;
- ``relp``: attribution patching with the LRP-modified gradient of :mod:`.lrp` (forward unchanged).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from ..convergence import DEFAULT_TOL, warn_unconverged
from ..defaults import PATCHING
from ..engine import column_gradients
from ..errors import InputError, ModelError
from ..integration import EXACT, Integration
from .components import (
    KINDS,
    Component,
    Layout,
    Site,
    check_layout,
    intervene,
    layout_for,
    recorder,
    resolve_components,
)
from .ig_paths import Job, component_scores, endpoints, integrate_jobs, judge, part
from .lrp import LRPRules, lrp_rules
from .metrics import Metric
from .result import Cost, PatchingResult

METHODS: tuple[str, ...] = ("activation", "attribution", "ig", "relp")
IG_PATHS: tuple[str, ...] = ("site", "component")
Inputs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class _Batch:
    """The N pairs' inputs of one side (clean or corrupted); tensors are passed positionally or as kwargs."""

    tensors: dict[str, torch.Tensor]
    named: bool
    n: int
    length: int


def _as_batch(x: object, argument: str) -> _Batch:
    if isinstance(x, torch.Tensor):
        tensors, named = {"": x}, False
    elif isinstance(x, Mapping) and x:
        tensors, named = dict(x), True
    else:
        raise InputError(
            argument, f"expected a tensor [N, seq, ...] or a non-empty mapping of them, got {type(x).__name__}"
        )
    for key, t in tensors.items():
        name = f"{argument}[{key!r}]" if named else argument
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise InputError(name, "expected a tensor with a pair dimension and a position dimension")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(name, "contains NaN or Inf")
    first = next(iter(tensors.values()))
    if any(t.shape[0] != first.shape[0] for t in tensors.values()):
        raise InputError(argument, "named inputs must share the pair dimension")
    main = tensors.get("input_ids", tensors.get("inputs_embeds", first))
    return _Batch({k: t.detach() for k, t in tensors.items()}, named, first.shape[0], main.shape[1])


def _repeat(t: Any, n: int, copies: int) -> Any:
    if copies == 1 or not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != n:
        return t
    return t.repeat(copies, *([1] * (t.dim() - 1)))


def _alignment(align: object, n_clean: int, n_corr: int) -> tuple[tuple[int, int], ...]:
    if align is None:
        if n_clean != n_corr:
            raise InputError(
                "corrupted",
                f"clean has {n_clean} positions and corrupted {n_corr}; pass "
                "align=[(clean_position, corrupted_position), ...] to say which positions correspond",
            )
        return tuple((i, i) for i in range(n_corr))
    if isinstance(align, (str, bytes)) or not isinstance(align, Sequence) or not align:
        raise InputError("align", "expected a non-empty sequence of (clean_position, corrupted_position) pairs")
    pairs: list[tuple[int, int]] = []
    for item in align:
        ok = isinstance(item, Sequence) and len(item) == 2
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        if not ok or not (0 <= item[0] < n_clean and 0 <= item[1] < n_corr):
            raise InputError(
                "align", f"{item!r} is not a (clean, corrupted) pair within {n_clean} and {n_corr} positions"
            )
        pairs.append((int(item[0]), int(item[1])))
    if len({r for _, r in pairs}) != len(pairs):
        raise InputError("align", "a corrupted position appears twice")
    return tuple(pairs)


class _Runner:
    """Runs the model on copies of the corrupted (or clean) batch and evaluates the metric per copy."""

    def __init__(self, model: torch.nn.Module, layout: Layout, metric: Metric, kwargs: Mapping[str, Any]) -> None:
        self.model, self.layout, self.metric, self.kwargs = model, layout, metric, kwargs
        self.forward = 0
        self.backward = 0

    def values(self, batch: _Batch, copies: int) -> torch.Tensor:
        n = batch.n
        tensors = {k: _repeat(t, n, copies) for k, t in batch.tensors.items()}
        kwargs = {k: _repeat(v, n, copies) for k, v in self.kwargs.items()}
        out = self.model(**tensors, **kwargs) if batch.named else self.model(tensors[""], **kwargs)
        logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise InputError("model", f"expected a tensor or an output with .logits, got {type(out).__name__}")
        self.forward += copies
        vals = []
        for j in range(copies):
            v = self.metric(logits[j * n : (j + 1) * n])
            if not isinstance(v, torch.Tensor) or v.dim() != 0 or not v.is_floating_point():
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise InputError("metric", f"must return a 0-dim floating tensor (e.g. a mean over pairs), got {shape}")
            vals.append(v)
        values = torch.stack(vals)
        if not bool(torch.isfinite(values.detach()).all()):
            raise ModelError("metric", "returned NaN or Inf")
        return values

    def capture(self, batch: _Batch, sites: Sequence[Site]) -> tuple[dict[Site, torch.Tensor], float]:
        acts: dict[Site, torch.Tensor] = {}
        with torch.no_grad(), intervene(self.model, self.layout, {s: recorder(acts, s) for s in sites}):
            value = float(self.values(batch, 1)[0])
        _reached(sites, acts)
        return acts, value

    def gradients(
        self,
        batch: _Batch,
        copies: int,
        shifts: Mapping[Site, torch.Tensor],
        sites: Sequence[Site],
        weights: torch.Tensor,
        record: dict[Site, torch.Tensor] | None = None,
    ) -> tuple[dict[Site, torch.Tensor], torch.Tensor]:
        """Gradients of ``sum_j weights[j] * m(copy j)`` at every site in ``sites``.

        ``shifts[site]`` is added to the site's activation first (the interpolation), a zero probe
        after it, so the probe's gradient is the gradient at the shifted point.
        """
        probes: dict[Site, torch.Tensor] = {}

        def edit(site: Site) -> Callable[[torch.Tensor], torch.Tensor]:
            def apply(a: torch.Tensor) -> torch.Tensor:
                if record is not None:
                    record[site] = a.detach()
                if site in shifts:
                    a = a + shifts[site].to(a.dtype)
                probes[site] = torch.zeros_like(a, requires_grad=True)
                return a + probes[site]

            return apply

        with torch.enable_grad(), intervene(self.model, self.layout, {s: edit(s) for s in sites}):
            values = self.values(batch, copies)
        _reached(sites, probes)
        total = (values * weights.to(device=values.device, dtype=values.dtype)).sum()
        (grads,) = column_gradients(
            [total], [probes[s] for s in sites], argument="metric",
            problem="has no gradient with respect to the activations (detached, argmax or integer?)",
        )  # fmt: skip
        self.backward += copies
        return dict(zip(sites, grads)), values.detach()


def _reached(sites: Sequence[Site], seen: Mapping[Site, torch.Tensor]) -> None:
    missing = [f"{k}.{layer}" for k, layer in sites if (k, layer) not in seen]
    if missing:
        raise ModelError("layout", f"the forward pass never reached {', '.join(missing)}")


def _delta(clean: torch.Tensor, corr: torch.Tensor, pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``a_clean - a_corr`` at aligned positions (corrupted indexing), zero elsewhere."""
    if clean.shape[0] != corr.shape[0] or clean.shape[2:] != corr.shape[2:]:
        raise ModelError("clean", f"clean activation {tuple(clean.shape)} does not match corrupted {tuple(corr.shape)}")
    cpos = torch.tensor([c for c, _ in pairs], device=corr.device)
    rpos = torch.tensor([r for _, r in pairs], device=corr.device)
    d = torch.zeros_like(corr)
    d[:, rpos] = clean[:, cpos].to(corr.dtype) - corr[:, rpos]
    return d


def _score(comp: Component, delta: torch.Tensor, grad: torch.Tensor) -> float:
    return float((part(comp, delta).double() * part(comp, grad).double()).sum())


def _activation(
    run: _Runner,
    corrupted: _Batch,
    comps: Sequence[Component],
    clean: Mapping[Site, torch.Tensor],
    pairs: Sequence[tuple[int, int]],
    m_corr: float,
    copies: int,
) -> list[float]:
    cmap = dict((r, c) for c, r in pairs)
    cpos = [c for c, _ in pairs]
    rpos = [r for _, r in pairs]
    n = corrupted.n
    scores: list[float] = []
    for start in range(0, len(comps), copies):
        chunk = comps[start : start + copies]
        by_site: dict[Site, list[tuple[int, Component]]] = {}
        for j, comp in enumerate(chunk):
            by_site.setdefault(comp.site, []).append((j, comp))

        def patch(items: list[tuple[int, Component]], src: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
            def apply(a: torch.Tensor) -> torch.Tensor:
                a = a.clone()
                for j, comp in items:
                    rows = slice(j * n, (j + 1) * n)
                    if comp.kind == "head":
                        a[rows, rpos, comp.index] = src[:, cpos, comp.index].to(a.dtype)
                    else:
                        a[rows, comp.index] = src[:, cmap[comp.index]].to(a.dtype)
                return a

            return apply

        edits = {site: patch(items, clean[site]) for site, items in by_site.items()}
        with torch.no_grad(), intervene(run.model, run.layout, edits):
            values = run.values(corrupted, len(chunk))
        scores += [float(v) - m_corr for v in values.double()]
    return scores


def _integration(
    integration: Integration | None, steps: int | None, rule: str | None, tol: float | None
) -> Integration:
    """IG patching's one configuration: a fixed rule (``defaults.PATCHING``), or error control with ``tol``."""
    config = Integration.from_kwargs(integration, default=PATCHING, steps=steps, rule=rule, tol=tol)
    if config.batch_size is not None or config.memory_budget is not None or config.rule == EXACT:
        raise InputError(
            "integration",
            f"IG patching uses steps, rule (not 'exact'), tol, max_steps and atol; got {config} "
            "(batch_size= of patching counts sequences per pass)",
        )
    return config


def patching(
    model: torch.nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Metric,
    *,
    components: str | Sequence[str] = KINDS,
    method: str = "activation",
    integration: Integration | None = None,
    steps: int | None = None,
    rule: str | None = None,
    ig_path: str = "site",
    rules: LRPRules | None = None,
    align: Sequence[tuple[int, int]] | None = None,
    layout: Layout | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 64,
    tol: float | None = None,
) -> PatchingResult:
    """Score every requested component by the effect of patching its clean value into the corrupted run.

    ``clean`` and ``corrupted`` are N pairs (token ids ``[N, seq]`` or a mapping of named inputs),
    ``metric`` maps the N pairs' logits to a scalar. ``components`` takes kinds (``"mlp"``),
    layers (``"mlp.3"``) or single components (``"mlp.3.7"``, ``"head.2.5"``). ``steps`` and
    ``rule`` set the IG quadrature (default ``defaults.PATCHING``: 16 Gauss-Legendre points), as
    shorthand for ``integration`` (an ``integrand.integration.Integration``; not both); ``tol=t``
    (or ``Integration(tol=t)``) integrates every path to relative error ``t`` instead, through the
    package's one integrator, up to ``max_steps`` points per path. Its ``batch_size`` and
    ``memory_budget`` do not apply (``batch_size=`` below counts sequences). ``rules``: the LRP rules
    of ``relp`` (defaults: :class:`LRPRules`).
    ``align`` pairs clean with corrupted positions when the runs differ in length; ``batch_size``
    caps the sequences per forward pass.

    IG reports completeness per path: ``result.relative_error[i]`` and ``result.converged[i]`` belong
    to component i's path (its site's with ``ig_path="site"``): the path's whole integral against
    ``m(corrupted + the path's full shift) - m(corrupted)``, judged at ``tol`` (default
    ``convergence.DEFAULT_TOL``); the endpoint costs one forward pass per path, and a
    ``ConvergenceWarning`` names the paths that miss ``tol``.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise InputError("method", f"unknown method {method!r}; expected one of {METHODS}")
    if ig_path not in IG_PATHS:
        raise InputError("ig_path", f"expected one of {IG_PATHS}, got {ig_path!r}")
    if rules is not None and method != "relp":
        raise InputError("rules", "LRP rules are only used by method='relp'")
    if tol is not None and method != "ig":
        raise InputError("tol", "only method='ig' has a completeness tolerance")
    if integration is not None and method != "ig":
        raise InputError("integration", "only method='ig' integrates")
    config = _integration(integration, steps if method == "ig" else None, rule if method == "ig" else None, tol)
    tol = config.tol
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("batch_size", f"expected an integer >= 1, got {batch_size!r}")
    if not isinstance(model, torch.nn.Module):
        raise InputError("model", f"expected a torch.nn.Module, got {type(model).__name__}")
    if any(m.training for m in model.modules()):
        raise InputError("model", "is in training mode (dropout would make patching random); call model.eval() first")
    if not callable(metric):
        raise InputError("metric", f"expected a function of the logits, got {type(metric).__name__}")
    layout = layout_for(model) if layout is None else layout
    if not isinstance(layout, Layout):
        raise InputError("layout", f"expected a Layout, got {type(layout).__name__}")
    check_layout(model, layout)
    cb, rb = _as_batch(clean, "clean"), _as_batch(corrupted, "corrupted")
    if cb.n != rb.n:
        raise InputError("corrupted", f"{rb.n} corrupted inputs for {cb.n} clean ones")
    pairs = _alignment(align, cb.length, rb.length)
    comps = resolve_components(components, layout, sorted(r for _, r in pairs))
    sites = list(dict.fromkeys(c.site for c in comps))
    copies = max(1, batch_size // rb.n)
    rel_error: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    run = _Runner(model, layout, metric, dict(forward_kwargs or {}))

    clean_acts, m_clean = run.capture(cb, sites)
    params: dict[str, Any] = {}
    if method == "activation":
        m_corr = run.capture(rb, [])[1]
        scores = _activation(run, rb, comps, clean_acts, pairs, m_corr, copies)
    elif method in ("attribution", "relp"):
        corr_acts: dict[Site, torch.Tensor] = {}
        lrp = rules if rules is not None else LRPRules()
        ctx: AbstractContextManager[None] = lrp_rules(model, layout, lrp) if method == "relp" else nullcontext()
        with ctx:
            grads, values = run.gradients(rb, 1, {}, sites, torch.ones(1, dtype=torch.float64), corr_acts)
        m_corr = float(values[0])
        deltas = {s: _delta(clean_acts[s], corr_acts[s], pairs) for s in sites}
        scores = [_score(c, deltas[c.site], grads[c.site]) for c in comps]
        if method == "relp":
            params["rules"] = asdict(lrp)
    else:
        corr_acts, m_corr = run.capture(rb, sites)
        deltas = {s: _delta(clean_acts[s], corr_acts[s], pairs) for s in sites}
        if ig_path == "site":
            jobs = [Job(s, deltas[s], tuple(i for i, c in enumerate(comps) if c.site == s)) for s in sites]
        else:
            jobs = []
            for i, c in enumerate(comps):
                mask = torch.zeros_like(deltas[c.site])
                part(c, mask).copy_(part(c, deltas[c.site]))
                jobs.append(Job(c.site, mask, (i,)))
        ends = endpoints(run, rb, jobs, copies)
        total = torch.tensor([e - m_corr for e in ends], dtype=torch.float64)
        integrals = integrate_jobs(run, rb, jobs, config, total, copies)
        scores = component_scores(comps, jobs, integrals)
        labels = [comps[j.comps[0]].name if ig_path == "component" else f"{j.site[0]}.{j.site[1]}" for j in jobs]
        rel_error, converged, bad = judge(jobs, labels, integrals, ends, m_corr, len(comps), tol, config.atol)
        warn_unconverged(f"ig patching: the paths of {ig_path}s", bad, tol, stacklevel=3)
        params.update(
            steps=config.steps if config.steps is not None else max(integrals.steps),
            path_steps=integrals.steps,
            rule=integrals.rule,
            ig_path=ig_path,
            converged_tol=DEFAULT_TOL if tol is None else tol,
            integration=config.as_params(),
        )
    return PatchingResult(
        method=method,
        components=comps,
        scores=torch.tensor(scores, dtype=torch.float64),
        metric_clean=m_clean,
        metric_corrupted=m_corr,
        positions=pairs,
        cost=Cost(run.forward, run.backward, time.perf_counter() - start),
        params=params,
        relative_error=rel_error,
        converged=converged,
    )
