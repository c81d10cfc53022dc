"""GradientSHAP (Lundberg & Lee 2017) and Expected Gradients (Erion et al. 2021).

Both estimate ``E[(x - x') ⊙ ∇f(x' + α(x - x'))]`` with the reference ``x'`` drawn from a
set of reference examples and ``α ~ U(0, 1)``: Integrated Gradients averaged over a baseline
distribution, by Monte Carlo. GradientSHAP also adds Gaussian noise to the input (SmoothGrad
style). The completeness error is reported against the mean score of the drawn references, and
``converged`` judges it like every path result (``integrand.convergence``, ``DEFAULT_TOL``). It is a
Monte Carlo residual: it shrinks like ``1/sqrt(samples)`` for Expected Gradients and for GradientSHAP
without noise. With input noise (``stdev > 0``) the sum estimates the change of the noise-averaged
score instead, so completeness does not hold even in the limit; the residual is still reported and
``converged`` says whether it happens to be within tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Union

import torch

from ..checks import SEED_BOUND, check_count, check_positive, generator, resolve_seed
from ..errors import InputError
from ..inputs import TENSOR_KEY, Inputs, InputSet, as_input_set
from ..paths import PathStep, line, path_sum
from ..result import Attribution
from ..targets import TargetSpec
from .gradient_support import Points, Setup, evaluate, flat, prepare, result
from .noise_tunnel import NoiseSource, seeded_noise

DEFAULT_SAMPLES = 50
References = Union[torch.Tensor, Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Draws:
    """The random choices of one run: reference row and α per (example, sample), and input noise."""

    index: torch.Tensor  # [batch, samples] rows of the reference set
    alpha: torch.Tensor  # [batch, samples] in [0, 1), float64
    noise: NoiseSource | None


def as_references(inputs: InputSet, references: Any) -> dict[str, torch.Tensor]:
    """Validate a reference set: [N, *input.shape[1:]] per named input, cast to the inputs' dtype/device."""
    if isinstance(references, torch.Tensor):
        if inputs.named:
            raise InputError("baselines", "named inputs need a mapping of reference tensors, one per input")
        given: Mapping[str, Any] = {TENSOR_KEY: references}
    elif isinstance(references, Mapping):
        if not inputs.named:
            raise InputError("baselines", "a mapping of references needs named inputs")
        if set(references) != set(inputs.names):
            raise InputError(
                "baselines", f"expected references for exactly {list(inputs.names)}, got {sorted(references)}"
            )
        given = references
    else:
        raise InputError(
            "baselines", f"expected a tensor [N, ...] of reference examples, got {type(references).__name__}"
        )
    out: dict[str, torch.Tensor] = {}
    for name, x in inputs.tensors.items():
        ref = given[name]
        argument = "baselines" if name == TENSOR_KEY else f"baselines[{name!r}]"
        if not isinstance(ref, torch.Tensor) or not ref.is_floating_point():
            raise InputError(
                argument, f"expected a floating-point tensor, got {getattr(ref, 'dtype', type(ref).__name__)}"
            )
        if ref.dim() != x.dim() or ref.shape[1:] != x.shape[1:] or ref.shape[0] < 1:
            raise InputError(
                argument, f"expected shape [N, {', '.join(map(str, x.shape[1:]))}], got {tuple(ref.shape)}"
            )
        if not bool(torch.isfinite(ref).all()):
            raise InputError(argument, "contains NaN or Inf")
        out[name] = ref.detach().to(device=x.device, dtype=x.dtype)
    counts = {r.shape[0] for r in out.values()}
    if len(counts) != 1:
        raise InputError("baselines", f"every named input needs the same number of references, got {sorted(counts)}")
    return out


def seeded_draws(inputs: InputSet, count: int, samples: int, stdev: float, seed: int) -> Draws:
    """Reference rows, α and (if ``stdev > 0``) noise, all from one seed."""
    gen = generator(seed)
    index = torch.randint(0, count, (inputs.batch, samples), generator=gen)
    alpha = torch.rand((inputs.batch, samples), generator=gen, dtype=torch.float64)
    noise = None
    if stdev > 0:
        child = int(torch.randint(0, SEED_BOUND, (1,), generator=gen).item())
        widths = torch.full((inputs.batch,), stdev, dtype=torch.float64)
        noise = seeded_noise(inputs, samples, widths, child)
    return Draws(index, alpha, noise)


