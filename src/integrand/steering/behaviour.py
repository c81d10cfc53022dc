"""Steering judged on behaviour: batched generation under a steering vector, fluency, and the selection rule.

``measure`` generates one continuation per prompt (left-padded batches, the steering hook active),
then scores them with a :class:`~integrand.steering.judges.Judge`, their perplexity under the
*unsteered* model (continuation tokens only, conditioned on the prompt) and distinct-1/2.
``select`` is the rule fixed before any run: the setting whose mean judge score moves furthest in
the judge's target direction among those with perplexity at most ``max_ratio`` times the unsteered one.
``random_like`` gives the control: random directions with the same per-layer norms.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from ..errors import InputError
from ..models import logits_of
from ..progress import bar as progress_bar
from .evaluate import next_token_logprobs
from .examples import Encoder
from .hooks import capture
from .judges import Judge, distinct_n
from .vector import SteeringVector

MAX_PERPLEXITY_RATIO = 1.5


@dataclass(frozen=True)
class Generations:
    """Continuations of ``prompts``: decoded ``texts`` and generated ``token_ids`` (up to and with the first EOS)."""

    prompts: tuple[str, ...]
    prompt_ids: tuple[tuple[int, ...], ...]
    token_ids: tuple[tuple[int, ...], ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """One setting measured on a prompt set: mean judge score, perplexity, distinct-1/2 and the texts."""

    method: str
    layer: int | None
    strength: float
    judge: str
    score: float
    perplexity: float
    distinct_1: float
    distinct_2: float
    n: int
    texts: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """The numbers (no texts), for tables and JSON."""
        return {
            "method": self.method,
            "layer": self.layer,
            "strength": self.strength,
            "judge": self.judge,
            "score": self.score,
            "perplexity": self.perplexity,
            "distinct_1": self.distinct_1,
            "distinct_2": self.distinct_2,
            "n": self.n,
        }


def _prompt_list(prompts: Any) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
        raise InputError("prompts", "expected a non-empty list of prompt strings")
    if not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InputError("prompts", "every prompt must be a non-empty string")
    return list(prompts)


def _positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(argument, f"expected an integer >= 1, got {value!r}")
    return value


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids = {
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    }
    out: set[int] = set()
    for value in ids:
        if isinstance(value, int):
            out.add(value)
        elif isinstance(value, (list, tuple)):
            out.update(v for v in value if isinstance(v, int))
    return out


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    vector: SteeringVector | None = None,
    strength: float = 0.0,
    layers: Sequence[int] | None = None,
    max_new_tokens: int = 24,
    sample: bool = True,
    temperature: float = 0.8,
    top_k: int = 50,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool | None = None,
) -> Generations:
    """One continuation per prompt, ``batch_size`` prompts per left-padded ``model.generate`` call.

    Prompts get the tokenizer's BOS as in :func:`~integrand.steering.fit`. Sampling (``sample=True``:
    ``temperature``, ``top_k``) is seeded per batch from ``seed`` without touching the global RNG, so
    the same prompts and seed draw the same random numbers with and without steering; ``sample=False``
    is greedy. ``vector`` (None: unsteered) is applied at ``strength`` on ``layers`` (None: all its layers).
    """
    texts = _prompt_list(prompts)
    _positive_int(max_new_tokens, "max_new_tokens")
    _positive_int(batch_size, "batch_size")
    if sample and not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InputError("temperature", f"expected a positive number, got {temperature!r}")
    encoder = Encoder(model, tokenizer)
    device = encoder.weight.device
    eos = _eos_ids(tokenizer, model)
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if isinstance(pad, int) else min(eos) if eos else 0
    ids = [encoder.token_ids(p, f"prompts[{i}]", prompt=True) for i, p in enumerate(texts)]
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad, "do_sample": bool(sample)}
    if sample:
        options.update(temperature=float(temperature), top_k=int(top_k), top_p=1.0)
    else:
        options.update(temperature=None, top_k=None, top_p=None)
    context = vector.apply(model, strength, layers) if vector is not None else nullcontext()
    generated: list[tuple[int, ...]] = []
    with context, torch.no_grad(), progress_bar("generating: prompts", len(ids), progress) as bar:
        for number, start in enumerate(range(0, len(ids), batch_size)):
            chunk = ids[start : start + batch_size]
            width = max(len(row) for row in chunk)
            seq = torch.tensor([[pad] * (width - len(row)) + row for row in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in chunk], device=device)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + number)
                out = model.generate(input_ids=seq, attention_mask=mask, **options)
            for row in out[:, width:].tolist():
                cut = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
                generated.append(tuple(row[:cut]))
            bar.advance(len(chunk))
    decoded = tuple(tokenizer.decode(list(row), skip_special_tokens=True) for row in generated)
    return Generations(tuple(texts), tuple(tuple(r) for r in ids), tuple(generated), decoded)


def continuation_perplexity(model: Any, generations: Generations, *, batch_size: int = 16) -> float:
    """``exp`` of the mean negative log-likelihood of all continuation tokens under ``model`` (as it is now).

    Each continuation is scored after its own prompt; prompts are not scored. NaN when no token was generated.
    """
    _positive_int(batch_size, "batch_size")
    device = next(model.parameters()).device
    total, count = 0.0, 0
    rows = [(p, c) for p, c in zip(generations.prompt_ids, generations.token_ids) if c]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        logp, _ = next_token_logprobs(model, [list(p) + list(c) for p, c in chunk], device)
        for i, (p, c) in enumerate(chunk):
            total -= float(logp[i, len(p) - 1 : len(p) - 1 + len(c)].sum())
            count += len(c)
    return math.exp(total / count) if count else float("nan")


def token_norms(model: Any, tokenizer: Any, texts: Sequence[str], layers: Sequence[int]) -> dict[int, float]:
    """Median hidden-state norm at each block's output over the tokens of ``texts`` (BOS excluded).

    Strengths are easiest to compare as a share of it: ``strength = share * norm / |v|``.
    """
    encoder = Encoder(model, tokenizer)
    skip = 1 if encoder.add_bos else 0
    with torch.no_grad(), capture(model, list(layers)) as records:
        for i, text in enumerate(_prompt_list(texts)):
            ids = encoder.token_ids(text, f"texts[{i}]", prompt=True)
            model(input_ids=torch.tensor([ids], device=encoder.weight.device), use_cache=False)
    return {layer: float(torch.cat([r[0, skip:].norm(dim=-1) for r in records[layer]]).median()) for layer in layers}


def random_like(vector: SteeringVector, seed: int = 0) -> SteeringVector:
    """A control vector: at each layer a uniformly random direction with the same norm as ``vector``'s."""
    generator = torch.Generator().manual_seed(seed)
    vectors = {}
    for layer in vector.layers:
        v = vector.vectors[layer]
        draw = torch.randn(v.shape[0], generator=generator, dtype=torch.float64)
        vectors[layer] = (draw / draw.norm() * float(v.double().norm())).to(dtype=v.dtype, device=v.device)
    return replace(
        vector,
        vectors=vectors,
        method="random",
        variant="both",
        k=None,
        positive=None,
        negative=None,
        explained={},
        params={"seed": seed, "norm_of": vector.method},
    )


