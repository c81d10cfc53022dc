"""Generation attribution on tiny GPT-2 and Llama models: equality with per-prefix attribution and invariants."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from integrand import ConvergenceWarning, InputError, ModelError
from integrand import integrate as integrate_module
from integrand.generation import GenerationAttribution, GenerationExplainer, StepArgs
from integrand.generation import runner as runner_module

from .reference.generation_oracle import SPECIALS, prefix_attribution, tiny_gpt2, tiny_lm, word_tokenizer

PROMPT = "the capital of france is"


def _log_prob(logits: torch.Tensor, target: int) -> torch.Tensor:
    return logits.log_softmax(-1)[target]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: Any) -> tuple[Any, Any]:
    return tiny_lm(request.param)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_equals_per_target_prefix_attribution(lm: tuple[Any, Any], method: str, state_guard: Any) -> None:
    model, tok = lm
    guard = state_guard(model)
    res = GenerationExplainer(model, tok)(PROMPT, max_new_tokens=5, method=method, steps=12)
    guard.assert_unchanged()
    assert res.matrix.shape == (len(res.target_tokens), len(res.tokens) - 1)
    # Default baseline: the mean embedding of the ordinary (non-special) tokens.
    assert res.params["baseline"] == "mean" and res.params["baseline_token_id"] is None
    with torch.no_grad():
        mean = model.get_input_embeddings().weight[len(SPECIALS) : len(tok)].mean(dim=0)
    ref, scores = prefix_attribution(
        model,
        res.token_ids.tolist(),
        res.n_prompt,
        _log_prob,
        mean,
        len(res.fixed_positions),
        method,
        steps=12,
    )
    assert _rel(res.matrix, ref) <= 1e-5
    assert torch.allclose(res.score_input, scores, rtol=1e-9, atol=1e-12)
    # Later tokens never matter, fixed positions carry nothing along the path.
    for k in range(len(res.target_tokens)):
        assert bool((res.matrix[k, res.n_prompt + k :] == 0).all())
    if method == "integrated_gradients":
        assert bool((res.matrix[:, list(res.fixed_positions)] == 0).all())


def test_generated_tokens_are_greedy(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    res = GenerationExplainer(model, tok)(PROMPT, max_new_tokens=4, method="integrated_gradients", steps=4)
    ids = res.token_ids[None, : res.n_prompt]
    with torch.no_grad():
        for k in range(len(res.target_tokens)):
            nxt = int(model(ids).logits[0, -1].argmax())
            assert nxt == int(res.token_ids[res.n_prompt + k])
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    # Greedy tokens are the most probable ones: the logged probability is the max of the distribution.
    assert bool((res.step_scores["probability"] > 0).all())


def test_error_control_converges_and_agrees_with_a_fine_rule(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = gx(PROMPT, max_new_tokens=4, method="integrated_gradients", tol=1e-4)
    assert bool(res.converged.all())
    assert res.relative_error is not None and float(res.relative_error.max()) <= 1e-4
    fine = gx(PROMPT, max_new_tokens=4, method="integrated_gradients", steps=64)
    assert _rel(res.matrix, fine.matrix) <= 1e-3
    # The result names the rule that produced it: Clenshaw-Curtis alone ends at 5, 9, 17 or 33 points.
    assert bool((res.steps == res.steps[0]).all())
    cc_alone = int(res.steps[0]) in (5, 9, 17, 33)
    assert res.params["rule"] == ("clenshaw-curtis" if cc_alone else "clenshaw-curtis+bisection")


def test_tolerance_below_float32_rounding_converges_at_the_noise_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = word_tokenizer(add_bos=False)
    model = tiny_gpt2(len(tok), dtype=torch.float32)
    gx = GenerationExplainer(model, tok)
    res = gx(PROMPT, target="paris city", method="integrated_gradients", tol=1e-12, max_steps=513)
    assert bool(res.converged.all()) and all(res.params["at_noise_floor"])
    assert int(res.steps[0]) < 513 and res.params["noise_ulps"] == integrate_module.NOISE_ULPS
    floor = torch.tensor(res.params["noise_floor"])
    assert res.delta is not None and bool((res.delta.abs() <= floor).all())
    # The floor is a few ulps of the quantities involved: far below any usable tolerance.
    scale = (res.score_input.abs() + res.score_baseline.abs()).double() if res.score_baseline is not None else None
    assert scale is not None and bool((floor >= integrate_module.NOISE_ULPS * 1.1920929e-07 * scale).all())
    assert res.relative_error is not None and float(res.relative_error.max()) < 1e-4
    # Without the floor the same request cannot be certified and runs to max_steps.
    monkeypatch.setattr(integrate_module, "NOISE_ULPS", 0.0)
    with pytest.warns(ConvergenceWarning):
        blind = gx(PROMPT, target="paris city", method="integrated_gradients", tol=1e-12, max_steps=129)
    assert int(blind.steps[0]) >= 129 - integrate_module.POINTS_PER_SPLIT and not bool(blind.converged.all())


def test_noise_floor_leaves_float64_error_control_unchanged(
    lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    res = gx(PROMPT, target="paris city", method="integrated_gradients", tol=1e-6)
    assert bool(res.converged.all()) and not any(res.params["at_noise_floor"])
    monkeypatch.setattr(integrate_module, "NOISE_ULPS", 0.0)
    blind = gx(PROMPT, target="paris city", method="integrated_gradients", tol=1e-6)
    assert torch.equal(res.steps, blind.steps) and torch.equal(res.matrix, blind.matrix)


def test_non_convergence_is_flagged(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    with pytest.warns(ConvergenceWarning):
        res = GenerationExplainer(model, tok)(
            PROMPT, target="paris city", method="integrated_gradients", tol=1e-12, max_steps=9
        )
    assert not bool(res.converged.all())
    assert "NOT CONVERGED" in res.summary()


def test_batch_with_left_padding_equals_one_at_a_time(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    prompts = ["the capital of france is", "hello world", "a big red dog sat on the mat and"]
    targets = ["paris", "it was a cat", "the cat"]
    batched = gx(prompts, target=targets, method="integrated_gradients", steps=8)
    for p, t, res in zip(prompts, targets, batched):
        one = gx(p, target=t, method="integrated_gradients", steps=8)
        assert one.tokens == res.tokens
        assert _rel(res.matrix, one.matrix) <= 1e-8
        assert torch.allclose(res.delta, one.delta, atol=1e-10)  # type: ignore[arg-type]


def test_chunked_and_full_head_paths_agree(lm: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = lm
    ref = GenerationExplainer(model, tok)(PROMPT, target="paris and rome", method="integrated_gradients", steps=6)
    assert ref.params["split_head"] is True
    chunked = GenerationExplainer(model, tok, batch_size=4)(
        PROMPT, target="paris and rome", method="integrated_gradients", steps=6
    )
    assert _rel(chunked.matrix, ref.matrix) <= 1e-10
    monkeypatch.setattr(runner_module.Runner, "try_split_head", lambda self, batch, embeds: False)
    full = GenerationExplainer(model, tok)(PROMPT, target="paris and rome", method="integrated_gradients", steps=6)
    assert full.params["split_head"] is False
    assert _rel(full.matrix, ref.matrix) <= 1e-10


def test_contrastive_target_is_the_difference_of_two_attributions(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    both = gx(PROMPT, target="paris", contrast="lyon", method="integrated_gradients", steps=10)
    assert both.score == "contrast_log_prob_diff"
    a = gx(PROMPT, target="paris", method="integrated_gradients", steps=10)
    b = gx(PROMPT, target="lyon", method="integrated_gradients", steps=10)
    assert torch.allclose(both.matrix, a.matrix - b.matrix, atol=1e-10)
    logit_diff = gx(
        PROMPT, target="paris", contrast="lyon", score="contrast_logit_diff", method="integrated_gradients", steps=10
    )
    assert torch.allclose(logit_diff.score_input, both.score_input, atol=1e-9)  # log-softmax shift cancels


def test_step_functions_as_target_and_logged(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    gx = GenerationExplainer(model, tok)
    res = gx(
        PROMPT, target="paris city", score="probability", log_scores=["logit"], method="integrated_gradients", steps=6
    )
    logp = res.step_scores["log_probability"]
    assert torch.allclose(res.step_scores["probability"], logp.exp(), atol=1e-12)
    ids = res.token_ids[None, : res.n_prompt + 1]
    with torch.no_grad():
        logits = model(ids).logits[0, -2:]
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(res.step_scores["entropy"], dist.entropy(), atol=1e-10)
    assert torch.allclose(res.step_scores["logit"], logits.gather(1, res.token_ids[res.n_prompt :, None])[:, 0])
    # KL to the distribution under the same prompt is zero at the input.
    kl = gx(
        PROMPT,
        target="paris city",
        score="kl_divergence",
        contrast_prompt=PROMPT,
        method="integrated_gradients",
        steps=4,
    )
    assert float(kl.score_input.abs().max()) < 1e-10

    def margin(args: StepArgs) -> torch.Tensor:  # a user-defined step function
        top2 = args.logits.topk(2, dim=-1).values
        return top2[:, 0] - top2[:, 1]

    custom = gx(PROMPT, target="paris", score=margin, method="integrated_gradients", steps=6)
    assert custom.score == "margin" and custom.delta is not None


def test_chat_template_groups_messages(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
        "{% if add_generation_prompt %}assistant : {% endif %}"
    )
    messages = [
        {"role": "system", "content": "a big cat"},
        {"role": "user", "content": "what is the capital of france ?"},
    ]
    res = GenerationExplainer(model, tok).chat(messages, target="paris", method="integrated_gradients", steps=6)
    names, grouped = res.grouped()
    assert names == ["0:system", "1:user", "generation prompt"]
    assert res.source_groups is not None and res.source_groups["generation prompt"][1] == res.n_prompt
    assert torch.allclose(grouped.sum(dim=1), res.matrix[:, : res.n_prompt].sum(dim=1), atol=1e-12)


def test_save_load_html_and_summary(lm: tuple[Any, Any], tmp_path: Any) -> None:
    model, tok = lm
    res = GenerationExplainer(model, tok)(PROMPT, target="paris <unk> city", method="integrated_gradients", tol=1e-3)
    back = GenerationAttribution.load(res.save(tmp_path / "gen.safetensors"))
    assert back.tokens == res.tokens and back.n_prompt == res.n_prompt and back.params == res.params
    assert torch.equal(back.matrix, res.matrix) and torch.equal(back.converged, res.converged)
    assert back.step_scores.keys() == res.step_scores.keys()
    html = res.to_html(title="<b>x</b>")
    assert "&lt;unk&gt;" in html and "<unk>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert html.count("<tr>") == 1 + len(res.target_tokens)
    assert "'paris'" in res.summary()


BAD = [
    (dict(prompt=""), "prompt"),
    (dict(prompt="   "), "prompt"),
    (dict(target=""), "target"),
    (dict(target="   "), "target"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(prompt="the " * 70), "prompt"),
    (dict(max_new_tokens=60), "prompt"),
    (dict(method="lime"), "method"),
    (dict(steps=8, tol=1e-2), "steps"),
    (dict(tol=-1.0), "tol"),
    (dict(target="paris", contrast="paris city"), "contrast"),
    (dict(contrast="lyon"), "contrast"),
    (dict(target="paris", score="contrast_prob_diff"), "contrast"),
    (dict(target="paris", score="kl_divergence"), "contrast_prompt"),
    (dict(target="paris", score="no_such_fn"), "score"),
    (dict(target="paris", baseline="nope"), "baseline"),
    (dict(target="paris", fixed=99), "fixed"),
    (dict(target="paris", max_new_tokens=3), "max_new_tokens"),
    (dict(prompt=["a", "b"], target=["paris"]), "target"),
]


@pytest.mark.parametrize(("kwargs", "argument"), BAD)
def test_bad_input_names_the_argument(
    lm: tuple[Any, Any], kwargs: dict[str, Any], argument: str, state_guard: Any
) -> None:
    model, tok = lm
    guard = state_guard(model)
    kwargs = dict(kwargs)
    prompt = kwargs.pop("prompt", PROMPT)
    with pytest.raises(InputError) as info:
        GenerationExplainer(model, tok)(prompt, **kwargs)
    assert info.value.argument == argument
    guard.assert_unchanged()


def test_model_without_input_embeddings_is_rejected(lm: tuple[Any, Any]) -> None:
    _, tok = lm

    class NoEmbeddings(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return input_ids.float()

    with pytest.raises(ModelError, match="get_input_embeddings"):
        GenerationExplainer(NoEmbeddings(), tok)

    class Broken(torch.nn.Module):
        def get_input_embeddings(self) -> torch.nn.Module:
            raise NotImplementedError

    with pytest.raises(ModelError, match="no input-embedding layer"):
        GenerationExplainer(Broken(), tok)


def test_hooks_removed_after_a_failing_step_function(lm: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = lm
    guard = state_guard(model)

    def bad(args: StepArgs) -> torch.Tensor:
        return args.logits  # wrong shape

    with pytest.raises(InputError) as info:
        GenerationExplainer(model, tok)(PROMPT, target="paris", score=bad, method="integrated_gradients", steps=4)
    assert info.value.argument == "score"
    guard.assert_unchanged()


def test_cli_generate_writes_summary_html_and_result(lm: tuple[Any, Any], tmp_path: Any, capsys: Any) -> None:
    from integrand.cli import main

    model, tok = lm
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    html, saved = tmp_path / "out.html", tmp_path / "out.safetensors"
    argv = ["generate", PROMPT, "--model", str(tmp_path / "m"), "--target", "paris city", "--tol", "1e-3"]
    argv += ["--method", "integrated_gradients"]
    assert main([*argv, "--html", str(html), "--save", str(saved)]) == 0
    assert "'paris'" in capsys.readouterr().out
    assert "&lt;" not in PROMPT and "<table>" in html.read_text()
    direct = GenerationExplainer(model, tok)(PROMPT, target="paris city", method="integrated_gradients", tol=1e-3)
    assert torch.allclose(GenerationAttribution.load(saved).matrix, direct.matrix, atol=1e-6)
    assert main(["generate", PROMPT, "--model", str(tmp_path / "m"), "--max-new-tokens", "0"]) == 2


def test_comprehension_ranks_paraphrases_by_their_profiles(lm: tuple[Any, Any]) -> None:
    from integrand.generation import comprehension
    from integrand.generation.comprehension import effects_of, profile, statistics

    model, tok = lm
    paraphrases = ["the capital of france is", "france , capital city is", "what is the capital city of france ?"]
    ranked = comprehension(
        model, tok, paraphrases, target="paris", method="integrated_gradients", steps=8, rank_by="minimum"
    )
    assert sorted(s.paraphrase for s in ranked) == sorted(paraphrases)
    assert [s.stats["minimum"] for s in ranked] == sorted((s.stats["minimum"] for s in ranked), reverse=True)
    for s in ranked:
        assert float(s.profile.max()) == pytest.approx(1.0) and s.profile.numel() == s.attribution.n_prompt - len(
            s.attribution.fixed_positions
        )
        assert s.attribution is not None
        assert s.stats == statistics(profile(s.attribution), 0.1, effects_of(s.attribution))
    stats = statistics(torch.tensor([1.0, 0.05, 0.5, 0.2, 0.05, 0.2]), threshold=0.1)
    assert stats["above"] == pytest.approx(4 / 6) and stats["minimum"] == pytest.approx(0.05)
    assert stats["middle"] == pytest.approx(0.7 / 2.0) and stats["mean"] == pytest.approx(2.0 / 6)
    with pytest.raises(InputError) as info:
        comprehension(model, tok, paraphrases, target="paris", rank_by="median")
    assert info.value.argument == "rank_by"
