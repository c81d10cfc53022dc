"""Exact IG for piecewise-linear networks: the finite sum over linear pieces of the path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import integrand
from integrand.errors import InputError, ModelError
from integrand.exact import exact_paths, not_piecewise_linear
from integrand.inputs import as_input_set
from integrand.integrate import BISECTION, CLENSHAW_CURTIS
from integrand.methods.exact_ig import exact_integrated_gradients
from integrand.targets import logit

D = torch.float64
KINKS = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d)


def relu_cnn() -> nn.Sequential:
    return (
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3))
        .to(D)
        .eval()
    )


def leaky_mlp() -> nn.Sequential:
    bn = nn.BatchNorm1d(12)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
    body = nn.Sequential(nn.Linear(12, 12), nn.LeakyReLU(0.1), nn.Dropout(0.3), nn.Identity())
    return nn.Sequential(nn.Linear(5, 12), bn, nn.ReLU(inplace=True), body, nn.Linear(12, 3)).to(D).eval()


def pool_1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool1d(3, stride=2, padding=1),
        nn.AvgPool1d(2), nn.Conv1d(3, 3, 1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(3, 2),
    ).to(D).eval()  # fmt: skip


def _patterns(model: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """Activation pattern of each point, read with plain hooks: signs at ReLUs, argmax of max-pools."""
    parts: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], _out: object) -> None:
        z = args[0]
        if isinstance(module, nn.MaxPool2d):
            z = F.max_pool2d(z, module.kernel_size, module.stride, module.padding, return_indices=True)[1]
        elif isinstance(module, nn.MaxPool1d):
            z = F.max_pool1d(z, module.kernel_size, module.stride, module.padding, return_indices=True)[1]
        else:
            z = (z > 0).long()
        parts.append(z.reshape(z.shape[0], -1))

    def clone_first(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0].clone(),)  # in-place ReLUs would overwrite the pre-activation before it is read

    kinks = [m for m in model.modules() if isinstance(m, KINKS)]
    handles = [m.register_forward_pre_hook(clone_first) for m in kinks]
    handles += [m.register_forward_hook(record) for m in kinks]
    try:
        with torch.no_grad():
            model(points)
    finally:
        for h in handles:
            h.remove()
    return torch.cat(parts, dim=1)


def reference_ig(model: nn.Module, x: torch.Tensor, base: torch.Tensor, target: int, grid: int = 1024) -> torch.Tensor:
    """Slow oracle: patterns on a grid, cells whose ends differ bisected to 1e-13, the gradient at each
    constant cell's midpoint times its width. Independent of the forward-mode walk under test."""
    line = lambda a: base + a.view(-1, *([1] * (x.dim() - 1))) * (x - base)  # noqa: E731
    edges = torch.linspace(0, 1, grid + 1, dtype=D)
    pats = _patterns(model, line(edges))
    cells = [(float(edges[i]), float(edges[i + 1]), pats[i], pats[i + 1]) for i in range(grid)]
    done: list[tuple[float, float]] = []
    while cells:
        split = [c for c in cells if not torch.equal(c[2], c[3]) and c[1] - c[0] > 1e-13]
        done += [(a, b) for a, b, pa, pb in cells if torch.equal(pa, pb) or b - a <= 1e-13]
        if not split:
            break
        mids = torch.tensor([(a + b) / 2 for a, b, _, _ in split], dtype=D)
        pm = _patterns(model, line(mids))
        cells = []
        for (a, b, pa, pb), m, p in zip(split, mids.tolist(), pm):
            cells += [(a, m, pa, p), (m, b, p, pb)]
    widths = torch.tensor([b - a for a, b in done], dtype=D)
    points = line(torch.tensor([(a + b) / 2 for a, b in done], dtype=D)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(points)[:, target].sum(), points)
    return (widths.view(-1, *([1] * (x.dim() - 1))) * grad).sum(dim=0) * (x - base)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("build,shape", [(relu_cnn, (1, 6, 6)), (leaky_mlp, (5,)), (pool_1d, (2, 9))])
def test_equals_the_bisection_reference(build, shape, state_guard) -> None:  # type: ignore[no-untyped-def]
    model = build()
    x, base = torch.randn(3, *shape, dtype=D), 0.3 * torch.randn(3, *shape, dtype=D)
    guard = state_guard(model)
    res = integrand.integrated_gradients(model, x, 1, baseline=base, rule="exact")
    guard.assert_unchanged()
    assert res.params["rule"] == "exact" and res.params["piecewise_linear"] == "detected"
    assert min(res.params["pieces"]) > 3 and res.steps.tolist() == res.params["pieces"]
    assert bool(res.converged.all()) and float(res.relative_error.max()) <= 1e-12
    for i in range(3):
        assert _rel(res.values[i], reference_ig(model, x[i : i + 1], base[i : i + 1], 1)[0]) <= 1e-10


