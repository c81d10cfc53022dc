"""Faithfulness tables: correlations against scipy, per-kind rows, table and scatter plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from integrand import InputError
from integrand.circuits import faithfulness, logit_diff, markdown_table, patching
from integrand.circuits.faithfulness import pearson, spearman
from tests.reference.circuit_models import tiny_gpt2, token_pairs

scipy_stats = pytest.importorskip("scipy.stats")

METRIC = logit_diff([3, 4, 5], [6, 7, 8])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.floats(-10, 10).map(lambda v: round(v, 3))), min_size=3, max_size=30))
def test_correlations_match_scipy(pairs: list[tuple[int, float]]) -> None:
    x = torch.tensor([float(a) for a, _ in pairs], dtype=torch.float64)  # integers: plenty of ties
    y = torch.tensor([b for _, b in pairs], dtype=torch.float64)
    if len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
        assert math.isnan(pearson(x, y)) and math.isnan(spearman(x, y))  # undefined for a constant side
        return
    assert pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x.numpy(), y.numpy())[0], abs=1e-9)
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x.numpy(), y.numpy())[0], abs=1e-9)


def test_faithfulness_table_and_plot(tmp_path: Path) -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    ref = patching(model, clean, corrupted, METRIC)
    attr = patching(model, clean, corrupted, METRIC, method="attribution")
    relp = patching(model, clean, corrupted, METRIC, method="relp", components=["mlp", "head"])
    self_f = faithfulness(ref, ref)
    assert all(r.pearson == pytest.approx(1.0) and r.spearman == pytest.approx(1.0) for r in self_f.rows)
    f = faithfulness(attr, ref)
    assert [r.kind for r in f.rows] == ["resid", "attn", "mlp", "head"]
    assert f.row("mlp").n == 12 and f.row("head").n == 4
    ref_mlp, own_mlp = f.scores["mlp"]
    assert f.row("mlp").pearson == pytest.approx(float(torch.corrcoef(torch.stack([ref_mlp, own_mlp]))[0, 1]))
    g = faithfulness(relp, ref)
    table = markdown_table([f, g])
    lines = table.splitlines()
    assert lines[0].startswith("| method | resid r / rho") and len(lines) == 5
    assert lines[3].startswith("| relp | - | - |")  # relp was run on mlp and heads only
    assert f"{f.row('attn').pearson:.3f}" in lines[2]
    assert f"| {ref.cost.forward} + 0 |" in lines[4]
    fig = f.plot(tmp_path / "scatter.png")
    assert (tmp_path / "scatter.png").stat().st_size > 1000 and len(fig.axes) == 4


def test_faithfulness_bad_input() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    ref = patching(model, clean, corrupted, METRIC, components="mlp")
    attr = patching(model, clean, corrupted, METRIC, method="attribution", components=["mlp", "head"])
    with pytest.raises(InputError) as info:
        faithfulness(attr, ref)
    assert info.value.argument == "reference"
    with pytest.raises(InputError) as info:
        faithfulness(ref, ref, kinds=["head"])
    assert info.value.argument == "kinds"
    with pytest.raises(InputError) as info:
        faithfulness(ref.scores, ref)  # type: ignore[arg-type]
    assert info.value.argument == "scores"
    with pytest.raises(InputError):
        markdown_table([])
