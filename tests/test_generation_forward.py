"""Forward-mode generation attribution: equal to reverse mode and to per-prefix attribution; mode choice."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from integrand import InputError, ModelError
from integrand.generation import GenerationExplainer
from integrand.generation import runner as runner_module

from .reference.generation_oracle import (
    SPECIALS,
    WORDS,
    prefix_attribution,
    tiny_lm,
)

PROMPTS = ["the capital of france is", "paris", "a big red dog sat on the mat and"]
TARGETS = ["paris city", "is the capital of france", "the cat"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: Any) -> tuple[Any, Any]:
    return tiny_lm(request.param)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _both(gx: GenerationExplainer, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return gx(*args, gradient_mode="reverse", **kwargs), gx(*args, gradient_mode="forward", **kwargs)


@pytest.mark.parametrize(
    ("method", "options"),
    [("integrated_gradients", {"steps": 8}), ("input_x_gradient", {}), ("integrated_gradients", {"tol": 1e-4})],
)
def test_forward_equals_reverse_on_a_left_padded_batch(
    lm: tuple[Any, Any], method: str, options: dict[str, Any], state_guard: Any
) -> None:
    model, tok = lm
    guard = state_guard(model)
    flags = (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled())
    reverse, forward = _both(GenerationExplainer(model, tok), PROMPTS, target=TARGETS, method=method, **options)
    guard.assert_unchanged()
    assert (torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled()) == flags
    for r, f in zip(reverse, forward):
        assert f.params["gradient_mode"] == "forward" and r.params["gradient_mode"] == "reverse"
        assert _rel(f.matrix, r.matrix) <= 1e-6
        assert torch.allclose(f.score_input, r.score_input, rtol=1e-9, atol=1e-12)
        assert torch.equal(f.steps, r.steps) and torch.equal(f.converged, r.converged)
        if f.delta is not None and r.delta is not None:
            assert torch.allclose(f.delta, r.delta, atol=1e-6 * float(r.score_input.abs().max()))
        # Later tokens never matter, and for IG neither do fixed positions: exact zeros.
        for k in range(len(f.target_tokens)):
            assert bool((f.matrix[k, f.n_prompt + k :] == 0).all())
        if method == "integrated_gradients":
            assert bool((f.matrix[:, list(f.fixed_positions)] == 0).all())


def test_forward_equals_per_prefix_attribution(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    res = GenerationExplainer(model, tok)(
        PROMPTS[0], target="paris and rome", method="integrated_gradients", steps=12, gradient_mode="forward"
    )
    with torch.no_grad():
        mean = model.get_input_embeddings().weight[len(SPECIALS) : len(tok)].mean(dim=0)

    def log_prob(logits: torch.Tensor, target: int) -> torch.Tensor:
        return logits.log_softmax(-1)[target]

    ref, scores = prefix_attribution(
        model, res.token_ids.tolist(), res.n_prompt, log_prob, mean, len(res.fixed_positions), steps=12
    )
    assert _rel(res.matrix, ref) <= 1e-5
    assert torch.allclose(res.score_input, scores, rtol=1e-9, atol=1e-12)


def test_contrast_chunking_and_full_head_path_agree(lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = lm
    kwargs: dict[str, Any] = dict(target=["paris city", "rome and"], contrast=["lyon river", "berlin on"], steps=6)
    kwargs["method"] = "integrated_gradients"
    reverse, forward = _both(GenerationExplainer(model, tok), PROMPTS[:2], **kwargs)
    assert forward[0].score == "contrast_log_prob_diff"
    # batch_size=1 leaves fewer tangent rows per pass than sources: tangents split into groups.
    tiny = GenerationExplainer(model, tok, batch_size=1)(PROMPTS[:2], gradient_mode="forward", **kwargs)
    monkeypatch.setattr(runner_module.Runner, "try_split_head", lambda self, batch, embeds: False)
    full = GenerationExplainer(model, tok)(PROMPTS[:2], gradient_mode="forward", **kwargs)
    assert full[0].params["split_head"] is False and forward[0].params["split_head"] is True
    for r, f, t, u in zip(reverse, forward, tiny, full):
        assert _rel(f.matrix, r.matrix) <= 1e-6
        assert _rel(t.matrix, f.matrix) <= 1e-10 and _rel(u.matrix, f.matrix) <= 1e-6


def test_auto_picks_forward_only_when_fewer_sources_than_targets(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    # Every interpolated target token is a source for the later ones, so usually S >= T: reverse.
    usual = gx(PROMPTS[0], target="paris city", method="integrated_gradients", steps=4)
    assert usual.params["gradient_mode"] == "reverse"
    assert usual.params["gradient_mode_note"].endswith(">= 2 target tokens")
    # Targets equal to the baseline token have a zero IG direction: 1-2 sources, 6 targets.
    the = WORDS.index("the") + len(SPECIALS)
    auto = gx("paris", target="the the the the the the", baseline=the, method="integrated_gradients", steps=6)
    n_src = 1  # "paris" ("<s>" is fixed for Llama)
    assert auto.params["gradient_mode"] == "forward"
    assert auto.params["gradient_mode_note"] == f"{n_src} source positions < 6 target tokens"
    rev = gx(
        "paris",
        target="the the the the the the",
        baseline=the,
        method="integrated_gradients",
        steps=6,
        gradient_mode="reverse",
    )
    assert _rel(auto.matrix, rev.matrix) <= 1e-6
    # Input x gradient: every input embedding is a direction; saliency: never forward.
    ixg = gx("paris", target="the the the the the the", method="input_x_gradient")
    assert ixg.params["gradient_mode"] == "reverse"
    sal = gx("paris", target="the the the the the the", method="saliency")
    assert sal.params["gradient_mode"] == "reverse" and "saliency" in sal.params["gradient_mode_note"]


class _NoJvpTanh(torch.autograd.Function):
    """tanh with a backward formula only: forward-mode AD has nothing to run."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class _NoJvpAct(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _NoJvpTanh.apply(x)
        return out


