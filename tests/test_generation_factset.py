"""The fact set of the token-level faithfulness benchmark: size, coverage and its recorded seeded split."""

from __future__ import annotations

import pytest

from integrand.errors import InputError
from integrand.generation.factset import FACTSET, SEED, factset, seeded_split


def test_size_and_coverage() -> None:
    assert len(FACTSET) >= 60
    assert len({f.prompt for f in FACTSET}) == len(FACTSET)
    assert all(f.answer.startswith(" ") and f.prompt == f.prompt.strip() for f in FACTSET)
    for part in ("dev", "test"):
        # Every category with two or more facts has facts on both sides.
        cats = {f.category for f in factset(part)}
        assert cats == {f.category for f in FACTSET if sum(g.category == f.category for g in FACTSET) > 1}
    assert len(factset("dev")) + len(factset("test")) == len(FACTSET)
    assert 30 <= len(factset("test")) <= 45


def test_recorded_split_is_the_seeded_draw() -> None:
    drawn = seeded_split(SEED)
    assert {f.prompt: f.split for f in FACTSET} == drawn
    # Another seed draws another split: the check above can fail.
    assert seeded_split(SEED + 1) != drawn


def test_bad_split_names_the_argument() -> None:
    with pytest.raises(InputError, match="split"):
        factset("train")
