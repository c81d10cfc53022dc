"""Prompt comprehension, paraphrase generation and choice, and the fact set (tiny LMs; one slow SmolLM2 run)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch

from integrand import ConvergenceWarning, InputError
from integrand.generation.comprehension import STATISTICS, comprehension, statistics
from integrand.generation.facts import CANDIDATES, FACTS, facts
from integrand.generation.paraphrase import choose_paraphrase, clean, paraphrases, rule_paraphrases

from .reference.generation_oracle import WORDS, tiny_llama, tiny_lm, word_tokenizer

PARAPHRASES = ["the capital of france is", "france , capital city is", "what is the capital city of france ?"]
CHAT = "{% for m in messages %}{{ m['content'] }} {% endfor %}"


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request: Any) -> tuple[Any, Any]:
    return tiny_lm(request.param)


def _leave_one_out(model: Any, tok: Any, text: str, target: str | None) -> torch.Tensor:
    """Oracle: |log p(target | prompt) - log p(target | prompt with token j's embedding := mean embedding)|."""
    from integrand.generation import GenerationExplainer

    gx = GenerationExplainer(model, tok)
    ids = list(tok(text)["input_ids"])
    if ids[0] != tok.bos_token_id:  # the explainer prepends BOS when the tokenizer has one (and keeps it fixed)
        ids = [tok.bos_token_id, *ids]
    fixed = 1
    emb = model.get_input_embeddings()
    with torch.no_grad():
        if target is None:
            forced = [int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())]
        else:
            forced = list(tok(target, add_special_tokens=False)["input_ids"])
        seq = torch.tensor([ids + forced])

        def logp(embeds: torch.Tensor) -> float:
            out = model(inputs_embeds=embeds).logits[0].log_softmax(-1)
            return sum(float(out[len(ids) - 1 + k, t]) for k, t in enumerate(forced))

        full = emb(seq)
        base = logp(full)
        effects = []
        for j in range(fixed, len(ids)):
            changed = full.clone()
            changed[0, j] = gx.baseline_embedding()
            effects.append(abs(base - logp(changed)))
    return torch.tensor(effects, dtype=torch.float64)


@pytest.mark.parametrize("target", [None, "paris"])
def test_occlusion_profile_is_leave_one_out_per_prompt_token(
    lm: tuple[Any, Any], target: Any, state_guard: Any
) -> None:
    model, tok = lm
    guard = state_guard(model)
    ranked = comprehension(model, tok, PARAPHRASES, target=target, progress=False)
    guard.assert_unchanged()
    assert sorted(s.paraphrase for s in ranked) == sorted(PARAPHRASES)
    for s in ranked:
        assert s.tokens == tuple(s.paraphrase.split())  # one value per prompt token, BOS excluded
        assert s.effects.shape == s.profile.shape == (len(s.tokens),)
        assert torch.allclose(s.effects, _leave_one_out(model, tok, s.paraphrase, target), rtol=1e-9, atol=1e-12)
        assert float(s.profile.max()) == pytest.approx(1.0)
        assert s.method == "occlusion" and s.converged is None and s.relative_error is None
        if target is not None:
            assert s.target == ("paris",)
        assert s.stats == statistics(s.profile, 0.1, s.effects)
        table = s.table().splitlines()
        assert len(table) == len(s.tokens) + 1 and all(repr(t) in row for t, row in zip(s.tokens, table[1:]))
        assert repr(s.paraphrase) in s.summary() and "sensitivity=" in s.summary()


@pytest.mark.parametrize("rank_by", STATISTICS)
def test_ranking_is_by_the_chosen_statistic(lm: tuple[Any, Any], rank_by: str) -> None:
    model, tok = lm
    ranked = comprehension(model, tok, PARAPHRASES, target="paris", rank_by=rank_by, progress=False)
    values = [s.stats[rank_by] for s in ranked]
    assert values == sorted(values, reverse=True)
    default = comprehension(model, tok, PARAPHRASES, target="paris", progress=False)
    assert [s.stats["sensitivity"] for s in default] == sorted((s.stats["sensitivity"] for s in default), reverse=True)


