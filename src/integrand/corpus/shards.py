"""Turning text attributions into Parquet rows, and writing shards atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..defaults import CLI
from ..errors import IntegrandError, MissingExtraError
from ..integration import Integration
from ..text.explainer import METHODS as TEXT_METHODS
from .sources import Document
from .targets import Planned, plan

TOKENS_DIR = "tokens"
DOCUMENTS_DIR = "documents"


@dataclass(frozen=True)
class ExplainSettings:
    """What each document is attributed with (recorded in the manifest; part of the run's identity).

    ``target``: a label name or index, None or "predicted" (each document's predicted label), or "gold"
    (each document's own label); ``threshold``: the probability from which a multi-label model predicts a
    label (see ``integrand.corpus.targets`` for the row groups of multi-label runs); ``integration``: the
    path integral of each document (``integrand.integration.Integration``; default ``defaults.CLI``,
    error control to the one default tolerance). ``steps``/``tol`` are shorthand for it: they are folded
    into ``integration`` on construction and read back as None.
    """

    target: str | int | None = None
    threshold: float = 0.5
    method: str = "ig"
    baseline: str | int = "pad"
    integration: Integration | None = None
    steps: int | None = None
    tol: float | None = None
    text_batch: int = 16

    def __post_init__(self) -> None:
        given = self.integration
        if isinstance(given, dict):  # read back from a manifest or a Ray worker's arguments
            given = Integration.from_params(given)
        resolved = Integration.from_kwargs(given, default=CLI, steps=self.steps, tol=self.tol)
        object.__setattr__(self, "integration", resolved)
        object.__setattr__(self, "steps", None)
        object.__setattr__(self, "tol", None)

    @property
    def config(self) -> Integration:
        """``integration``, resolved (never None after construction)."""
        assert self.integration is not None
        return self.integration


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtraError("pyarrow", "store") from None
    return pa, pq


def shard_name(chunk: int) -> str:
    return f"part-{chunk:06d}.parquet"


def _explain(explainer: Any, work: Sequence[Planned], settings: ExplainSettings) -> list[Any]:
    return list(
        explainer(
            [p.doc.text for p in work],
            target=[p.target for p in work],
            method=settings.method,
            baseline=settings.baseline,
            integration=None if TEXT_METHODS.get(settings.method) == "lrp" else settings.config,
            text_batch=settings.text_batch,
        )
    )


def attribute_documents(
    explainer: Any, docs: Sequence[Document], settings: ExplainSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Token rows and document rows for ``docs``; empty or failing documents are kept and flagged.

    A document gives one row group per label it is explained for (``integrand.corpus.targets``).
    """
    todo = [d for d in docs if d.text.strip()]
    planned = plan(explainer, todo, settings.target, settings.threshold) if todo else []
    work = [p for p in planned if p.attribute]
    results: dict[int, Any] = {}
    errors: dict[int, str] = {}
    if work:
        try:
            results = dict(enumerate(_explain(explainer, work, settings)))
        except IntegrandError:
            # One bad text must not sink its batch: retry one by one and record what failed.
            for i, p in enumerate(work):
                try:
                    results[i] = _explain(explainer, [p], settings)[0]
                except IntegrandError as exc:
                    errors[i] = str(exc)
    slot = {id(p): i for i, p in enumerate(work)}
    groups: dict[str, list[Planned]] = {}
    for p in planned:
        groups.setdefault(p.doc.doc_id, []).append(p)
    multi = bool(getattr(explainer, "multi_label", False))
    tokens: list[dict[str, Any]] = []
    documents: list[dict[str, Any]] = []
    rows = [(doc, p) for doc in docs for p in groups.get(doc.doc_id, [Planned(doc, None, doc.label, attribute=False)])]
    for d, p in rows:
        r = results.get(slot[id(p)]) if id(p) in slot else None
        row: dict[str, Any] = {
            "doc_id": d.doc_id,
            "text": d.text,
            "gold_label": p.gold_label,
            "empty": not d.text.strip(),
            "error": p.error or (errors.get(slot[id(p)]) if id(p) in slot else None),
            "predicted_label": p.predicted_label,
            "target_label": None,
            "probabilities": None,
            "score_input": None,
            "delta": None,
            "relative_error": None,
            "steps": None,
            "converged": None,
            "truncated": None,
            "n_tokens": 0,
        }
        if r is not None:
            probs = [float(x) for x in r.probabilities.tolist()]
            predicted = r.predicted
            if multi:  # the row group's label if the model predicts it, else null
                predicted = r.target if probs[list(r.labels).index(r.target)] >= settings.threshold else None
            row.update(
                predicted_label=predicted,
                target_label=r.target,
                probabilities=probs,
                score_input=float(r.score_input),
                delta=float(r.delta),
                relative_error=float(r.relative_error),
                steps=int(r.steps),
                converged=bool(r.converged),
                truncated=bool(r.truncated),
                n_tokens=len(r.tokens),
            )
            specials = r.special.tolist()
            scores = r.scores.tolist()
            for pos, token in enumerate(r.tokens):
                word_id = r.word_ids[pos]
                tokens.append(
                    {
                        "doc_id": d.doc_id,
                        "position": pos,
                        "token": token,
                        "word": None if word_id is None else r.words[word_id],
                        "special": bool(specials[pos]),
                        "score": float(scores[pos]),
                        "predicted_label": predicted,
                        "target_label": r.target,
                        "gold_label": p.gold_label,
                        "probabilities": probs,
                        "relative_error": float(r.relative_error),
                    }
                )
        documents.append(row)
    return tokens, documents


def _schemas() -> tuple[Any, Any]:
    pa, _ = _pyarrow()
    tokens = pa.schema(
        [
            ("doc_id", pa.string()),
            ("position", pa.int32()),
            ("token", pa.string()),
            ("word", pa.string()),
            ("special", pa.bool_()),
            ("score", pa.float64()),
            ("predicted_label", pa.string()),
            ("target_label", pa.string()),
            ("gold_label", pa.string()),
            ("probabilities", pa.list_(pa.float64())),
            ("relative_error", pa.float64()),
        ]
    )
    documents = pa.schema(
        [
            ("doc_id", pa.string()),
            ("text", pa.string()),
            ("gold_label", pa.string()),
            ("empty", pa.bool_()),
            ("error", pa.string()),
            ("predicted_label", pa.string()),
            ("target_label", pa.string()),
            ("probabilities", pa.list_(pa.float64())),
            ("score_input", pa.float64()),
            ("delta", pa.float64()),
            ("relative_error", pa.float64()),
            ("steps", pa.int32()),
            ("converged", pa.bool_()),
            ("truncated", pa.bool_()),
            ("n_tokens", pa.int32()),
        ]
    )
    return tokens, documents


def _write_atomic(rows: list[dict[str, Any]], schema: Any, path: Path) -> None:
    pa, pq = _pyarrow()
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_chunk(out: Path, chunk: int, tokens: list[dict[str, Any]], documents: list[dict[str, Any]]) -> None:
    """Write a chunk's two shards; the document shard goes last and marks the chunk complete."""
    token_schema, doc_schema = _schemas()
    _write_atomic(tokens, token_schema, out / TOKENS_DIR / shard_name(chunk))
    _write_atomic(documents, doc_schema, out / DOCUMENTS_DIR / shard_name(chunk))


def chunk_done(out: Path, chunk: int) -> bool:
    return (out / DOCUMENTS_DIR / shard_name(chunk)).is_file() and (out / TOKENS_DIR / shard_name(chunk)).is_file()


def process_chunk(explainer: Any, out: Path, chunk: int, docs: Sequence[Document], settings: ExplainSettings) -> int:
    """Attribute and write one chunk; returns the number of documents."""
    tokens, documents = attribute_documents(explainer, docs, settings)
    write_chunk(out, chunk, tokens, documents)
    return len(docs)


def failures(out: Path) -> tuple[int, int, str | None]:
    """(documents with text that got no attribution, documents with text, the first error) over the store."""
    _, pq = _pyarrow()
    ok: set[str] = set()
    failed: dict[str, str | None] = {}
    for path in sorted((out / DOCUMENTS_DIR).glob("part-*.parquet")):
        table = pq.read_table(path, columns=["doc_id", "empty", "error", "n_tokens", "predicted_label"])
        for row in table.to_pylist():
            if row["empty"]:
                continue
            if row["error"] is None and (row["n_tokens"] or row["predicted_label"] is not None):
                ok.add(row["doc_id"])
            else:
                failed.setdefault(row["doc_id"], row["error"])
    bad = [d for d in failed if d not in ok]
    first = next((failed[d] for d in bad if failed[d]), None)
    return len(bad), len(ok | set(failed)), first
