"""Bad input to steering raises integrand errors naming the argument, and leaves the model as it was."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from integrand import InputError, ModelError
from integrand.steering import Preference, SteeringVector, fit, load_preferences, perplexity, preference_scores, split

from .test_steering import EXAMPLES
from .test_steering_models import tiny_llama, word_tokenizer


@pytest.fixture(scope="module")
def lm() -> tuple[Any, Any]:
    tok = word_tokenizer()
    return tiny_llama(len(tok)), tok


def _fails(argument: str, call: Any, error: type[Exception] = InputError) -> None:
    with pytest.raises(error) as info:
        call()
    assert info.value.argument == argument  # type: ignore[attr-defined]


def test_identical_answers(lm: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = lm
    guard = state_guard(model)
    bad = [*EXAMPLES, ("the sky is", "blue", "blue")]
    _fails("examples[5].dispreferred", lambda: fit(model, tok, bad, layers=0))
    _fails("examples[5].dispreferred", lambda: fit(model, tok, bad, layers=0, method="mean-diff"))
    _fails("examples[5].dispreferred", lambda: preference_scores(model, tok, bad))
    guard.assert_unchanged()


def test_k_larger_than_the_prompt(lm: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = lm
    guard = state_guard(model)
    # "the capital of france is": five tokens after the fixed BOS, the last one (read-out) never masked
    fit(model, tok, EXAMPLES[:1], layers=0, k=4, steps=4)
    _fails("k", lambda: fit(model, tok, EXAMPLES[:1], layers=0, k=5))
    _fails("k", lambda: fit(model, tok, EXAMPLES, layers=0, k=0))
    _fails("k", lambda: fit(model, tok, EXAMPLES, layers=0, k=2.0))
    guard.assert_unchanged()


def test_layer_out_of_range(lm: tuple[Any, Any]) -> None:
    model, tok = lm  # three blocks
    _fails("layers", lambda: fit(model, tok, EXAMPLES, layers=3))
    _fails("layers", lambda: fit(model, tok, EXAMPLES, layers=[0, -4]))
    _fails("layers", lambda: fit(model, tok, EXAMPLES, layers=[]))
    _fails("layers", lambda: fit(model, tok, EXAMPLES, layers=[True]))
    assert fit(model, tok, EXAMPLES, layers=-1, method="mean-diff").layers == (2,)
    vector = SteeringVector({5: torch.zeros(32, dtype=torch.float64)}, "m", "mean-diff", "both", "mean", None, 1)
    with pytest.raises(InputError) as info, vector.apply(model, 1.0):
        pass
    assert info.value.argument == "layers"
    good = fit(model, tok, EXAMPLES, layers=[0, 1], method="mean-diff")
    _fails("layers", lambda: good.select([2]))
    with pytest.raises(InputError) as info, good.apply(model, 1.0, layers=[2]):
        pass
    assert info.value.argument == "layers"


def test_bad_options(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    _fails("method", lambda: fit(model, tok, EXAMPLES, layers=0, method="caa"))
    _fails("variant", lambda: fit(model, tok, EXAMPLES, layers=0, variant="pos"))
    _fails("variant", lambda: fit(model, tok, EXAMPLES, layers=0, method="mean-diff", variant="positive"))
    _fails("reducer", lambda: fit(model, tok, EXAMPLES, layers=0, reducer="svd"))
    _fails("baseline", lambda: fit(model, tok, EXAMPLES, layers=0, baseline="mask"))
    _fails("baseline", lambda: fit(model, tok, EXAMPLES, layers=0, baseline=10_000))
    _fails("steps", lambda: fit(model, tok, EXAMPLES, layers=0, steps=4, tol=1e-2))
    good = fit(model, tok, EXAMPLES, layers=0, method="mean-diff")
    for strength in (float("nan"), float("inf"), True, "2"):
        with pytest.raises(InputError) as info, good.apply(model, strength):  # type: ignore[arg-type]
            pass
        assert info.value.argument == "strength"


def test_bad_examples(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    _fails("examples", lambda: fit(model, tok, [], layers=0))
    _fails("examples", lambda: fit(model, tok, "the sky", layers=0))
    _fails("examples[0]", lambda: fit(model, tok, [("a", "b")], layers=0))
    _fails("examples[0]", lambda: fit(model, tok, [{"prompt": "the sky"}], layers=0))
    _fails("examples[0].prompt", lambda: fit(model, tok, [(" ", "blue", "red")], layers=0))
    _fails("examples[0].preferred", lambda: fit(model, tok, [("the sky", [999], "red")], layers=0))
    _fails("baseline", lambda: fit(model, None, EXAMPLES, layers=0))
    _fails("tokenizer", lambda: fit(model, None, EXAMPLES, layers=0, baseline=1))
    hidden = model.config.hidden_size
    _fails("examples[0].prompt", lambda: fit(model, tok, [Preference(torch.zeros(3, hidden + 1), [4], [5])], layers=0))
    nan = torch.full((3, hidden), float("nan"), dtype=torch.float64)
    _fails("examples[0].prompt", lambda: fit(model, tok, [Preference(nan, [4], [5])], layers=0))
    emb = torch.zeros(3, hidden, dtype=torch.float64)
    _fails("examples[0].baseline", lambda: fit(model, tok, [Preference(emb, [4], [5], baseline=emb[:2])], layers=0))
    _fails("examples[0].baseline", lambda: fit(model, tok, [Preference("the sky", [4], [5], baseline=emb)], layers=0))
    _fails("examples[0].fixed", lambda: fit(model, tok, [Preference(emb, [4], [5], fixed=3)], layers=0))
    _fails("neutral", lambda: perplexity(model, tok, []))
    _fails("neutral[0]", lambda: perplexity(model, tok, [" "]))
    _fails("n_fit", lambda: split(load_preferences(), 0))
    _fails("examples", lambda: load_preferences("no-such-set"))


def test_model_without_blocks_or_embeddings() -> None:
    tok = word_tokenizer()
    _fails("model", lambda: fit(torch.nn.Linear(3, 3), tok, EXAMPLES, layers=0), ModelError)
    _fails("model", lambda: fit(object(), tok, EXAMPLES, layers=0), ModelError)


def test_masking_that_changes_nothing_is_reported(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    hidden = model.config.hidden_size
    emb = torch.randn(4, hidden, dtype=torch.float64)
    # the baseline equals the prompt: masking changes no hidden state
    same = Preference(emb, [4], [5], baseline=emb.clone())
    _fails("examples", lambda: fit(model, tok, [same], layers=0, k=1, steps=4), ModelError)
