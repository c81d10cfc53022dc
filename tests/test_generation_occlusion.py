"""``method="occlusion"`` of GenerationExplainer against a one-position-at-a-time loop on tiny LMs."""

from __future__ import annotations

import pytest
import torch

from integrand.errors import InputError
from integrand.generation import GenerationExplainer

from .reference.generation_oracle import tiny_lm

PROMPT = "the capital of france is"


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_occlusion_equals_the_leave_one_out_loop(kind: str) -> None:
    model, tok = tiny_lm(kind)
    gx = GenerationExplainer(model, tok)
    res = gx(PROMPT, target="paris paris", method="occlusion")
    assert res.method == "occlusion" and res.delta is None and bool(res.converged.all())
    ids = res.token_ids
    emb = model.get_input_embeddings()
    removed = gx.baseline_embedding("mean")

    def log_p(e: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            lp = model(inputs_embeds=e[None]).logits[0].log_softmax(-1)
        return torch.stack([lp[res.n_prompt - 1 + k, ids[res.n_prompt + k]] for k in range(len(res.target_tokens))])

    with torch.no_grad():
        x = emb(ids[None])[0]
    full = log_p(x)
    assert torch.allclose(res.step_scores["log_probability"], full.to(res.matrix.dtype))
    fixed = len(res.fixed_positions)
    for j in range(len(ids) - 1):
        e = x.clone()
        e[j] = removed
        expected = full - log_p(e) if j >= fixed else torch.zeros_like(full)
        for k in range(len(res.target_tokens)):
            want = float(expected[k]) if j < res.n_prompt + k else 0.0
            assert float(res.matrix[k, j]) == pytest.approx(want, abs=1e-9), (j, k)
    assert float(res.matrix.abs().sum()) > 0


def test_occlusion_refuses_what_it_cannot_explain() -> None:
    model, tok = tiny_lm("gpt2")
    gx = GenerationExplainer(model, tok)
    with pytest.raises(InputError) as info:
        gx(PROMPT, target="paris", contrast="lyon", method="occlusion")
    assert info.value.argument == "method"
