"""Preference examples and their encoding into prompt embeddings plus answer token ids.

A prompt is text, token ids, or a float tensor of input embeddings ``[positions, hidden]``
(e.g. a vision-language model's projected image tokens joined with text embeddings), so
attribution and masking work on embeddings whatever produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import torch

from ..errors import InputError, ModelError
from ..models import embedding_layer

PromptSpec = Union[str, Sequence[int], torch.Tensor]
AnswerSpec = Union[str, Sequence[int], torch.Tensor]
BaselineSpec = Union[str, int]
PromptPart = Union[str, torch.Tensor]


@dataclass(frozen=True)
class Preference:
    """A prompt with a preferred and a dispreferred answer.

    ``baseline`` (embedding prompts only) gives the embedding each position is masked to and
    the start of the integration path (default: zeros); ``fixed`` leading positions keep their
    real embedding (None: the leading BOS tokens of a token prompt, 0 for embedding prompts).
    """

    prompt: PromptSpec
    preferred: AnswerSpec
    dispreferred: AnswerSpec
    baseline: torch.Tensor | None = None
    fixed: int | None = None


@dataclass(frozen=True)
class Encoded:
    """One example ready for the model: prompt embeddings, their baseline, answer ids."""

    embeds: torch.Tensor  # [P, hidden]
    baseline: torch.Tensor  # [P, hidden]
    fixed: int
    preferred: torch.Tensor  # [A1] long
    dispreferred: torch.Tensor  # [A2] long
    tokens: tuple[str, ...]


def input_embeddings(model: Any) -> torch.nn.Module:
    """The model's token-embedding module (a ModelError when it has none)."""
    layer = embedding_layer(model)
    if not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise ModelError("model", "expected a Hugging Face causal LM whose get_input_embeddings() has a weight")
    return layer


def as_preference(item: Any, index: int) -> Preference:
    """A Preference from a Preference, a (prompt, preferred, dispreferred) triple or a mapping."""
    if isinstance(item, Preference):
        return item
    if isinstance(item, Mapping):
        missing = {"prompt", "preferred", "dispreferred"} - set(item)
        if missing:
            raise InputError(f"examples[{index}]", f"missing keys {sorted(missing)}")
        return Preference(item["prompt"], item["preferred"], item["dispreferred"])
    if isinstance(item, (tuple, list)) and len(item) == 3:
        return Preference(item[0], item[1], item[2])
    raise InputError(
        f"examples[{index}]",
        f"expected a Preference, a (prompt, preferred, dispreferred) triple or a mapping, got {type(item).__name__}",
    )


def as_preferences(examples: Any) -> list[Preference]:
    if isinstance(examples, (str, bytes, Mapping)) or not isinstance(examples, Sequence) or not examples:
        raise InputError("examples", "expected a non-empty list of preference examples")
    return [as_preference(item, i) for i, item in enumerate(examples)]


