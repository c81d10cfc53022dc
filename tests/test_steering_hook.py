"""The steering hook: per-token norm preservation, lambda = 0 identity, removal on exceptions, KV-cached generation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from integrand import InputError
from integrand.steering import SteeringVector, decoder_blocks, evaluate, fit, perplexity, preference_scores
from integrand.steering.hooks import capture, steer

from .test_steering import EXAMPLES
from .test_steering_models import tiny_gpt2, tiny_llama, word_tokenizer


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def setup(request: Any) -> tuple[Any, Any, SteeringVector]:
    tok = word_tokenizer()
    model = tiny_llama(len(tok)) if request.param == "llama" else tiny_gpt2(len(tok))
    return model, tok, fit(model, tok, EXAMPLES, layers=[0, 1], k=2, steps=8)


IDS = torch.tensor([[2, 4, 5, 6, 7, 8], [2, 25, 26, 8, 4, 27]])


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits  # type: ignore[no-any-return]


def test_steer_function_adds_then_restores_each_norm() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 8, generator=g, dtype=torch.float64) * torch.linspace(0.1, 10, 5)[:, None]
    v = torch.randn(8, generator=g, dtype=torch.float64)
    out = steer(hidden, v, 3.0)
    assert torch.allclose(out.norm(dim=-1), hidden.norm(dim=-1), rtol=1e-12)
    # the direction is that of h + 3 v
    expected = hidden + 3.0 * v
    cos = torch.nn.functional.cosine_similarity(out, expected, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-12)
    assert not torch.allclose(out, hidden)
    assert torch.equal(steer(hidden, v, 0.0), hidden)


def test_hook_preserves_every_token_norm(setup: tuple[Any, Any, SteeringVector]) -> None:
    model, _tok, vector = setup
    blocks = decoder_blocks(model)
    with capture(model, [0]) as plain:
        _logits(model)
    seen: list[torch.Tensor] = []
    handle = blocks[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with vector.apply(model, strength=5.0, layers=[0]):
            _logits(model)
    finally:
        handle.remove()
    original, steered = plain[0][0], seen[0]
    assert torch.allclose(steered.norm(dim=-1), original.norm(dim=-1), rtol=1e-12)
    assert float((steered - original).abs().max()) > 1e-3
    assert torch.allclose(steered, steer(original, vector.vectors[0], 5.0), atol=1e-12)


def test_strength_zero_is_bit_identical(setup: tuple[Any, Any, SteeringVector]) -> None:
    model, tok, vector = setup
    plain = _logits(model)
    with vector.apply(model, strength=0.0):
        zero = _logits(model)
        gen_zero = model.generate(input_ids=IDS, max_new_tokens=6, do_sample=False, pad_token_id=1)
    assert torch.equal(zero, plain)
    assert torch.equal(gen_zero, model.generate(input_ids=IDS, max_new_tokens=6, do_sample=False, pad_token_id=1))
    with vector.apply(model, strength=2.0):
        assert not torch.equal(_logits(model), plain)
    assert torch.equal(_logits(model), plain)  # and nothing lingers afterwards
    result = evaluate(model, tok, EXAMPLES, vector, strength=0.0, neutral=["the sky is blue"])
    assert result.accuracy_after == result.accuracy_before and result.margin_after == result.margin_before
    assert result.perplexity_after == result.perplexity_before


def test_hook_is_removed_after_an_exception(setup: tuple[Any, Any, SteeringVector], state_guard: Any) -> None:
    model, _tok, vector = setup
    guard = state_guard(model)
    plain = _logits(model)
    with pytest.raises(RuntimeError, match="boom"), vector.apply(model, strength=4.0):
        assert not torch.equal(_logits(model), plain)
        raise RuntimeError("boom")
    guard.assert_unchanged()
    assert torch.equal(_logits(model), plain)
    # an error raised inside the hook itself also leaves nothing behind
    wrong = SteeringVector({0: torch.ones(7, dtype=torch.float64)}, "m", "grains", "both", "pca", 2, 1)
    with pytest.raises(InputError) as info, wrong.apply(model, strength=1.0):
        pass
    assert info.value.argument == "vector"
    guard.assert_unchanged()


def test_kv_cached_generation_under_steering(setup: tuple[Any, Any, SteeringVector]) -> None:
    model, _tok, vector = setup
    prompt = IDS[:1]
    with vector.apply(model, strength=6.0):
        cached = model.generate(input_ids=prompt, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=1)
        uncached = model.generate(input_ids=prompt, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=1)
        # a manual greedy loop of full forwards under the same hook
        seq = prompt
        for _ in range(8):
            with torch.no_grad():
                nxt = model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, seq)
    plain = model.generate(input_ids=prompt, max_new_tokens=8, do_sample=False, pad_token_id=1)
    with vector.apply(model, strength=6.0), torch.no_grad():
        steered_logits = model(input_ids=cached[:, :-1]).logits
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=cached[:, :-1]).logits, steered_logits)
    assert cached.shape == plain.shape


def test_evaluate_matches_its_parts(setup: tuple[Any, Any, SteeringVector]) -> None:
    model, tok, vector = setup
    neutral = ["the sky is blue", "what color is the cat ?"]
    result = evaluate(model, tok, EXAMPLES, vector, strength=3.0, layers=[1], neutral=neutral)
    before = preference_scores(model, tok, EXAMPLES)
    with vector.apply(model, 3.0, layers=[1]):
        after = preference_scores(model, tok, EXAMPLES)
        ppl_after = perplexity(model, tok, neutral)
    assert result.accuracy_before == before.accuracy and result.accuracy_after == after.accuracy
    assert result.margin_after == pytest.approx(after.mean_margin, abs=1e-12)
    assert result.perplexity_before == pytest.approx(perplexity(model, tok, neutral), rel=1e-12)
    assert result.perplexity_after == pytest.approx(ppl_after, rel=1e-12)
    assert result.margin_after != result.margin_before and result.layers == (1,)


def test_perplexity_matches_per_text_oracle() -> None:
    tok = word_tokenizer()
    model = tiny_llama(len(tok))
    texts = ["the sky is blue", "what color is the cat ? the cat is red"]
    nll, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        nll -= float(logp.gather(-1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    assert perplexity(model, tok, texts) == pytest.approx(math.exp(nll / count), rel=1e-10)


def test_save_load_round_trip(setup: tuple[Any, Any, SteeringVector], tmp_path: Path) -> None:
    model, _tok, vector = setup
    path = vector.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(path)
    assert back.layers == vector.layers and back.method == vector.method and back.k == vector.k
    assert back.model_name == vector.model_name and back.n_examples == vector.n_examples
    assert back.explained == vector.explained and back.params == vector.params
    for a, b in ((back.vectors, vector.vectors), (back.positive, vector.positive), (back.negative, vector.negative)):
        assert a is not None and b is not None
        assert all(torch.equal(a[k], b[k]) for k in b)
    with back.apply(model, 2.0):
        loaded = _logits(model)
    with vector.apply(model, 2.0):
        assert torch.equal(loaded, _logits(model))
    sub = vector.select([1])
    assert sub.layers == (1,) and torch.equal(sub.vectors[1], vector.vectors[1])
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError):
        SteeringVector.load(tmp_path / "bad.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a steering vector"):
        SteeringVector.load(tmp_path / "other.safetensors")
