"""``Corpus``: a run's Parquet shards queried in place with DuckDB, and the built-in cue queries.

Views: ``attributions`` (one row per token, with ``score``) and ``documents`` (one row per
document). Class attribution of a token is its attribution in documents explained for that
class; ``idf`` = ln(N / df) over the documents that have tokens.

Queries are read-only and confined to the store: the views are Arrow datasets over the shard files
named explicitly (never a glob), registered before DuckDB's external access is switched off and its
configuration locked; extensions are never installed or loaded; exactly one SELECT statement runs.
Results leave the store only through ``Corpus.export``, which integrand writes itself.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InputError, MissingExtraError, QueryError
from ..protocol import NoCompleteness
from .integrity import store_files
from .run import read_manifest
from .shards import DOCUMENTS_DIR, TOKENS_DIR

if TYPE_CHECKING:
    import pandas as pd

LEVELS = {"token": "token", "word": "word"}
AGGREGATES = ("mean", "sum")
GROUPINGS = {"predicted": "predicted_label", "gold": "gold_label", "target": "target_label"}
VIEWS = {"attributions": TOKENS_DIR, "documents": DOCUMENTS_DIR}
EXPORTS = ("csv", "parquet")
# Settings fixed before the configuration is locked: no extension is fetched or loaded, no Python
# variable is scanned by name, and (set last) no file outside the registered shards can be reached.
_LOCKDOWN = {
    "threads": 1,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
}


@dataclass(frozen=True, repr=False)
class Table(NoCompleteness):
    """Query result: column names and rows (``values`` is ``rows``; no completeness: ``delta``,
    ``relative_error`` and ``converged`` are ``None``)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @property
    def values(self) -> tuple[tuple[Any, ...], ...]:
        return self.rows

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": list(self.columns)}

    @property
    def method(self) -> str:
        return "query"

    def to_dataframe(self) -> pd.DataFrame:
        """The rows under their column names (already tidy: one row per result row)."""
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=list(self.columns))

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError("duckdb", "store") from None
    return duckdb


def _brief(query: str) -> str:
    flat = " ".join(query.split())
    return repr(flat if len(flat) <= 80 else flat[:77] + "...")


def _connect(files: dict[str, list[Path]]) -> Any:
    """A DuckDB connection that sees the shard files as views and can reach nothing else."""
    duckdb = _duckdb()
    try:
        import pyarrow.dataset as ds
    except ImportError:
        raise MissingExtraError("pyarrow", "store") from None
    con = duckdb.connect(":memory:", config=dict(_LOCKDOWN))
    for view, sub in VIEWS.items():
        con.register(view, ds.dataset([str(p.resolve()) for p in files[sub]], format="parquet"))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


