"""Convergence flags never overstate: every path entry point judges fixed steps against a tolerance.

For each entry point a fixed step count far from converged on a curved model reports
``converged=False`` and a ``ConvergenceWarning`` naming the example / target; a converged call
(error control, many steps, or a linear model where one step is exact) reports True and is silent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest
import torch
from torch import nn

import integrand
from integrand import ConvergenceWarning
from integrand.convergence import DEFAULT_TOL, UNCONVERGED_WARN_SHARE, relative_error, summarize, within_tolerance

D = torch.float64
T = TypeVar("T")


class Curved(nn.Module):
    """``lin2(tanh(scale * lin1(x)))``: strong curvature along the straight path."""

    def __init__(self, inputs: int = 6, hidden: int = 16, classes: int = 3, scale: float = 4.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin1 = nn.Linear(inputs, hidden)
        self.act = nn.Tanh()
        self.lin2 = nn.Linear(hidden, classes)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin2(self.act(self.scale * self.lin1(x.flatten(1))))
        return out


def curved(inputs: int = 6) -> Curved:
    return Curved(inputs).to(D).eval()


def linear(inputs: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, 3)).to(D).eval()


def points(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=D)


def recorded(call: Callable[[], T]) -> tuple[T, list[str]]:
    """The call's result and the messages of the ConvergenceWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def assert_flagged(res: Any, messages: list[str], where: str) -> None:
    """Not converged, consistent with the relative error, and the warning names the examples."""
    rel = res.relative_error
    assert float(rel.max()) > DEFAULT_TOL  # the model really is far from converged at this step count
    assert torch.equal(res.converged, rel <= DEFAULT_TOL)
    assert not bool(res.converged.all())
    bad = [str(i) for i, ok in enumerate(res.converged.tolist()) if not ok]
    assert len(messages) == 1 and where in messages[0] and f"{where} {', '.join(bad)} did not" in messages[0]


def assert_clean(res: Any, messages: list[str], bound: float = DEFAULT_TOL) -> None:
    assert messages == []
    assert bool(res.converged.all()) and float(res.relative_error.max()) <= bound


# ---------------------------------------------------------------- the rule itself


def test_rule_relative_error_and_noise_floor() -> None:
    total = torch.tensor([1.0, -2.0, 0.0, 0.0], dtype=D)
    delta = torch.tensor([0.009, 0.03, 0.0, 1e-20], dtype=D)
    assert torch.equal(within_tolerance(delta, total), torch.tensor([True, False, True, False]))
    assert torch.equal(within_tolerance(delta, total, tol=0.02), torch.tensor([True, True, True, False]))
    floor = torch.tensor([0.0, 0.0, 0.0, 1e-18], dtype=D)
    assert bool(within_tolerance(delta, total, floor=floor)[3])  # below the rounding floor
    assert not bool(within_tolerance(torch.tensor([float("nan")]), torch.tensor([1.0]))[0])
    torch.testing.assert_close(relative_error(delta, total)[:2], torch.tensor([0.009, 0.015], dtype=D))


def test_summary_warns_only_above_the_documented_share() -> None:
    n = 20
    at_share = [i >= int(UNCONVERGED_WARN_SHARE * n) for i in range(n)]  # exactly 10% unconverged
    summary, messages = recorded(lambda: summarize(at_share, "pairs", "here"))
    assert (summary.n_items, summary.n_unconverged, messages) == (n, 2, [])
    above = [False, False, False] + [True] * (n - 3)
    summary, messages = recorded(lambda: summarize(above, "pairs", "here", names=[f"p{i}" for i in range(n)]))
    assert summary.unconverged_share == pytest.approx(3 / n)
    assert len(messages) == 1 and "3 of 20 pairs" in messages[0] and "p0, p1, p2" in messages[0]


# ---------------------------------------------------------------- input, layer and neuron IG


def test_input_ig_fixed_steps() -> None:
    x = points(3, 6)
    res, messages = recorded(lambda: integrand.integrated_gradients(curved(), x, target=0, steps=2))
    assert_flagged(res, messages, "integrated_gradients: examples")
    assert res.params["converged_tol"] == DEFAULT_TOL
    many, messages = recorded(lambda: integrand.integrated_gradients(curved(), x, target=0, steps=256))
    assert_clean(many, messages)
    exact, messages = recorded(lambda: integrand.integrated_gradients(linear(), x, target=0, steps=1))
    assert_clean(exact, messages, bound=1e-12)
    controlled, messages = recorded(lambda: integrand.integrated_gradients(curved(), x, target=0, tol=1e-6))
    assert_clean(controlled, messages, bound=1e-6)


