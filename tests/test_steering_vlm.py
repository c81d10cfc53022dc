"""A tiny vision-language model: image patches projected into a Llama decoder fed ``inputs_embeds``.

It is trained here (a few seconds) to answer "is the image bright ?" with yes/no; a bright
image has one bright patch. Contrastive IG over the projected image tokens and the text
finds that patch, GrAInS masks it to build the vector, and steering the decoder moves
held-out answers toward "yes", also under KV-cached generation from embeddings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from integrand.steering import Encoder, contrastive_ig, fit, preference_scores

from .test_steering_models import tiny_llama, word_tokenizer

PATCHES, PATCH_DIM = 6, 4
QUESTION = "is the image bright ?"


class TinyVLM(torch.nn.Module):
    """Patches -> linear projector -> image tokens; [BOS, image tokens, question] -> Llama decoder."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.decoder = tiny_llama(vocab, dtype=torch.float32, layers=2)
        hidden = self.decoder.config.hidden_size
        self.projector = torch.nn.Linear(PATCH_DIM, hidden)

    def image_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        return self.projector(patches)  # type: ignore[no-any-return]


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(patches [n, PATCHES, PATCH_DIM], bright [n] bool, bright patch index [n] (-1 if none))."""
    g = torch.Generator().manual_seed(seed)
    patches = 0.3 * torch.randn(n, PATCHES, PATCH_DIM, generator=g)
    bright = torch.arange(n) % 2 == 0
    where = torch.randint(0, PATCHES, (n,), generator=g)
    patches[bright, where[bright]] += 2.0
    return patches, bright, torch.where(bright, where, torch.full_like(where, -1))


@pytest.fixture(scope="module")
def vlm() -> tuple[TinyVLM, Any]:
    tok = word_tokenizer()
    torch.manual_seed(0)
    model = TinyVLM(len(tok))
    with torch.no_grad():  # undo the helper's sharpening: training starts from a plain init
        for p in model.decoder.parameters():
            if p.dim() == 2:
                p.div_(3.0)
    text = tok(QUESTION, add_special_tokens=False)["input_ids"]
    yes, no = tok.convert_tokens_to_ids(["yes", "no"])
    embed = model.decoder.get_input_embeddings()
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(150):
        patches, bright, _ = images(64, seed=step)
        seq = torch.cat(
            [
                embed(torch.full((64, 1), tok.bos_token_id)),
                model.image_tokens(patches),
                embed(torch.tensor(text)).expand(64, -1, -1),
            ],
            dim=1,
        )
        logits = model.decoder(inputs_embeds=seq).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, torch.where(bright, yes, no))
        optim.zero_grad()
        loss.backward()
        optim.step()
    model.eval()
    model.double()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def prompts(model: TinyVLM, tok: Any, patches: torch.Tensor, answers: tuple[str, str]) -> list[Any]:
    encoder = Encoder(model.decoder, tok)
    with torch.no_grad():
        tokens = model.image_tokens(patches.double())
    out = []
    for image in tokens:
        template = encoder.prompt_embeddings([image, QUESTION])
        out.append(dataclasses.replace(template, preferred=answers[0], dispreferred=answers[1]))
    return out


def test_the_vlm_learned_the_task(vlm: tuple[TinyVLM, Any]) -> None:
    model, tok = vlm
    patches, bright, _ = images(100, seed=10_000)
    scores = preference_scores(model.decoder, tok, prompts(model, tok, patches, ("yes", "no")))
    said_yes = scores.preferred > scores.dispreferred
    assert float((said_yes == bright).double().mean()) >= 0.95


def test_attribution_finds_the_bright_image_token(vlm: tuple[TinyVLM, Any], state_guard: Any) -> None:
    model, tok = vlm
    guard = state_guard(model)
    patches, bright, where = images(12, seed=20_000)
    encoder = Encoder(model.decoder, tok)
    hits = 0
    for example, w in zip(prompts(model, tok, patches[bright], ("yes", "no")), where[bright].tolist()):
        encoded = encoder.encode(example, 0)
        result = contrastive_ig(model.decoder, encoder.embedding, encoded, tol=1e-3)
        assert float(result.relative_error[0]) < 1e-3  # type: ignore[index]
        scores = result.values[0].sum(-1)  # type: ignore[union-attr]
        image = scores[1 : 1 + PATCHES]  # position 0 is the fixed BOS
        hits += int(image.argmax()) == w and float(image[w]) > 0
    assert hits >= 5  # of 6 bright images
    guard.assert_unchanged()


def test_grains_on_image_tokens_steers_toward_preferred(vlm: tuple[TinyVLM, Any]) -> None:
    model, tok = vlm
    patches, bright, where = images(40, seed=30_000)
    fit_set = prompts(model, tok, patches[bright], ("yes", "no"))
    vector = fit(model.decoder, tok, fit_set, layers=[0], k=1, tol=1e-2)
    masked = [info["positive_positions"][0] for info in vector.params["examples"]]
    # the most positively attributed maskable token is the bright patch (the final "?" is the read-out)
    assert sum(m == 1 + w for m, w in zip(masked, where[bright].tolist())) >= 0.8 * len(masked)
    held_patches, held_bright, _ = images(40, seed=40_000)
    held = prompts(model, tok, held_patches, ("yes", "no"))
    before = preference_scores(model.decoder, tok, held).margins
    strength = 0.5 * float(torch.stack([e.prompt[1:].norm(dim=-1).median() for e in held]).median())
    with vector.apply(model.decoder, strength):
        toward = preference_scores(model.decoder, tok, held).margins
    with vector.apply(model.decoder, -strength):
        away = preference_scores(model.decoder, tok, held).margins
    # most held-out images move toward "yes" with +lambda and away from it with -lambda
    assert float((toward > before).double().mean()) >= 0.8
    assert float((away < before).double().mean()) >= 0.8
    assert float(toward.mean()) > float(before.mean()) > float(away.mean())


def test_kv_cached_generation_from_embeddings_under_steering(vlm: tuple[TinyVLM, Any]) -> None:
    model, tok = vlm
    patches, bright, _ = images(8, seed=50_000)
    fit_set = prompts(model, tok, patches[bright], ("yes", "no"))
    vector = fit(model.decoder, tok, fit_set, layers=[1], method="mean-diff")
    embeds = fit_set[0].prompt[None]
    kwargs: dict[str, Any] = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": tok.pad_token_id}
    plain = model.decoder.generate(inputs_embeds=embeds, **kwargs)
    with vector.apply(model.decoder, 0.0):
        assert torch.equal(model.decoder.generate(inputs_embeds=embeds, **kwargs), plain)
    with vector.apply(model.decoder, 5.0):
        cached = model.decoder.generate(inputs_embeds=embeds, use_cache=True, **kwargs)
        uncached = model.decoder.generate(inputs_embeds=embeds, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached) and cached.shape == plain.shape
