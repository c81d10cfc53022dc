"""Agreement with Inseq 0.7 (integrated_gradients, saliency, input_x_gradient) on the same model, prompt and steps."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from integrand.generation import GenerationExplainer

from .reference.generation_oracle import tiny_lm

inseq = pytest.importorskip("inseq")

PROMPT = "the capital of france is"


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: Any) -> tuple[Any, Any]:
    return tiny_lm(request.param)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_agrees_with_inseq(lm: tuple[Any, Any], method: str) -> None:
    model, tok = lm
    # Inseq's defaults: every position interpolated from the unk embedding, probability as the score.
    gx = GenerationExplainer(model, tok, baseline="unk", fixed=0, add_bos=False)
    ours = gx(
        PROMPT,
        target="paris and rome",
        method=method,
        score="probability",
        steps=16 if method == "integrated_gradients" else None,
    )
    wrapped = inseq.load_model(model, method, tokenizer=tok)
    kwargs = {"n_steps": 16} if method == "integrated_gradients" else {}
    out = wrapped.attribute(
        PROMPT, PROMPT + " paris and rome", show_progress=False, step_scores=["probability"], **kwargs
    )
    seq = out.sequence_attributions[0]
    assert [t.token for t in seq.target] == [tok.convert_ids_to_tokens(i) for i in ours.token_ids.tolist()]
    raw = seq.target_attributions.double()  # [tokens, targets, hidden], NaN where the token is not a source
    reduced = raw.norm(dim=-1) if method == "saliency" else raw.sum(dim=-1)
    theirs = torch.nan_to_num(reduced, nan=0.0).T[:, :-1]
    assert theirs.shape == ours.matrix.shape
    assert float((ours.matrix - theirs).abs().max() / theirs.abs().max()) <= 1e-5
    assert torch.allclose(ours.step_scores["probability"], seq.step_scores["probability"].double(), rtol=1e-6)