def test_layer_and_neuron_ig_fixed_steps() -> None:
    model, x = curved(), points(3, 6)
    res, messages = recorded(lambda: integrand.integrated_gradients(model, x, target=1, layer=model.lin1, steps=2))
    assert_flagged(res, messages, "examples")
    res, messages = recorded(lambda: integrand.integrated_gradients(model, x, layer=model.act, neuron=3, steps=2))
    assert_flagged(res, messages, "examples")
    res, messages = recorded(lambda: integrand.integrated_gradients(model, x, layer=model.act, neuron=3, steps=1024))
    assert_clean(res, messages)
    lin = linear()
    res, messages = recorded(lambda: integrand.integrated_gradients(lin, x, target=1, layer=lin[1], steps=1))
    assert_clean(res, messages, bound=1e-12)


# ---------------------------------------------------------------- IG variants


class Hinge(nn.Module):
    """``sum relu(x - 0.5)``: zero gradient on the first half of the path from 0 to 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x - 0.5).sum(dim=1)


def test_idgi_flags_steps_that_miss_the_kink() -> None:
    x = torch.ones(2, 3, dtype=D)
    res, messages = recorded(lambda: integrand.methods.idgi(Hinge(), x, steps=2))
    assert_flagged(res, messages, "idgi: examples")
    # The step across the kink loses at most one step's change: < 1% of the total at 1001 steps.
    res, messages = recorded(lambda: integrand.methods.idgi(Hinge(), x, steps=1001))
    assert_clean(res, messages)


def test_guided_ig_fixed_steps() -> None:
    x = points(3, 6)
    res, messages = recorded(lambda: integrand.methods.guided_ig(curved(), x, target=0, steps=2))
    assert_flagged(res, messages, "guided_ig: examples")
    res, messages = recorded(lambda: integrand.methods.guided_ig(linear(), x, target=0, steps=2, max_dist=1.0))
    assert_clean(res, messages, bound=1e-10)


def test_blur_ig_fixed_steps() -> None:
    images = points(2, 1, 6, 6)
    res, messages = recorded(lambda: integrand.methods.blur_ig(curved(36), images, target=0, steps=1, max_sigma=4.0))
    assert_flagged(res, messages, "blur_ig: examples")
    res, messages = recorded(lambda: integrand.methods.blur_ig(linear(36), images, target=0, steps=64, max_sigma=4.0))
    assert_clean(res, messages)


def test_expected_gradients_and_gradient_shap() -> None:
    x, refs = points(3, 6), points(5, 6) * 0.5
    res, messages = recorded(
        lambda: integrand.methods.expected_gradients(curved(), x, 0, baselines=refs, samples=2, seed=0)
    )
    assert_flagged(res, messages, "expected_gradients: examples")
    # Linear and noise-free: every sample is exact, so the Monte Carlo sum is complete.
    res, messages = recorded(lambda: integrand.methods.gradient_shap(linear(), x, 0, baselines=refs, samples=3, seed=0))
    assert_clean(res, messages, bound=1e-10)


# ---------------------------------------------------------------- text


class CurvedBag(nn.Module):
    """Mean of embeddings, a steep tanh, then a linear layer (linear when ``steep=0``)."""

    def __init__(self, steep: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(12, 4)
        self.out = nn.Linear(4, 2)
        self.steep = steep

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pooled = self.emb(ids).mean(dim=1)
        hidden = torch.tanh(self.steep * pooled) / self.steep if self.steep else pooled
        out: torch.Tensor = self.out(hidden)
        return out


def _chars(text: str) -> list[int]:
    return [1] + [2 + (ord(c) % 10) for c in text if c != " "]


def _text_explainer(steep: float) -> Any:
    from integrand.text import CallableTokenizer, TextExplainer

    tok = CallableTokenizer(_chars, pad_id=0, special_ids=[1], vocab_size=12)
    model = CurvedBag(steep).double().eval()
    with torch.no_grad():
        model.emb.weight.mul_(3.0)
    return TextExplainer(model, tok, labels=["no", "yes"])


def test_text_explainer_fixed_steps() -> None:
    texts = ["abc", "hello world", "xyz"]
    results, messages = recorded(lambda: _text_explainer(8.0)(texts, target="yes", steps=1))
    bad = [i for i, r in enumerate(results) if not r.converged]
    assert bad and all(results[i].relative_error > DEFAULT_TOL for i in bad)
    assert all(r.converged == (r.relative_error <= DEFAULT_TOL) for r in results)
    assert len(messages) == 1 and "text attribution: texts" in messages[0]
    assert all(f"{i} {texts[i]!r}" in messages[0] for i in bad)
    results, messages = recorded(lambda: _text_explainer(0.0)(texts, target="yes", steps=1))
    assert messages == [] and all(r.converged and r.relative_error <= 1e-12 for r in results)


# ---------------------------------------------------------------- generation


def test_generation_fixed_steps_names_target_tokens() -> None:
    from integrand.generation import GenerationExplainer

    from .reference.generation_oracle import tiny_lm

    model, tok = tiny_lm("gpt2")
    explainer = GenerationExplainer(model, tok, baseline="zeros")
    prompt, target = "the cat sat on the", "mat and the dog"
    res, messages = recorded(lambda: explainer(prompt, target=target, method="integrated_gradients", steps=1))
    rel = res.relative_error
    assert rel is not None and float(rel.max()) > DEFAULT_TOL
    assert torch.equal(res.converged, rel <= DEFAULT_TOL) and not bool(res.converged.all())
    assert len(messages) == 1 and "target tokens" in messages[0]
    for k, ok in enumerate(res.converged.tolist()):
        assert (f"{k} {res.target_tokens[k]!r}" in messages[0]) == (not ok)
    res, messages = recorded(lambda: explainer(prompt, target=target, method="integrated_gradients", tol=1e-4))
    assert messages == [] and bool(res.converged.all())


# ---------------------------------------------------------------- steering


def test_steering_fit_counts_unconverged_pairs() -> None:
    from integrand.steering import fit

    from .test_steering import EXAMPLES
    from .test_steering_models import tiny_llama, word_tokenizer

    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    vector, messages = recorded(lambda: fit(model, tok, EXAMPLES, layers=1, k=1, steps=1))
    infos = vector.params["examples"]
    bad = [i for i, info in enumerate(infos) if info["relative_error"] > DEFAULT_TOL]
    assert [not info["converged"] for info in infos] == [i in bad for i in range(len(infos))]
    assert vector.params["n_unconverged"] == len(bad) and vector.params["unconverged_examples"] == bad
    assert vector.params["unconverged_share"] == pytest.approx(len(bad) / len(EXAMPLES))
    assert len(bad) / len(EXAMPLES) > UNCONVERGED_WARN_SHARE
    assert len(messages) == 1 and "steering fit" in messages[0] and "preference pairs" in messages[0]
    vector, messages = recorded(lambda: fit(model, tok, EXAMPLES, layers=1, k=1, tol=1e-4))
    assert messages == [] and vector.params["n_unconverged"] == 0


# ---------------------------------------------------------------- circuits


def test_ig_patching_reports_completeness() -> None:
    from integrand.circuits import logit_diff, patching

    from .reference.circuit_models import linear_lm, tiny_gpt2, token_pairs

    metric = logit_diff([3, 4, 5], [6, 7, 8])
    clean, corrupted = token_pairs()
    res, messages = recorded(lambda: patching(tiny_gpt2(), clean, corrupted, metric, method="ig", steps=1))
    assert res.relative_error is not None and res.converged is not None
    assert torch.equal(res.converged, res.relative_error <= DEFAULT_TOL) and not bool(res.converged.all())
    bad_sites = {c.name.rsplit(".", 1)[0] for c, ok in zip(res.components, res.converged.tolist()) if not ok}
    assert len(messages) == 1 and all(site in messages[0] for site in bad_sites)
    assert "completeness" in res.table()
    model, layout = linear_lm()
    res, messages = recorded(lambda: patching(model, clean, corrupted, metric, layout=layout, method="ig", steps=2))
    assert messages == [] and res.converged is not None and bool(res.converged.all())
    assert res.relative_error is not None and float(res.relative_error.max()) <= 1e-9
    exact = patching(model, clean, corrupted, metric, layout=layout)
    assert exact.relative_error is None and exact.converged is None  # no completeness notion


# ---------------------------------------------------------------- corpus runs and the CLI


def test_corpus_run_counts_unconverged_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyarrow")
    pytest.importorskip("duckdb")
    from integrand.cli import main
    from integrand.corpus import ExplainSettings, run

    records = [{"text": t} for t in ("abc", "hello world", "xyz", "ab", "quiet dog", "zz top")]
    summary, messages = recorded(
        lambda: run(_text_explainer(8.0), records, tmp_path / "r", settings=ExplainSettings(steps=1), progress=False)
    )
    assert summary.attributed == len(records) and summary.n_unconverged > UNCONVERGED_WARN_SHARE * len(records)
    assert len(messages) == 1 and "attributed rows" in messages[0]
    assert main(["cues", str(tmp_path / "r"), "--min-df", "1"]) == 0
    captured = capsys.readouterr()
    assert f"{summary.n_unconverged} of {len(records)} attributed rows" in captured.out
    assert "did not converge" in captured.err
    summary, messages = recorded(
        lambda: run(_text_explainer(0.0), records, tmp_path / "lin", settings=ExplainSettings(steps=1), progress=False)
    )
    assert messages == [] and summary.n_unconverged == 0 and summary.attributed == len(records)
