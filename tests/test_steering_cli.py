"""``integrand steer fit`` and ``integrand steer generate`` on a tiny locally saved Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from integrand.cli import main
from integrand.steering import SteeringVector

from .test_steering import EXAMPLES
from .test_steering_models import tiny_llama, word_tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("steer")
    tok = word_tokenizer()
    model = tiny_llama(len(tok), dtype=torch.float32)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    lines = [json.dumps({"prompt": p, "preferred": a, "dispreferred": b}) for p, a, b in EXAMPLES * 2]
    (root / "pairs.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return root / "model", root / "pairs.jsonl"


def test_fit_then_generate(saved: tuple[Path, Path], tmp_path: Path, capsys: Any) -> None:
    model, pairs = saved
    out = tmp_path / "v.safetensors"
    argv = ["steer", "fit", "--model", str(model), "--examples", str(pairs), "--layers", "0", "2", "--k", "2"]
    assert main([*argv, "--steps", "8", "--out", str(out), "--fit", "6", "--strength", "2.0"]) == 0
    text = capsys.readouterr().out
    assert "grains vector from 6 pairs" in text and "block 2:" in text and "held-out (4 pairs)" in text
    vector = SteeringVector.load(out)
    assert vector.layers == (0, 2) and vector.k == 2 and vector.n_examples == 6
    generate = ["steer", "generate", "--model", str(model), "--vector", str(out)]
    assert main([*generate, "--strength", "0", "the sky is"]) == 0
    lines = capsys.readouterr().out.splitlines()
    unsteered, steered = (line.split(": ", 1)[1] for line in lines[1:3])
    assert lines[0] == "prompt: the sky is" and unsteered == steered  # strength 0 changes nothing
    args = ["steer", "generate", "--model", str(model), "--vector", str(out), "--strength", "50", "--layers", "2"]
    assert main([*args, "--max-new-tokens", "5", "the sky is", "what color is the cat ?"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and len(lines[1].split(": ", 1)[1].split()) == 5


def test_mean_diff_without_split(saved: tuple[Path, Path], tmp_path: Path, capsys: Any) -> None:
    model, pairs = saved
    out = tmp_path / "m.safetensors"
    argv = ["steer", "fit", "--model", str(model), "--examples", str(pairs), "--layers", "1"]
    assert main([*argv, "--method", "mean-diff", "--out", str(out), "--strength", "1"]) == 0
    assert "no held-out pairs" in capsys.readouterr().out
    assert SteeringVector.load(out).method == "mean-diff"


def test_errors_exit_with_2(saved: tuple[Path, Path], tmp_path: Path, capsys: Any) -> None:
    model, pairs = saved
    out = tmp_path / "v.safetensors"
    argv = ["steer", "fit", "--model", str(model), "--examples", str(pairs), "--out", str(out)]
    assert main([*argv, "--layers", "3"]) == 2
    assert "layers" in capsys.readouterr().err
    assert main([*argv, "--layers", "0", "--k", "99"]) == 2
    assert main(["steer", "fit", "--model", str(tmp_path / "none"), "--layers", "0", "--out", str(out)]) == 2
    missing = ["steer", "generate", "--model", str(model), "--vector", str(tmp_path / "x.safetensors")]
    assert main([*missing, "--strength", "1", "hi"]) == 2
    assert not out.exists()