class Corpus:
    """Open a run folder written by ``integrand.run`` (read-only; nothing is copied).

    Opening checks every served shard against the manifest's record (size and row count; its sha256 too
    with ``verify=True``) and raises ``StoreError`` naming any that differ.
    """

    def __init__(self, path: str | Path, *, verify: bool = False) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        files = store_files(self.path, self.manifest, verify=verify)
        for sub in VIEWS.values():
            if not files[sub]:
                raise InputError("path", f"{self.path} has no {sub} shards yet; run it first")
        self.con = _connect(files)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, query: str, params: Sequence[Any] | None) -> Any:
        duckdb = _duckdb()
        if not isinstance(query, str):
            raise QueryError("query", f"expected SQL text, got {type(query).__name__}")
        try:
            statements = self.con.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError("query", f"{_brief(query)}: {str(exc).splitlines()[0]}") from None
        if len(statements) != 1:
            raise QueryError("query", f"{_brief(query)}: expected exactly one statement, got {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise QueryError(
                "query", f"{_brief(query)}: only a read-only SELECT is allowed, not a {kind.name} statement"
            )
        try:
            return self.con.execute(query, list(params or []))
        except duckdb.PermissionException as exc:
            raise QueryError(
                "query",
                f"{_brief(query)}: queries may read only the views {sorted(VIEWS)} ({str(exc).splitlines()[0]})",
            ) from None
        except duckdb.Error as exc:
            raise QueryError("query", f"{_brief(query)}: {str(exc).splitlines()[0]}") from None

    def sql(self, query: str, params: Sequence[Any] | None = None) -> Table:
        """Run one read-only SELECT over the views ``attributions`` and ``documents``.

        Anything else (a second statement, COPY, ATTACH, INSTALL, SET, reading files such as
        ``read_text``/``read_csv``) raises ``QueryError``. Use ``export`` to write a result to a file.
        """
        cursor = self._execute(query, params)
        columns = tuple(d[0] for d in cursor.description or [])
        return Table(columns, tuple(tuple(r) for r in cursor.fetchall()))

    def export(self, query: str, out: str | Path, *, fmt: str, params: Sequence[Any] | None = None) -> int:
        """Write the result of ``query`` to ``out`` as "csv" or "parquet" (streamed; atomic); returns the rows.

        The query runs first, so a refused or failing query writes nothing.
        """
        if fmt not in EXPORTS:
            raise InputError("fmt", f"expected one of {list(EXPORTS)}, got {fmt!r}")
        out = Path(out)
        if not out.parent.is_dir():
            raise InputError("out", f"no such folder: {out.parent}")
        if out.is_dir():
            raise InputError("out", f"{out} is a folder; expected a file name")
        cursor = self._execute(query, params)
        stream = getattr(cursor, "to_arrow_reader", None) or cursor.fetch_record_batch
        with warnings.catch_warnings():  # DuckDB 2 notes that a DB-API cursor's Arrow output copies the rows
            warnings.simplefilter("ignore", UserWarning)
            reader = stream(64 * 1024)
        tmp = out.with_name(f".{out.name}.tmp")
        rows = 0
        try:
            if fmt == "csv":
                import pyarrow.csv as pcsv

                with pcsv.CSVWriter(tmp, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            else:
                import pyarrow.parquet as pq

                with pq.ParquetWriter(tmp, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            os.replace(tmp, out)
        except OSError as exc:
            raise InputError("out", f"cannot write {out}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return rows

    def classes(self, by: str = "predicted") -> list[str]:
        column = self._grouping(by)
        return [
            r[0]
            for r in self.sql(f"SELECT DISTINCT {column} FROM documents WHERE {column} IS NOT NULL ORDER BY 1").rows
        ]

    def _grouping(self, by: str) -> str:
        if by not in GROUPINGS:
            raise InputError("by", f"expected one of {list(GROUPINGS)}, got {by!r}")
        return GROUPINGS[by]

    def _check_class(self, cls: str, by: str) -> None:
        known = self.classes(by)
        if cls not in known:
            raise InputError("cls", f"unknown class {cls!r}; the run has {known}")

    def _unit_stats(self, level: str) -> str:
        if level not in LEVELS:
            raise InputError("level", f"expected one of {list(LEVELS)}, got {level!r}")
        unit = LEVELS[level]
        # Per (document, explained label, unit): summed attribution and count (a multi-label run explains a
        # document once per label); then document frequency over the corpus.
        return f"""
            units AS (
                SELECT doc_id, lower({unit}) AS unit, sum(score) AS score, count(*) AS n,
                       any_value(predicted_label) AS predicted_label, any_value(gold_label) AS gold_label,
                       target_label
                FROM attributions WHERE NOT special AND {unit} IS NOT NULL
                GROUP BY doc_id, target_label, lower({unit})),
            ndocs AS (SELECT count(DISTINCT doc_id) AS n FROM units),
            df AS (SELECT unit, count(DISTINCT doc_id) AS df FROM units GROUP BY unit)"""

    def top(
        self,
        cls: str,
        *,
        by: str = "predicted",
        level: str = "word",
        aggregate: str = "mean",
        tfidf: bool = True,
        min_df: int = 2,
        top: int = 20,
    ) -> Table:
        """Units (tokens or words) pushing hardest towards class ``cls``.

        ``aggregate``: "mean" attribution per document containing the unit, or "sum" over the
        class; ``tfidf`` multiplies by ln(N / df) so corpus-wide filler ranks lower.
        """
        column = self._grouping(by)
        self._check_class(cls, by)
        if aggregate not in AGGREGATES:
            raise InputError("aggregate", f"expected one of {list(AGGREGATES)}, got {aggregate!r}")
        agg = "avg" if aggregate == "mean" else "sum"
        weight = "ln(ndocs.n / df.df)" if tfidf else "1.0"
        query = f"""WITH {self._unit_stats(level)}
            SELECT u.unit AS unit, {agg}(u.score) * {weight} AS weight, {agg}(u.score) AS attribution,
                   count(*) AS documents, df.df AS df
            FROM units u JOIN df USING (unit), ndocs
            WHERE u.{column} = ? AND df.df >= ?
            GROUP BY u.unit, df.df, ndocs.n ORDER BY weight DESC, unit LIMIT ?"""
        return self.sql(query, [cls, min_df, top])

    def contrast(
        self, cls: str, versus: str, *, by: str = "predicted", level: str = "word", min_df: int = 2, top: int = 20
    ) -> Table:
        """Units whose mean attribution is higher in ``cls`` documents than in ``versus`` documents."""
        column = self._grouping(by)
        self._check_class(cls, by)
        self._check_class(versus, by)
        query = f"""WITH {self._unit_stats(level)},
            a AS (SELECT unit, avg(score) AS s FROM units WHERE {column} = ? GROUP BY unit),
            b AS (SELECT unit, avg(score) AS s FROM units WHERE {column} = ? GROUP BY unit)
            SELECT unit, coalesce(a.s, 0) - coalesce(b.s, 0) AS difference, a.s AS mean_a, b.s AS mean_b, df.df AS df
            FROM a FULL OUTER JOIN b USING (unit) JOIN df USING (unit)
            WHERE df.df >= ? ORDER BY difference DESC, unit LIMIT ?"""
        return self.sql(query, [cls, versus, min_df, top])

    def examples(self, unit: str, *, level: str = "word", top: int = 10) -> Table:
        """The documents where ``unit`` mattered most (largest summed attribution)."""
        query = f"""WITH {self._unit_stats(level)}
            SELECT u.doc_id, u.score, u.predicted_label, d.text FROM units u JOIN documents d USING (doc_id)
            WHERE u.unit = lower(?) ORDER BY u.score DESC LIMIT ?"""
        return self.sql(query, [unit, top])

    def lexicon(self, cls: str, *, by: str = "predicted", level: str = "word", min_df: int = 1) -> dict[str, float]:
        """Unit -> idf × mean attribution towards ``cls``: a screening lexicon that needs no model."""
        rows = self.top(cls, by=by, level=level, aggregate="mean", tfidf=True, min_df=min_df, top=1 << 30)
        return {str(u): float(w) for u, w in zip(rows.column("unit"), rows.column("weight"))}

    def screening_scores(self, cls: str, *, by: str = "predicted", level: str = "word") -> Table:
        """Per stored document: sum over its units of tf × lexicon weight (tf = count / units in the document)."""
        self._check_class(cls, by)
        query = f"""WITH {self._unit_stats(level)},
            lex AS (SELECT u.unit, avg(u.score) * ln(ndocs.n / df.df) AS weight
                    FROM units u JOIN df USING (unit), ndocs WHERE u.{self._grouping(by)} = ?
                    GROUP BY u.unit, df.df, ndocs.n),
            tf AS (SELECT doc_id, unit, n * 1.0 / sum(n) OVER (PARTITION BY doc_id) AS tf FROM units)
            SELECT tf.doc_id, sum(tf.tf * coalesce(lex.weight, 0)) AS screening_score
            FROM tf LEFT JOIN lex USING (unit) GROUP BY tf.doc_id ORDER BY screening_score DESC"""
        return self.sql(query, [cls])


def screen(texts: Sequence[str], lexicon: dict[str, float], split: Callable[[str], Sequence[str]]) -> list[float]:
    """Screening score of new texts from a lexicon (``Corpus.lexicon``) and a word splitter: no model needed."""
    scores = []
    for text in texts:
        units = [u.lower() for u in split(text)]
        scores.append(sum(lexicon.get(u, 0.0) for u in units) / len(units) if units else math.nan)
    return scores
