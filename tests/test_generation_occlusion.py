"""``method="occlusion"`` of GenerationExplainer against a one-position-at-a-time loop on tiny LMs."""

from __future__ import annotations

import pytest
import torch

from integrand.errors import InputError
from integrand.generation import GenerationExplainer

from .reference.generation_oracle import tiny_lm, word_tokenizer

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


def _oracle_score(name: str, logits: torch.Tensor, target: int, foil: int, other: torch.Tensor) -> float:
    """The step functions written out from their definitions (``other``: log-distribution under contrast_prompt)."""
    logits = logits.double()
    logp = logits.log_softmax(-1)
    p = logp.exp()
    values = {
        "logit": logits[target],
        "probability": p[target],
        "log_probability": logp[target],
        "entropy": -(p * logp).sum(),
        "contrast_logit_diff": logits[target] - logits[foil],
        "contrast_prob_diff": p[target] - p[foil],
        "contrast_log_prob_diff": logp[target] - logp[foil],
        "kl_divergence": (p * (logp - other.double())).sum(),
    }
    return float(values[name])


SCORES = [
    "logit",
    "probability",
    "log_probability",
    "entropy",
    "contrast_logit_diff",
    "contrast_prob_diff",
    "contrast_log_prob_diff",
    "kl_divergence",
]


@pytest.mark.parametrize("score", SCORES)
def test_occlusion_of_every_score_equals_the_loop(score: str) -> None:
    model, tok = tiny_lm("llama")
    gx = GenerationExplainer(model, tok)
    target, foil_text, other_prompt = "paris rome", "lyon paris", "hello world"
    res = gx(PROMPT, target=target, contrast=foil_text, contrast_prompt=other_prompt, score=score, method="occlusion")
    assert res.method == "occlusion" and res.score == score and res.params["method"] == "occlusion"
    assert res.delta is None and bool(res.converged.all())
    ids = res.token_ids
    targets = ids[res.n_prompt :].tolist()
    foils = tok(foil_text, add_special_tokens=False)["input_ids"]
    other_ids = gx._encode(other_prompt, add_special_tokens=True)
    with torch.no_grad():
        q = model(input_ids=torch.tensor([other_ids + targets])).logits[0].log_softmax(-1)[len(other_ids) - 1 :]
    emb = model.get_input_embeddings()
    removed = gx.baseline_embedding("mean")

    def scores(e: torch.Tensor) -> list[float]:
        with torch.no_grad():
            logits = model(inputs_embeds=e[None]).logits[0]
        return [
            _oracle_score(score, logits[res.n_prompt - 1 + k], targets[k], foils[k], q[k]) for k in range(len(targets))
        ]

    with torch.no_grad():
        x = emb(ids[None])[0]
    full = scores(x)
    assert res.score_input.tolist() == pytest.approx(full, abs=1e-10)
    fixed = len(res.fixed_positions)
    assert fixed == 1  # the llama tokenizer's BOS stays
    for j in range(len(ids) - 1):
        e = x.clone()
        e[j] = removed
        occluded = scores(e)
        for k in range(len(targets)):
            want = full[k] - occluded[k] if fixed <= j < res.n_prompt + k else 0.0
            assert float(res.matrix[k, j]) == pytest.approx(want, abs=1e-9), (j, k)
    assert float(res.matrix.abs().sum()) > 0


def test_occlusion_is_the_default_and_logs_step_scores() -> None:
    from integrand.generation.explainer import DEFAULT_METHOD

    assert DEFAULT_METHOD == "occlusion"
    model, tok = tiny_lm("gpt2")
    res = GenerationExplainer(model, tok)(PROMPT, target="paris rome", contrast="lyon paris")
    assert res.method == "occlusion" and res.params["method"] == "occlusion" and res.params["exact"] is True
    assert res.score == "contrast_log_prob_diff"
    logp = res.step_scores["log_probability"]
    assert torch.allclose(res.step_scores["probability"], logp.exp())
    assert set(res.step_scores) >= {"probability", "log_probability", "entropy", "contrast_log_prob_diff"}
    assert torch.allclose(res.step_scores["contrast_log_prob_diff"], res.score_input)


