"""A fact set for token-level faithfulness benchmarks on a language model (cloze prompt -> answer).

80 facts in 15 categories (capitals, currencies, authors, chemical symbols, SI units, planets,
languages, colours, dates, opposites, sequences, continents, scientists, science, landmarks);
some answers span several tokens (" William Shakespeare", " 1945"). Answers carry the leading
space a word-piece tokenizer puts before a word.

The split into "dev" (for sizing runs and choosing settings) and "test" (held out: only for the
final numbers) was drawn once, before any attribution method was run on these prompts, by
``seeded_split(SEED)``: within each category, in the order below, a ``random.Random(SEED)``
shuffle puts the first ``n // 2`` facts into "test". The outcome is written literally in
``_ROWS`` so that it cannot drift; ``seeded_split`` re-derives it (tests check they agree).
The capital ... colour rows are those of ``facts.py`` (the paraphrase study), which has its own split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import InputError

SEED = 14
SPLITS: tuple[str, ...] = ("dev", "test")


@dataclass(frozen=True)
class FactItem:
    """One cloze ``prompt``, its ``answer`` (leading space included), ``category`` and ``split``."""

    prompt: str
    answer: str
    category: str
    split: str


_ROWS: dict[str, list[tuple[str, str, str]]] = {
    "capital": [
        ("The capital of France is", " Paris", "test"),
        ("The capital of Germany is", " Berlin", "dev"),
        ("The capital of Italy is", " Rome", "test"),
        ("The capital of Japan is", " Tokyo", "dev"),
        ("The capital of Spain is", " Madrid", "dev"),
        ("The capital of Russia is", " Moscow", "dev"),
        ("The capital of England is", " London", "test"),
        ("The capital of Egypt is", " Cairo", "test"),
        ("The capital of Greece is", " Athens", "dev"),
        ("The capital of China is", " Beijing", "dev"),
        ("The capital of Canada is", " Ottawa", "test"),
        ("The capital of Australia is", " Canberra", "test"),
    ],
    "currency": [
        ("The currency of Japan is the", " yen", "test"),
        ("The currency of the United States is the", " dollar", "test"),
        ("The currency of the United Kingdom is the", " pound", "dev"),
        ("The currency of India is the", " rupee", "dev"),
        ("The currency of Russia is the", " ruble", "dev"),
        ("The currency of Germany is the", " euro", "test"),
    ],
    "author": [
        ("The play Hamlet was written by", " William Shakespeare", "test"),
        ("The novel Pride and Prejudice was written by", " Jane Austen", "dev"),
        ("The novel Oliver Twist was written by", " Charles Dickens", "dev"),
        ("The novel Nineteen Eighty-Four was written by", " George Orwell", "test"),
        ("The Adventures of Tom Sawyer was written by", " Mark Twain", "test"),
        ("The novel War and Peace was written by", " Leo Tolstoy", "dev"),
    ],
    "symbol": [
        ("The chemical symbol for gold is", " Au", "test"),
        ("The chemical symbol for silver is", " Ag", "test"),
        ("The chemical symbol for iron is", " Fe", "test"),
        ("The chemical symbol for sodium is", " Na", "test"),
        ("The chemical symbol for oxygen is", " O", "dev"),
        ("The chemical symbol for hydrogen is", " H", "dev"),
        ("The chemical symbol for carbon is", " C", "dev"),
        ("The chemical symbol for potassium is", " K", "dev"),
    ],
    "unit": [
        ("The SI unit of force is the", " newton", "dev"),
        ("The SI unit of energy is the", " joule", "dev"),
        ("The SI unit of power is the", " watt", "test"),
        ("The SI unit of electric current is the", " ampere", "test"),
        ("The SI unit of frequency is the", " hertz", "dev"),
        ("The SI unit of pressure is the", " pascal", "dev"),
        ("The SI unit of electrical resistance is the", " ohm", "test"),
    ],
    "planet": [
        ("The largest planet in the solar system is", " Jupiter", "dev"),
        ("The planet closest to the Sun is", " Mercury", "test"),
        ("The planet known as the Red Planet is", " Mars", "test"),
        ("The planet famous for its bright rings is", " Saturn", "dev"),
    ],
    "language": [
        ("The official language of Brazil is", " Portuguese", "test"),
        ("The official language of Mexico is", " Spanish", "dev"),
        ("The official language of Germany is", " German", "test"),
        ("The official language of Egypt is", " Arabic", "dev"),
        ("The official language of Japan is", " Japanese", "dev"),
    ],
    "colour": [
        ("The colour of a clear daytime sky is", " blue", "dev"),
        ("The colour of fresh grass is", " green", "test"),
        ("The colour of a ripe banana is", " yellow", "dev"),
        ("The colour of fresh snow is", " white", "test"),
    ],
    "date": [
        ("World War II ended in the year", " 1945", "dev"),
        ("The first person walked on the Moon in the year", " 1969", "test"),
        ("The Declaration of Independence was signed in the year", " 1776", "dev"),
        ("The Berlin Wall fell in the year", " 1989", "test"),
    ],
    "opposite": [
        ("The opposite of hot is", " cold", "test"),
        ("The opposite of up is", " down", "dev"),
        ("The opposite of black is", " white", "test"),
        ("The opposite of day is", " night", "dev"),
        ("The opposite of happy is", " sad", "dev"),
    ],
    "sequence": [
        ("Monday, Tuesday,", " Wednesday", "test"),
        ("One, two, three, four,", " five", "dev"),
        ("January, February, March,", " April", "test"),
        ("A, B, C, D,", " E", "dev"),
    ],
    "continent": [
        ("Brazil is a country in South", " America", "dev"),
        ("Kenya is a country in", " Africa", "test"),
        ("France is a country in", " Europe", "dev"),
        ("India is a country in", " Asia", "test"),
    ],
    "scientist": [
        ("The telephone was invented by Alexander Graham", " Bell", "dev"),
        ("The theory of relativity was developed by Albert", " Einstein", "dev"),
        ("The phonograph was invented by Thomas", " Edison", "test"),
        ("The laws of motion were formulated by Isaac", " Newton", "test"),
    ],
    "science": [
        ("Water is made of hydrogen and", " oxygen", "dev"),
        ("Plants take in carbon dioxide and release", " oxygen", "test"),
        ("Water boils at 100 degrees", " Celsius", "dev"),
    ],
    "landmark": [
        ("The Eiffel Tower is located in the city of", " Paris", "test"),
        ("The Colosseum is located in the city of", " Rome", "dev"),
        ("The Statue of Liberty is located in the city of New", " York", "dev"),
        ("Big Ben is located in the city of", " London", "test"),
    ],
}

FACTSET: tuple[FactItem, ...] = tuple(
    FactItem(prompt, answer, category, split) for category, rows in _ROWS.items() for prompt, answer, split in rows
)


def factset(split: str | None = None) -> tuple[FactItem, ...]:
    """All facts, or those of one ``split`` ("dev" or "test", the held-out part)."""
    if split is None:
        return FACTSET
    if split not in SPLITS:
        raise InputError("split", f"expected 'dev', 'test' or None, got {split!r}")
    return tuple(f for f in FACTSET if f.split == split)


def seeded_split(seed: int = SEED) -> dict[str, str]:
    """Prompt -> split as drawn by ``random.Random(seed)`` (how ``_ROWS``' split was made)."""
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for rows in _ROWS.values():
        order = list(range(len(rows)))
        rng.shuffle(order)
        held = set(order[: len(rows) // 2])
        out.update({prompt: "test" if i in held else "dev" for i, (prompt, _, _) in enumerate(rows)})
    return out
