"""``TokenAttribution``: the attribution of one text, per token and per word, with its trust numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from .. import storage
from ..convergence import relative_error_value
from ..protocol import ResultMixin

FORMAT = "integrand.TokenAttribution"
FORMAT_VERSION = 1
_TENSORS = ("token_ids", "scores", "special", "word_scores", "probabilities")
_DERIVED = ("predicted", "predicted_labels", "relative_error")


@dataclass(frozen=True, repr=False)
class TokenAttribution(ResultMixin):
    """Attribution of one text to its tokens (padding excluded; it always gets exactly zero).

    ``scores[i]`` is token i's attribution summed over the embedding dimension; ``word_scores[w]``
    sums the sub-word pieces of word ``w`` (``word_ids[i]`` is token i's word, None for special
    tokens). ``delta`` is the completeness error ``(score_input - score_baseline) - sum(scores)``.
    """

    kind: ClassVar[str] = "tokens"

    text: str
    tokens: tuple[str, ...]
    token_ids: torch.Tensor
    scores: torch.Tensor
    special: torch.Tensor
    word_ids: tuple[int | None, ...]
    words: tuple[str, ...]
    word_scores: torch.Tensor
    labels: tuple[str, ...]
    probabilities: torch.Tensor
    multi_label: bool
    target: str
    score: str
    score_input: float
    score_baseline: float
    delta: float
    steps: int
    converged: bool
    truncated: bool
    method: str
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)

    AXES = ("token",)

    def __post_init__(self) -> None:
        # params record what was explained whoever built the result: method, target, score and baseline first.
        recorded = {"method": self.method, "target": self.target, "score": self.score, "baseline": self.baseline}
        object.__setattr__(self, "params", {**recorded, **dict(self.params)})

    @property
    def values(self) -> torch.Tensor:
        """The protocol's name for ``scores``: one value per token."""
        return self.scores

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"token": self.tokens}

    def summary(self) -> str:
        """One line per top word, with the explained label and the completeness error."""
        from .views import summary_text

        return summary_text(self)

    @property
    def predicted(self) -> str:
        """The most probable label."""
        return self.labels[int(self.probabilities.argmax())]

    @property
    def predicted_labels(self) -> tuple[str, ...]:
        """Single-label models: the predicted label. Multi-label models: the one multi-label policy
        (:func:`integrand.text.toxicity.predicted_labels`): every label with probability >= 0.5 in label
        order, or ``("none",)`` when no label passes."""
        if not self.multi_label:
            return (self.predicted,)
        from .toxicity import predicted_labels

        return tuple(predicted_labels(self.probabilities, labels=self.labels))

    @property
    def relative_error(self) -> float:
        """``|delta| / |score_input - score_baseline|``."""
        return relative_error_value(self.delta, self.score_input - self.score_baseline)

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` words with the largest attribution (most positive first)."""
        order = self.word_scores.argsort(descending=True)[:k].tolist()
        return [(self.words[i], float(self.word_scores[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tensors as lists)."""
        return {
            "text": self.text,
            "tokens": list(self.tokens),
            "token_ids": self.token_ids.tolist(),
            "scores": self.scores.tolist(),
            "special": self.special.tolist(),
            "word_ids": list(self.word_ids),
            "words": list(self.words),
            "word_scores": self.word_scores.tolist(),
            "labels": list(self.labels),
            "probabilities": self.probabilities.tolist(),
            "multi_label": self.multi_label,
            "predicted": self.predicted,
            "predicted_labels": list(self.predicted_labels),
            "target": self.target,
            "score": self.score,
            "score_input": self.score_input,
            "score_baseline": self.score_baseline,
            "delta": self.delta,
            "relative_error": self.relative_error,
            "steps": self.steps,
            "converged": self.converged,
            "truncated": self.truncated,
            "method": self.method,
            "baseline": self.baseline,
            "params": self.params,
        }

    def save(self, path: str | Path) -> Path:
        """Write a ``.safetensors`` file: the tensors plus JSON metadata (never pickle)."""
        data = self.to_dict()
        meta = {k: v for k, v in data.items() if k not in _TENSORS and k not in _DERIVED}
        return storage.write(path, {k: getattr(self, k) for k in _TENSORS}, meta, FORMAT, FORMAT_VERSION)

    @classmethod
    def load(cls, path: str | Path) -> TokenAttribution:
        """Read a file written by :meth:`save`."""
        stored, meta = storage.read(path, FORMAT, FORMAT_VERSION, "a TokenAttribution")
        for key in ("tokens", "word_ids", "words", "labels"):
            meta[key] = tuple(meta[key])
        fields_: dict[str, Any] = {**meta, **{k: stored[k] for k in _TENSORS}}
        return cls(**fields_)

    def to_html(self, *, title: str | None = None) -> str:
        """A self-contained HTML fragment: tokens coloured by score (every token escaped)."""
        from .views import token_html

        return token_html(self, title=title)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_rich(self) -> Any:
        """A ``rich`` renderable: the coloured text plus the top words and the trust numbers."""
        from .views import token_rich

        return token_rich(self)

    def print(self, console: Any = None) -> None:
        """Print the coloured view to the terminal (``rich``)."""
        from .views import print_rich

        print_rich(self, console)
