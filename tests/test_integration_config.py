"""One configuration: the frozen Integration, validated once, accepted by every entry point, recorded in
every path result, and built by the command line from the same defaults."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from integrand import defaults
from integrand.circuits import logit_diff, patching
from integrand.cli import build_parser
from integrand.cli.options import integration_from
from integrand.convergence import DEFAULT_TOL
from integrand.errors import InputError
from integrand.integration import DEFAULT_MAX_STEPS, Integration
from integrand.methods.integrated_gradients import integrated_gradients
from tests.reference.circuit_models import tiny_gpt2, token_pairs
from tests.reference.generation_oracle import tiny_lm

BAD = [
    ({"steps": 0}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"steps": True}, "steps"),
    ({"steps": 10**6}, "steps"),
    ({"steps": 8, "tol": 1e-3}, "steps"),
    ({"rule": "simpson"}, "rule"),
    ({"rule": "exact", "steps": 8}, "rule"),
    ({"tol": 0.0}, "tol"),
    ({"tol": float("nan")}, "tol"),
    ({"tol": "0.01"}, "tol"),
    ({"max_steps": 4}, "max_steps"),
    ({"max_steps": 10**6}, "max_steps"),
    ({"atol": -1.0}, "atol"),
    ({"atol": float("inf")}, "atol"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 1.5}, "batch_size"),
    ({"memory_budget": 0}, "memory_budget"),
    ({"memory_budget": "1GB"}, "memory_budget"),
]


@pytest.mark.parametrize("fields,argument", BAD, ids=[f"{a}={f}" for f, a in BAD])
def test_every_field_is_validated_naming_it(fields: dict[str, Any], argument: str) -> None:
    with pytest.raises(InputError) as info:
        Integration(**fields)
    assert info.value.argument == argument


def test_defaults_normalise_and_round_trip() -> None:
    config = Integration()
    assert config == Integration(tol=DEFAULT_TOL) and config.adaptive and config.max_steps == DEFAULT_MAX_STEPS
    assert Integration(steps=50).tol is None and Integration(rule="exact").tol is None
    assert Integration.from_params(Integration(steps=7, rule="left").as_params()) == Integration(steps=7, rule="left")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tol = 1.0  # type: ignore[misc]
    with pytest.raises(InputError) as info:
        Integration.from_params({"tol": 1e-3, "stepz": 4})
    assert info.value.argument == "integration"


def test_from_kwargs_fills_from_the_policy_and_refuses_both() -> None:
    assert Integration.from_kwargs(default=defaults.ARRAY_API) == Integration(steps=defaults.IG_STEPS)
    assert Integration.from_kwargs(default=defaults.ARRAY_API, tol=1e-3) == Integration(tol=1e-3)
    assert Integration.from_kwargs(default=defaults.CLI, steps=8) == Integration(steps=8)
    assert Integration.from_kwargs(default=defaults.ARRAY_API, rule="exact") == Integration(rule="exact")
    with pytest.raises(InputError) as info:
        Integration.from_kwargs(Integration(tol=1e-3), tol=1e-3)
    assert info.value.argument == "integration"
    with pytest.raises(InputError) as info:
        Integration.from_kwargs({"tol": 1e-3})  # type: ignore[arg-type]
    assert info.value.argument == "integration"


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double().eval()


@pytest.mark.parametrize("layer", [None, "1"])
def test_input_and_layer_ig_equal_with_integration_or_keywords(layer: str | None) -> None:
    model, x = _mlp(), torch.randn(3, 4, dtype=torch.float64)
    a = integrated_gradients(model, x, 0, layer=layer, integration=Integration(tol=1e-3))
    b = integrated_gradients(model, x, 0, layer=layer, tol=1e-3)
    assert torch.equal(a.values, b.values) and a.params == b.params  # type: ignore[arg-type]
    assert a.params["integration"] == Integration(tol=1e-3).as_params()
    fixed = integrated_gradients(model, x, 0, layer=layer)
    assert fixed.params["integration"] == defaults.ARRAY_API.as_params()
    with pytest.raises(InputError) as info:
        integrated_gradients(model, x, 0, layer=layer, integration=Integration(tol=1e-3), steps=8)
    assert info.value.argument == "integration"


def test_neuron_and_joint_layer_ig_record_the_integration() -> None:
    model, x = _mlp(), torch.randn(2, 4, dtype=torch.float64)
    config = Integration(steps=9, rule="trapezoid", batch_size=5)
    neuron = integrated_gradients(model, x, layer="1", neuron=0, integration=config)
    joint = integrated_gradients(model, x, 0, layer=["1"], integration=config)  # a list: joint IG
    for result in (neuron, joint):
        assert result.params["integration"] == config.as_params() and result.params["rule"] == "trapezoid"


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is", "great", "awful"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert-config")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(WORDS), encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    BertForSequenceClassification(config).eval().save_pretrained(folder / "model")
    BertTokenizer(str(vocab), model_max_length=12).save_pretrained(folder / "model")
    return folder / "model"


def test_text_explainer_equal_with_integration_or_keywords(bert_dir: Path) -> None:
    from integrand.text import TextExplainer

    explainer = TextExplainer.from_pretrained(bert_dir)
    a = explainer("the movie is good", integration=Integration(tol=1e-3))
    b = explainer("the movie is good", tol=1e-3)
    assert torch.equal(a.scores, b.scores) and a.params == b.params
    assert a.params["integration"] == Integration(tol=1e-3).as_params()
    assert explainer("the movie is bad").params["integration"] == defaults.ARRAY_API.as_params()
    with pytest.raises(InputError) as info:
        explainer("the movie is good", integration=Integration(), steps=4)
    assert info.value.argument == "integration"


def test_generation_explainer_equal_with_integration_or_keywords() -> None:
    from integrand.generation import GenerationExplainer

    model, tok = tiny_lm("gpt2")
    gx = GenerationExplainer(model, tok)
    a = gx("the capital of france is", target="paris", method="ig", integration=Integration(tol=1e-3), progress=False)
    b = gx("the capital of france is", target="paris", method="ig", tol=1e-3, progress=False)
    assert torch.equal(a.matrix, b.matrix)
    assert a.converged.all() and b.converged.all()
    with pytest.raises(InputError) as info:
        gx("the capital of france is", target="paris", method="ig", integration=Integration(), tol=1e-3)
    assert info.value.argument == "integration"


def test_ig_patching_equal_with_integration_or_keywords() -> None:
    model, (clean, corrupted) = tiny_gpt2(), token_pairs()
    metric = logit_diff([3, 4, 5], [6, 7, 8])
    a = patching(model, clean, corrupted, metric, method="ig", integration=Integration(tol=1e-3))
    b = patching(model, clean, corrupted, metric, method="ig", tol=1e-3)
    assert torch.equal(a.scores, b.scores) and a.params == b.params
    assert a.params["integration"] == Integration(tol=1e-3).as_params()
    assert a.params["rule"].startswith("clenshaw-curtis") and a.params["steps"] == max(a.params["path_steps"])
    c = patching(model, clean, corrupted, metric, method="ig", integration=Integration(steps=5))
    assert c.params["steps"] == 5 and c.params["integration"] == Integration(steps=5).as_params()
    bads = (Integration(steps=4, batch_size=3), Integration(tol=1e-3, memory_budget=1 << 20), Integration(rule="exact"))
    for bad in bads:
        with pytest.raises(InputError) as info:
            patching(model, clean, corrupted, metric, method="ig", integration=bad)
        assert info.value.argument == "integration"


def _option(command: str, dest: str) -> argparse.Action:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return next(a for a in sub._actions if a.dest == dest)


@pytest.mark.parametrize("command", ["explain", "generate"])
def test_cli_defaults_are_the_api_defaults(command: str) -> None:
    tol, steps = _option(command, "tol"), _option(command, "steps")
    assert Integration() == defaults.CLI == Integration(tol=tol.default, steps=steps.default)
    assert integration_from(argparse.Namespace(tol=tol.default, steps=None)) == Integration()
    assert integration_from(argparse.Namespace(tol=tol.default, steps=12)) == Integration(steps=12)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert f"{Integration().tol:g}" in " ".join(sub.format_help().split())