def measure(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    judge: Judge,
    *,
    vector: SteeringVector | None = None,
    strength: float = 0.0,
    layer: int | None = None,
    max_new_tokens: int = 24,
    sample: bool = True,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool | None = None,
) -> Outcome:
    """Generate under ``vector`` at ``strength`` (on ``layer``; None: all its layers) and score the texts.

    Perplexity is taken under the unsteered model: the steering hook is off while it is computed.
    """
    layers = None if layer is None else [layer]
    gens = generate(
        model,
        tokenizer,
        prompts,
        vector=vector,
        strength=strength,
        layers=layers,
        max_new_tokens=max_new_tokens,
        sample=sample,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    texts = list(gens.texts)
    return Outcome(
        method="none" if vector is None else vector.method,
        layer=layer,
        strength=float(strength) if vector is not None else 0.0,
        judge=judge.name,
        score=judge.mean(texts),
        perplexity=continuation_perplexity(model, gens, batch_size=batch_size),
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        n=len(texts),
        texts=gens.texts,
    )


def select(
    outcomes: Sequence[Outcome], unsteered: Outcome, target: int, *, max_ratio: float = MAX_PERPLEXITY_RATIO
) -> Outcome | None:
    """The outcome moving the judge furthest towards ``target`` (+1 up, -1 down) among those with
    ``perplexity <= max_ratio * unsteered.perplexity``; ties go to the lower perplexity.

    None when no outcome qualifies or none improves on ``unsteered`` (then "no steering" is the choice).
    """
    if target not in (1, -1):
        raise InputError("target", f"expected +1 or -1, got {target!r}")
    if not (isinstance(max_ratio, (int, float)) and max_ratio > 0):
        raise InputError("max_ratio", f"expected a positive number, got {max_ratio!r}")
    limit = max_ratio * unsteered.perplexity
    allowed = [o for o in outcomes if math.isfinite(o.perplexity) and o.perplexity <= limit and math.isfinite(o.score)]
    better = [o for o in allowed if target * o.score > target * unsteered.score]
    if not better:
        return None
    return min(better, key=lambda o: (-target * o.score, o.perplexity))


def next_token_probability(
    model: Any,
    prompts: Sequence[torch.Tensor],
    token_id: int,
    *,
    vector: SteeringVector | None = None,
    strength: float = 0.0,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """``[len(prompts)]``: the probability that the next token after each embedding prompt ``[P, hidden]``
    is ``token_id``, with ``vector`` applied at ``strength`` (None: unsteered).

    For models fed ``inputs_embeds`` (a vision-language model's decoder with image tokens in the prompt).
    """
    if isinstance(prompts, torch.Tensor) or not isinstance(prompts, Sequence) or not prompts:
        raise InputError("prompts", "expected a non-empty list of embedding tensors [positions, hidden]")
    if not all(isinstance(p, torch.Tensor) and p.is_floating_point() and p.dim() == 2 for p in prompts):
        raise InputError("prompts", "every prompt must be a float tensor [positions, hidden]")
    vocab = int(Encoder(model, None, baseline="zeros").vocab)
    if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < vocab:
        raise InputError("token_id", f"expected a token id in [0, {vocab}), got {token_id!r}")
    lengths = [int(p.shape[0]) for p in prompts]
    width = max(lengths)
    seq = torch.stack([torch.cat([p, p.new_zeros(width - n, p.shape[1])]) for p, n in zip(prompts, lengths)])
    mask = torch.stack([torch.arange(width) < n for n in lengths]).long().to(seq.device)
    context = vector.apply(model, strength, layers) if vector is not None else nullcontext()
    with context, torch.no_grad():
        out = model(inputs_embeds=seq, attention_mask=mask, use_cache=False)
        logits = logits_of(out)
    last = logits[torch.arange(len(prompts)), torch.tensor(lengths) - 1]
    probability: torch.Tensor = last.double().softmax(dim=-1)[:, token_id].cpu()
    return probability
