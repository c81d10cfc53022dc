"""SmolLM2-135M-Instruct (the embedded default LLM): convergence and deletion faithfulness of the attributions."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import pytest
import torch

from integrand import ConvergenceWarning
from integrand.generation import GenerationExplainer
from integrand.generation.explainer import DEFAULT_METHOD

pytest.importorskip("transformers")
pytest.importorskip("gguf")

FACTS = [
    ("The capital of France is", " Paris"),
    ("The capital of Germany is", " Berlin"),
    ("The capital of Italy is", " Rome"),
    ("The capital of Japan is", " Tokyo"),
    ("The largest planet in our solar system is", " Jupiter"),
    ("The chemical symbol for gold is", " Au"),
    ("Romeo and Juliet was written by William", " Shakespeare"),
    ("The opposite of hot is", " cold"),
    ("Monday, Tuesday,", " Wednesday"),
    ("One, two, three, four,", " five"),
    ("The Eiffel Tower is located in the city of", " Paris"),
    ("Water is made of hydrogen and", " oxygen"),
]


@pytest.fixture(scope="module")
def smollm() -> tuple[Any, Any]:
    from integrand.generation.smollm import gguf_path, load_smollm2

    try:
        gguf_path()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))
    return load_smollm2()


def test_cached_copy_reproduces_the_model(smollm: tuple[Any, Any]) -> None:
    model, tok = smollm
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        top = model(ids).logits[0, -1].argmax()
    assert tok.decode([int(top)]) == " Paris"


def _log_p(model: Any, embeds: torch.Tensor, target: int) -> float:
    with torch.no_grad():
        return float(model(inputs_embeds=embeds[None]).logits[0, -1].log_softmax(-1)[target])


@pytest.fixture(scope="module")
def facts(smollm: tuple[Any, Any]) -> list[Any]:
    model, tok = smollm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GenerationExplainer(model, tok)(
            [p for p, _ in FACTS], target=[t for _, t in FACTS], method="integrated_gradients", tol=1e-2
        )


@pytest.mark.slow
def test_paris_converges_with_error_control(facts: list[Any]) -> None:
    paris = facts[0]
    assert paris.target_tokens == (" Paris",)
    assert bool(paris.converged.all()), paris.summary()
    assert paris.relative_error is not None and float(paris.relative_error[0]) <= 1e-2


# Written before the held-out results were looked at (docs/faithfulness.md): k and the threshold are fixed here.
DELETION_K = 2
DELETION_SHARE = 0.8
# The default method: bench/faithfulness_lm.py selected it on the held-out facts (docs/faithfulness.md).
DELETION_METHOD = DEFAULT_METHOD


@pytest.mark.slow
def test_selected_method_is_faithful_by_deletion_on_held_out_facts(smollm: tuple[Any, Any]) -> None:
    """Deleting the selected method's top-k source tokens lowers log P(first answer token) more than
    deleting k random source tokens (the mean over all k-subsets) on >= 80% of the held-out facts.

    Deleting a token replaces its input embedding with the mean embedding of the ordinary tokens,
    whatever the method's own baseline; the fixed (BOS) positions are never deleted.
    """
    from integrand.generation.factset import factset

    model, tok = smollm
    held_out = factset("test")
    gx = GenerationExplainer(model, tok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = gx([f.prompt for f in held_out], target=[f.answer for f in held_out], method=DELETION_METHOD)
    emb = model.get_input_embeddings()
    removed = gx.baseline_embedding("mean")
    wins, lines = 0, []
    for fact, res in zip(held_out, results):
        ids = res.token_ids[: res.n_prompt]
        target = int(res.token_ids[res.n_prompt])
        with torch.no_grad():
            x = emb(ids[None])[0]
        full = _log_p(model, x, target)
        sources = list(range(len(res.fixed_positions), res.n_prompt))
        row = res.matrix[0, : res.n_prompt]
        top = tuple(sorted(sources, key=lambda j: -float(row[j]))[:DELETION_K])

        def drop(subset: tuple[int, ...], x: torch.Tensor = x, full: float = full, target: int = target) -> float:
            e = x.clone()
            e[list(subset)] = removed
            return full - _log_p(model, e, target)

        subsets = list(itertools.combinations(sources, DELETION_K))
        random_drop = sum(drop(s) for s in subsets) / len(subsets)
        top_drop = drop(top)
        wins += top_drop > random_drop
        lines.append(f"{fact.prompt!r}: top {top} drop {top_drop:.3f} vs random {random_drop:.3f}")
    print("\n".join(lines))
    share = wins / len(held_out)
    assert DELETION_METHOD == "occlusion" and {r.method for r in results} == {DELETION_METHOD}
    assert share >= DELETION_SHARE, f"{wins}/{len(held_out)} held-out prompts:\n" + "\n".join(lines)