@pytest.mark.slow
def test_midpoint_rule_converges_to_exact() -> None:
    model, x = relu_cnn(), torch.randn(2, 1, 6, 6, dtype=D)
    exact = integrand.integrated_gradients(model, x, 0, rule="exact")
    errors = [
        _rel(integrand.integrated_gradients(model, x, 0, steps=n, rule="middle", batch_size=8192).values, exact.values)
        for n in (2**12, 2**16)
    ]
    assert errors[1] <= 1e-4 and errors[1] <= errors[0] / 4  # first order at kinks: 16x the points, ~1/16 the error


def test_tol_uses_exact_when_declared_and_falls_back_with_a_reason() -> None:
    x = torch.randn(4, 1, 6, 6, dtype=D)
    res = integrand.integrated_gradients(relu_cnn(), x, 2, tol=1e-3, piecewise_linear=True)
    assert res.params["rule"] == "exact" and "exact_fallback" not in res.params
    assert bool(res.converged.all()) and float(res.relative_error.max()) <= 1e-12
    default = integrand.integrated_gradients(relu_cnn(), x, 2, tol=1e-3)  # opt-in: error control by default
    assert default.params["rule"] != "exact" and "exact_fallback" not in default.params
    gelu = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(32, 3)).to(D)
    with pytest.raises(InputError, match="GELU"):
        integrand.integrated_gradients(gelu, x, 2, rule="exact")
    off = integrand.integrated_gradients(relu_cnn(), x, 2, tol=1e-3, piecewise_linear=False)
    assert off.params["rule"] == BISECTION and "exact_fallback" not in off.params


def test_tight_tol_switches_to_exact_on_detected_models_only() -> None:
    from integrand.methods.integrated_gradients import EXACT_BELOW_TOL

    torch.manual_seed(0)
    model, x = relu_cnn(), torch.randn(4, 1, 6, 6, dtype=D)
    tight = EXACT_BELOW_TOL / 2
    auto = integrand.integrated_gradients(model, x, 2, tol=tight)
    assert auto.params["rule"] == "exact" and auto.params["piecewise_linear"] == "detected"
    assert bool(auto.converged.all()) and float(auto.relative_error.max()) <= 1e-12
    assert torch.equal(auto.steps, torch.tensor(auto.params["pieces"]))
    exact = integrand.integrated_gradients(model, x, 2, rule="exact")
    torch.testing.assert_close(auto.values, exact.values, rtol=0, atol=0)
    loose = integrand.integrated_gradients(model, x, 2, tol=EXACT_BELOW_TOL * 2)  # error control is faster there
    assert loose.params["rule"] != "exact" and "exact_fallback" not in loose.params
    off = integrand.integrated_gradients(model, x, 2, tol=tight, piecewise_linear=False)
    assert off.params["rule"] != "exact" and "exact_fallback" not in off.params
    torch.testing.assert_close(off.values, exact.values, rtol=0, atol=4 * tight * float(exact.score_input.abs().max()))
    gelu = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(32, 3)).to(D).eval()
    smooth = integrand.integrated_gradients(gelu, x, 2, tol=tight)  # not piecewise linear: error control, and why
    assert smooth.params["rule"] != "exact" and "GELU" in smooth.params["exact_fallback"]
    assert bool(smooth.converged.all())


def test_too_many_pieces_falls_back_under_tol_and_raises_under_exact() -> None:
    model, x = relu_cnn(), torch.randn(2, 1, 6, 6, dtype=D)
    res = integrand.integrated_gradients(model, x, 0, tol=1e-2, max_steps=5, piecewise_linear=True)
    assert "more than 5 linear pieces" in res.params["exact_fallback"]
    inputs = as_input_set(x)
    with pytest.raises(ModelError, match="linear pieces"):
        exact_paths(model, inputs, {"input": torch.zeros_like(x)}, logit(0), None, 8, max_pieces=3)


