"""Patching methods against activation patching: exact on linear models, convergent IG, all three families."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import pytest
import torch

from integrand.circuits import GRADIENT, LRPRules, intervene, layout_for, log_prob, logit_diff, patching
from integrand.errors import ConvergenceWarning
from tests.reference.circuit_models import linear_lm, tiny_bert, tiny_gpt2, tiny_llama, token_pairs

METRIC = logit_diff([3, 4, 5], [6, 7, 8])


@pytest.mark.parametrize(
    ("method", "kw"),
    [("attribution", {}), ("relp", {}), ("ig", {"steps": 2}), ("ig", {"steps": 2, "ig_path": "component"})],
    ids=["attribution", "relp", "ig-site", "ig-component"],
)
def test_linear_model_all_methods_equal_activation_patching(method: str, kw: dict[str, Any]) -> None:
    model, layout = linear_lm()
    clean, corrupted = token_pairs(length=6, changed=2)
    corrupted[:, 4] = clean[:, 4] % 19 + 1  # two differing positions: effects at several positions
    ref = patching(model, clean, corrupted, METRIC, layout=layout)
    res = patching(model, clean, corrupted, METRIC, layout=layout, method=method, **kw)
    assert res.names == ref.names and len(res.names) == 2 * 6 * 3 + 2 * 2
    assert float(ref.scores.abs().max()) > 0.1  # the check below is not vacuous
    torch.testing.assert_close(res.scores, ref.scores, rtol=0, atol=1e-10)


def test_linear_model_nonlinear_metric_is_not_exact_for_attribution() -> None:
    # The exactness above comes from linearity: a log-prob metric breaks it for attribution patching.
    model, layout = linear_lm()
    clean, corrupted = token_pairs()
    metric = log_prob([3, 4, 5])
    ref = patching(model, clean, corrupted, metric, layout=layout)
    attr = patching(model, clean, corrupted, metric, layout=layout, method="attribution")
    ig = patching(model, clean, corrupted, metric, layout=layout, method="ig", ig_path="component", steps=24)
    assert float((attr.scores - ref.scores).abs().max()) > 1e-3
    assert float((ig.scores - ref.scores).abs().max()) < 1e-9


def test_ig_component_paths_converge_to_activation_patching() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    ref = patching(model, clean, corrupted, METRIC)
    attr = patching(model, clean, corrupted, METRIC, method="attribution")
    errors = []
    for steps in (1, 2, 4, 8):
        ig = patching(model, clean, corrupted, METRIC, method="ig", ig_path="component", steps=steps)
        errors.append(float((ig.scores - ref.scores).abs().max()))
    scale = float(ref.scores.abs().max())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5 * scale < float((attr.scores - ref.scores).abs().max())


@pytest.mark.parametrize("tol", [1e-2, 1e-3, 1e-4])
def test_ig_patching_error_control_meets_tol_against_activation_patching(tol: float) -> None:
    # Component paths integrate exactly to activation patching; tol= must bound the gap it claims.
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    ref = patching(model, clean, corrupted, METRIC)
    ig = patching(model, clean, corrupted, METRIC, method="ig", ig_path="component", tol=tol)
    assert ig.converged is not None and bool(ig.converged.all())
    assert ig.relative_error is not None and float(ig.relative_error.max()) <= tol
    scale = ref.scores.abs() + 1e-6 * float(ref.scores.abs().max())  # the float32 noise floor
    assert float(((ig.scores - ref.scores).abs() / scale).max()) <= 2 * tol
    with pytest.warns(ConvergenceWarning):  # one point misses the default tolerance, and says so
        fixed = patching(model, clean, corrupted, METRIC, method="ig", ig_path="component", steps=1)
    assert float(((fixed.scores - ref.scores).abs() / scale).max()) > 2 * tol  # error control did work
    assert ig.params["rule"] in ("clenshaw-curtis", "clenshaw-curtis+bisection")
    assert min(ig.params["path_steps"]) >= 3 and ig.params["integration"]["tol"] == tol


def _whole_site_effect(model: torch.nn.Module, site: Any, clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """m(corrupted with the whole site set to its clean value), by hand with ``intervene``."""
    layout = layout_for(model)
    acts: dict[Any, torch.Tensor] = {}
    with torch.no_grad(), intervene(model, layout, {site: lambda a: acts.setdefault("clean", a)}):
        model(clean)
    with torch.no_grad(), intervene(model, layout, {site: lambda a: acts["clean"]}):
        return float(METRIC(model(corrupted).logits))


def test_ig_site_paths_are_complete_per_site() -> None:
    # Interpolating a whole site: the scores of its components sum to the effect of patching the whole site.
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    ig = patching(model, clean, corrupted, METRIC, components=["mlp.0", "head.1"], method="ig", steps=12)
    for kind, layer in (("mlp", 0), ("head", 1)):
        patched = _whole_site_effect(model, (kind, layer), clean, corrupted)
        total = float(ig.select(kind)[1].sum())
        assert total == pytest.approx(patched - ig.metric_corrupted, rel=1e-8, abs=1e-12)


def test_ig_site_equals_component_when_a_site_differs_at_one_position() -> None:
    # resid.0 differs only at the corrupted token, so the site path is that component's own path.
    model = tiny_gpt2()
    clean, corrupted = token_pairs(changed=2)
    ref = patching(model, clean, corrupted, METRIC, components="resid.0")
    ig = patching(model, clean, corrupted, METRIC, components="resid.0", method="ig", steps=12)
    assert ig.score("resid.0.2") == pytest.approx(ref.score("resid.0.2"), rel=1e-9)
    assert ref.score("resid.0.2") == pytest.approx(ref.metric_clean - ref.metric_corrupted, rel=1e-12)


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama, tiny_bert], ids=["gpt2", "llama", "bert"])
def test_every_family_patches_and_reads_the_same_tensors(build: Callable[[], torch.nn.Module]) -> None:
    # Converged per-component IG equals activation patching only if the hooks that write clean values
    # and the probes that read gradients sit on the same tensors.
    model = build()
    clean, corrupted = token_pairs(length=5, changed=1)
    metric = logit_diff([3, 4, 5], [6, 7, 8], position=3)
    ref = patching(model, clean, corrupted, metric)
    ig = patching(model, clean, corrupted, metric, method="ig", ig_path="component", steps=40)
    assert set(ref.kinds()) == {"resid", "attn", "mlp", "head"}
    assert float(ref.scores.abs().max()) > 1e-4
    torch.testing.assert_close(ig.scores, ref.scores, rtol=0, atol=1e-5 * float(ref.scores.abs().max()))
    # Patching the whole first residual stream at the only differing position restores the clean run.
    assert ref.score("resid.0.1") == pytest.approx(ref.metric_clean - ref.metric_corrupted, rel=1e-10)
    # Relevance patching is attribution patching with the modified gradient: equal with every rule off.
    attr = patching(model, clean, corrupted, metric, method="attribution")
    plain = patching(model, clean, corrupted, metric, method="relp", rules=GRADIENT)
    relp = patching(model, clean, corrupted, metric, method="relp")
    torch.testing.assert_close(plain.scores, attr.scores, rtol=0, atol=0)
    assert float((relp.scores - attr.scores).abs().max()) > 1e-3 * float(attr.scores.abs().max())
    assert relp.params["rules"] == asdict(LRPRules())


@pytest.mark.parametrize("method", ["activation", "attribution", "ig", "relp"])
def test_chunking_and_state(method: str, state_guard: Any) -> None:
    model = tiny_gpt2()
    for p in model.transformer.h[0].parameters():
        p.requires_grad_(False)
    model.lm_head.weight.grad = torch.ones_like(model.lm_head.weight)
    guard = state_guard(model)
    clean, corrupted = token_pairs()
    big = patching(model, clean, corrupted, METRIC, method=method, steps=3)
    small = patching(model, clean, corrupted, METRIC, method=method, steps=3, batch_size=4)
    torch.testing.assert_close(small.scores, big.scores, rtol=1e-10, atol=1e-12)
    assert small.cost.forward == big.cost.forward and small.cost.backward == big.cost.backward
    guard.assert_unchanged()


def test_cost_accounting() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    n_comp = 2 * 6 * 3 + 2 * 2
    act = patching(model, clean, corrupted, METRIC)
    assert (act.cost.forward, act.cost.backward) == (2 + n_comp, 0)
    for method in ("attribution", "relp"):
        res = patching(model, clean, corrupted, METRIC, method=method)
        assert (res.cost.forward, res.cost.backward) == (2, 1)
    site = patching(model, clean, corrupted, METRIC, method="ig", steps=5)
    # 8 sites (4 kinds x 2 layers); each path also runs its endpoint once for its completeness check.
    assert (site.cost.forward, site.cost.backward) == (2 + 8 * 5 + 8, 8 * 5)
    comp = patching(model, clean, corrupted, METRIC, method="ig", steps=5, ig_path="component")
    assert (comp.cost.forward, comp.cost.backward) == (2 + n_comp * 5 + n_comp, n_comp * 5)


def test_result_views() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    res = patching(model, clean, corrupted, METRIC, components=["mlp", "head.1.0"])
    grid = res.grid("mlp")
    assert grid.shape == (2, 6)
    assert float(grid[1, 3]) == res.score("mlp.1.3")
    assert res.names[-1] == "head.1.0" and res.kinds() == ("mlp", "head")
    name, value = res.top(1)[0]
    assert abs(value) == float(res.scores.abs().max()) and res.score(name) == value
    assert "activation patching" in res.table(3)
