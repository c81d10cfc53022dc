"""Leave-one-out occlusion of generated tokens: the default method of ``GenerationExplainer``.

Each source position (every token before a target, fixed sink positions excepted) has its input
embedding replaced by the mean input embedding of the ordinary tokens, one position at a time; the
attribution of target ``k`` to source ``j`` is the attributed score of target ``k`` (log P by
default; any step function, contrastive ones included: log P(target) - log P(foil), ...) with
everything minus the same score with ``j`` removed. One forward pass per source position, batched,
no gradients, nothing to integrate: the values are exact (``converged`` is True, ``delta`` is None).

Encoder-decoder models remove source tokens and decoder inputs (the target prefix) alike; the
decoder start token stays. It was the most faithful method on the held-out facts of
``bench/faithfulness_lm.py`` (docs/faithfulness.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ..errors import InputError
from ..models import logits_of
from ..progress import bar
from .batching import Row
from .result import GenerationAttribution
from .steps import StepArgs, StepFunction

if TYPE_CHECKING:
    from .seq2seq import Seq2Seq

CHUNK = 32
"""Occluded variants per forward pass."""

Forward = Callable[[torch.Tensor], torch.Tensor]
"""Embedding variants ``[V, L, H]`` -> logits of every target position ``[V, T, vocab]``."""


@dataclass(frozen=True)
class Scores:
    """What occlusion evaluates: the attributed step function, the logged ones, and their contrast inputs."""

    name: str
    fn: StepFunction
    logged: Mapping[str, StepFunction]
    contrast_logprobs: torch.Tensor | None = None  # [B, T, vocab] under contrast_prompt=


@dataclass(frozen=True)
class Layout:
    """One row as occlusion sees it: token ids, the ids the model reads, sources, targets, forward pass."""

    seq: list[int]  # the result's tokens
    inputs: list[int]  # the ids whose embeddings are occluded (batch positions = matrix columns)
    sources: list[int]  # positions removed one at a time
    n_prompt: int
    fixed: tuple[int, ...]
    forward: Forward
    groups: dict[str, tuple[int, int]] | None
    n_encoder: int | None = None


def check_exact(**options: object) -> None:
    """Occlusion integrates nothing: an integration keyword or a gradient mode given with it is a mistake."""
    for name, value in options.items():
        if value is not None and not (name == "gradient_mode" and value == "auto"):
            raise InputError(
                name,
                f"{name}= has no effect on method='occlusion' (exact, nothing to integrate, no gradients); "
                "pass method='integrated_gradients' to integrate",
            )


def decoder_layout(model: Any, r: Row, device: torch.device) -> Layout:
    """Decoder-only: the prompt and all targets but the last; target ``k`` is read at position ``n_prompt - 1 + k``."""
    seq = r.prompt + r.targets
    n = len(r.prompt)

    def forward(chunk: torch.Tensor) -> torch.Tensor:
        return logits_of(model(inputs_embeds=chunk, use_cache=False))[:, n - 1 :]

    return Layout(seq, seq[:-1], list(range(r.fixed, len(seq) - 1)), n, tuple(range(r.fixed)), forward, r.groups)


def seq2seq_layout(s2s: Seq2Seq, r: Row, device: torch.device) -> Layout:
    """Encoder-decoder: source tokens, then the decoder start token (kept) and the targets but the last."""
    from .seq2seq import embedding_queue

    n, t = len(r.prompt), len(r.targets)
    source = torch.tensor([r.prompt], device=device)
    decoder = torch.tensor([[s2s.start, *r.targets[:-1]]], device=device)

    def forward(chunk: torch.Tensor) -> torch.Tensor:
        v = chunk.shape[0]
        with embedding_queue(s2s.layers) as queue:
            queue[:] = [chunk[:, :n], chunk[:, n:]]
            out = s2s.model(
                input_ids=source.expand(v, -1),
                attention_mask=torch.ones_like(source).expand(v, -1),
                decoder_input_ids=decoder.expand(v, -1),
                use_cache=False,
            )
        return logits_of(out)

    sources = [*range(r.fixed, n), *range(n + 1, n + t)]
    groups = {**(r.groups or {}), "source": (0, n), "target prefix": (n, n + t)}
    seq = [*r.prompt, s2s.start, *r.targets]
    return Layout(seq, seq[:-1], sources, n + 1, (*range(r.fixed), n), forward, groups, n_encoder=n)


def _score(fn: StepFunction, logits: torch.Tensor, r: Row, contrast: torch.Tensor | None) -> torch.Tensor:
    """``fn`` on logits ``[V, T, vocab]`` of row ``r``'s targets -> ``[V, T]`` (float64)."""
    v, t, vocab = logits.shape
    lg = logits.double()
    targets = torch.tensor(r.targets, device=lg.device).repeat(v)
    foil = None if r.contrast is None else torch.tensor(r.contrast, device=lg.device).repeat(v)
    other = None if contrast is None else contrast[:t].to(lg).repeat(v, 1)
    args = StepArgs(logits=lg.reshape(v * t, vocab), target_ids=targets, contrast_ids=foil, contrast_logprobs=other)
    return fn(args).reshape(v, t).double()