def test_statistics_on_known_profiles() -> None:
    effects = torch.tensor([2.0, 0.1, 1.0, 0.4, 0.1, 0.4], dtype=torch.float64)
    stats = statistics(effects / 2.0, 0.1, effects)
    assert stats["sensitivity"] == pytest.approx(4.0 / 6)
    assert stats["above"] == pytest.approx(4 / 6) and stats["minimum"] == pytest.approx(0.05)
    assert stats["middle"] == pytest.approx(0.7 / 2.0) and stats["mean"] == pytest.approx(2.0 / 6)
    flat = torch.ones(5, dtype=torch.float64)
    assert statistics(flat, 0.1, flat)["coverage"] == pytest.approx(1.0)
    peak = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    assert statistics(peak, 0.1, peak)["coverage"] == pytest.approx(0.25)
    # Scaling the effects changes sensitivity (nats) but none of the shape statistics.
    assert {k: v for k, v in statistics(flat, 0.1, 3 * flat).items() if k != "sensitivity"} == {
        k: v for k, v in statistics(flat, 0.1, flat).items() if k != "sensitivity"
    }


def test_integrated_gradients_reports_convergence_honestly(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    good = comprehension(
        model, tok, PARAPHRASES, target="paris", method="integrated_gradients", tol=1e-5, progress=False
    )
    for s in good:
        assert s.converged is True and s.relative_error is not None and s.relative_error <= 0.05
        assert s.attribution is not None and s.tokens == tuple(s.paraphrase.split())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rough = comprehension(
            model, tok, PARAPHRASES, target="paris", method="integrated_gradients", steps=1, progress=False
        )
    bad = [s for s in rough if s.converged is False]
    for s in rough:
        assert s.relative_error is not None and s.converged == (s.relative_error <= 0.05)
    assert bad, "one midpoint should not integrate these profiles to 5%"
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert messages and messages[0].startswith(f"{len(bad)} of 3 paraphrases did not converge")


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient"])
def test_one_pass_gradient_methods(lm: tuple[Any, Any], method: str) -> None:
    model, tok = lm
    ranked = comprehension(model, tok, PARAPHRASES, target="paris", method=method, progress=False)
    assert all(s.method == method and s.converged is None and len(s.effects) == len(s.tokens) for s in ranked)


def test_rule_paraphrases_are_grammatical_rewrites() -> None:
    assert rule_paraphrases("The capital of France is") == [
        "What is the capital of France? It is",
        "France's capital is",
        "The name of the capital of France is",
        "It is well known that the capital of France is",
        "Everyone knows that the capital of France is",
        "In fact, the capital of France is",
        "As a matter of fact, the capital of France is",
    ]
    assert rule_paraphrases("The chemical symbol for gold is")[:3] == [
        "What is the chemical symbol for gold? It is",
        "Gold's chemical symbol is",
        "The name of the chemical symbol for gold is",
    ]
    assert rule_paraphrases("The currency of the United States is the")[:2] == [
        "What is the currency of the United States? It is the",
        "The name of the currency of the United States is the",
    ]
    assert rule_paraphrases("The play Hamlet was written by")[:3] == [
        "Who wrote the play Hamlet? It was written by",
        "The author of the play Hamlet is",
        "It is well known that the play Hamlet was written by",
    ]
    # Proper nouns keep their capital after a prefix; prompts the structural rules do not fit get prefixes only.
    assert rule_paraphrases("Paris is in")[0] == "It is well known that Paris is in"
    got = paraphrases(None, None, "The capital of France is", k=3, method="rules")
    assert got == rule_paraphrases("The capital of France is")[:3]
    with pytest.raises(InputError) as info:
        paraphrases(None, None, "Paris is in", k=6, method="rules")
    assert info.value.argument == "k"


def test_llm_paraphrases_are_distinct_and_seeded(state_guard: Any) -> None:
    tok = word_tokenizer(add_bos=True, words=list(dict.fromkeys(WORDS)))  # WORDS repeats a word: ids past len(tok)
    model = tiny_llama(len(tok))
    tok.chat_template = CHAT
    guard = state_guard(model)
    state = torch.random.get_rng_state()
    first = paraphrases(model, tok, "one two sea", k=3, seed=5, max_new_tokens=6)
    assert torch.equal(state, torch.random.get_rng_state())  # a private generator: global RNG untouched
    guard.assert_unchanged()
    assert len(first) == 3 and len(set(first)) == 3
    assert all(p.strip() and p != "one two sea" and clean(p, "one two sea") == p for p in first)
    assert paraphrases(model, tok, "one two sea", k=3, seed=5, max_new_tokens=6) == first
    assert paraphrases(model, tok, "one two sea", k=3, seed=6, max_new_tokens=6) != first


def test_clean_drops_degenerate_samples() -> None:
    prompt = "The capital of France is"
    assert clean('"France\'s capital city is."\nmore text', prompt) == "France's capital city is"
    assert clean("Rewritten sentence: France's capital is", prompt) == "France's capital is"
    assert clean("the capital of france is.", prompt) is None  # a copy
    assert clean("The capital of France is the capital of France is", prompt) is None  # prompt plus more
    assert clean("France's capital is Paris", prompt, avoid=[" Paris"]) is None  # gives the answer away
    assert clean("Oxygen's chemical symbol is", "The chemical symbol for oxygen is", avoid=[" O"]) is not None
    assert clean("France's capital is a big city", prompt) is None  # finished, the prompt is not
    assert clean("The largest city of Spain is", prompt) is None  # lost the content words
    assert clean("France capital capital capital is", prompt) is None  # repetition
    assert clean("   \n  ", prompt) is None and clean("is", prompt) is None


def test_choose_paraphrase_ranks_the_original_with_the_candidates(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    choice = choose_paraphrase(model, tok, PARAPHRASES[0], candidates=PARAPHRASES[1:], progress=False)
    assert sorted(s.paraphrase for s in choice.ranking) == sorted(PARAPHRASES)
    assert choice.choice == choice.ranking[0].paraphrase and choice.rank_by == "sensitivity"
    assert choice.summary().startswith(f"chosen by sensitivity: {choice.choice!r}")
    alone = choose_paraphrase(
        model, tok, PARAPHRASES[0], candidates=PARAPHRASES[1:], include_original=False, progress=False
    )
    assert PARAPHRASES[0] not in [s.paraphrase for s in alone.ranking]


def test_typed_errors(lm: tuple[Any, Any]) -> None:
    model, tok = lm
    cases: list[tuple[str, Any]] = [
        ("k", lambda: paraphrases(model, tok, "the capital of france is", k=0, method="rules")),
        ("k", lambda: paraphrases(model, tok, "the capital of france is", k=True)),
        ("prompt", lambda: paraphrases(model, tok, "  ", k=2)),
        ("prompt", lambda: choose_paraphrase(model, tok, "", candidates=["a b"])),
        ("method", lambda: paraphrases(model, tok, "the capital of france is", method="gpt")),
        ("tokenizer", lambda: paraphrases(model, tok, "the capital of france is", k=2)),  # no chat template
        ("avoid", lambda: paraphrases(model, tok, "the capital of france is", method="rules", avoid="paris")),
        ("method", lambda: comprehension(model, tok, PARAPHRASES, method="lime")),
        ("rank_by", lambda: comprehension(model, tok, PARAPHRASES, rank_by="median")),
        ("paraphrases", lambda: comprehension(model, tok, [])),
        ("paraphrases", lambda: comprehension(model, tok, "the capital of france is")),
        ("paraphrases", lambda: comprehension(model, tok, ["the capital", " "])),
        ("steps", lambda: comprehension(model, tok, PARAPHRASES, steps=8)),  # occlusion has no integral
        ("threshold", lambda: comprehension(model, tok, PARAPHRASES, threshold=1.5)),
        ("max_new_tokens", lambda: comprehension(model, tok, PARAPHRASES, max_new_tokens=0)),
        ("target", lambda: comprehension(model, tok, PARAPHRASES, target="")),
        ("candidates", lambda: choose_paraphrase(model, tok, "the capital", candidates=[])),
        ("split", lambda: facts("train")),
    ]
    for argument, call in cases:
        with pytest.raises(InputError) as info:
            call()
        assert info.value.argument == argument, argument


def test_fact_set_is_split_per_category() -> None:
    assert len(FACTS) >= 40 and len({f.prompt for f in FACTS}) == len(FACTS)
    dev, test = facts("dev"), facts("test")
    assert len(dev) + len(test) == len(FACTS) and abs(len(dev) - len(test)) <= len(CANDIDATES)
    assert {f.category for f in dev} == {f.category for f in test} == set(CANDIDATES)
    for f in FACTS:
        assert f.answer.startswith(" ") and f.answer in f.candidates and len(f.candidates) >= 4
        assert not f.prompt.endswith(" ") and f.answer.strip().lower() not in f.prompt.lower().split()


@pytest.mark.slow
def test_smollm2_prefers_the_natural_prompt_to_the_ungrammatical_one() -> None:
    pytest.importorskip("gguf")
    from integrand.generation.smollm import gguf_path, load_smollm2

    try:
        gguf_path()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))
    torch.set_num_threads(1)
    model, tok = load_smollm2()
    prompt = "The capital of France is"
    choice = choose_paraphrase(
        model, tok, prompt, candidates=["Capital France city name is", *rule_paraphrases(prompt)[:2]], progress=False
    )
    order = [s.paraphrase for s in choice.ranking]
    assert order.index(prompt) < order.index("Capital France city name is") == len(order) - 1
    assert choice.ranking[0].target == (" Paris",) and math.isfinite(choice.ranking[0].log_prob)