def test_model_without_forward_ad_falls_back_or_raises(lm: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = lm
    model = copy.deepcopy(model)
    mlp = model.transformer.h[0].mlp if hasattr(model, "transformer") else model.model.layers[0].mlp
    mlp.act = _NoJvpAct()
    if hasattr(mlp, "act_fn"):
        mlp.act_fn = mlp.act
    guard = state_guard(model)
    gx = GenerationExplainer(model, tok)
    the = WORDS.index("the") + len(SPECIALS)
    auto = gx("paris", target="the the the the the the", baseline=the, method="integrated_gradients", steps=4)
    assert auto.params["gradient_mode"] == "reverse"
    assert auto.params["gradient_mode_note"].startswith("forward-mode AD unavailable")
    with pytest.raises(ModelError, match="forward-mode AD is not available"):
        gx(
            "paris",
            target="the the the the the the",
            baseline=the,
            method="integrated_gradients",
            steps=4,
            gradient_mode="forward",
        )
    guard.assert_unchanged()


@pytest.mark.parametrize("mode", ["Forward", "fwd", None, 1])
def test_bad_gradient_mode_names_the_argument(lm: tuple[Any, Any], mode: Any, state_guard: Any) -> None:
    model, tok = lm
    guard = state_guard(model)
    with pytest.raises(InputError) as info:
        GenerationExplainer(model, tok)(PROMPTS[0], target="paris", gradient_mode=mode)
    assert info.value.argument == "gradient_mode"
    with pytest.raises(InputError) as info:
        GenerationExplainer(model, tok)(PROMPTS[0], target="paris", method="saliency", gradient_mode="forward")
    assert info.value.argument == "gradient_mode" and "full gradient" in str(info.value)
    guard.assert_unchanged()


def test_chat_accepts_gradient_mode(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    tok = copy.deepcopy(tok)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
    messages = [{"role": "user", "content": "what is the capital of france ?"}]
    gx = GenerationExplainer(model, tok)
    reverse = gx.chat(messages, target="paris city", method="ig", steps=4, gradient_mode="reverse")
    forward = gx.chat(messages, target="paris city", method="ig", steps=4, gradient_mode="forward")
    assert forward.params["gradient_mode"] == "forward" and _rel(forward.matrix, reverse.matrix) <= 1e-6