def sampled_paths(
    setup: Setup, references: Mapping[str, torch.Tensor], draws: Draws
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat attributions and the mean score of the drawn references, per example."""
    inputs = setup.inputs
    samples = draws.index.shape[1]
    score_baseline = torch.zeros(inputs.batch, dtype=setup.score_input.dtype, device=inputs.device)

    def stream() -> Iterator[Points]:
        for e in range(inputs.batch):
            rows = draws.index[e].to(inputs.device)
            noise = draws.noise(e) if draws.noise is not None else None
            alpha = draws.alpha[e]
            example = torch.full((samples,), e, dtype=torch.long, device=inputs.device)
            refs = {name: references[name][rows] for name in inputs.names}
            score_baseline[e] = setup.engine.scores(refs, example).mean()
            points, diffs = {}, {}
            for name, x in inputs.tensors.items():
                end = x[e : e + 1] + noise[name] if noise is not None else x[e : e + 1].expand_as(refs[name])
                points[name] = line(refs[name], end, alpha)
                diffs[name] = end - refs[name]
            yield Points(points, example, {"diff": flat(diffs)})

    def walk() -> Iterator[PathStep]:
        for block, points in evaluate(setup.engine, stream()):
            # Expected gradients: each sampled path's one point, weighted 1 / samples.
            yield PathStep(points.example, block.scores.double(), flat(block.grads).double(),
                           points.aux["diff"].double() / samples)  # fmt: skip

    return path_sum(inputs, walk()).to(inputs.dtype), score_baseline


def _run(
    method: str,
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec,
    baselines: References | None,
    samples: int,
    stdev: float,
    seed: int | None,
    batch_size: int | None,
    memory_budget: int | None,
    forward_kwargs: Mapping[str, Any] | None,
) -> Attribution:
    if baselines is None:
        raise InputError(
            "baselines",
            f"{method} needs reference examples: a tensor [N, *input.shape[1:]] (a mapping of such per named "
            "input), e.g. a sample of training inputs; for a single all-zeros reference pass "
            "torch.zeros(1, *x.shape[1:])",
        )
    check_count("samples", samples, 1)
    check_positive("stdev", stdev, allow_zero=True)
    input_set = as_input_set(inputs)
    references = as_references(input_set, baselines)
    used_seed = resolve_seed(seed)
    setup = prepare(
        model, input_set, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
    )
    count = next(iter(references.values())).shape[0]
    draws = seeded_draws(input_set, count, samples, stdev, used_seed)
    values, score_baseline = sampled_paths(setup, references, draws)
    params: dict[str, Any] = {"samples": samples, "references": count, "seed": used_seed}
    if method == "gradient_shap":
        params["stdev"] = stdev
    return result(
        setup,
        values,
        method=method,
        params=params,
        steps=samples,
        score_baseline=score_baseline,
        path=True,
        stacklevel=5,
    )


def gradient_shap(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    baselines: References | None = None,
    samples: int = DEFAULT_SAMPLES,
    stdev: float = 0.0,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """GradientSHAP: IG from random references at random α, with optional Gaussian input noise.

    Args:
        baselines: required: reference examples, a tensor [N, *input.shape[1:]] (a mapping of such
            per named input); each sample draws one row uniformly. Leaving it out raises InputError.
        samples: Monte Carlo samples per example.
        stdev: standard deviation of Gaussian noise added to the input per sample (0: none).
        seed: seeds every draw; seeded runs are bit-identical. With ``seed=None`` a seed is drawn
            from torch's global generator and recorded in ``result.params["seed"]``.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    return _run(
        "gradient_shap",
        model,
        inputs,
        target,
        baselines,
        samples,
        stdev,
        seed,
        batch_size,
        memory_budget,
        forward_kwargs,
    )


def expected_gradients(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    baselines: References | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Expected Gradients: IG averaged over references drawn from a data set, one random α each.

    Args:
        baselines: required: the reference data set, a tensor [N, *input.shape[1:]] (a mapping of
            such per named input), typically training examples; each sample draws one row uniformly.
            Leaving it out raises InputError.
        samples: Monte Carlo samples per example (the sum converges to f(x) - E[f(x')]).
        seed: as for :func:`gradient_shap`.
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
    """
    return _run(
        "expected_gradients",
        model,
        inputs,
        target,
        baselines,
        samples,
        0.0,
        seed,
        batch_size,
        memory_budget,
        forward_kwargs,
    )
