"""Error control, chunking and per-example independence."""

from __future__ import annotations

import warnings

import pytest
import torch

import integrand
from integrand import ConvergenceWarning

from .models import TwoInputs, cnn, mlp

D = torch.float64


@pytest.mark.parametrize("act,tol", [(torch.nn.Tanh, 1e-4), (torch.nn.GELU, 1e-4), (torch.nn.ReLU, 1e-2)])
def test_tolerance_is_met(act: type[torch.nn.Module], tol: float) -> None:
    model = cnn(act=act).to(D)
    x = torch.randn(6, 1, 8, 8, dtype=D)
    res = integrand.integrated_gradients(model, x, target=2, tol=tol)
    assert bool(res.converged.all())
    assert float(res.relative_error.max()) <= tol
    assert res.quadrature_error is not None and float(res.quadrature_error.max()) <= tol
    # The estimate is honest: a far finer fixed rule agrees within the tolerance.
    ref = integrand.integrated_gradients(model, x, target=2, steps=2048, rule="middle", batch_size=4096)
    scale = (res.score_input - res.score_baseline).abs()
    err = (res.values - ref.values).abs().flatten(1).max(dim=1).values / scale
    assert float(err.max()) <= tol


def test_relu_kinks_need_refinement_smooth_does_not() -> None:
    x = torch.randn(4, 6, dtype=D)
    smooth = integrand.integrated_gradients(mlp(act=torch.nn.Tanh).to(D), x, target=0, tol=1e-3)
    assert int(smooth.steps.max()) <= 17


def test_examples_do_not_pay_for_the_hardest() -> None:
    model = cnn(act=torch.nn.ReLU).to(D)
    x = torch.randn(5, 1, 8, 8, dtype=D)
    together = integrand.integrated_gradients(model, x, target=1, tol=1e-2)
    assert len(set(together.steps.tolist())) > 1
    for i in range(5):
        alone = integrand.integrated_gradients(model, x[i : i + 1], target=1, tol=1e-2)
        assert int(alone.steps[0]) == int(together.steps[i])
        torch.testing.assert_close(alone.values[0], together.values[i], rtol=1e-9, atol=1e-12)


def test_non_convergence_is_flagged_and_named() -> None:
    model = cnn(act=torch.nn.ReLU).to(D)
    x = torch.randn(3, 1, 8, 8, dtype=D)
    with pytest.warns(ConvergenceWarning, match=r"examples \[") as record:
        res = integrand.integrated_gradients(model, x, target=1, tol=1e-12, max_steps=9)
    assert not bool(res.converged.all())
    assert int(res.steps.max()) <= 9
    assert "max_steps=9" in str(record[0].message)


@pytest.mark.parametrize("mode", [{"steps": 20}, {"tol": 1e-4}])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_equals_unchunked(mode: dict[str, float], chunk: int) -> None:
    model = TwoInputs().to(D)
    inputs = {"image": torch.randn(3, 1, 6, 6, dtype=D), "vector": torch.randn(3, 4, dtype=D)}
    ref = integrand.integrated_gradients(model, inputs, target=0, batch_size=10_000, **mode)  # type: ignore[arg-type]
    got = integrand.integrated_gradients(model, inputs, target=0, batch_size=chunk, **mode)  # type: ignore[arg-type]
    for k in inputs:
        torch.testing.assert_close(got.values[k], ref.values[k], rtol=1e-10, atol=1e-12)
    assert torch.equal(got.steps, ref.steps)


