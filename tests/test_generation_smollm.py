"""SmolLM2-135M-Instruct (the embedded default LLM): convergence and deletion faithfulness of the attributions."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import pytest
import torch

from integrand import ConvergenceWarning
from integrand.generation import GenerationExplainer

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
        return GenerationExplainer(model, tok)([p for p, _ in FACTS], target=[t for _, t in FACTS], tol=1e-2)


@pytest.mark.slow
def test_paris_converges_with_error_control(facts: list[Any]) -> None:
    paris = facts[0]
    assert paris.target_tokens == (" Paris",)
    assert bool(paris.converged.all()), paris.summary()
    assert paris.relative_error is not None and float(paris.relative_error[0]) <= 1e-2


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured with the default mean-embedding baseline (tol=1e-2, all 12 prompts): the top-attributed pair "
    "lowers log P more than the average other pair on 4/12 prompts only (Paris 6.16 vs 8.08: IG ranks 'The' and "
    "' of' first); see docs/generation.md",
)
def test_faithful_by_deletion(smollm: tuple[Any, Any], facts: list[Any]) -> None:
    model, tok = smollm
    emb = model.get_input_embeddings()
    gx = GenerationExplainer(model, tok)
    failures, lines = [], []
    for (prompt, _), res in zip(FACTS, facts):
        ids = res.token_ids[: res.n_prompt]
        target = int(res.token_ids[res.n_prompt])
        with torch.no_grad():
            x = emb(ids[None])[0]
        # The vector the path started from (the default "mean" baseline is not a token id).
        base = gx.baseline_embedding(res.params["baseline"])
        full = _log_p(model, x, target)
        sources = list(range(len(res.fixed_positions), res.n_prompt))
        row = res.matrix[0, : res.n_prompt]
        top = tuple(sorted(sorted(sources, key=lambda j: -float(row[j]))[:2]))

        def drop(
            pair: tuple[int, ...],
            x: torch.Tensor = x,
            full: float = full,
            target: int = target,
            base: torch.Tensor = base,
        ) -> float:
            e = x.clone()
            e[list(pair)] = base
            return full - _log_p(model, e, target)

        others = [drop(p) for p in itertools.combinations(sources, 2) if p != top]
        mean = sum(others) / len(others)
        line = f"{prompt!r}: top pair {top} drop {drop(top):.3f} vs mean {mean:.3f}"
        lines.append(line)
        if not drop(top) > mean:
            failures.append(line)
    print("\n".join(lines))
    assert not failures, f"{len(failures)}/{len(FACTS)} prompts fail:\n" + "\n".join(failures)
