"""Steering judged on behaviour: judges, distinct-n, batched generation, the selection rule, the random
control, the one-pass attributions of the fit, ``integrand steer generate --judge`` and a VLM evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from integrand.cli import main
from integrand.errors import InputError
from integrand.steering import SteeringVector, fit, load_behaviour, load_preferences, split
from integrand.steering.behaviour import (
    Generations,
    Outcome,
    continuation_perplexity,
    generate,
    next_token_probability,
    random_like,
    select,
)
from integrand.steering.judges import distinct_n, judge, politeness_score

from .test_steering import EXAMPLES
from .test_steering_models import tiny_llama, word_tokenizer
from .test_steering_vlm import images, prompts, vlm  # noqa: F401  (vlm is a fixture)


def test_vader_judge_on_known_strings() -> None:
    vader = judge("vader")
    scores = vader(["I love this, it is wonderful and beautiful.", "I hate this, it is awful and terrible.", "It is."])
    assert scores[0] > 0.8 and scores[1] < -0.8 and scores[2] == 0.0
    assert vader.target == 1 and vader.mean(["good", "bad"]) == pytest.approx(sum(vader(["good", "bad"])) / 2)


def test_toxicity_judge_on_known_strings() -> None:
    toxicity = judge("toxicity")
    toxic, clean = toxicity(["you are a stupid idiot and I hate you", "thank you for the lovely dinner"])
    assert toxic > 0.5 > 0.1 > clean and toxicity.target == -1
    assert toxicity([]) == []


def test_politeness_rule() -> None:
    assert politeness_score("Could you please help? Thank you.") == 1.0
    assert politeness_score("Shut up, you stupid idiot.") == -1.0
    assert politeness_score("Please shut up.") == 0.0  # one polite, one rude marker
    assert politeness_score("The sky is blue.") == 0.0
    assert politeness_score("Thanks, but that was stupid. Whatever.") == pytest.approx((1 - 2) / 3)
    assert politeness_score("pleased, thankless") == 0.0  # whole words only
    assert judge("politeness")(["Please and thank you", "whatever"]) == [1.0, -1.0]


def test_distinct_n() -> None:
    texts = ["a b a b", "A b c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)  # (a b) x3, (b a), (b c)
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(InputError, match="n"):
        distinct_n(texts, 0)


def test_bad_judge_and_texts() -> None:
    with pytest.raises(InputError, match="judge"):
        judge("bleu")
    with pytest.raises(InputError, match="texts"):
        judge("politeness")("a single string")


def outcome(score: float, perplexity: float, method: str = "m") -> Outcome:
    return Outcome(method, 1, 1.0, "vader", score, perplexity, 0.5, 0.9, 10)


def test_selection_rule() -> None:
    none = outcome(0.0, 10.0, "none")
    candidates = [outcome(0.9, 15.1), outcome(0.5, 15.0), outcome(0.5, 12.0), outcome(0.2, 11.0)]
    chosen = select(candidates, none, +1)
    assert chosen is candidates[2]  # best score within 1.5 x perplexity; tie -> lower perplexity
    assert select(candidates, none, +1, max_ratio=2.0) is candidates[0]
    lower = [outcome(-0.3, 14.0), outcome(-0.6, 16.0), outcome(0.4, 9.0)]
    assert select(lower, none, -1) is lower[0]
    assert select([outcome(-0.1, 9.0), outcome(0.5, math.nan)], none, +1) is None  # nothing qualifies and improves
    with pytest.raises(InputError, match="target"):
        select(candidates, none, 0)


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    tok = word_tokenizer()
    return tiny_llama(len(tok), dtype=torch.float32), tok


def test_random_direction_has_the_same_norm(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    vector = fit(model, tok, EXAMPLES, layers=[0, 2], method="mean-diff")
    scaled = dataclasses.replace(vector, vectors={layer: 3.0 * v for layer, v in vector.vectors.items()})
    control = random_like(scaled, seed=1)
    assert control.method == "random" and control.layers == (0, 2)
    for layer in (0, 2):
        assert float(control.vectors[layer].norm()) == pytest.approx(float(scaled.vectors[layer].norm()), rel=1e-5)
        cosine = torch.nn.functional.cosine_similarity(control.vectors[layer], scaled.vectors[layer], dim=0)
        assert abs(float(cosine)) < 0.9
    assert torch.equal(random_like(scaled, seed=1).vectors[0], control.vectors[0])
    assert not torch.equal(random_like(scaled, seed=2).vectors[0], control.vectors[0])


def test_left_padded_batches_generate_like_single_prompts(tiny: tuple[Any, Any], state_guard: Any) -> None:
    model, tok = tiny
    guard = state_guard(model)
    texts = ["the sky is", "what color is the cat ?", "the capital of france is paris and"]
    vector = fit(model, tok, EXAMPLES, layers=[1], method="mean-diff")
    for steer in (None, vector):
        kwargs: dict[str, Any] = {"vector": steer, "strength": 3.0, "max_new_tokens": 5, "sample": False}
        batched = generate(model, tok, texts, batch_size=3, **kwargs)
        alone = [generate(model, tok, [t], batch_size=1, **kwargs).token_ids[0] for t in texts]
        assert list(batched.token_ids) == alone
    plain = generate(model, tok, texts, max_new_tokens=5, sample=False)
    assert plain.token_ids != batched.token_ids  # steering at strength 3 changes some continuation
    sampled = [generate(model, tok, texts, max_new_tokens=5, seed=7, temperature=1.0).token_ids for _ in range(2)]
    assert sampled[0] == sampled[1]  # seeded sampling repeats
    guard.assert_unchanged()
    with pytest.raises(InputError, match="prompts"):
        generate(model, tok, "the sky is")


def test_continuation_perplexity_matches_a_direct_sum(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    gens = generate(model, tok, ["the sky is", "what color is the cat ?"], max_new_tokens=4, sample=False)
    total, count = 0.0, 0
    with torch.no_grad():
        for prompt, cont in zip(gens.prompt_ids, gens.token_ids):
            seq = torch.tensor([list(prompt) + list(cont)])
            logp = model(input_ids=seq).logits[0].double().log_softmax(-1)
            for j, token in enumerate(cont):
                total -= float(logp[len(prompt) - 1 + j, token])
                count += 1
    assert continuation_perplexity(model, gens, batch_size=1) == pytest.approx(math.exp(total / count), rel=1e-5)
    empty = Generations(("x",), ((1, 2),), ((),), ("",))
    assert math.isnan(continuation_perplexity(model, empty))


def test_fit_with_one_pass_attributions(tiny: tuple[Any, Any]) -> None:
    from integrand.circuits.lrp import LRP_TOL
    from integrand.steering import Encoder
    from integrand.steering.contrastive import ContrastiveScore, one_pass_attribution

    model, tok = tiny
    for attribution, tol in (("lrp", LRP_TOL), ("input_x_gradient", 1e-2)):
        with pytest.warns(Warning):  # the tiny random model conserves poorly: every pair is flagged
            vector = fit(model, tok, EXAMPLES, layers=[1], k=1, attribution=attribution)
        assert vector.params["attribution"] == attribution and vector.params["converged_tol"] == tol
        infos = vector.params["examples"]
        assert all(e["converged"] == (e["relative_error"] <= tol) for e in infos)
        assert vector.params["n_unconverged"] == sum(not e["converged"] for e in infos)
    # input x gradient: gradient of the log-probability contrast times (input - baseline), checked directly
    encoder = Encoder(model, tok)
    example = encoder.encode_all(EXAMPLES)[0]
    scores = one_pass_attribution(model, encoder.embedding, example, "input_x_gradient", 1e-2)
    x = example.embeds[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ContrastiveScore(model, encoder.embedding, example)(x).sum(), x)
    torch.testing.assert_close(scores.values, grad[0] * (example.embeds - example.baseline))
    with pytest.raises(InputError, match="attribution"):
        fit(model, tok, EXAMPLES, layers=[1], attribution="shap")


def test_behaviour_sets() -> None:
    for name, n in (("sentiment", 60), ("toxicity", 56), ("politeness", 56)):
        bench = load_behaviour(name)
        assert len(set(bench.prompts)) == n >= 50 and bench.judge in ("vader", "toxicity", "politeness")
        fit_prompts, held = split(list(bench.prompts), 16, seed=0)
        pairs = bench.preferences(fit_prompts)
        assert len(pairs) == 32 and {p.prompt for p in pairs} == set(fit_prompts)
        assert not set(held) & {p.prompt for p in pairs}
        # the CLI's --examples NAME: the same fit pairs, held-out prompts never in a pair
        assert load_preferences(name) == pairs
    with pytest.raises(InputError, match="behaviour"):
        load_behaviour("humour")


def test_cli_generate_prints_the_judge_score(tiny: tuple[Any, Any], tmp_path: Path, capsys: Any) -> None:
    model, tok = tiny
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    vector = fit(model, tok, EXAMPLES, layers=[1], method="mean-diff")
    vector.save(tmp_path / "v.safetensors")
    argv = ["steer", "generate", "--model", str(tmp_path / "model"), "--vector", str(tmp_path / "v.safetensors")]
    argv += ["--strength", "3", "--max-new-tokens", "4", "--judge", "politeness", "the sky is", "what color is it ?"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    texts = {"unsteered": [], "steered": []}
    for line in lines:
        for key in texts:
            if line.strip().startswith(key):
                texts[key].append(line.split(": ", 1)[1] if ": " in line else "")
    rule = judge("politeness")
    found = re.search(r"judge politeness .*: unsteered ([+-][0-9.]+) -> steered ([+-][0-9.]+) \(mean of 2", lines[-1])
    assert found is not None, lines[-1]
    assert float(found.group(1)) == pytest.approx(rule.mean(texts["unsteered"]), abs=1e-3)
    assert float(found.group(2)) == pytest.approx(rule.mean(texts["steered"]), abs=1e-3)
    assert main([*argv[:-3], "--judge", "bleu", "the sky is"]) == 2
    assert "judge" in capsys.readouterr().err


def test_vlm_steering_raises_the_probability_of_yes(vlm: Any) -> None:  # noqa: F811
    """Behaviour on the tiny VLM: GrAInS (AttnLRP top-k over image and text tokens) raises P("yes") on dark images."""
    model, tok = vlm
    patches, bright, _ = images(40, seed=60_000)
    fit_set = prompts(model, tok, patches[bright], ("yes", "no"))
    with pytest.warns(Warning):  # AttnLRP conserves about 73% of the logit contrast here: pairs are flagged
        vector = fit(model.decoder, tok, fit_set, layers=[1], k=1, attribution="lrp")
    held_patches, held_bright, _ = images(40, seed=70_000)
    dark = [p.prompt for p in prompts(model, tok, held_patches[~held_bright], ("yes", "no"))]
    yes = tok.convert_tokens_to_ids("yes")
    norm = float(torch.stack([e[1:].norm(dim=-1).median() for e in dark]).median())
    strength = 2.0 * norm / float(vector.vectors[1].norm())  # the added vector is twice a typical token's norm
    before = next_token_probability(model.decoder, dark, yes)
    after = next_token_probability(model.decoder, dark, yes, vector=vector, strength=strength)
    control = next_token_probability(model.decoder, dark, yes, vector=random_like(vector), strength=strength)
    assert float(before.mean()) < 0.01  # the model says "no" to dark images
    assert bool((after > before).all())
    # measured: 0.0004 -> 0.0022 (x5.5); a random direction of the same norm: x1.5
    assert float(after.mean()) > 3 * float(before.mean())
    assert float((after / before).mean()) > 2 * float((control / before).mean())


def test_cli_fit_with_lrp_prints_the_unconverged_share(tiny: tuple[Any, Any], tmp_path: Path, capsys: Any) -> None:
    model, tok = tiny
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    out, pairs = tmp_path / "v.safetensors", tmp_path / "pairs.jsonl"
    lines = [json.dumps({"prompt": p, "preferred": a, "dispreferred": b}) for p, a, b in EXAMPLES * 2]
    pairs.write_text("\n".join(lines), encoding="utf-8")
    argv = ["steer", "fit", "--model", str(tmp_path / "model"), "--examples", str(pairs), "--layers", "1"]
    assert main([*argv, "--k", "1", "--attribution", "lrp", "--out", str(out), "--fit", "6"]) == 0
    text = capsys.readouterr().out
    found = re.search(r"LRP conservation: .* (\d+) of 6 pairs \((\d+)%\) did not converge at tol 0.1", text)
    assert found is not None, text
    assert SteeringVector.load(out).params["n_unconverged"] == int(found.group(1))
    assert main([*argv, "--attribution", "shap", "--out", str(out)]) == 2


def test_occlusion_attribution_equals_a_one_token_loop(tiny: tuple[Any, Any], state_guard: Any) -> None:
    from integrand.steering import Encoder
    from integrand.steering.contrastive import ContrastiveScore, occlusion_attribution

    model, tok = tiny
    encoder = Encoder(model, tok, baseline="unk")
    for example in encoder.encode_all(EXAMPLES):
        score_fn = ContrastiveScore(model, encoder.embedding, example)
        with torch.no_grad():
            full = float(score_fn(example.embeds[None])[0])
            expected = []
            for i in range(example.embeds.shape[0]):
                occluded = example.embeds.clone()
                occluded[i] = example.baseline[i]  # the same masking baseline the fit uses
                expected.append(full - float(score_fn(occluded[None])[0]))
        for batch_size in (None, 1, 3):
            values, score = occlusion_attribution(model, encoder.embedding, example, batch_size=batch_size)
            assert score == pytest.approx(full, abs=1e-5)
            torch.testing.assert_close(values, torch.tensor(expected), atol=1e-4, rtol=1e-4)
        assert float(values[: example.fixed].abs().sum()) == 0.0  # fixed positions (BOS) get nothing
        assert float(values.abs().sum()) > 0
    with pytest.raises(InputError, match="batch_size"):
        occlusion_attribution(model, encoder.embedding, example, batch_size=0)


def test_fit_with_occlusion_masks_the_top_tokens(tiny: tuple[Any, Any]) -> None:
    from integrand.steering import Encoder
    from integrand.steering.contrastive import occlusion_attribution

    model, tok = tiny
    vector = fit(model, tok, EXAMPLES, layers=[1, 2], k=1, attribution="occlusion", baseline="unk")
    p = vector.params
    assert p["attribution"] == "occlusion" and p["exact"] is True and p["converged_tol"] is None
    assert p["n_unconverged"] == 0 and p["median_relative_error"] is None and p["steps"] is None and p["tol"] is None
    encoder = Encoder(model, tok, baseline="unk")
    for example, info in zip(encoder.encode_all(EXAMPLES), p["examples"]):
        values, score = occlusion_attribution(model, encoder.embedding, example)
        maskable = values[example.fixed : -1]
        assert info["positive_positions"] == [int(maskable.argmax()) + example.fixed]
        assert info["negative_positions"] == [int(maskable.argmin()) + example.fixed]
        assert info["score"] == pytest.approx(score) and info["converged"] is True
    with pytest.warns(Warning):  # the tiny random model conserves LRP relevance poorly
        other = fit(model, tok, EXAMPLES, layers=[1, 2], k=1, attribution="lrp", baseline="unk")
    assert not torch.allclose(vector.vectors[1], other.vectors[1])


def test_cli_fit_with_occlusion_says_exact(tiny: tuple[Any, Any], tmp_path: Path, capsys: Any) -> None:
    model, tok = tiny
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    out, pairs = tmp_path / "v.safetensors", tmp_path / "pairs.jsonl"
    lines = [json.dumps({"prompt": p, "preferred": a, "dispreferred": b}) for p, a, b in EXAMPLES]
    pairs.write_text("\n".join(lines), encoding="utf-8")
    argv = ["steer", "fit", "--model", str(tmp_path / "model"), "--examples", str(pairs), "--layers", "1"]
    assert main([*argv, "--k", "1", "--attribution", "occlusion", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "occlusion attribution: exact (no integration error)" in text and "did not converge" not in text
    assert SteeringVector.load(out).params["exact"] is True
