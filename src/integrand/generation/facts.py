"""A small fact set with known answers, for evaluating prompt choice on a language model.

Every fact is a cloze prompt (the answer is the continuation) in a category; the category's
``CANDIDATES`` are the answers a model is asked to choose between. Answers carry the leading
space a word-piece tokenizer puts before a word. ``split`` is fixed in this file: within each
category the facts alternate between "dev" (to choose a statistic or threshold) and "test"
(held out), so both parts cover every category. The split was written before any result.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Fact:
    """One question: a cloze ``prompt``, its ``answer`` (with leading space), its ``category`` and ``split``."""

    prompt: str
    answer: str
    category: str
    split: str

    @property
    def candidates(self) -> tuple[str, ...]:
        """The answers of this fact's category (the correct one included)."""
        return CANDIDATES[self.category]


_RAW: dict[str, list[tuple[str, str]]] = {
    "capital": [
        ("The capital of France is", " Paris"),
        ("The capital of Germany is", " Berlin"),
        ("The capital of Italy is", " Rome"),
        ("The capital of Japan is", " Tokyo"),
        ("The capital of Spain is", " Madrid"),
        ("The capital of Russia is", " Moscow"),
        ("The capital of England is", " London"),
        ("The capital of Egypt is", " Cairo"),
        ("The capital of Greece is", " Athens"),
        ("The capital of China is", " Beijing"),
        ("The capital of Canada is", " Ottawa"),
        ("The capital of Australia is", " Canberra"),
    ],
    "currency": [
        ("The currency of Japan is the", " yen"),
        ("The currency of the United States is the", " dollar"),
        ("The currency of the United Kingdom is the", " pound"),
        ("The currency of India is the", " rupee"),
        ("The currency of Russia is the", " ruble"),
        ("The currency of Germany is the", " euro"),
    ],
    "author": [
        ("The play Hamlet was written by", " William Shakespeare"),
        ("The novel Pride and Prejudice was written by", " Jane Austen"),
        ("The novel Oliver Twist was written by", " Charles Dickens"),
        ("The novel Nineteen Eighty-Four was written by", " George Orwell"),
        ("The Adventures of Tom Sawyer was written by", " Mark Twain"),
        ("The novel War and Peace was written by", " Leo Tolstoy"),
    ],
    "symbol": [
        ("The chemical symbol for gold is", " Au"),
        ("The chemical symbol for silver is", " Ag"),
        ("The chemical symbol for iron is", " Fe"),
        ("The chemical symbol for sodium is", " Na"),
        ("The chemical symbol for oxygen is", " O"),
        ("The chemical symbol for hydrogen is", " H"),
        ("The chemical symbol for carbon is", " C"),
        ("The chemical symbol for potassium is", " K"),
    ],
    "unit": [
        ("The SI unit of force is the", " newton"),
        ("The SI unit of energy is the", " joule"),
        ("The SI unit of power is the", " watt"),
        ("The SI unit of electric current is the", " ampere"),
        ("The SI unit of frequency is the", " hertz"),
        ("The SI unit of pressure is the", " pascal"),
        ("The SI unit of electrical resistance is the", " ohm"),
    ],
    "planet": [
        ("The largest planet in the solar system is", " Jupiter"),
        ("The planet closest to the Sun is", " Mercury"),
        ("The planet known as the Red Planet is", " Mars"),
        ("The planet famous for its bright rings is", " Saturn"),
    ],
    "language": [
        ("The official language of Brazil is", " Portuguese"),
        ("The official language of Mexico is", " Spanish"),
        ("The official language of Germany is", " German"),
        ("The official language of Egypt is", " Arabic"),
        ("The official language of Japan is", " Japanese"),
    ],
    "colour": [
        ("The colour of a clear daytime sky is", " blue"),
        ("The colour of fresh grass is", " green"),
        ("The colour of a ripe banana is", " yellow"),
        ("The colour of fresh snow is", " white"),
    ],
}

_EXTRA: dict[str, tuple[str, ...]] = {
    "planet": (" Venus", " Earth", " Uranus", " Neptune"),
    "language": (" English", " French", " Italian", " Chinese"),
    "colour": (" red", " black", " orange", " purple"),
}

CANDIDATES: dict[str, tuple[str, ...]] = {
    cat: tuple(dict.fromkeys([a for _, a in rows] + list(_EXTRA.get(cat, ())))) for cat, rows in _RAW.items()
}

FACTS: tuple[Fact, ...] = tuple(
    Fact(prompt, answer, cat, "dev" if i % 2 == 0 else "test")
    for cat, rows in _RAW.items()
    for i, (prompt, answer) in enumerate(rows)
)


def facts(split: str | None = None) -> tuple[Fact, ...]:
    """All facts, or those of one ``split`` ("dev" or "test")."""
    if split is None:
        return FACTS
    if split not in ("dev", "test"):
        raise InputError("split", f"expected 'dev', 'test' or None, got {split!r}")
    return tuple(f for f in FACTS if f.split == split)
