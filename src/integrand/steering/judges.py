"""Offline judges of generated text (one score per text) and distinct-n diversity.

- ``vader``: the VADER compound sentiment score in [-1, 1] (``vaderSentiment``, rule-based, offline).
- ``toxicity``: the bundled toxicity BiLSTM's probability of the label ``toxic`` (``integrand.text.toxicity``).
- ``politeness``: a lexicon rule defined here: ``(p - r) / (p + r)`` where ``p`` counts polite markers
  ("please", "thank…", "appreciate", "sorry", "would you", …) and ``r`` rude markers ("shut up",
  "stupid", "idiot", "whatever", "don't care", …) as whole words; 0 when neither occurs. In [-1, 1].

A :class:`Judge` names the direction steering should move it (``target``: +1 higher is the goal, -1 lower).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import InputError, MissingExtraError

JUDGES = ("vader", "toxicity", "politeness")

POLITE_MARKERS = (
    "please",
    "thank",
    "thanks",
    "thankful",
    "grateful",
    "appreciate",
    "appreciated",
    "kindly",
    "sorry",
    "apologize",
    "apologise",
    "apologies",
    "pardon",
    "excuse me",
    "would you",
    "could you",
    "would you mind",
    "happy to help",
    "glad",
    "my pleasure",
    "you're welcome",
    "you are welcome",
    "dear",
    "sincerely",
    "regards",
    "respectfully",
)
RUDE_MARKERS = (
    "shut up",
    "stupid",
    "idiot",
    "idiots",
    "dumb",
    "moron",
    "whatever",
    "don't care",
    "do not care",
    "hurry up",
    "useless",
    "ridiculous",
    "nonsense",
    "go away",
    "get lost",
    "leave me alone",
    "your problem",
    "your fault",
    "pathetic",
    "annoying",
    "lazy",
    "hate",
    "damn",
)


def _pattern(markers: Sequence[str]) -> re.Pattern[str]:
    alternatives = sorted((re.escape(m).replace(r"\ ", r"\s+") for m in markers), key=len, reverse=True)
    return re.compile(r"(?<![\w'])(?:" + "|".join(alternatives) + r")(?![\w'])", re.IGNORECASE)


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InputError("texts", "expected a list of strings")
    return list(texts)


def politeness_score(text: str) -> float:
    """The politeness rule on one text: ``(polite - rude) / (polite + rude)``, 0 without markers."""
    # Each marker is counted once per occurrence; "would you mind" is one marker, not two.
    polite = len(_pattern(POLITE_MARKERS).findall(text))
    rude = len(_pattern(RUDE_MARKERS).findall(text))
    return 0.0 if polite + rude == 0 else (polite - rude) / (polite + rude)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams over all n-grams of all texts (lower-cased whitespace words); 0 when there are none."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("n", f"expected an integer >= 1, got {n!r}")
    grams: list[tuple[str, ...]] = []
    for text in _texts(texts):
        words = text.lower().split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Judge:
    """A named scorer ``texts -> scores`` and the direction (+1/-1) that steering aims to move its mean."""

    name: str
    target: int
    score_texts: Callable[[list[str]], list[float]]
    description: str

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return self.score_texts(_texts(texts))

    def mean(self, texts: Sequence[str]) -> float:
        scores = self(texts)
        return sum(scores) / len(scores) if scores else float("nan")


def _vader() -> Judge:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover - vaderSentiment is a dependency
        raise MissingExtraError("vaderSentiment", "text") from exc
    analyzer = SentimentIntensityAnalyzer()

    def score(texts: list[str]) -> list[float]:
        return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]

    return Judge("vader", +1, score, "VADER compound score of the continuation, in [-1, 1]")


def _toxicity() -> Judge:
    from ..text.toxicity import LABELS, classify, load_toxicity

    model, tokenizer = load_toxicity()
    column = list(LABELS).index("toxic")

    def score(texts: list[str]) -> list[float]:
        if not texts:
            return []
        return [float(p) for p in classify(model, tokenizer, texts)[:, column]]

    return Judge("toxicity", -1, score, "toxicity BiLSTM's probability of 'toxic', in [0, 1]")


def _politeness() -> Judge:
    def score(texts: list[str]) -> list[float]:
        return [politeness_score(t) for t in texts]

    return Judge("politeness", +1, score, "(polite - rude markers) / (polite + rude markers), in [-1, 1]")


def judge(name: str) -> Judge:
    """The judge called ``name``: one of :data:`JUDGES`."""
    makers = {"vader": _vader, "toxicity": _toxicity, "politeness": _politeness}
    if name not in makers:
        raise InputError("judge", f"expected one of {', '.join(map(repr, JUDGES))}, got {name!r}")
    return makers[name]()