class Encoder:
    """Turns preference examples into :class:`Encoded` for one model and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, baseline: BaselineSpec = "pad", add_bos: bool | None = None) -> None:
        self.embedding = input_embeddings(model)
        weight = self.embedding.weight
        assert isinstance(weight, torch.Tensor)
        self.weight: torch.Tensor = weight
        self.tokenizer = tokenizer
        self.vocab = int(weight.shape[0])
        self.hidden = int(weight.shape[1])
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos = bos if isinstance(bos, int) else None
        self.add_bos = self.bos is not None if add_bos is None else bool(add_bos)
        self.baseline_id = self._baseline_id(baseline)

    def _baseline_id(self, spec: BaselineSpec) -> int | None:
        if isinstance(spec, bool):
            raise InputError("baseline", "expected a token name, a token id or 'zeros', got a bool")
        if isinstance(spec, int):
            if not 0 <= spec < self.vocab:
                raise InputError("baseline", f"token id {spec} is out of range for a vocabulary of {self.vocab}")
            return spec
        if spec == "zeros":
            return None
        order = {"pad": ("pad", "unk", "eos"), "unk": ("unk",), "eos": ("eos",), "bos": ("bos",)}.get(str(spec))
        if order is None:
            raise InputError("baseline", f"expected 'pad', 'unk', 'eos', 'bos', 'zeros' or a token id, got {spec!r}")
        for name in order:
            value = getattr(self.tokenizer, f"{name}_token_id", None)
            if isinstance(value, int):
                return value
        if self.tokenizer is None:
            raise InputError("baseline", f"baseline={spec!r} needs a tokenizer; pass a token id or 'zeros'")
        raise InputError("baseline", f"the tokenizer has no {spec} token; pass a token id or 'zeros'")

    def token_ids(self, value: Any, argument: str, prompt: bool) -> list[int]:
        if isinstance(value, str):
            if self.tokenizer is None:
                raise InputError("tokenizer", f"{argument} is text, which needs a tokenizer")
            if not value.strip():
                raise InputError(argument, "is empty")
            ids = [int(i) for i in self.tokenizer(value, add_special_tokens=prompt)["input_ids"]]
            if prompt and self.add_bos and self.bos is not None and (not ids or ids[0] != self.bos):
                ids = [self.bos, *ids]
        elif isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() == 1:
            ids = [int(i) for i in value.tolist()]
        elif isinstance(value, Sequence) and all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            ids = [int(i) for i in value]
        else:
            raise InputError(argument, f"expected text or a list of token ids, got {type(value).__name__}")
        if not ids:
            raise InputError(argument, "has no tokens")
        if any(not 0 <= i < self.vocab for i in ids):
            raise InputError(argument, f"token ids out of range for a vocabulary of {self.vocab}")
        return ids

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        weight = self.weight
        with torch.no_grad():
            return self.embedding(torch.tensor(list(ids), device=weight.device)).detach()  # type: ignore[no-any-return]

    def baseline_rows(self, n: int) -> torch.Tensor:
        weight = self.weight
        if self.baseline_id is None:
            return torch.zeros(n, self.hidden, dtype=weight.dtype, device=weight.device)
        return self.embed([self.baseline_id]).expand(n, -1).clone()

    def encode(self, example: Preference, index: int) -> Encoded:
        where = f"examples[{index}]"
        preferred = self.token_ids(example.preferred, f"{where}.preferred", prompt=False)
        dispreferred = self.token_ids(example.dispreferred, f"{where}.dispreferred", prompt=False)
        if preferred == dispreferred:
            raise InputError(f"{where}.dispreferred", "the preferred and dispreferred answers are identical")
        prompt = example.prompt
        weight = self.weight
        if isinstance(prompt, torch.Tensor) and prompt.is_floating_point():
            if prompt.dim() != 2 or prompt.shape[1] != self.hidden or prompt.shape[0] < 1:
                raise InputError(
                    f"{where}.prompt", f"expected embeddings [positions, {self.hidden}], got {tuple(prompt.shape)}"
                )
            if not bool(torch.isfinite(prompt).all()):
                raise InputError(f"{where}.prompt", "contains NaN or Inf")
            embeds = prompt.detach().to(device=weight.device, dtype=weight.dtype)
            if example.baseline is None:
                baseline = torch.zeros_like(embeds)
            elif not isinstance(example.baseline, torch.Tensor) or example.baseline.shape != prompt.shape:
                raise InputError(f"{where}.baseline", f"expected a tensor of shape {tuple(prompt.shape)}")
            else:
                baseline = example.baseline.detach().to(device=weight.device, dtype=weight.dtype)
            fixed = 0 if example.fixed is None else example.fixed
            tokens = tuple(f"<embedding {i}>" for i in range(embeds.shape[0]))
        else:
            if example.baseline is not None:
                raise InputError(f"{where}.baseline", "only embedding prompts take a baseline tensor; use baseline=")
            ids = self.token_ids(prompt, f"{where}.prompt", prompt=True)
            embeds = self.embed(ids)
            baseline = self.baseline_rows(len(ids))
            fixed = example.fixed if example.fixed is not None else _leading(ids, self.bos)
            decode = getattr(self.tokenizer, "decode", None)
            tokens = tuple(decode([i]) if callable(decode) else str(i) for i in ids)
        if isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 0:
            raise InputError(f"{where}.fixed", f"expected an integer >= 0, got {fixed!r}")
        if fixed >= embeds.shape[0]:
            raise InputError(f"{where}.fixed", f"{fixed} fixed positions leave no prompt token to attribute")
        baseline = baseline.clone()
        baseline[:fixed] = embeds[:fixed]
        return Encoded(
            embeds=embeds,
            baseline=baseline,
            fixed=fixed,
            preferred=torch.tensor(preferred, device=weight.device),
            dispreferred=torch.tensor(dispreferred, device=weight.device),
            tokens=tokens,
        )

    def encode_all(self, examples: Any) -> list[Encoded]:
        return [self.encode(e, i) for i, e in enumerate(as_preferences(examples))]

    def prompt_embeddings(self, parts: Sequence[PromptPart]) -> Preference:
        """A prompt joined from text pieces (embedded) and embedding tensors, e.g. projected image tokens.

        Returns a :class:`Preference` template (answers empty) whose baseline is the baseline
        token's embedding on text and zeros on embedding pieces; the tokenizer's BOS (if any)
        is prepended and kept fixed. Use ``dataclasses.replace(p, preferred=..., dispreferred=...)``.
        """
        if isinstance(parts, (str, torch.Tensor)) or not isinstance(parts, Sequence) or not parts:
            raise InputError("parts", "expected a non-empty list of text pieces and embedding tensors")
        bos = [self.bos] if self.add_bos and self.bos is not None else []
        embeds = [self.embed(bos)] if bos else []
        baselines = [self.embed(bos)] if bos else []
        for i, part in enumerate(parts):
            if isinstance(part, str):
                ids = self.token_ids(part, f"parts[{i}]", prompt=False)
                embeds.append(self.embed(ids))
                baselines.append(self.baseline_rows(len(ids)))
            elif isinstance(part, torch.Tensor) and part.is_floating_point() and part.dim() == 2:
                if part.shape[1] != self.hidden:
                    raise InputError(f"parts[{i}]", f"expected embeddings [n, {self.hidden}], got {tuple(part.shape)}")
                embeds.append(part.detach().to(device=self.weight.device, dtype=self.weight.dtype))
                baselines.append(torch.zeros_like(embeds[-1]))
            else:
                raise InputError(f"parts[{i}]", "expected text or a float tensor of embeddings [n, hidden]")
        return Preference(torch.cat(embeds), (), (), baseline=torch.cat(baselines), fixed=len(bos))


def _leading(ids: list[int], bos: int | None) -> int:
    n = 0
    while bos is not None and n < len(ids) - 1 and ids[n] == bos:
        n += 1
    return n
