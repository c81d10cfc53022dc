"""What the text explainer reads from a model: its embedding layer, labels, vocabulary size, and the label score."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError, ModelError
from ..models import embedding_layer


class LabelScore:
    """Score of one label per example: logit, probability or log-probability (sigmoid for multi-label models)."""

    def __init__(self, index: torch.Tensor, transform: str, multi_label: bool) -> None:
        self.index = index
        self.transform = transform
        self.multi_label = multi_label

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 2:
            raise ModelError("model", f"expected logits [batch, labels], got shape {tuple(output.shape)}")
        picked = output.gather(1, self.index.to(output.device)[:, None])[:, 0]
        if self.transform == "logit":
            return picked
        if self.multi_label:
            return torch.sigmoid(picked) if self.transform == "probability" else nn.functional.logsigmoid(picked)
        norm = output.logsumexp(dim=1)
        return (picked - norm).exp() if self.transform == "probability" else picked - norm

    def select(self, example: torch.Tensor) -> LabelScore:
        return LabelScore(self.index.to(example.device)[example], self.transform, self.multi_label)

    def __repr__(self) -> str:
        return f"label-{self.transform}"


def is_hf_model(model: Any) -> bool:
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config")


def find_embedding(model: nn.Module, embedding: nn.Module | str | None) -> tuple[str, nn.Module]:
    from ..layers import resolve_layer

    if embedding is not None:
        try:
            return resolve_layer(model, embedding)
        except InputError as error:
            raise InputError("embedding", str(error).split(": ", 1)[-1]) from None
    try:
        return resolve_layer(model, embedding_layer(model))
    except (ModelError, InputError) as error:
        raise InputError("embedding", f"cannot tell which embedding layer to attribute ({error}); pass one") from None


def vocab_rows(model: nn.Module, module: nn.Module) -> int | None:
    """Rows of the token-embedding table: ``module``'s own, else the model's input embedding's (None if no table)."""
    if not isinstance(module, nn.Embedding):
        try:
            module = embedding_layer(model)
        except ModelError:
            return None
    return module.num_embeddings if isinstance(module, nn.Embedding) else None


def model_labels(model: Any, labels: Sequence[str] | None) -> tuple[str, ...] | None:
    if labels is not None:
        return tuple(str(x) for x in labels)
    own = getattr(model, "labels", None)
    if isinstance(own, (tuple, list)) and all(isinstance(x, str) for x in own):
        return tuple(own)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        return tuple(str(id2label[i]) for i in sorted(id2label))
    return None
