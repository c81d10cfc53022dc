"""Preference sets shipped with integrand, JSONL preference files, and a seeded fit/held-out split.

``facts``: 123 short questions with a true (preferred) and a plausible false (dispreferred)
answer, written for this package. ``neutral_texts()``: ten lines of plain sentences for
perplexity checks.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Sequence, TypeVar

import torch

from ..errors import InputError
from .examples import Preference

BUILTIN = ("facts",)
T = TypeVar("T")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


def load_preferences(source: str | Path = "facts") -> list[Preference]:
    """A built-in set by name, or a JSONL file of {"prompt", "preferred", "dispreferred"} lines."""
    if isinstance(source, str) and source in BUILTIN:
        text = _read(f"{source}.jsonl")
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError("examples", f"{source!r} is neither a built-in set ({', '.join(BUILTIN)}) nor a file")
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
