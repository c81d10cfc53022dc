"""Preference sets shipped with integrand, JSONL preference files, and a seeded fit/held-out split.

``facts``: 123 short questions with a true (preferred) and a plausible false (dispreferred)
answer, written for this package. ``neutral_texts()``: ten lines of plain sentences for
perplexity checks. ``load_behaviour(name)``: the prompt sets of the behaviour benchmarks (``sentiment``: 60
neutral openings; ``toxicity``: 56 provocative-but-clean openings; ``politeness``: 56 request/reply
openings), each with hand-written (preferred, dispreferred) completions from which preference pairs
are built for the fit prompts only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence, TypeVar

import torch

from ..errors import InputError
from .examples import Preference

BUILTIN = ("facts",)
BEHAVIOURS = ("sentiment", "toxicity", "politeness")
T = TypeVar("T")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


BEHAVIOUR_FIT_PROMPTS = 16


def load_preferences(source: str | Path = "facts") -> list[Preference]:
    """A built-in set by name, or a JSONL file of {"prompt", "preferred", "dispreferred"} lines.

    The behaviour benchmarks' names (:data:`BEHAVIOURS`) give their preference pairs: two per fit
    prompt of the seeded split that ``bench/steering_behaviour.py`` uses (16 prompts, seed 0), so
    their held-out prompts never appear in a pair.
    """
    if isinstance(source, str) and source in BEHAVIOURS:
        bench = load_behaviour(source)
        return bench.preferences(split(list(bench.prompts), BEHAVIOUR_FIT_PROMPTS, seed=0)[0])
    if isinstance(source, str) and source in BUILTIN:
        text = _read(f"{source}.jsonl")
    else:
        path = Path(source)
        if not path.is_file():
            names = ", ".join((*BUILTIN, *BEHAVIOURS))
            raise InputError("examples", f"{source!r} is neither a built-in set ({names}) nor a file")
        text = path.read_text(encoding="utf-8")
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError("examples", f"line {number} is not JSON: {exc}") from exc
        fields = ("prompt", "preferred", "dispreferred")
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in fields):
            raise InputError("examples", f"line {number} needs string fields prompt, preferred and dispreferred")
        out.append(Preference(row["prompt"], row["preferred"], row["dispreferred"]))
    if not out:
        raise InputError("examples", f"{source!r} holds no examples")
    return out


def neutral_texts() -> list[str]:
    """Plain, neutral sentences for the fluency (perplexity) check."""
    return [line for line in _read("neutral.txt").splitlines() if line.strip()]


def split(examples: Sequence[T], n_fit: int, seed: int = 0) -> tuple[list[T], list[T]]:
    """A seeded random split into ``n_fit`` fitting examples and the held-out rest."""
    if isinstance(n_fit, bool) or not isinstance(n_fit, int) or not 0 < n_fit < len(examples):
        raise InputError("n_fit", f"expected an integer in [1, {len(examples) - 1}], got {n_fit!r}")
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    return [examples[i] for i in order[:n_fit]], [examples[i] for i in order[n_fit:]]


@dataclass(frozen=True)
class BehaviourSet:
    """Prompts to continue, the judge that scores continuations, and completion pairs for fitting."""

    name: str
    judge: str
    prompts: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]

    def preferences(self, prompts: Sequence[str], per_prompt: int = 2) -> list[Preference]:
        """``per_prompt`` pairs for each prompt: prompt ``i`` takes pairs ``i, i + 3, i + 6, ...`` (cyclic)."""
        if isinstance(per_prompt, bool) or not isinstance(per_prompt, int) or not 1 <= per_prompt <= len(self.pairs):
            raise InputError("per_prompt", f"expected an integer in [1, {len(self.pairs)}], got {per_prompt!r}")
        out = []
        for i, prompt in enumerate(prompts):
            for j in range(per_prompt):
                preferred, dispreferred = self.pairs[(i + 3 * j) % len(self.pairs)]
                out.append(Preference(prompt, preferred, dispreferred))
        return out


def load_behaviour(name: str) -> BehaviourSet:
    """The built-in behaviour benchmark ``name`` (one of :data:`BEHAVIOURS`)."""
    if name not in BEHAVIOURS:
        raise InputError("behaviour", f"expected one of {', '.join(map(repr, BEHAVIOURS))}, got {name!r}")
    row = json.loads(_read("behaviour.json"))[name]
    pairs = tuple((p["preferred"], p["dispreferred"]) for p in row["pairs"])
    return BehaviourSet(name, row["judge"], tuple(row["prompts"]), pairs)
