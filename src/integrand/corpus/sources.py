"""Dataset rows for corpus runs: files, data frames, Hugging Face datasets or any iterable of records."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import InputError, MissingExtraError


@dataclass(frozen=True)
class Document:
    """One row to attribute. ``doc_id`` is stable across runs: the id column, else the row number."""

    doc_id: str
    text: str
    label: str | None


def _records_from_path(path: Path) -> list[Mapping[str, Any]]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError("dataset", f"no such file: {path}")
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("pyarrow", "store") from None
        return list(pq.read_table(path).to_pylist())
    raise InputError("dataset", f"unsupported file type {suffix!r}; expected .csv, .jsonl or .parquet")


def _records(dataset: Any) -> list[Mapping[str, Any]]:
    if isinstance(dataset, (str, Path)):
        return _records_from_path(Path(dataset))
    to_dicts = getattr(dataset, "to_dicts", None)  # polars
    if callable(to_dicts):
        return list(to_dicts())
    to_dict = getattr(dataset, "to_dict", None)  # pandas
    if callable(to_dict) and hasattr(dataset, "columns"):
        return list(to_dict(orient="records"))
    if hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):  # datasets.Dataset
        return [dataset[i] for i in range(len(dataset))]
    if isinstance(dataset, Iterable) and not isinstance(dataset, (bytes, Mapping)):
        rows = list(dataset)
        if not all(isinstance(r, Mapping) for r in rows):
            raise InputError("dataset", "an iterable dataset must yield mappings (records)")
        return rows
    raise InputError(
        "dataset", f"expected a file path, a data frame, a datasets.Dataset or records, got {type(dataset).__name__}"
    )


def load_documents(
    dataset: Any, text_col: str, label_col: str | None = None, id_col: str | None = None
) -> list[Document]:
    """Read and check every row; empty texts are kept (the run flags them)."""
    rows = _records(dataset)
    columns: Sequence[str] = list(rows[0].keys()) if rows else []
    for argument, col in (("text_col", text_col), ("label_col", label_col), ("id_col", id_col)):
        if col is not None and rows and col not in columns:
            raise InputError(argument, f"column {col!r} not found; the dataset has columns {list(columns)}")
    docs: list[Document] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        text = row.get(text_col)
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InputError("dataset", f"row {i}: column {text_col!r} holds {type(text).__name__} {text!r}, not text")
        doc_id = str(row[id_col]) if id_col is not None else str(i)
        if doc_id in seen:
            raise InputError("id_col", f"duplicate document id {doc_id!r} at row {i}")
        seen.add(doc_id)
        label = row.get(label_col) if label_col is not None else None
        docs.append(Document(doc_id=doc_id, text=text, label=None if label is None else str(label)))
    return docs
