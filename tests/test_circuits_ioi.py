"""The synthetic IOI task: well-formed pairs, and a small GPT-2 that learns it in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from integrand import InputError
from integrand.circuits import logit_diff, patching
from integrand.circuits.ioi import NAMES, TEMPLATES, IOIConfig, accuracy, encode, ioi_pairs, load_or_train, vocabulary

TINY = IOIConfig(n_layer=2, n_embd=32, steps=250, batch=64, lr=1e-2)


def test_pairs_are_well_formed() -> None:
    assert len({len(t.split()) for t in TEMPLATES}) == 1  # one length: pairs from any template batch together
    pairs = ioi_pairs(200, seed=3)
    words = vocabulary()
    assert pairs.clean.shape == pairs.corrupted.shape == (200, 1 + len(TEMPLATES[0].split()))
    differ = pairs.clean != pairs.corrupted
    assert bool((differ.sum(1) == 1).all())  # exactly one token differs: the repeated subject
    for i in range(200):
        clean_text, corrupt_text = pairs.texts[i]
        io, s = words[int(pairs.io[i])], words[int(pairs.s[i])]
        assert io in NAMES and s in NAMES and io != s
        cw, rw = clean_text.split(), corrupt_text.split()
        assert cw.count(s) == 2 and cw.count(io) == 1  # clean: S repeated, IO once -> answer IO
        assert rw.count(io) == 2 and rw.count(s) == 1  # corrupted: roles swapped -> answer S
        assert encode(clean_text) == pairs.clean[i].tolist()
    assert torch.equal(ioi_pairs(5, seed=1).clean, ioi_pairs(5, seed=1).clean)
    assert not torch.equal(ioi_pairs(5, seed=1).clean, ioi_pairs(5, seed=2).clean)
    with pytest.raises(InputError):
        ioi_pairs(0)
    with pytest.raises(InputError):
        encode("When Zed and Mary")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    cache = tmp_path_factory.mktemp("ioi")
    torch.manual_seed(0)
    return load_or_train(cache, TINY), cache


def test_small_gpt2_learns_ioi_and_is_cached(trained: tuple[torch.nn.Module, Path]) -> None:
    model, cache = trained
    held_out = ioi_pairs(256, seed=99)
    assert accuracy(model, held_out) > 0.9
    assert len(list(cache.iterdir())) == 1
    again = load_or_train(cache, TINY)  # read back, not retrained
    with torch.no_grad():
        torch.testing.assert_close(again(held_out.clean).logits, model(held_out.clean).logits, rtol=0, atol=0)


def test_patching_the_subject_token_restores_the_clean_answer(trained: tuple[torch.nn.Module, Path]) -> None:
    model, _ = trained
    pairs = ioi_pairs(64, seed=5)
    where = (pairs.clean != pairs.corrupted).int().argmax(1)
    pos = int(where.mode().values)
    keep = where == pos  # pairs whose subject sits at the same position
    clean, corrupted, io, s = pairs.clean[keep], pairs.corrupted[keep], pairs.io[keep], pairs.s[keep]
    # Logit difference IO - S: positive on clean prompts, negative on corrupted ones (the answer flips).
    res = patching(model, clean, corrupted, logit_diff(io, s), components="resid.0")
    assert res.metric_clean > 0 > res.metric_corrupted
    gap = res.metric_clean - res.metric_corrupted
    for i, value in enumerate(res.scores.tolist()):
        assert value == (pytest.approx(gap, rel=1e-5) if i == pos else 0.0)
