"""Every result type speaks one protocol: values, errors, flags, params, summary, tidy frame, JSON, HTML, files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

import integrand
from integrand.protocol import Result, values_from_dataframe

from .reference.circuit_models import tiny_gpt2, token_pairs
from .reference.generation_oracle import tiny_lm

F64 = torch.float64


def _mlp(out: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, out)).to(F64).eval()


def _x(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 4, dtype=F64, generator=torch.Generator().manual_seed(1))


class _Bottleneck(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(7, 8), nn.Tanh(), nn.Linear(8, 3))
        self.scores = nn.Sigmoid()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.scores(self.encoder(x)))
        return out


def _bottleneck() -> tuple[_Bottleneck, torch.Tensor, torch.Tensor]:
    x = torch.randn(6, 7, dtype=F64, generator=torch.Generator().manual_seed(2))
    return _Bottleneck().double().eval(), x, torch.arange(6) % 2


def _attribution() -> Any:
    return integrand.integrated_gradients(_mlp(), _x(), 1, steps=16)


def _mapping_attribution() -> Any:
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.stack([(a * a).sum(1) + b.sum((1, 2)), a.sum(1)], dim=1)

    inputs = {"a": torch.randn(2, 3, dtype=F64), "b": torch.randn(2, 2, 2, dtype=F64)}
    return integrand.saliency(Two(), inputs, 0)


def _generation() -> Any:
    model, tok = tiny_lm("gpt2")
    return integrand.GenerationExplainer(model, tok)("the capital of france is", target=" paris", method="ig", steps=8)


def _token() -> Any:
    return integrand.TextExplainer.from_pretrained("toxicity")("you are a stupid idiot", steps=8)


def _patching() -> Any:
    from integrand.circuits import logit_diff, patching

    clean, corrupted = token_pairs()
    return patching(tiny_gpt2(), clean, corrupted, logit_diff([3, 4, 5], [6, 7, 8]), components="resid.1")


def _concepts() -> Any:
    model, x, _ = _bottleneck()
    return integrand.concepts.concept_attribution(
        model, x, layer="scores", concepts=["a", "b", "c"], classes=["x", "y"], steps=4
    )


def _groups() -> Any:
    groups = integrand.groups.Groups.define({"first": [0, 1], "last": [2, 3]}, _x())
    return integrand.groups.attribute_groups(_mlp(), _x(), 0, groups=groups, steps=8)


def _uncertain() -> Any:
    models = [_mlp(), nn.Sequential(nn.Linear(4, 3)).to(F64)]
    return integrand.uncertainty.ensemble(models, _x(), 0, steps=8)


def _gaussian() -> Any:
    return integrand.uncertainty.explain_gaussian(_mlp(2), _x(), steps=8)


def _profile() -> Any:
    model = _mlp()
    return integrand.profiles.activation_profiles(model, _x(6), torch.arange(6) % 2, layer=model[1], classes=["a", "b"])


def _steering() -> Any:
    from integrand.steering import SteeringVector

    vectors = {0: torch.randn(5, dtype=torch.float32), 2: torch.randn(5, dtype=torch.float32)}
    return SteeringVector(
        vectors=vectors, model_name="tiny", method="grains", variant="full", reducer="mean", k=None, n_examples=4
    )


def _recommendation() -> Any:
    from integrand.neighbourhoods import Gaussian

    return integrand.recommend.recommend(
        _mlp(), _x(2), Gaussian(sigma=0.2, n_samples=32), 0, methods=["saliency", "smoothgrad"]
    )


def _run_summary() -> Any:
    from integrand.corpus import RunSummary

    return RunSummary(out=Path("runs/x"), documents=4, chunks=1, written=4, skipped=0, seconds=0.5, attributed=4)


def _table() -> Any:
    from integrand.corpus import Table

    return Table(columns=("word", "count"), rows=(("idiot", 3), ("stupid", 2)))


def _unlearning() -> Any:
    from integrand.unlearning import unlearn

    model, x, y = _bottleneck()
    return unlearn(
        model, (x, y), layer="scores", concepts=["a", "b", "c"], classes=["x", "y"], forget="y", remove=["a"],
        head="head",
    )  # fmt: skip


def _sensor_failure() -> Any:
    from integrand.sensor_failure import fail_channel, sensor_failure

    class Member(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.linear = nn.Linear(6, 1).to(F64)

        def forward(self, sensors: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear(sensors.flatten(1)).flatten()
            return out

    members = [Member(i) for i in range(3)]
    healthy = {"sensors": torch.randn(4, 2, 3, dtype=F64)}
    first = torch.tensor([[True] * 3, [False] * 3])
    groups = integrand.groups.Groups.define({"s0": {"sensors": first}, "s1": {"sensors": ~first}}, healthy)
    failed = fail_channel(healthy, 0, "zero", input="sensors")
    return sensor_failure(members, healthy, failed, groups=groups, steps=2)


def _comprehension() -> Any:
    from integrand.generation import comprehension

    model, tok = tiny_lm("gpt2")
    return comprehension(model, tok, ["the capital of france is", "france , capital city is"], target="paris",
                         progress=False)[0]  # fmt: skip


def _circuit_faithfulness() -> Any:
    from integrand.circuits import faithfulness, logit_diff, patching

    clean, corrupted = token_pairs()
    metric = logit_diff([3, 4, 5], [6, 7, 8])
    runs = [patching(tiny_gpt2(), clean, corrupted, metric, components="resid", method=m) for m in ("attribution",
            "activation")]  # fmt: skip
    return faithfulness(runs[0], runs[1])


def _curve() -> Any:
    model, x = _mlp(), _x()
    return integrand.metrics.deletion(model, x, integrand.saliency(model, x, 1), 1, steps=4)


def _randomisation() -> Any:
    return integrand.metrics.model_randomisation(_mlp(), _x(), 1, method="saliency")


def _metric_faithfulness() -> Any:
    model, x = _mlp(), _x()
    return integrand.metrics.top_k_faithfulness(model, x, integrand.saliency(model, x, 1), 1, k=2)


def _train_report() -> Any:
    from integrand.corpus.train import TrainConfig, TrainReport

    return TrainReport(out=Path("model"), labels=("ham", "spam"), problem_type="single_label_classification",
                       train_rows=8, eval_rows=2, dropped_rows=0, accuracy=0.5, macro_f1=0.4,
                       per_class_f1={"ham": 0.3, "spam": 0.5}, seconds=1.5, config=TrainConfig(epochs=1))  # fmt: skip


def _screening() -> Any:
    from integrand.corpus import Table
    from integrand.corpus.screening import Screening

    columns = ("class", "vs", "docs", "flagged", "positives", "precision", "recall", "f1")
    rows = (("toxic", "predicted", 10, 4, 5, 0.75, 0.6, 0.667), ("toxic", "gold", 10, 4, 4, 0.5, 0.5, 0.5))
    return Screening(cues={"toxic": ("idiot", "stupid")}, scores=Table(columns, rows), mined=20, held_out=10)


def _choice() -> Any:
    from integrand.generation.paraphrase import choose_paraphrase

    model, tok = tiny_lm("gpt2")
    return choose_paraphrase(model, tok, "the capital of france is", candidates=["france , capital city is"],
                             target="paris", attribution="integrated_gradients", progress=False)  # fmt: skip


BUILDERS: dict[str, Callable[[], Any]] = {
    "Attribution": _attribution,
    "Attribution[mapping]": _mapping_attribution,
    "GenerationAttribution": _generation,
    "TokenAttribution": _token,
    "PatchingResult": _patching,
    "ConceptAttribution": _concepts,
    "GroupAttribution": _groups,
    "UncertainAttribution": _uncertain,
    "GaussianAttribution": _gaussian,
    "ActivationProfile": _profile,
    "SteeringVector": _steering,
    "Recommendation": _recommendation,
    "RunSummary": _run_summary,
    "Table": _table,
    "Unlearning": _unlearning,
    "SensorFailure": _sensor_failure,
    "ComprehensionScore": _comprehension,
    "circuits.Faithfulness": _circuit_faithfulness,
    "Curve": _curve,
    "Randomisation": _randomisation,
    "metrics.Faithfulness": _metric_faithfulness,
    "TrainReport": _train_report,
    "Screening": _screening,
    "Choice": _choice,
}


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: build() for name, build in BUILDERS.items()}


def _same(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_result_speaks_the_protocol(results: dict[str, Any], name: str, tmp_path: Path) -> None:
    result = results[name]
    assert isinstance(result, Result)
    for attribute in ("values", "delta", "relative_error", "converged", "params"):
        getattr(result, attribute)
    assert isinstance(result.params, dict)
    flags = result.converged
    assert flags is None or isinstance(flags, bool) or flags.dtype == torch.bool
    assert isinstance(result.summary(), str) and result.summary()

    text = repr(result)
    assert len(text) < 200 and "tensor(" not in text and type(result).__name__ in text

    doc = json.loads(result.to_json())
    assert doc["type"] == type(result).__name__ and "values" in doc and "params" in doc
    assert "<" in result.to_html()

    frame = result.to_dataframe()
    if name == "Table":
        assert [tuple(r) for r in frame.itertuples(index=False)] == list(result.rows)
    else:
        assert "value" in frame.columns
        shuffled = frame.sample(frac=1.0, random_state=0)
        shuffled.attrs = frame.attrs
        _same(result.values, values_from_dataframe(shuffled))
        n = sum(v.numel() for v in result.values.values()) if isinstance(result.values, dict) else result.values.numel()
        assert len(frame) == n

    path = result.save(tmp_path / "result.safetensors")
    again = type(result).load(path)
    assert type(again) is type(result)
    _same(result.values, again.values)
    _same(result.delta, again.delta)
    _same(result.relative_error, again.relative_error)
    _same(result.converged, again.converged)
    assert json.loads(again.to_json())["params"] == doc["params"]
    assert type(integrand.load(path)) is type(result)


def test_established_names_stay_as_aliases(results: dict[str, Any]) -> None:
    assert results["GenerationAttribution"].matrix is results["GenerationAttribution"].values
    assert results["TokenAttribution"].scores is results["TokenAttribution"].values
    assert results["PatchingResult"].scores is results["PatchingResult"].values


def test_results_without_completeness_say_none(results: dict[str, Any]) -> None:
    for name in ("ActivationProfile", "SteeringVector", "Recommendation", "Table", "Unlearning",
                 "circuits.Faithfulness", "Curve", "Randomisation", "metrics.Faithfulness", "TrainReport",
                 "Screening"):  # fmt: skip
        result = results[name]
        assert result.delta is None and result.relative_error is None and result.converged is None, name


def test_unlearning_does_not_store_the_model(results: dict[str, Any], tmp_path: Path) -> None:
    again = type(results["Unlearning"]).load(results["Unlearning"].save(tmp_path / "u.safetensors"))
    assert again.model is None and again.removed == results["Unlearning"].removed


def test_load_refuses_foreign_and_unknown_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(integrand.InputError, match="^path: .*not an integrand result file"):
        integrand.load(plain)
    forged = tmp_path / "forged.safetensors"
    header = {"format": "integrand.Table", "version": 1,
              "root": {"dataclass": "os:system", "fields": {"command": "true"}}}  # fmt: skip
    save_file({"x": torch.zeros(2)}, str(forged), metadata={"integrand": json.dumps(header)})
    with pytest.raises(integrand.InputError, match="not an integrand result type"):
        integrand.load(forged)


def test_contrastive_results_record_the_foil() -> None:
    model, tok = tiny_lm("gpt2")
    result = integrand.GenerationExplainer(model, tok)("the capital of france is", target="paris", contrast="lyon",
                                                        method="ig", steps=8)  # fmt: skip
    assert result.params["target"] == "paris" and result.params["contrast"] == "lyon"
    assert "'lyon'" in result.summary() and "'paris'" in result.summary()
    assert json.loads(result.to_json())["params"]["contrast"] == "lyon"
    plain = integrand.GenerationExplainer(model, tok)(
        "the capital of france is", max_new_tokens=2, method="ig", steps=8
    )
    assert "contrast" not in plain.params and plain.params["target"] == "".join(plain.target_tokens)


def test_new_result_types_keep_their_own_names(results: dict[str, Any], tmp_path: Path) -> None:
    circuits, metrics = results["circuits.Faithfulness"], results["metrics.Faithfulness"]
    assert type(integrand.load(circuits.save(tmp_path / "c.safetensors"))) is type(circuits)
    assert type(integrand.load(metrics.save(tmp_path / "m.safetensors"))) is type(metrics)
    assert results["TrainReport"].to_dataframe()["metric_label"].tolist() == ["accuracy", "macro_f1", "f1[ham]",
                                                                               "f1[spam]"]  # fmt: skip
    assert results["TrainReport"].as_dict()["labels"] == ["ham", "spam"]
    frame = results["Screening"].to_dataframe()
    assert frame["row_label"].iloc[0] == "toxic vs predicted" and frame["value"].iloc[:3].tolist() == [0.75, 0.6, 0.667]
    choice = results["Choice"]
    assert choice.converged is not None and choice.converged.shape == (2,)
    assert choice.n_unconverged == sum(s.converged is False for s in choice.ranking)
    assert choice.to_dataframe()["candidate_label"].tolist() == [s.paraphrase for s in choice.ranking]


def test_group_aggregates_never_claim_more_than_their_parts() -> None:
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).to(F64).eval()
    x = 5 * _x(4)
    groups = integrand.groups.Groups.define({"first": [0, 1], "last": [2, 3]}, x)
    with pytest.warns(integrand.ConvergenceWarning):
        plain = integrand.integrated_gradients(model, x, 0, steps=2)
        grouped = integrand.groups.attribute_groups(model, x, 0, groups=groups, steps=2)
    assert not bool(plain.converged.all())
    assert torch.equal(grouped.converged, plain.converged.bool())
    assert grouped.n_unconverged == int((~plain.converged).sum()) > 0
    assert grouped.params["n_unconverged"] == grouped.n_unconverged
    assert "NOT CONVERGED" in grouped.summary()
    fine = integrand.groups.attribute_groups(model, x, 0, groups=groups, tol=1e-6)
    assert bool(fine.converged.all()) and fine.n_unconverged == 0
    # no completeness notion, no flag: a saliency map cannot fail to converge, so it claims nothing
    assert integrand.groups.attribute_groups(model, x, 0, groups=groups, method="saliency").converged is None


def test_sensor_failure_reports_its_groups_flags(results: dict[str, Any]) -> None:
    failure = results["SensorFailure"]
    assert failure.converged is not None and failure.converged.shape == failure.relative_error.shape
    assert bool(failure.converged[0]) == bool(failure.change.converged.all())
    assert bool(failure.converged[1]) == bool(failure.variance.converged.all())


def test_token_attribution_predicts_by_the_one_multi_label_policy(results: dict[str, Any]) -> None:
    import dataclasses

    from integrand.text.toxicity import predicted_labels

    toxic = results["TokenAttribution"]
    assert toxic.multi_label and toxic.predicted_labels == tuple(predicted_labels(toxic.probabilities))
    probs = torch.tensor([0.5, 0.49, 0.1, 0.7, 0.2, 0.0])
    edge = dataclasses.replace(toxic, probabilities=probs)
    assert edge.predicted_labels == tuple(predicted_labels(probs)) == (toxic.labels[0], toxic.labels[3])
    clean = dataclasses.replace(toxic, probabilities=torch.full((6,), 0.1))
    assert clean.predicted_labels == ("none",) and clean.to_dict()["predicted_labels"] == ["none"]
    single = dataclasses.replace(toxic, multi_label=False, probabilities=torch.full((6,), 0.1).index_fill(0,
                                 torch.tensor([2]), 0.3))  # fmt: skip
    assert single.predicted_labels == (toxic.labels[2],)


def test_explain_names_no_prediction_and_still_explains_the_top_label(capsys: pytest.CaptureFixture[str]) -> None:
    from integrand.cli import main

    assert main(["--quiet", "explain", "Have a nice day :)", "--steps", "8"]) == 0
    quiet = capsys.readouterr().out
    assert main(["explain", "Have a nice day :)", "--steps", "8"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "predicted none" in out and "attributed toxic" in out, out
    assert "completeness:" in quiet


def test_results_record_what_they_explained() -> None:
    model, x = _mlp(), _x()
    ig = integrand.integrated_gradients(model, x, torch.tensor([0, 1, 2]), baseline=0.25, steps=8)
    assert ig.params["method"] == "integrated_gradients" and ig.params["baseline"] == 0.25
    assert ig.params["target_index"] == [0, 1, 2] and ig.params["steps"] == 8 and ig.params["rule"] == "gauss-legendre"
    layer = integrand.attribute(model, x, 1, steps=8, layer=model[0], baseline=torch.zeros(1, 6, dtype=F64))
    assert layer.params["baseline"] == "tensor" and layer.params["layer"] == "0"
    assert layer.params["target"] == "logit(1)"
    assert integrand.attribute(model, x, 1, method="occlusion").params["baseline"] == "zeros"  # the method's default
    occ = integrand.attribute(model, x, 1, method="occlusion", baseline=0.5)
    assert (occ.params["method"], occ.params["target"], occ.params["baseline"]) == ("occlusion", 1, 0.5)
    shap = integrand.gradient_shap(model, x, 2, baselines=torch.zeros(2, 4, dtype=F64), samples=4)
    assert shap.params["baseline"] == "tensor" and shap.params["method"] == "gradient_shap"
    sal = integrand.saliency(model, x, None)
    assert sal.params["method"] == "saliency" and "baseline" not in sal.params
    named = integrand.attribute(model, x, 0, baseline=lambda t: t * 0, steps=8)
    assert named.params["baseline"] == "callable <lambda>"
    text = integrand.TextExplainer.from_pretrained("toxicity")("you are a stupid idiot", steps=8)
    assert {k: text.params[k] for k in ("method", "target", "score", "baseline", "steps")} == {
        "method": "integrated_gradients", "target": "toxic", "score": "logit", "baseline": "pad", "steps": 8}
    lm, tok = tiny_lm("gpt2")
    gen = integrand.GenerationExplainer(lm, tok)("the capital of france is", target=" paris", method="ig", steps=8)
    assert gen.params["method"] == gen.method and gen.params["score"] == gen.score and "baseline" in gen.params


def test_viz_reads_the_foil_the_result_recorded() -> None:
    from integrand.viz.adapters import generation_caption

    lm, tok = tiny_lm("gpt2")
    contrast = integrand.GenerationExplainer(lm, tok)("the capital of france is", target=" paris", contrast=" lyon",
                                                      method="ig", steps=8)  # fmt: skip
    assert generation_caption(contrast).endswith(" vs ' lyon'") and contrast.params["contrast"] == " lyon"
    assert "lyon" in contrast.to_html()