def test_occlusion_refuses_what_it_cannot_explain() -> None:
    model, tok = tiny_lm("gpt2")
    gx = GenerationExplainer(model, tok)
    with pytest.raises(InputError) as info:
        gx(PROMPT, target="paris", score="kl_divergence", method="occlusion")
    assert info.value.argument == "contrast_prompt"
    with pytest.raises(InputError) as info:
        gx(PROMPT, target="paris", score="contrast_log_prob_diff", method="occlusion")
    assert info.value.argument == "contrast"
    # Integration options mean the caller expected integrated gradients (the default before occlusion).
    for option, value in [("steps", 8), ("tol", 1e-3), ("max_steps", 9), ("rule", "trapezoid"), ("atol", 0.1)]:
        with pytest.raises(InputError) as info:
            gx(PROMPT, target="paris", **{option: value})
        assert info.value.argument == option and "integrated_gradients" in str(info.value)
    with pytest.raises(InputError) as info:
        gx(PROMPT, target="paris", gradient_mode="reverse")
    assert info.value.argument == "gradient_mode"


def test_token_baseline_is_the_removal_vector() -> None:
    model, tok = tiny_lm("gpt2")
    gx = GenerationExplainer(model, tok)
    res = gx(PROMPT, target="paris", baseline="eos")
    assert res.params["removal"] == "eos" and gx(PROMPT, target="paris").params["removal"] == "mean"
    ids = res.token_ids
    with torch.no_grad():
        x = model.get_input_embeddings()(ids[None])[0]
        e = x.clone()
        e[2] = gx.baseline_embedding("eos")
        lp = [model(inputs_embeds=v[None]).logits[0, -2].log_softmax(-1)[ids[-1]] for v in (x, e)]
    assert float(res.matrix[0, 2]) == pytest.approx(float(lp[0] - lp[1]), abs=1e-9)


def test_cli_refuses_steps_with_occlusion(capsys: pytest.CaptureFixture[str]) -> None:
    from integrand.cli import main

    assert main(["generate", PROMPT, "--steps", "8"])  # refused before any model loads == 2
    err = capsys.readouterr().err
    assert "--steps" in err and "--method integrated_gradients" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_seq2seq_occlusion_equals_the_loop(kind: str) -> None:
    from .reference.seq2seq_oracle import tiny_bart, tiny_t5

    tok = word_tokenizer(add_bos=False)
    model = {"t5": tiny_t5, "bart": tiny_bart}[kind](len(tok))
    gx = GenerationExplainer(model, tok)
    res = gx(PROMPT, target="paris and rome .", contrast="lyon rome . and")
    assert res.method == "occlusion" and res.score == "contrast_log_prob_diff" and res.n_encoder is not None
    n, ids = res.n_encoder, res.token_ids
    targets = ids[res.n_prompt :].tolist()
    foils = tok("lyon rome . and", add_special_tokens=False)["input_ids"]
    emb = model.get_input_embeddings()
    removed = gx.baseline_embedding("mean")
    with torch.no_grad():
        src, dec = emb(ids[None, :n])[0], emb(ids[None, n:-1])[0]

    def scores(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            lp = model(inputs_embeds=s[None], decoder_inputs_embeds=d[None]).logits[0].double().log_softmax(-1)
        k = torch.arange(len(targets))
        return lp[k, targets] - lp[k, foils]

    full = scores(src, dec)
    assert torch.allclose(res.score_input.double(), full, atol=1e-10)
    assert n in res.fixed_positions  # the decoder start token
    for j in range(len(ids) - 1):
        s, d = src.clone(), dec.clone()
        if j < n:
            s[j] = removed
        else:
            d[j - n] = removed
        effect = full - scores(s, d)
        for k in range(len(targets)):
            want = float(effect[k]) if j != n and j < res.n_prompt + k else 0.0
            assert float(res.matrix[k, j]) == pytest.approx(want, abs=1e-9), (j, k)
    assert float(res.matrix[:, :n].abs().sum()) > 0 and float(res.matrix[:, n + 1 :].abs().sum()) > 0