def occlusion_rows(
    model: Any,
    tokenizer: Any,
    embed: Callable[[torch.Tensor], torch.Tensor],
    rows: list[Row],
    removed: torch.Tensor,
    device: torch.device,
    scores: Scores,
    seq2seq: Seq2Seq | None = None,
    progress: bool | None = None,
) -> list[GenerationAttribution]:
    """One ``GenerationAttribution`` per row: leave-one-out effects on the score of each target token."""
    layouts = [
        seq2seq_layout(seq2seq, r, device) if seq2seq is not None else decoder_layout(model, r, device) for r in rows
    ]
    total = sum(len(lay.sources) + 1 for lay in layouts)
    results = []
    with bar("occlusion: forward passes", total, progress) as shown:
        for b, (r, lay) in enumerate(zip(rows, layouts)):
            contrast = None if scores.contrast_logprobs is None else scores.contrast_logprobs[b]
            x = embed(torch.tensor([lay.inputs], device=device))[0]
            variants = x.repeat(len(lay.sources) + 1, 1, 1)
            for v, j in enumerate(lay.sources, start=1):
                variants[v, j] = removed.to(variants)
            parts, logged = [], {}
            with torch.no_grad():
                for start in range(0, variants.shape[0], CHUNK):
                    logits = lay.forward(variants[start : start + CHUNK])
                    parts.append(_score(scores.fn, logits, r, contrast).cpu())
                    if start == 0:
                        logged = {n: _score(f, logits[:1], r, contrast)[0].cpu() for n, f in scores.logged.items()}
                    shown.advance(int(logits.shape[0]))
            s = torch.cat(parts)
            n_t, n_src = len(r.targets), len(lay.seq) - 1
            matrix = torch.zeros(n_t, n_src, dtype=torch.float64)
            matrix[:, lay.sources] = (s[0:1] - s[1:]).T
            # Target k cannot depend on tokens at or after its own position.
            later = torch.arange(n_src)[None, :] >= (lay.n_prompt + torch.arange(n_t))[:, None]
            matrix[later] = 0
            dtype = x.dtype
            results.append(
                GenerationAttribution(
                    tokens=tuple(tokenizer.decode([i]) for i in lay.seq),
                    token_ids=torch.tensor(lay.seq),
                    n_prompt=lay.n_prompt,
                    matrix=matrix.to(dtype),
                    step_scores={n: v.to(dtype) for n, v in logged.items()},
                    score_input=s[0].to(dtype),
                    score_baseline=None,
                    delta=None,
                    steps=torch.ones(n_t, dtype=torch.long),
                    converged=torch.ones(n_t, dtype=torch.bool),
                    method="occlusion",
                    score=scores.name,
                    fixed_positions=lay.fixed,
                    params={"forward_points": len(lay.sources) + 1, "exact": True},
                    source_groups=lay.groups,
                    n_encoder=lay.n_encoder,
                )
            )
    return results
