"""The Attribution result: save/load round trip and HTML."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import integrand
from integrand import Attribution, InputError

from .models import TwoInputs, cnn


def test_save_load_round_trip(tmp_path: Path) -> None:
    res = integrand.integrated_gradients(cnn(), torch.randn(2, 1, 8, 8), target=1, tol=1e-2)
    path = res.save(tmp_path / "r.safetensors")
    back = Attribution.load(path)
    assert torch.equal(back.values, res.values)
    assert torch.equal(back.delta, res.delta)
    assert torch.equal(back.converged, res.converged)
    assert back.method == res.method and back.params == res.params
    assert back.quadrature_error is not None


def test_save_load_named(tmp_path: Path) -> None:
    inputs = {"image": torch.randn(2, 1, 6, 6), "vector": torch.randn(2, 4)}
    res = integrand.integrated_gradients(TwoInputs(), inputs, target=0, steps=8)
    back = Attribution.load(res.save(tmp_path / "n.safetensors"))
    assert isinstance(back.values, dict) and set(back.values) == {"image", "vector"}
    assert torch.equal(back.values["vector"], res.values["vector"])


def test_load_rejects_foreign_and_future_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match="not an integrand result"):
        Attribution.load(tmp_path / "plain.safetensors")
    save_file(
        {"x": torch.zeros(1)},
        str(tmp_path / "v9.safetensors"),
        metadata={"integrand": '{"format": "integrand.Attribution", "version": 9}'},
    )
    with pytest.raises(InputError, match="version 9"):
        Attribution.load(tmp_path / "v9.safetensors")


def test_html_image_and_table() -> None:
    img = integrand.integrated_gradients(cnn(), torch.randn(2, 1, 8, 8), target=1, steps=8)
    html = img.to_html(title="<script>x</script>")
    assert html.count("<img") >= 2 and "data:image/png;base64," in html
    assert "<script>x" not in html and "&lt;script&gt;" in html
    tab = integrand.integrated_gradients(lambda x: x.sum(1) ** 2, torch.randn(1, 5), steps=8)
    assert "<table" in tab._repr_html_()
