"""Running a causal LM on interpolated input embeddings, scoring several target positions at once.

The embedding layer's output is replaced inside a context manager (the hook is removed on
every exit path), so any Hugging Face causal LM works without ``inputs_embeds`` support.
When the model's logits are exactly its output-embedding layer applied to its base model's
last hidden state (checked numerically on the real input), the head runs separately at each
target position: one target's backward pass then never touches the others' vocab projections.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..errors import ModelError
from ..models import logits_of


@contextmanager
def embedding_override(layer: torch.nn.Module) -> Iterator[list[torch.Tensor | None]]:
    """While active, the layer's output is ``slot[0]`` whenever that is set (else its own output)."""
    slot: list[torch.Tensor | None] = [None]

    def hook(_module: torch.nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        value = slot[0]
        if value is None:
            return output
        if value.shape != output.shape:
            raise ModelError(
                "model", f"embedding output has shape {tuple(output.shape)}, expected {tuple(value.shape)}"
            )
        return value

    handle = layer.register_forward_hook(hook)
    try:
        yield slot
    finally:
        handle.remove()


@dataclass(frozen=True)
class Batch:
    """Left-padded sequences (prompt + targets) with per-row target positions.

    ``score_positions[b, k]`` is the position whose next-token logits score target ``k`` of
    row ``b`` (the target's own position minus one); ``valid[b, k]`` is False for padding targets.
    """

    ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    score_positions: torch.Tensor  # [B, T]
    target_ids: torch.Tensor  # [B, T]
    valid: torch.Tensor  # [B, T] bool


class Runner:
    """Forward passes of one causal LM on given embeddings, returning logits at score positions."""

    def __init__(self, model: Any, slot: list[torch.Tensor | None]) -> None:
        self.model = model
        self.slot = slot
        self.split_head: tuple[torch.nn.Module, torch.nn.Module] | None = None
        self.forwards = 0

    def try_split_head(self, batch: Batch, embeds: torch.Tensor) -> bool:
        """Use base model + per-position head if that reproduces the model's logits on ``embeds``."""
        body = getattr(self.model, "base_model", None)
        getter = getattr(self.model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        if body is None or body is self.model or not isinstance(head, torch.nn.Module):
            return False
        with torch.no_grad():
            reference = self._full(batch, torch.arange(batch.ids.shape[0]), embeds)
            self.split_head = (body, head)
            try:
                candidate = self._split(batch, torch.arange(batch.ids.shape[0]), embeds)
            except Exception:  # noqa: BLE001 - any failure means the fast path does not apply
                self.split_head = None
                return False
        ok = all(
            torch.allclose(c, r, rtol=1e-4, atol=1e-4 * float(r.abs().max()) + 1e-6)
            for c, r in zip(candidate, reference)
        )
        if not ok:
            self.split_head = None
        return ok

    def logits(self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor) -> list[torch.Tensor]:
        """Next-token logits ``[points, vocab]`` for each target column, at embeddings ``embeds`` of ``rows``."""
        self.forwards += int(rows.shape[0])
        if self.split_head is not None:
            return self._split(batch, rows, embeds)
        return self._full(batch, rows, embeds)

    def _call(self, module: Any, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor, **extra: Any) -> Any:
        self.slot[0] = embeds
        try:
            return module(
                input_ids=batch.ids[rows],
                attention_mask=batch.attention_mask[rows],
                position_ids=batch.position_ids[rows],
                use_cache=False,
                **extra,
            )
        finally:
            self.slot[0] = None

    def _full(self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor) -> list[torch.Tensor]:
        positions = batch.score_positions[rows]
        try:
            out = self._call(self.model, batch, rows, embeds, logits_to_keep=positions)
            logits = logits_of(out)
        except TypeError:
            out = self._call(self.model, batch, rows, embeds)
            full = logits_of(out)
            logits = torch.take_along_dim(full, positions[..., None], dim=1)
        if logits.dim() != 3 or logits.shape[1] != positions.shape[1]:
            raise ModelError(
                "model", f"expected logits [points, {positions.shape[1]}, vocab], got {tuple(logits.shape)}"
            )
        return [logits[:, k] for k in range(positions.shape[1])]

    def _split(self, batch: Batch, rows: torch.Tensor, embeds: torch.Tensor) -> list[torch.Tensor]:
        assert self.split_head is not None
        body, head = self.split_head
        out = self._call(body, batch, rows, embeds)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        positions = batch.score_positions[rows]
        index = torch.arange(hidden.shape[0], device=hidden.device)
        # Separate head branches: target k's backward pass only goes through its own projection.
        return [head(hidden[index, positions[:, k]]) for k in range(positions.shape[1])]
