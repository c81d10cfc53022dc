"""Result loaders and savers on bad files: every case is an ``InputError`` naming ``path``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import integrand
from integrand import InputError
from integrand.generation import GenerationAttribution
from integrand.steering import SteeringVector
from integrand.text import TokenAttribution
from tests.models import mlp

LOADERS: dict[str, Callable[[Path], Any]] = {
    "Attribution": integrand.Attribution.load,
    "GenerationAttribution": GenerationAttribution.load,
    "TokenAttribution": TokenAttribution.load,
    "SteeringVector": SteeringVector.load,
}


def _attribution() -> integrand.Attribution:
    torch.manual_seed(0)
    x = torch.rand(2, 6, dtype=torch.float64)
    return integrand.integrated_gradients(mlp().double().eval(), x, 0, steps=8)


def _generation() -> GenerationAttribution:
    t = 2
    return GenerationAttribution(
        tokens=("a", "b", "c", "d"),
        token_ids=torch.arange(4),
        n_prompt=2,
        matrix=torch.rand(t, 3, dtype=torch.float64),
        step_scores={"probability": torch.rand(t)},
        score_input=torch.rand(t),
        score_baseline=torch.zeros(t),
        delta=torch.zeros(t),
        steps=torch.full((t,), 8),
        converged=torch.ones(t, dtype=torch.bool),
        method="integrated_gradients",
        score="log_probability",
        fixed_positions=(),
    )


def _parts(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads((fh.metadata() or {})["integrand"])
        return {k: fh.get_tensor(k) for k in fh.keys()}, meta


def _rewrite(path: Path, tensors: dict[str, torch.Tensor], meta: Any, raw: str | None = None) -> Path:
    save_file(tensors, str(path), metadata={"integrand": raw if raw is not None else json.dumps(meta)})
    return path


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_missing_file(kind: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as info:
        LOADERS[kind](tmp_path / "nothing.safetensors")
    assert info.value.argument == "path"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_not_a_safetensors_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("these are notes, not tensors\n")
    with pytest.raises(InputError, match="not a safetensors file") as info:
        LOADERS[kind](path)
    assert info.value.argument == "path"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_safetensors_without_integrand_metadata(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(InputError, match="no integrand metadata") as info:
        LOADERS[kind](path)
    assert info.value.argument == "path"


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"'])
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_malformed_metadata(kind: str, raw: str, tmp_path: Path) -> None:
    path = _rewrite(tmp_path / "bad.safetensors", {"w": torch.zeros(2)}, None, raw=raw)
    with pytest.raises(InputError, match="malformed integrand metadata") as info:
        LOADERS[kind](path)
    assert info.value.argument == "path"


def test_generation_file_read_as_attribution_names_what_it_holds(tmp_path: Path) -> None:
    path = _generation().save(tmp_path / "g.safetensors")
    with pytest.raises(InputError, match="integrand.GenerationAttribution") as info:
        integrand.Attribution.load(path)
    assert info.value.argument == "path"


def test_attribution_file_read_as_generation(tmp_path: Path) -> None:
    path = _attribution().save(tmp_path / "a.safetensors")
    with pytest.raises(InputError, match="not a GenerationAttribution file") as info:
        GenerationAttribution.load(path)
    assert info.value.argument == "path"


def _drop(key: str) -> Callable[[dict[str, torch.Tensor], dict[str, Any]], None]:
    return lambda tensors, meta: meta.pop(key)


def _drop_tensor(key: str) -> Callable[[dict[str, torch.Tensor], dict[str, Any]], None]:
    return lambda tensors, meta: tensors.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, torch.Tensor], dict[str, Any]], None]:
    return lambda tensors, meta: meta.__setitem__(key, value)


def _short_scores(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    tensors["score_input"] = tensors["score_input"][:1].clone()


ATTRIBUTION_EDITS: dict[str, tuple[Callable[[dict[str, torch.Tensor], dict[str, Any]], None], str]] = {
    "no_method": (_drop("method"), "'method' is missing"),
    "no_kinds": (_drop("kinds"), "'kinds' is missing"),
    "no_values_tensor": (_drop_tensor("values"), "'values' is missing"),
    "kinds_not_a_mapping": (_set("kinds", [1, 2]), "inconsistent"),
    "unknown_kind": (_set("kinds", {"values": "list"}), "inconsistent"),
    "unknown_field": (_set("kinds", {"colour": "tensor"}), "inconsistent"),
    "method_not_a_string": (_set("method", 3), "inconsistent"),
    "params_not_an_object": (_set("params", [1]), "inconsistent"),
    "batch_mismatch": (_short_scores, "inconsistent"),
    "future_version": (_set("version", 99), "format version 99"),
}


@pytest.mark.parametrize("edit", sorted(ATTRIBUTION_EDITS))
def test_attribution_metadata_missing_or_inconsistent(edit: str, tmp_path: Path) -> None:
    path = _attribution().save(tmp_path / "a.safetensors")
    tensors, meta = _parts(path)
    change, fragment = ATTRIBUTION_EDITS[edit]
    change(tensors, meta)
    _rewrite(path, tensors, meta)
    with pytest.raises(InputError, match=fragment) as info:
        integrand.Attribution.load(path)
    assert info.value.argument == "path"


def _wide_matrix(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    tensors["matrix"] = torch.zeros(2, 7)


GENERATION_EDITS: dict[str, tuple[Callable[[dict[str, torch.Tensor], dict[str, Any]], None], str]] = {
    "no_tokens": (_drop("tokens"), "'tokens' is missing"),
    "no_step_scores": (_drop("step_scores"), "'step_scores' is missing"),
    "no_matrix": (_drop_tensor("matrix"), "'matrix' is missing"),
    "step_score_without_tensor": (_set("step_scores", ["entropy"]), "'step_scores/entropy' is missing"),
    "matrix_wrong_width": (_wide_matrix, "inconsistent"),
    "n_prompt_not_a_number": (_set("n_prompt", "two"), "inconsistent"),
    "source_groups_malformed": (_set("source_groups", {"user": 3}), "inconsistent"),
}


@pytest.mark.parametrize("edit", sorted(GENERATION_EDITS))
def test_generation_metadata_missing_or_inconsistent(edit: str, tmp_path: Path) -> None:
    path = _generation().save(tmp_path / "g.safetensors")
    tensors, meta = _parts(path)
    change, fragment = GENERATION_EDITS[edit]
    change(tensors, meta)
    _rewrite(path, tensors, meta)
    with pytest.raises(InputError, match=fragment) as info:
        GenerationAttribution.load(path)
    assert info.value.argument == "path"


SAVERS: dict[str, Callable[[Path], Any]] = {
    "Attribution": lambda p: _attribution().save(p),
    "GenerationAttribution": lambda p: _generation().save(p),
}


@pytest.mark.parametrize("kind", sorted(SAVERS))
def test_save_into_missing_folder(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "not" / "there" / "r.safetensors"
    with pytest.raises(InputError, match="does not exist") as info:
        SAVERS[kind](target)
    assert info.value.argument == "path"
    assert not target.parent.exists()


@pytest.mark.parametrize("kind", sorted(SAVERS))
def test_save_onto_a_folder(kind: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder") as info:
        SAVERS[kind](tmp_path)
    assert info.value.argument == "path"


@pytest.mark.parametrize("kind", sorted(SAVERS))
def test_round_trip_still_works(kind: str, tmp_path: Path) -> None:
    path = SAVERS[kind](tmp_path / "ok.safetensors")
    loaded = LOADERS[kind](path)
    assert type(loaded).__name__ == kind
