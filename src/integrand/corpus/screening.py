"""How well a model-free cue screen agrees with the classifier, on documents held out from cue mining.

Definition (``screen_against_model``):

1. The documents of the run that have tokens are split by a seeded hash of their id: a share
   ``holdout`` is held out, the rest is the mining set.
2. On the mining set only, each unit's weight for class c is its TF-IDF-weighted mean attribution (as
   ``Corpus.top``: mean over the row groups under c by ``by`` of the unit's summed attribution, times
   ln(N / df) with N and df counted on the mining set, ``df >= min_df``). The cues of c are its ``top``
   heaviest units whose weight is at least ``relative`` times the heaviest one's (so corpus-wide
   filler with a small positive weight does not become a cue). ``by="target"`` (default) mines the
   attributions towards c.
3. The screen flags a held-out document for c when it contains any of c's cues (same unit level,
   lower-cased).
4. Against a reference, a held-out document is positive for c when the classifier predicted c
   (``reference="predicted"``) or its gold label is c (``"gold"``); in multi-label runs, when any of its
   row groups has that label. Precision = TP / flagged, recall = TP / positives, F1 their harmonic mean.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch

from ..errors import InputError
from ..protocol import NoCompleteness
from .labels import f1
from .store import GROUPINGS, LEVELS, Corpus, Table

REFERENCES = ("predicted", "gold")


@dataclass(frozen=True, repr=False)
class Screening(NoCompleteness):
    """Cues mined per class, and the screen's agreement with each reference on the held-out documents.

    ``values`` is ``[row, metric]``: precision, recall and F1 of each (class, reference) row of
    ``scores``; a screen has no completeness notion (``delta``, ``relative_error``, ``converged``
    are ``None``).
    """

    cues: dict[str, tuple[str, ...]]
    scores: Table
    mined: int
    held_out: int

    AXES = ("row", "metric")
    METRICS: ClassVar[tuple[str, ...]] = ("precision", "recall", "f1")

    @property
    def values(self) -> torch.Tensor:
        columns = [self.scores.column(name) for name in self.METRICS]
        rows = [[float("nan") if v is None else float(v) for v in row] for row in zip(*columns)]
        return torch.tensor(rows, dtype=torch.float64).reshape(-1, len(self.METRICS))

    @property
    def method(self) -> str:
        return "screen_against_model"

    @property
    def params(self) -> dict[str, Any]:
        return {"mined": self.mined, "held_out": self.held_out, "cues": {k: list(v) for k, v in self.cues.items()}}

    def axis_labels(self) -> dict[str, Sequence[str]]:
        rows = [f"{r[0]} vs {r[1]}" for r in self.scores.rows]
        return {"row": rows, "metric": self.METRICS}


def _held(doc_id: str, seed: int, holdout: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def screen_against_model(
    corpus: Corpus,
    *,
    by: str = "target",
    level: str = "word",
    top: int = 10,
    relative: float = 0.25,
    min_df: int = 2,
    holdout: float = 0.3,
    seed: int = 0,
) -> Screening:
    """Precision, recall and F1 per class of "the document contains one of the class's top cues"."""
    if by not in GROUPINGS:
        raise InputError("by", f"expected one of {list(GROUPINGS)}, got {by!r}")
    if level not in LEVELS:
        raise InputError("level", f"expected one of {list(LEVELS)}, got {level!r}")
    if isinstance(relative, bool) or not isinstance(relative, (int, float)) or not 0 <= relative <= 1:
        raise InputError("relative", f"expected a fraction between 0 and 1, got {relative!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise InputError("holdout", f"expected a fraction strictly between 0 and 1, got {holdout!r}")
    for name, value in (("top", top), ("min_df", min_df)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, f"expected an integer >= 1, got {value!r}")
    unit, column = LEVELS[level], GROUPINGS[by]
    ids = [r[0] for r in corpus.sql("SELECT DISTINCT doc_id FROM attributions ORDER BY 1").rows]
    held = [d for d in ids if _held(d, seed, holdout)]
    if not held or len(held) == len(ids):
        raise InputError("holdout", f"{len(held)} of {len(ids)} documents held out; need some in both parts")
    weights = corpus.sql(
        f"""WITH units AS (
                SELECT doc_id, lower({unit}) AS unit, sum(score) AS score, any_value({column}) AS cls
                FROM attributions
                WHERE NOT special AND {unit} IS NOT NULL AND NOT list_contains(?::VARCHAR[], doc_id)
                GROUP BY doc_id, target_label, lower({unit})),
            ndocs AS (SELECT count(DISTINCT doc_id) AS n FROM units),
            df AS (SELECT unit, count(DISTINCT doc_id) AS df FROM units GROUP BY unit)
            SELECT u.cls, u.unit, avg(u.score) * ln(ndocs.n / df.df) AS weight
            FROM units u JOIN df USING (unit), ndocs
            WHERE u.cls IS NOT NULL AND df.df >= ?
            GROUP BY u.cls, u.unit, df.df, ndocs.n""",
        [held, min_df],
    )
    ranked: dict[str, list[tuple[float, str]]] = {}
    for cls, name, weight in weights.rows:
        ranked.setdefault(str(cls), []).append((-float(weight), str(name)))
    cues = {}
    for cls, found in sorted(ranked.items()):
        best = sorted(found)
        cut = -best[0][0] * relative
        cues[cls] = tuple(n for w, n in best[:top] if -w >= cut and -w > 0)
    present: dict[str, set[str]] = {d: set() for d in held}
    for doc, name in corpus.sql(
        f"""SELECT DISTINCT doc_id, lower({unit}) FROM attributions
            WHERE NOT special AND {unit} IS NOT NULL AND list_contains(?::VARCHAR[], doc_id)""",
        [held],
    ).rows:
        present[doc].add(name)
    labels: dict[str, dict[str, set[str]]] = {r: {d: set() for d in held} for r in REFERENCES}
    for doc, predicted, gold in corpus.sql(
        "SELECT doc_id, predicted_label, gold_label FROM documents WHERE list_contains(?::VARCHAR[], doc_id)", [held]
    ).rows:
        for ref, value in (("predicted", predicted), ("gold", gold)):
            if value is not None:
                labels[ref][doc].add(str(value))
    rows: list[tuple[Any, ...]] = []
    for ref in REFERENCES:
        if not any(labels[ref].values()):
            continue  # e.g. no gold labels in this run
        for cls, words in cues.items():
            flagged = {d for d in held if present[d] & set(words)}
            positive = {d for d in held if cls in labels[ref][d]}
            tp = len(flagged & positive)
            precision, recall, score = f1(tp, len(flagged) - tp, len(positive) - tp)
            rows.append((cls, ref, len(held), len(flagged), len(positive), precision, recall, score))
    columns = ("class", "vs", "docs", "flagged", "positives", "precision", "recall", "f1")
    return Screening(cues=cues, scores=Table(columns, tuple(rows)), mined=len(ids) - len(held), held_out=len(held))
