"""Dataset rows for corpus runs: files, data frames, Hugging Face datasets or any iterable of records.

Files are read strictly: anything malformed raises ``InputError("dataset", ...)`` naming the file and
line, never a partial or shifted read. CSV is parsed with strict quoting, every row must have as many
fields as the header, fields may hold up to ``MAX_FIELD`` characters. Text must be UTF-8; a leading
UTF-8 byte-order mark is the one repair made (it is stripped, so it never joins the first column name).
JSONL holds one JSON object per line. A row without the text, id or label column names that column.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..errors import InputError, MissingExtraError


@dataclass(frozen=True)
class Document:
    """One row to attribute. ``doc_id`` is stable across runs: the id column, else the row number."""

    doc_id: str
    text: str
    label: str | None


MAX_FIELD = 1 << 26  # characters in one CSV field (64 Mi); Python's default of 131,072 is too small for texts

Located = tuple[list[Mapping[str, Any]], list[str]]  # records and, for each, where it came from


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            "dataset", f"{path}, line {line}: invalid UTF-8 at byte offset {exc.start}; re-encode the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


@contextlib.contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _csv(path: Path) -> Located:
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    records: list[Mapping[str, Any]] = []
    where: list[str] = []
    line = 1  # where the record being read starts
    try:
        with _field_limit(MAX_FIELD):
            header = next(reader, None)
            if header is None:
                return records, where
            if len(set(header)) != len(header) or "" in header:
                raise InputError("dataset", f"{path}, line 1: the header repeats or leaves empty column names {header}")
            while True:
                line = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    break
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(
                        "dataset", f"{path}, line {line}: {len(row)} fields where the header has {len(header)}"
                    )
                records.append(dict(zip(header, row)))
                where.append(f"{path}, line {line}")
    except csv.Error as exc:
        reason = f"a field longer than {MAX_FIELD} characters" if "field limit" in str(exc) else str(exc)
        raise InputError("dataset", f"{path}, line {line}: malformed CSV ({reason})") from None
    return records, where


def _jsonl(path: Path) -> Located:
    records: list[Mapping[str, Any]] = []
    where: list[str] = []
    for number, line in enumerate(_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"{exc.msg}, column {exc.colno}"
            raise InputError("dataset", f"{path}, line {number}: not valid JSON ({reason})") from None
        except (ValueError, RecursionError) as exc:
            raise InputError("dataset", f"{path}, line {number}: not valid JSON ({type(exc).__name__})") from None
        if not isinstance(record, dict):
            raise InputError(
                "dataset", f"{path}, line {number}: expected one JSON object per line, got {type(record).__name__}"
            )
        records.append(record)
        where.append(f"{path}, line {number}")
    return records, where


def _parquet(path: Path) -> list[Mapping[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("pyarrow", "store") from None
    try:
        return list(pq.read_table(path).to_pylist())
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError("dataset", f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _records_from_path(path: Path) -> Located:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError("dataset", f"no such file: {path}")
    if suffix == ".csv":
        return _csv(path)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(path)
    if suffix == ".parquet":
        rows = _parquet(path)
        return rows, [f"{path}, row {i}" for i in range(len(rows))]
    raise InputError("dataset", f"unsupported file type {suffix!r}; expected .csv, .jsonl or .parquet")


def _records(dataset: Any) -> Located:
    if isinstance(dataset, (str, Path)):
        return _records_from_path(Path(dataset))
    rows: list[Mapping[str, Any]]
    to_dicts = getattr(dataset, "to_dicts", None)  # polars
    to_dict = getattr(dataset, "to_dict", None)  # pandas
    if callable(to_dicts):
        rows = list(to_dicts())
    elif callable(to_dict) and hasattr(dataset, "columns"):
        rows = list(to_dict(orient="records"))
    elif hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):  # datasets.Dataset
        rows = [dataset[i] for i in range(len(dataset))]
    elif isinstance(dataset, Iterable) and not isinstance(dataset, (str, bytes, Mapping)):
        rows = list(dataset)
        if not all(isinstance(r, Mapping) for r in rows):
            raise InputError("dataset", "an iterable dataset must yield mappings (records)")
    else:
        raise InputError(
            "dataset",
            f"expected a file path, a data frame, a datasets.Dataset or records, got {type(dataset).__name__}",
        )
    return rows, [f"row {i}" for i in range(len(rows))]


def load_documents(
    dataset: Any, text_col: str, label_col: str | None = None, id_col: str | None = None
) -> list[Document]:
    """Read and check every row; empty texts are kept (the run flags them)."""
    rows, where = _records(dataset)
    columns: Sequence[str] = list(rows[0].keys()) if rows else []
    wanted = (("text_col", text_col), ("label_col", label_col), ("id_col", id_col))
    for argument, col in wanted:
        if col is not None and rows and col not in columns:
            raise InputError(argument, f"column {col!r} not found; the dataset has columns {list(columns)}")
    docs: list[Document] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for argument, col in wanted:
            if col is not None and col not in row:
                raise InputError(argument, f"{where[i]}: no {col!r} column; this row has {list(row)}")
        text = row[text_col]
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InputError(
                "dataset", f"{where[i]}: column {text_col!r} holds {type(text).__name__} {text!r}, not text"
            )
        raw_id = row[id_col] if id_col is not None else i
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int, float)):
            raise InputError("id_col", f"{where[i]}: the id {raw_id!r} is not a string or a number")
        doc_id = str(raw_id)
        if doc_id in seen:
            raise InputError("id_col", f"duplicate document id {doc_id!r} at {where[i]}")
        seen.add(doc_id)
        label = row[label_col] if label_col is not None else None
        docs.append(Document(doc_id=doc_id, text=text, label=None if label is None else str(label)))
    return docs