def test_batch_of_one_equals_batched_and_chunks_agree() -> None:
    model, x = leaky_mlp(), torch.randn(5, 5, dtype=D)
    together = integrand.integrated_gradients(model, x, 0, rule="exact")
    chunked = integrand.integrated_gradients(model, x, 0, rule="exact", batch_size=2)
    torch.testing.assert_close(chunked.values, together.values, rtol=1e-13, atol=1e-15)
    for i in range(5):
        alone = integrand.integrated_gradients(model, x[i : i + 1], 0, rule="exact")
        assert alone.params["pieces"] == [together.params["pieces"][i]]
        torch.testing.assert_close(alone.values[0], together.values[i], rtol=1e-13, atol=1e-15)


def test_float32_completeness_at_rounding() -> None:
    model, x = relu_cnn().float(), torch.rand(8, 1, 6, 6)
    res = integrand.integrated_gradients(model, x, 1, rule="exact")
    assert res.values.dtype == torch.float32 and bool(res.converged.all())
    assert float(res.relative_error.max()) <= 1e-4
    ref = integrand.integrated_gradients(model.double(), x.double(), 1, rule="exact")
    assert _rel(res.values.double(), ref.values) <= 1e-4


class Declared(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.a, self.b, self.act, self.functional = nn.Linear(4, 8), nn.Linear(8, 2), nn.ReLU(), functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(F.relu(h) if self.functional else self.act(h)) + x[:, :2]


def test_declared_models_are_checked_by_completeness() -> None:
    x, base = torch.randn(3, 4, dtype=D), torch.randn(3, 4, dtype=D)
    model = Declared(functional=False).to(D)
    assert "has its own forward" in str(not_piecewise_linear(model))
    res = integrand.integrated_gradients(model, x, 0, baseline=base, tol=1e-3, piecewise_linear=True)
    assert res.params["rule"] == "exact" and res.params["piecewise_linear"] == "declared"
    assert _rel(res.values[0], reference_ig(model, x[:1], base[:1], 0)[0]) <= 1e-10
    hidden = Declared(functional=True).to(D)  # a kink no hook sees: completeness exposes it
    res = integrand.integrated_gradients(hidden, x, 0, baseline=base, tol=1e-3, piecewise_linear=True)
    assert res.params["rule"] in (CLENSHAW_CURTIS, BISECTION) and "missed" in res.params["exact_fallback"]


def test_refusals_name_the_argument() -> None:
    x = torch.randn(2, 5, dtype=D)
    gelu = nn.Sequential(nn.Linear(5, 4), nn.GELU(), nn.Linear(4, 2)).to(D)
    with pytest.raises(InputError, match=r"rule: .*module '1' \(GELU\)") as info:
        integrand.integrated_gradients(gelu, x, 0, rule="exact")
    assert info.value.argument == "rule"
    with pytest.raises(InputError, match="linear in the model output") as info:
        integrand.integrated_gradients(leaky_mlp(), x, lambda out: out.log_softmax(-1)[:, 0], rule="exact")
    assert info.value.argument == "rule"
    for kwargs, name in [
        ({"steps": 8}, "rule"),
        ({"layer": "0"}, "rule"),
        ({"piecewise_linear": 1}, "piecewise_linear"),
    ]:
        with pytest.raises(InputError) as info:
            integrand.integrated_gradients(leaky_mlp(), x, 0, rule="exact", **kwargs)
        assert info.value.argument == name


def test_direct_call_reports_instead_of_raising() -> None:
    inputs = as_input_set(torch.randn(2, 5, dtype=D))
    gelu = nn.Sequential(nn.Linear(5, 4), nn.GELU()).to(D)
    reason = exact_integrated_gradients(
        gelu, inputs, {"input": torch.zeros(2, 5, dtype=D)}, 0, required=False, piecewise_linear=None,
        tol=None, atol=0.0, batch_size=None, memory_budget=None, forward_kwargs=None,
    )  # fmt: skip
    assert reason == "module '1' (GELU) is not piecewise linear"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    widths=st.lists(st.integers(2, 9), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
    leaky=st.booleans(),
)
def test_random_relu_mlps(widths: list[int], seed: int, leaky: bool) -> None:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    sizes = [4, *widths]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.05) if leaky else nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-1], 2)).to(D)
    x, base = 2 * torch.randn(2, 4, dtype=D), torch.randn(2, 4, dtype=D)
    res = integrand.integrated_gradients(model, x, 1, baseline=base, rule="exact")
    assert float(res.relative_error.max()) <= 1e-11 or float(res.delta.abs().max()) <= 1e-13
    for i in range(2):
        ref = reference_ig(model, x[i : i + 1], base[i : i + 1], 1, grid=256)[0]
        assert float((res.values[i] - ref).abs().max()) <= 1e-10 * max(1.0, float(ref.abs().max()))
