"""IDGI (Yang, Wang & Bilen 2023): attribute each path step's actual change of the score.

Along any discretised attribution path ``x_0 = baseline, ..., x_S = input``, IDGI gives step
``j`` the score change ``f(x_{j+1}) - f(x_j)`` and splits it over features in proportion to
``∂_i f(x_j)²``, the component of the step along the gradient; the remaining (orthogonal)
part of a Riemann step is what the paper identifies as noise. The sum telescopes, so IDGI is
complete exactly (``delta`` ≈ 0 up to rounding) at any number of steps. Steps where the
gradient vanishes contribute nothing. It runs on the straight line (IG), the Guided IG path
and the Blur IG path.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from ..baselines import BaselineSpec, make_baselines
from ..checks import check_count, check_positive
from ..errors import InputError
from ..inputs import Inputs, InputSet, as_input_set
from ..paths import PathStep, line, path_sum
from ..result import Attribution
from ..targets import TargetSpec
from .blur_ig import DEFAULT_MAX_SIGMA, BlurPath, blur_path, check_images
from .blur_ig import DEFAULT_STEPS as BLUR_STEPS
from .gradient_support import Points, Setup, evaluate, flat, prepare, result
from .guided_ig import DEFAULT_FRACTION, DEFAULT_MAX_DIST, check_guided, guided_path
from .guided_ig import DEFAULT_STEPS as GUIDED_STEPS

PATHS = ("integrated_gradients", "guided_ig", "blur_ig")
DEFAULT_STEPS = {"integrated_gradients": 50, "guided_ig": GUIDED_STEPS, "blur_ig": BLUR_STEPS}


def idgi_steps(inputs: InputSet, steps: Iterable[PathStep], final_scores: torch.Tensor) -> Iterator[PathStep]:
    """IDGI as path steps of the one path sum, from path steps that arrive in path order within each example.

    Each point's score change since its predecessor is split over features by the predecessor's
    squared-gradient share: the step's ``grads`` are that share and its ``move`` the score change
    (the last point's change to ``final_scores`` comes as a final step).
    """
    batch, features = inputs.batch, sum(inputs.sizes())
    last_share = torch.zeros(batch, features, dtype=torch.float64, device=inputs.device)
    last_score = torch.zeros(batch, dtype=torch.float64, device=inputs.device)
    seen = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
    for step in steps:
        ex, scores = step.example, step.scores
        squares = step.grads * step.grads
        norm = squares.sum(dim=1, keepdim=True)
        share = torch.where(
            norm > 0, squares / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.zeros_like(squares)
        )
        # Each point's predecessor: the previous row of the same example, else the carried one.
        follows = torch.zeros_like(ex, dtype=torch.bool)
        follows[1:] = ex[1:] == ex[:-1]
        prev_share = torch.where(follows[:, None], share.roll(1, dims=0), last_share[ex])
        prev_score = torch.where(follows, scores.roll(1), last_score[ex])
        has_prev = follows | seen[ex]
        change = torch.where(has_prev, scores - prev_score, torch.zeros_like(scores))
        yield PathStep(ex, scores, prev_share, change[:, None])
        ends = torch.ones_like(follows)
        ends[:-1] = ex[1:] != ex[:-1]
        last_share[ex[ends]] = share[ends]
        last_score[ex[ends]] = scores[ends]
        seen[ex[ends]] = True
    every = torch.arange(batch, device=inputs.device)
    yield PathStep(every, final_scores.double(), last_share, (final_scores.double() - last_score)[:, None])


def straight_path(setup: Setup, baselines: Mapping[str, torch.Tensor], steps: int) -> Iterator[PathStep]:
    """Gradients at ``baseline + (j/steps)(x - baseline)``, ``j = 0..steps-1``, per example."""
    inputs = setup.inputs
    alpha = torch.arange(steps, dtype=torch.float64) / steps

    def stream() -> Iterator[Points]:
        for e in range(inputs.batch):
            points = {name: line(baselines[name][e : e + 1], x[e : e + 1], alpha) for name, x in inputs.tensors.items()}
            diff = flat({n: x[e : e + 1] - baselines[n][e : e + 1] for n, x in inputs.tensors.items()}).double()
            example = torch.full((steps,), e, dtype=torch.long, device=inputs.device)
            yield Points(points, example, {"move": diff.expand(steps, -1) / steps})

    for block, points in evaluate(setup.engine, stream()):
        yield PathStep(points.example, block.scores.double(), flat(block.grads).double(), points.aux["move"])


def _unused(path: str, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise InputError(name, f"{name}= does not apply to path={path!r}")


def idgi(
    model: Callable[..., Any],
    inputs: Inputs,
    target: TargetSpec = None,
    *,
    path: str = "integrated_gradients",
    steps: int | None = None,
    baseline: BaselineSpec = None,
    fraction: float | None = None,
    max_dist: float | None = None,
    max_sigma: float | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Attribution:
    """IDGI: each path step's score change split over features by their squared gradient.

    Args:
        path: "integrated_gradients" (straight line, uniform steps), "guided_ig" or "blur_ig".
        steps: path points (default 50, 200 and 100 for the three paths).
        baseline: start of the straight or guided path (default "zeros"); not for "blur_ig".
        fraction, max_dist: Guided IG's path parameters (see ``guided_ig``); only for "guided_ig".
        max_sigma: the blur at the start of the Blur IG path (default 50); only for "blur_ig".
        batch_size, memory_budget, forward_kwargs: as for ``integrated_gradients``.
        seed: seed of the "uniform" baseline.
    """
    if path not in PATHS:
        raise InputError("path", f"unknown path {path!r}; expected one of {', '.join(PATHS)}")
    n = check_count("steps", DEFAULT_STEPS[path] if steps is None else steps, 1)
    input_set = as_input_set(inputs)
    params: dict[str, Any] = {"path": path, "steps": n}
    walk: Iterable[PathStep]
    if path == "blur_ig":
        _unused(path, baseline=baseline, fraction=fraction, max_dist=max_dist)
        sigma = check_positive("max_sigma", DEFAULT_MAX_SIGMA if max_sigma is None else max_sigma)
        check_images(input_set)
        setup = prepare(
            model, input_set, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
        )
        blurred = BlurPath(input_set, sigma)
        baselines = blurred.baselines()
        walk = blur_path(setup, blurred, [sigma * (1 - j / n) for j in range(n)], None)
        params["max_sigma"] = sigma
    else:
        _unused(path, max_sigma=max_sigma)
        baselines = make_baselines(input_set, "zeros" if baseline is None else baseline, seed=seed)
        setup = prepare(
            model, input_set, target, batch_size=batch_size, memory_budget=memory_budget, forward_kwargs=forward_kwargs
        )
        if path == "guided_ig":
            frac = DEFAULT_FRACTION if fraction is None else fraction
            dist = DEFAULT_MAX_DIST if max_dist is None else max_dist
            check_guided(n, frac, dist)
            walk = guided_path(setup, baselines, n, frac, dist)
            params.update(fraction=frac, max_dist=dist)
        else:
            _unused(path, fraction=fraction, max_dist=max_dist)
            walk = straight_path(setup, baselines, n)
    values = path_sum(input_set, idgi_steps(input_set, walk, setup.score_input)).to(input_set.dtype)
    score_baseline = setup.engine.scores(baselines, setup.example)
    return result(
        setup,
        values,
        method="idgi",
        params=params,
        steps=n,
        baseline=baselines,
        score_baseline=score_baseline,
        path=True,
    )
