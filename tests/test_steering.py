"""Steering vectors: contrastive IG completeness, the whole-answer score, v = v+ - v-, PCA direction and sign."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from integrand.steering import (
    Encoder,
    Preference,
    contrastive_ig,
    fit,
    load_preferences,
    neutral_texts,
    preference_scores,
    reduce_shifts,
    split,
)
from integrand.steering.examples import as_preferences

from .test_steering_models import tiny_gpt2, tiny_llama, word_tokenizer

EXAMPLES = [
    ("the capital of france is", "paris", "rome"),
    ("what color is the sky ?", "blue", "green dark"),
    ("which dog is left ?", "the dog", "the cat is"),
    ("the image shows a cat", "yes", "no"),
    ("is the sky dark ?", "no", "yes true"),
]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def lm(request: Any) -> tuple[Any, Any]:
    tok = word_tokenizer(add_bos=request.param == "llama")
    model = tiny_llama(len(tok)) if request.param == "llama" else tiny_gpt2(len(tok))
    return model, tok


def _prompt_ids(tok: Any, prompt: str) -> list[int]:
    """The prompt's ids with the tokenizer's BOS in front (the encoder adds it when the tokenizer lacks it)."""
    ids = list(tok(prompt)["input_ids"])
    return ids if ids[:1] == [tok.bos_token_id] else [tok.bos_token_id, *ids]


def _oracle_logprob(model: Any, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """log P(answer | prompt) from one plain forward over the token ids."""
    seq = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logp = model(input_ids=seq).logits[0].log_softmax(-1)
    n = len(prompt_ids)
    return sum(float(logp[n - 1 + j, t]) for j, t in enumerate(answer_ids))


def test_whole_answer_scores_match_plain_forward(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    scores = preference_scores(model, tok, EXAMPLES, batch_size=2)
    for i, (prompt, good, bad) in enumerate(EXAMPLES):
        ids = _prompt_ids(tok, prompt)
        good_ids = tok(good, add_special_tokens=False)["input_ids"]
        bad_ids = tok(bad, add_special_tokens=False)["input_ids"]
        assert float(scores.preferred[i]) == pytest.approx(_oracle_logprob(model, ids, good_ids), abs=1e-9)
        assert float(scores.dispreferred[i]) == pytest.approx(_oracle_logprob(model, ids, bad_ids), abs=1e-9)
    margins = scores.preferred - scores.dispreferred
    assert scores.accuracy == pytest.approx(float((margins > 0).double().mean()))


def test_contrastive_ig_completeness(lm: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = lm
    encoder = Encoder(model, tok)
    guard = state_guard(model)
    for example in encoder.encode_all(EXAMPLES[:3]):
        result = contrastive_ig(model, encoder.embedding, example, steps=256)
        values = result.values
        assert isinstance(values, torch.Tensor) and values.shape == (1, *example.embeds.shape)
        total = float(result.score_input[0] - result.score_baseline[0])
        assert abs(total) > 1e-3  # a real contrast, not an empty check
        assert float(values.sum()) == pytest.approx(total, rel=1e-4)
        assert float(result.relative_error[0]) < 1e-4  # type: ignore[index]
        # the score at the input is the whole-answer contrast of a plain forward
        prompt = [int(i) for i in tok.convert_tokens_to_ids(list(example.tokens))]
        expected = _oracle_logprob(model, prompt, example.preferred.tolist()) - _oracle_logprob(
            model, prompt, example.dispreferred.tolist()
        )
        assert float(result.score_input[0]) == pytest.approx(expected, abs=1e-9)
        # fixed (BOS) positions are on the path at their real value and get nothing
        assert bool((values[0, : example.fixed] == 0).all())
    guard.assert_unchanged()


def test_contrastive_ig_error_control_meets_tol() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    encoder = Encoder(model, tok)
    example = encoder.encode_all(EXAMPLES[:1])[0]
    result = contrastive_ig(model, encoder.embedding, example, tol=1e-4)
    assert bool(result.converged.all())
    assert float(result.relative_error[0]) <= 1e-4  # type: ignore[index]


def test_v_equals_v_plus_minus_v_minus_and_variants() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    both = fit(model, tok, EXAMPLES, layers=[0, 2], k=2, steps=8)
    assert both.positive is not None and both.negative is not None
    for layer in (0, 2):
        assert torch.equal(both.vectors[layer], both.positive[layer] - both.negative[layer])
    positive = fit(model, tok, EXAMPLES, layers=[0, 2], k=2, steps=8, variant="positive")
    negative = fit(model, tok, EXAMPLES, layers=[0, 2], k=2, steps=8, variant="negative")
    for layer in (0, 2):
        assert torch.equal(positive.vectors[layer], both.positive[layer])
        assert torch.equal(negative.vectors[layer], -both.negative[layer])
    assert both.layers == (0, 2) and both.n_examples == len(EXAMPLES) and both.k == 2
    assert both.params["examples"][0]["positive_tokens"]  # provenance of what was masked


def _shift_oracle(model: Any, tok: Any, example: tuple[str, str, str], layer: int, masked: list[int]) -> torch.Tensor:
    """h(prompt) - h(prompt with ``masked`` positions replaced by the pad token), last position, block ``layer``."""
    ids = _prompt_ids(tok, example[0])
    other = list(ids)
    for i in masked:
        other[i] = tok.pad_token_id
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids, other]), output_hidden_states=True).hidden_states[layer + 1]
    return hs[0, -1] - hs[1, -1]


def test_grains_shift_matches_masking_oracle() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    vector = fit(model, tok, EXAMPLES[:1], layers=[0, 1], k=2, steps=32, reducer="mean")
    info = vector.params["examples"][0]
    encoder = Encoder(model, tok)
    example = encoder.encode_all(EXAMPLES[:1])[0]
    scores = contrastive_ig(model, encoder.embedding, example, steps=32).values[0].sum(-1)  # type: ignore[union-attr]
    top = (scores[1:-1].topk(2).indices + 1).tolist()  # BOS fixed, the read-out position never masked
    bottom = ((-scores[1:-1]).topk(2).indices + 1).tolist()
    assert info["positive_positions"] == top and info["negative_positions"] == bottom
    assert info["positive_tokens"] == [example.tokens[i] for i in top]
    for layer in (0, 1):  # hidden_states[l + 1] is block l's output for all but the last block
        pos = _shift_oracle(model, tok, EXAMPLES[0], layer, top)
        neg = _shift_oracle(model, tok, EXAMPLES[0], layer, bottom)
        assert vector.positive is not None and vector.negative is not None
        assert torch.allclose(vector.positive[layer], pos / pos.norm(), atol=1e-10)
        assert torch.allclose(vector.negative[layer], neg / neg.norm(), atol=1e-10)


def test_mean_diff_matches_caa_oracle() -> None:
    tok = word_tokenizer()
    model = tiny_gpt2(len(tok))
    vector = fit(model, tok, EXAMPLES, layers=1, method="mean-diff")
    shifts = []
    for prompt, good, bad in EXAMPLES:
        ids = _prompt_ids(tok, prompt)
        h = []
        for answer in (good, bad):
            seq = ids + tok(answer, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                h.append(model(input_ids=torch.tensor([seq]), output_hidden_states=True).hidden_states[2][0, -1])
        shifts.append(h[0] - h[1])
    mean = torch.stack(shifts).mean(0)
    assert torch.allclose(vector.vectors[1], mean / mean.norm(), atol=1e-10)
    assert vector.method == "mean-diff" and vector.reducer == "mean" and vector.k is None


def test_pca_direction_unit_norm_and_deterministic_sign() -> None:
    g = torch.Generator().manual_seed(1)
    direction = torch.randn(16, generator=g, dtype=torch.float64)
    direction /= direction.norm()
    coeff = 2.0 + torch.rand(40, generator=g, dtype=torch.float64)  # all shifts point the same way
    shifts = coeff[:, None] * direction + 0.05 * torch.randn(40, 16, generator=g, dtype=torch.float64)
    v, explained = reduce_shifts(shifts, "pca")
    assert float(v.norm()) == pytest.approx(1.0, abs=1e-12)
    assert float(v @ direction) > 0.99  # recovers the shared direction with the sign of the shifts
    assert 0.9 < explained <= 1.0
    flipped, _ = reduce_shifts(-shifts, "pca")
    assert torch.allclose(flipped, -v, atol=1e-12)
    shuffled, _ = reduce_shifts(shifts[torch.randperm(40, generator=g)], "pca")
    assert torch.allclose(shuffled, v, atol=1e-10)
    rank_one, share = reduce_shifts(coeff[:, None] * direction, "pca")
    assert share == pytest.approx(1.0, abs=1e-12) and torch.allclose(rank_one, direction, atol=1e-12)
    mean_v, _ = reduce_shifts(shifts, "mean")
    assert torch.allclose(mean_v, shifts.mean(0) / shifts.mean(0).norm(), atol=1e-12)


def test_fitted_directions_point_from_dispreferred_to_preferred() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    vector = fit(model, tok, EXAMPLES, layers=[1], k=2, steps=8)
    again = fit(model, tok, list(reversed(EXAMPLES)), layers=[1], k=2, steps=8)
    assert vector.positive is not None and vector.negative is not None
    for part in (vector.positive, vector.negative):
        assert float(part[1].norm()) == pytest.approx(1.0, abs=1e-12)
    # same examples in another order: the same vector, sign included
    assert torch.allclose(vector.vectors[1], again.vectors[1], atol=1e-10)
    # v+ agrees with the mean shift from masking pro-preferred tokens (h(x) - h(masked+)), v- with the
    # mean shift from masking pro-dispreferred tokens; so v = v+ - v- points to preferred.
    infos = vector.params["examples"]
    pos = [_shift_oracle(model, tok, e, 1, i["positive_positions"]) for e, i in zip(EXAMPLES, infos)]
    neg = [_shift_oracle(model, tok, e, 1, i["negative_positions"]) for e, i in zip(EXAMPLES, infos)]
    assert float(vector.positive[1] @ torch.stack(pos).mean(0)) > 0
    assert float(vector.negative[1] @ torch.stack(neg).mean(0)) > 0


def test_embedding_prompts_equal_token_prompts() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    encoder = Encoder(model, tok)
    token_example = encoder.encode_all(EXAMPLES[:1])[0]
    template = encoder.prompt_embeddings([EXAMPLES[0][0]])
    assert isinstance(template.prompt, torch.Tensor) and torch.equal(template.prompt, token_example.embeds)
    as_embeds = dataclasses.replace(template, preferred=EXAMPLES[0][1], dispreferred=EXAMPLES[0][2])
    a = fit(model, tok, EXAMPLES[:1], layers=[0], k=2, steps=8)
    b = fit(model, tok, [as_embeds], layers=[0], k=2, steps=8)
    assert torch.allclose(a.vectors[0], b.vectors[0], atol=1e-12)


def test_shipped_preference_set_and_split() -> None:
    examples = load_preferences("facts")
    assert len(examples) >= 100
    for e in examples:
        assert isinstance(e.prompt, str) and e.preferred != e.dispreferred
    fit_set, held = split(examples, 40, seed=0)
    assert len(fit_set) == 40 and len(held) == len(examples) - 40
    assert {id(e) for e in fit_set}.isdisjoint({id(e) for e in held})
    assert split(examples, 40, seed=0) == (fit_set, held)
    assert split(examples, 40, seed=1)[0] != fit_set
    assert len(neutral_texts()) >= 5
    assert as_preferences([{"prompt": "a", "preferred": "b", "dispreferred": "c"}])[0] == Preference("a", "b", "c")
