"""A synthetic corpus with planted cue words per class, and a small classifier trained on it.

Used by the corpus tests, the kill/resume test, the Ray benchmark and the lexical-cue docs:
the cue words are known, so a cue query can be checked against the truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError

CUES: dict[str, tuple[str, ...]] = {
    "sports": ("goal", "coach", "stadium", "league"),
    "finance": ("stock", "profit", "investor", "dividend"),
    "health": ("doctor", "symptom", "clinic", "vaccine"),
    # A class the embedded models know nothing about: only a model trained on the corpus finds its cues.
    "logistics": ("shipment", "warehouse", "freight", "pallet"),
}
FILLER = tuple(
    """the a of and to in is was it for on with as at by this that from or be are we they you he she today
    yesterday people said very new time year report city news week team group plan day""".split()  # noqa: SIM905
)
PAD, UNK = 0, 1


def make_corpus(
    n: int,
    seed: int = 0,
    noise: float = 0.1,
    classes: Sequence[str] | None = None,
    multi_label: float = 0.0,
) -> list[dict[str, Any]]:
    """``n`` records ``{"id", "text", "label"}``: filler words plus one to three cues of the label's class.

    ``classes``: which classes of ``CUES`` to use (default all, cycled in sorted order). ``noise``: share of
    documents that also get one cue of another class (their label does not change). ``multi_label``: share
    of documents that get a second class with its own cues; their label is ``"a|b"`` (sorted).
    """
    rng = random.Random(seed)
    names = sorted(CUES) if classes is None else sorted(classes)
    unknown = [c for c in names if c not in CUES]
    if unknown or len(names) < 2:
        raise InputError("classes", f"expected two or more of {sorted(CUES)}, got {list(names)}")
    rows = []
    for i in range(n):
        label = names[i % len(names)]
        words = [rng.choice(FILLER) for _ in range(rng.randint(6, 14))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[label]))
        if multi_label and rng.random() < multi_label:
            second = rng.choice([c for c in names if c != label])
            for _ in range(rng.randint(1, 2)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[second]))
            label = "|".join(sorted((label, second)))
        elif rng.random() < noise:
            other = rng.choice([c for c in names if c != label])
            words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[other]))
        rows.append({"id": f"doc{i:05d}", "text": " ".join(words), "label": label})
    return rows


class BagOfEmbeddings(nn.Module):
    """Mean of word embeddings over non-padding positions, then a linear layer."""

    accepts_attention_mask = True

    def __init__(self, vocab: int, classes: int, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = (ids != PAD).float() if attention_mask is None else attention_mask.float()
        pooled = (self.embed(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        out: torch.Tensor = self.head(pooled)
        return out


@dataclass(frozen=True)
class WordVocabulary:
    """Lower-cased whitespace words to ids (0 = padding, 1 = unknown); picklable for Ray workers."""

    index: dict[str, int]

    def __call__(self, text: str) -> list[int]:
        return [self.index.get(w, UNK) for w in text.lower().split()]

    @property
    def names(self) -> dict[int, str]:
        return {i: w for w, i in self.index.items()}


def train_classifier(
    rows: list[dict[str, Any]], seed: int = 0, epochs: int = 8
) -> tuple[BagOfEmbeddings, WordVocabulary, list[str]]:
    """Fit the bag-of-embeddings classifier; returns (model in eval mode, vocabulary, class names)."""
    words = sorted({w for r in rows for w in r["text"].lower().split()})
    vocab = WordVocabulary({w: i + 2 for i, w in enumerate(words)})
    classes = sorted({r["label"] for r in rows})
    torch.manual_seed(seed)
    model = BagOfEmbeddings(len(words) + 2, len(classes))
    seqs = [torch.tensor(vocab(r["text"])) for r in rows]
    ids = nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=PAD)
    y = torch.tensor([classes.index(r["label"]) for r in rows])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(rows), generator=gen), 64):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(ids[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval(), vocab, classes


def explainer_for(model: BagOfEmbeddings, vocab: WordVocabulary, classes: list[str]) -> Any:
    """A ``TextExplainer`` over the trained classifier with the word tokenizer."""
    from ..text import CallableTokenizer, TextExplainer

    tokenizer = CallableTokenizer(vocab, pad_id=PAD, unk_id=UNK, vocab_size=len(vocab.index) + 2, vocab=vocab.names)
    return TextExplainer(model, tokenizer, labels=classes)
