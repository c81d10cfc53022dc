"""Small transformer and CNN models built locally for the layer tests (no hub access)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

D = torch.float64


def tiny_bert(layers: int = 3, labels: int = 3, dtype: torch.dtype = D) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=labels, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config).to(dtype).eval()


def tiny_gpt2(layers: int = 2, dtype: torch.dtype = D) -> nn.Module:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=60, n_positions=32, n_embd=16, n_layer=layers, n_head=2, num_labels=2,
                        pad_token_id=0, bos_token_id=1, eos_token_id=1)
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(config).to(dtype).eval()


def token_batch(batch: int = 3, length: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 60, (batch, length), generator=gen)
    ids[:, 0] = 2
    mask = torch.ones_like(ids)
    if batch > 1:
        mask[1, length - 3 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


class Counting:
    """Wraps ``module.forward`` (an instance attribute, removed by ``close``) to count the rows it computes."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.rows: dict[str, int] = dict.fromkeys(modules, 0)
        self.modules = modules
        for name, module in modules.items():
            module.forward = self._wrap(name, module.forward)  # type: ignore[method-assign]

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            first = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            self.rows[name] += first.shape[0]
            return original(*args, **kwargs)

        return forward

    def close(self) -> None:
        for module in self.modules.values():
            del module.__dict__["forward"]
