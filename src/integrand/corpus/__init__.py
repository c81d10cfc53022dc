"""Corpus runs: resumable attribution of datasets into Parquet, DuckDB queries and lexical cues."""

from __future__ import annotations

from .run import RunSummary, read_manifest, run
from .shards import ExplainSettings
from .sources import Document, load_documents
from .store import Corpus, Table, screen

__all__ = [
    "Corpus",
    "Document",
    "ExplainSettings",
    "RunSummary",
    "Table",
    "load_documents",
    "read_manifest",
    "run",
    "screen",
]
