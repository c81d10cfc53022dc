"""One :class:`TokenAttribution` per text of a padded batch, from the batch's token attributions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..result import Attribution
from .result import TokenAttribution
from .tokenizers import Encoding


@dataclass(frozen=True)
class RowMeta:
    """What every row of one batch shares: the label policy, the score, the method and its settings."""

    multi_label: bool
    score: str
    method: str
    baseline: str
    params: dict[str, Any]
    shares: Sequence[float]  # LRP's conserved share per row; empty for IG


def token_rows(
    texts: Sequence[str],
    encodings: Sequence[Encoding],
    ids: torch.Tensor,
    padding: torch.Tensor,
    special: torch.Tensor,
    token_scores: torch.Tensor,
    attribution: Attribution,
    labels: tuple[str, ...],
    probs: torch.Tensor,
    index: torch.Tensor,
    meta: RowMeta,
) -> list[TokenAttribution]:
    """Padding dropped, token scores summed into word scores, and the batch's completeness per row."""
    assert attribution.delta is not None and attribution.score_baseline is not None
    out = []
    for b, (text, enc) in enumerate(zip(texts, encodings)):
        keep = (~padding[b]).cpu()
        row_scores = token_scores[b][keep]
        word_ids = tuple(w for w, p in zip(enc.word_ids, enc.padding) if not p)
        word_scores = torch.zeros(len(enc.words), dtype=row_scores.dtype)
        for pos, w in enumerate(word_ids):
            if w is not None:
                word_scores[w] += row_scores[pos]
        out.append(
            TokenAttribution(
                text=text,
                tokens=tuple(t for t, p in zip(enc.tokens, enc.padding) if not p),
                token_ids=ids[b][keep.to(ids.device)].cpu(),
                scores=row_scores,
                special=special[b][keep.to(ids.device)].cpu(),
                word_ids=word_ids,
                words=enc.words,
                word_scores=word_scores,
                labels=labels,
                probabilities=probs[b],
                multi_label=meta.multi_label,
                target=labels[int(index[b])],
                score=meta.score,
                score_input=float(attribution.score_input[b]),
                score_baseline=float(attribution.score_baseline[b]),
                delta=float(attribution.delta[b]),
                steps=int(attribution.steps[b]),
                converged=bool(attribution.converged[b]),
                truncated=enc.truncated,
                method=meta.method,
                baseline=meta.baseline,
                params={**meta.params, "lrp_conservation": meta.shares[b]} if meta.shares else meta.params,
            )
        )
    return out
