"""Leave-one-out occlusion of generated tokens: the default method of ``GenerationExplainer``.

Each source position (every token before a target, fixed sink positions excepted) has its input
embedding replaced by the mean input embedding of the ordinary tokens, one position at a time; the
attribution of target ``k`` to source ``j`` is ``log P(target k)`` with everything minus ``log P``
with ``j`` removed. One forward pass per source position, batched, no gradients, nothing to
integrate: the values are exact (``converged`` is True, ``delta`` is None). It was the most faithful
method on the held-out facts of ``bench/faithfulness_lm.py`` (docs/faithfulness.md).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .batching import Row
from .result import GenerationAttribution

CHUNK = 32


def target_log_probs(
    model: Any, embeds: torch.Tensor, ids: torch.Tensor, n_prompt: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log P of every target token ``ids[n_prompt:]`` per embedding variant ``[V, L, H]`` -> ``[V, T]``,
    and the entropy of the first variant's next-token distributions ``[T]``."""
    out, entropy = [], None
    with torch.no_grad():
        for start in range(0, embeds.shape[0], CHUNK):
            chunk = embeds[start : start + CHUNK]
            result = model(inputs_embeds=chunk, use_cache=False)
            logits = result.logits if hasattr(result, "logits") else result[0]
            lp = logits[:, n_prompt - 1 : -1].double().log_softmax(-1)
            if entropy is None:
                entropy = -(lp[0].exp() * lp[0]).sum(-1)
            tgt = ids[n_prompt:].to(lp.device).expand(lp.shape[0], -1)
            out.append(lp.gather(-1, tgt[..., None])[..., 0])
    assert entropy is not None
    return torch.cat(out), entropy


def occlusion_rows(
    model: Any,
    tokenizer: Any,
    embed: Callable[[torch.Tensor], torch.Tensor],
    rows: list[Row],
    removed: torch.Tensor,
    device: torch.device,
) -> list[GenerationAttribution]:
    """One ``GenerationAttribution`` per row: leave-one-out effects on log P of each target token."""
    results = []
    for r in rows:
        seq = r.prompt + r.targets
        ids = torch.tensor(seq, device=device)
        x = embed(ids[None])[0]
        sources = list(range(r.fixed, len(seq) - 1))
        variants = x.repeat(len(sources) + 1, 1, 1)
        for v, j in enumerate(sources, start=1):
            variants[v, j] = removed.to(variants)
        lp, entropy = target_log_probs(model, variants, ids, len(r.prompt))
        lp = lp.cpu()
        n_t, n_src = len(r.targets), len(seq) - 1
        matrix = torch.zeros(n_t, n_src, dtype=x.dtype)
        matrix[:, sources] = (lp[0:1] - lp[1:]).T.to(x.dtype)
        # Target k cannot depend on tokens at or after its own position.
        later = torch.arange(n_src)[None, :] >= (len(r.prompt) + torch.arange(n_t))[:, None]
        matrix[later] = 0
        score = lp[0].to(x.dtype)
        results.append(
            GenerationAttribution(
                tokens=tuple(tokenizer.decode([i]) for i in seq),
                token_ids=ids.cpu(),
                n_prompt=len(r.prompt),
                matrix=matrix,
                step_scores={
                    "probability": score.exp(),
                    "log_probability": score,
                    "entropy": entropy.cpu().to(x.dtype),
                },
                score_input=score,
                score_baseline=None,
                delta=None,
                steps=torch.ones(n_t, dtype=torch.long),
                converged=torch.ones(n_t, dtype=torch.bool),
                method="occlusion",
                score="log_probability",
                fixed_positions=tuple(range(r.fixed)),
                params={"removal": "mean embedding", "forward_points": len(sources) + 1, "exact": True},
                source_groups=r.groups,
            )
        )
    return results
