"""Circuit metrics against their closed forms."""

from __future__ import annotations

import pytest
import torch

from integrand import InputError
from integrand.circuits import log_prob, logit_diff, normalised_logit_diff, patching
from tests.reference.circuit_models import tiny_gpt2, token_pairs


def test_logit_diff_and_log_prob_closed_form() -> None:
    logits = torch.randn(3, 4, 10, dtype=torch.float64)
    good, bad = [1, 2, 3], [4, 5, 6]
    want = sum(float(logits[i, -1, good[i]] - logits[i, -1, bad[i]]) for i in range(3)) / 3
    assert float(logit_diff(good, bad)(logits)) == pytest.approx(want, rel=1e-12)
    shared = sum(float(logits[i, 2, 7] - logits[i, 2, 0]) for i in range(3)) / 3
    assert float(logit_diff(7, 0, position=2)(logits)) == pytest.approx(shared, rel=1e-12)
    per_pos = sum(float(logits[i, p, 7] - logits[i, p, 0]) for i, p in enumerate([0, 3, 1])) / 3
    assert float(logit_diff(7, 0, position=[0, 3, 1])(logits)) == pytest.approx(per_pos, rel=1e-12)
    lp = torch.log_softmax(logits[:, -1], dim=-1)
    assert float(log_prob(good)(logits)) == pytest.approx(float(lp[[0, 1, 2], good].mean()), rel=1e-12)
    assert float(logit_diff(1, 2)(logits[:, -1])) == pytest.approx(float((logits[:, -1, 1] - logits[:, -1, 2]).mean()))


def test_normalised_logit_diff_is_zero_corrupted_one_clean() -> None:
    model = tiny_gpt2()
    clean, corrupted = token_pairs()
    raw = logit_diff([3, 4, 5], [6, 7, 8])
    with torch.no_grad():
        lc, lr = float(raw(model(clean).logits)), float(raw(model(corrupted).logits))
    metric = normalised_logit_diff([3, 4, 5], [6, 7, 8], clean=lc, corrupted=lr)
    res = patching(model, clean, corrupted, metric, components="resid.0")
    assert res.metric_corrupted == pytest.approx(0.0, abs=1e-12)
    assert res.metric_clean == pytest.approx(1.0, rel=1e-12)
    assert res.score("resid.0.2") == pytest.approx(1.0, rel=1e-10)  # the only differing token restores it all
    with pytest.raises(InputError) as info:
        normalised_logit_diff(1, 2, clean=0.5, corrupted=0.5)
    assert info.value.argument == "clean"


def test_metric_bad_tokens_and_positions() -> None:
    logits = torch.randn(3, 4, 10)
    for bad in (1.5, [], [[1, 2]], True):
        with pytest.raises(InputError) as info:
            logit_diff(bad, 2)  # type: ignore[arg-type]
        assert info.value.argument == "correct"
    with pytest.raises(InputError) as info:
        logit_diff([1, 2], 3)(logits)  # two ids for three pairs
    assert info.value.argument == "correct"
    with pytest.raises(InputError) as info:
        log_prob(1, position=[0, 1])(logits)
    assert info.value.argument == "position"
    with pytest.raises(InputError) as info:
        log_prob(1, position=0.5)  # type: ignore[arg-type]
    assert info.value.argument == "position"