def test_memory_budget_chunks_and_agrees() -> None:
    model = cnn().to(D)
    x = torch.randn(4, 1, 8, 8, dtype=D)
    small = integrand.integrated_gradients(model, x, target=0, steps=16, memory_budget=50_000)
    big = integrand.integrated_gradients(model, x, target=0, steps=16)
    torch.testing.assert_close(small.values, big.values, rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64() -> None:
    model = mlp()
    x = torch.randn(3, 6)
    r32 = integrand.integrated_gradients(model, x, target=1, steps=32)
    r64 = integrand.integrated_gradients(model.double(), x.double(), target=1, steps=32)
    assert r32.values.dtype == torch.float32
    torch.testing.assert_close(r32.values.double(), r64.values, rtol=1e-4, atol=1e-6)


def test_batch_of_one_equals_batched_fixed_steps() -> None:
    model = cnn(act=torch.nn.GELU).to(D)
    x = torch.randn(3, 1, 8, 8, dtype=D)
    batched = integrand.integrated_gradients(model, x, target=4, steps=12)
    for i in range(3):
        one = integrand.integrated_gradients(model, x[i : i + 1], target=4, steps=12)
        torch.testing.assert_close(one.values[0], batched.values[i], rtol=1e-10, atol=1e-13)


def test_default_target_is_argmax_and_1d_output_is_itself() -> None:
    model = mlp().to(D)
    x = torch.randn(4, 6, dtype=D)
    res = integrand.integrated_gradients(model, x, steps=8)
    torch.testing.assert_close(res.score_input, model(x).max(dim=1).values)
    res1 = integrand.integrated_gradients(lambda t: model(t)[:, 1], x, steps=8)
    torch.testing.assert_close(res1.score_input, model(x)[:, 1])


def test_target_constructors() -> None:
    model = mlp().to(D)
    x = torch.randn(4, 6, dtype=D)
    t = integrand.targets
    p = integrand.integrated_gradients(model, x, target=t.probability(1), tol=1e-6)
    torch.testing.assert_close(p.score_input, model(x).softmax(1)[:, 1])
    assert float(p.relative_error.max()) <= 1e-6
    d = integrand.integrated_gradients(model, x, target=t.difference(torch.tensor([0, 1, 2, 0]), 2), steps=8)
    out = model(x)
    torch.testing.assert_close(d.score_input, out[torch.arange(4), torch.tensor([0, 1, 2, 0])] - out[:, 2])
    lab = integrand.integrated_gradients(model, x, target=t.label("b", ["a", "b", "c"], "log-probability"), steps=8)
    torch.testing.assert_close(lab.score_input, model(x).log_softmax(1)[:, 1])
    with pytest.raises(integrand.InputError, match="unknown label"):
        t.label("z", ["a", "b"])


def test_blur_and_uniform_baselines() -> None:
    model = cnn().to(D)
    x = torch.randn(2, 1, 8, 8, dtype=D)
    blur = integrand.integrated_gradients(model, x, target=0, baseline="blur", steps=4)
    assert blur.baseline is not None and not torch.equal(blur.baseline, torch.zeros_like(x))
    assert float(blur.baseline.std()) < float(x.std())
    u1 = integrand.integrated_gradients(model, x, target=0, baseline="uniform", steps=4, seed=3)
    u2 = integrand.integrated_gradients(model, x, target=0, baseline="uniform", steps=4, seed=3)
    assert torch.equal(u1.values, u2.values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 4 steps on this CNN miss the default tolerance; only that (honest) warning is allowed.
        warnings.simplefilter("ignore", ConvergenceWarning)
        integrand.integrated_gradients(model, x, target=0, baseline=lambda inp: inp * 0.5, steps=4)


def test_automatic_chunks_respect_the_memory_budget() -> None:
    from integrand.engine import probe
    from integrand.inputs import as_input_set

    model = cnn().to(D)
    x = torch.randn(4, 1, 8, 8, dtype=D)
    rows: list[int] = []

    def spy(t: torch.Tensor) -> torch.Tensor:
        rows.append(t.shape[0])
        return model(t)

    per_point = probe(spy, as_input_set(x), None).bytes_per_point
    budget = 10 * per_point
    integrand.integrated_gradients(spy, x, target=0, steps=16, memory_budget=budget)
    assert max(rows[3:]) == 10  # the probe and the two score passes see the batch itself
    rows.clear()
    integrand.integrated_gradients(spy, x, target=0, steps=16)
    assert max(rows) <= 64  # the default budget is ample here: one chunk holds all points


def test_tolerance_below_float32_resolution_stops_at_the_rounding_floor() -> None:
    model = mlp(act=torch.nn.GELU)
    x = torch.randn(4, 6)
    res = integrand.integrated_gradients(model, x, target=1, tol=1e-12, max_steps=1025)
    assert bool(res.converged.all())
    assert int(res.steps.max()) < 1025
    assert res.params["noise_floor_ulps"] > 0
    magnitude = res.score_input.abs() + res.score_baseline.abs() + res.values.abs().sum(dim=1)
    floor = res.params["noise_floor_ulps"] * torch.finfo(torch.float32).eps * magnitude
    assert bool((res.delta.abs() <= floor).all())
    # float64 resolves far below: the same request is met as asked.
    r64 = integrand.integrated_gradients(model.double(), x.double(), target=1, tol=1e-10)
    assert bool(r64.converged.all()) and float(r64.relative_error.max()) <= 1e-10


def test_every_test_digit_converges_at_1e3_on_the_relu_cnn(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from integrand.demo.digits import DigitsConfig, accuracy, train_digits_cnn

    monkeypatch.setenv("INTEGRAND_CACHE", str(tmp_path))
    model, data = train_digits_cnn(DigitsConfig())
    assert accuracy(model, data) > 0.95
    x, y = data.test_x[:32], data.test_y[:32]
    res = integrand.integrated_gradients(model, x, target=y, tol=1e-3)
    assert bool(res.converged.all())
    assert float(res.relative_error.max()) <= 1e-3
    assert res.quadrature_error is not None and float(res.quadrature_error.max()) <= 1e-3
    assert float(res.steps.float().mean()) < 1000
