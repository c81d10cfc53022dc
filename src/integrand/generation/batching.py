"""Rows of a generation attribution: token ids per prompt, and the left-padded batch built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch

from ..errors import InputError
from ..models import logits_of
from .runner import Batch

Prompts = Union[str, Sequence[str]]


@dataclass(frozen=True)
class Row:
    """One prompt: token ids of prompt and targets, optional contrast tokens and message spans."""

    prompt: list[int]
    targets: list[int]
    contrast: list[int] | None
    fixed: int
    groups: dict[str, tuple[int, int]] | None = None


def build_batch(rows: list[Row], tokenizer: Any, device: torch.device) -> tuple[Batch, list[int], torch.Tensor | None]:
    seqs = [r.prompt + r.targets for r in rows]
    length, n_t = max(len(s) for s in seqs), max(len(r.targets) for r in rows)
    pad = next((v for v in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if isinstance(v, int)), 0)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    score_pos = torch.full((len(rows), n_t), length - 1, dtype=torch.long)
    target_ids = torch.zeros((len(rows), n_t), dtype=torch.long)
    contrast = torch.zeros((len(rows), n_t), dtype=torch.long) if rows[0].contrast is not None else None
    valid = torch.zeros((len(rows), n_t), dtype=torch.bool)
    offsets = []
    for b, (r, s) in enumerate(zip(rows, seqs)):
        off = length - len(s)
        offsets.append(off)
        ids[b, off:] = torch.tensor(s)
        mask[b, off:] = 1
        t = len(r.targets)
        score_pos[b, :t] = torch.arange(off + len(r.prompt) - 1, off + len(r.prompt) - 1 + t)
        target_ids[b, :t] = torch.tensor(r.targets)
        valid[b, :t] = True
        if contrast is not None and r.contrast is not None:
            contrast[b, :t] = torch.tensor(r.contrast)
    position_ids = (mask.cumsum(dim=1) - 1).clamp_min(0)
    batch = Batch(
        ids.to(device),
        mask.to(device),
        position_ids.to(device),
        score_pos.to(device),
        target_ids.to(device),
        valid.to(device),
    )
    return batch, offsets, None if contrast is None else contrast.to(device)


def contrast_logprobs(model: Any, ids: list[int], rows: list[Row], device: torch.device) -> torch.Tensor:
    """Next-token log-distributions under the contrast prompt ``ids`` followed by each row's targets: [B, T, V]."""
    n_t = max(len(r.targets) for r in rows)
    out = []
    with torch.no_grad():
        for r in rows:
            seq = torch.tensor([ids + r.targets], device=device)
            res = model(input_ids=seq, use_cache=False)
            logits = logits_of(res)[0, len(ids) - 1 : len(ids) - 1 + len(r.targets)]
            logp = logits.log_softmax(dim=-1)
            out.append(torch.cat([logp, logp.new_zeros(n_t - len(r.targets), logp.shape[1])]))
    return torch.stack(out)


def context_window(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_fixed(fixed: int | str) -> int | str:
    if fixed == "auto":
        return fixed
    if isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 0:
        raise InputError("fixed", f"expected 'auto' or an integer >= 0, got {fixed!r}")
    return fixed


def as_list(value: Prompts, argument: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputError(argument, f"expected a string or a non-empty list of strings, got {value!r}")


def per_prompt(value: Prompts | None, n: int, argument: str) -> list[str | None]:
    if value is None:
        return [None] * n
    values = as_list(value, argument)
    if len(values) != n:
        raise InputError(argument, f"expected one {argument} per prompt ({n}), got {len(values)}")
    return list(values)
