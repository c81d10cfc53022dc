"""Batches of encoded texts: padding to a common length, and which texts may share a batch."""

from __future__ import annotations

from typing import Sequence

import torch

from .tokenizers import Encoding, TextTokenizer


def pad_batch(
    tokenizer: TextTokenizer, device: torch.device, encodings: Sequence[Encoding]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, attention mask, padding mask and special-token mask, all [batch, length], padded on the tokenizer's side."""
    length = max(len(e) for e in encodings)
    left = tokenizer.padding_side == "left"
    rows: list[list[int]] = []
    padding: list[list[bool]] = []
    special: list[list[bool]] = []
    added: list[list[bool]] = []
    for e in encodings:
        extra = length - len(e)
        fill_ids, fill_true, fill_false = [tokenizer.pad_id] * extra, [True] * extra, [False] * extra
        if left:
            rows.append(fill_ids + list(e.ids))
            padding.append(fill_true + list(e.padding))
            special.append(fill_false + list(e.special))
            added.append(fill_true + [False] * len(e))
        else:
            rows.append(list(e.ids) + fill_ids)
            padding.append(list(e.padding) + fill_true)
            special.append(list(e.special) + fill_false)
            added.append([False] * len(e) + fill_true)
    # Padding the tokenizer itself inserted (fixed-length models) is part of the model's input: not masked.
    mask = ~torch.tensor(added, dtype=torch.bool, device=device)
    return (
        torch.tensor(rows, dtype=torch.long, device=device),
        mask.long(),
        torch.tensor(padding, dtype=torch.bool, device=device),
        torch.tensor(special, dtype=torch.bool, device=device),
    )


def length_groups(encodings: Sequence[Encoding], masked: bool, text_batch: int) -> list[list[int]]:
    """Indices of texts attributed together, in length order; without an attention mask only equal lengths."""
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
    groups: list[list[int]] = []
    for i in order:
        last = groups[-1] if groups else None
        fits = last is not None and len(last) < text_batch
        if last is not None and fits and (masked or len(encodings[last[0]]) == len(encodings[i])):
            last.append(i)
        else:
            groups.append([i])
    return groups
