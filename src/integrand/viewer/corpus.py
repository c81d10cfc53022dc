"""Corpus runs for the viewer: Parquet shards queried in place with DuckDB (read-only, fixed SQL).

A run stores one row per token. The viewer needs ``doc_id``, ``token`` and ``score``; it uses
``position``, ``predicted_label``/``prediction``, ``gold_label``/``label`` and
``relative_error``/``completeness_error`` when present. Column names come from a fixed list of
candidates, and shard paths travel as query parameters, so nothing from the files becomes SQL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, IntegrandError, MissingExtraError
from .files import _GLOB_CHARS, CORPUS_MANIFEST, ResultsDir
from .schema import CorpusSummary, CueRow, DocumentRow, num
from .store import Filters

REQUIRED = ("doc_id", "token", "score")
TOKENS_DIR, DOCUMENTS_DIR = "tokens", "documents"
CANDIDATES: dict[str, tuple[str, ...]] = {
    "position": ("position",),
    "prediction": ("predicted_label", "prediction", "predicted"),
    "label": ("gold_label", "label"),
    "error": ("relative_error", "completeness_error"),
}


class DamagedStore(InputError):
    """A store's served shards differ from the manifest's record; ``problems`` names each (inside RESULTS_DIR)."""

    def __init__(self, run: str, problems: list[str]) -> None:
        self.problems = problems
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__("run", f"{run}: damaged shards: {shown}")


@dataclass(frozen=True)
class Columns:
    """Which stored column plays each role (``None`` when the run does not have it)."""

    position: str | None
    prediction: str | None
    label: str | None
    error: str | None

    def sql(self, role: str, cast: str = "VARCHAR") -> str:
        column = getattr(self, role)
        return "NULL" if column is None else f'CAST("{column}" AS {cast})'


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders runs of digits by value: "doc2" before "doc10", "9" before "10"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError("duckdb", "store") from exc
    return duckdb


class CorpusRun:
    """One run folder: its shards, manifest and column roles."""

    def __init__(self, results: ResultsDir, run: str) -> None:
        self.run = run
        self.results = results
        base = results.root if run == "." else results.resolve(run, directory=True)
        self.base: Path | None = base
        # A store written by integrand.run keeps one row per token under tokens/ (documents/ is per document).
        self.is_store = base is not None and all((base / d).is_dir() for d in (TOKENS_DIR, DOCUMENTS_DIR))
        self.shards = self._store_shards() if self.is_store else results.shards(run)
        self.con = _duckdb().connect(":memory:")
        self.con.execute("SET threads TO 1")
        self.columns_all: list[str] = []
        if self.shards:
            try:
                self.columns_all = self._columns()
            except InputError:
                self.con.close()
                raise
        missing = [c for c in REQUIRED if c not in self.columns_all]
        if self.shards and missing:
            self.con.close()
            raise InputError("run", f"{run}: shards lack the columns {missing}")
        present = {role: next((c for c in names if c in self.columns_all), None) for role, names in CANDIDATES.items()}
        self.roles = Columns(**present)

    def _sub(self, name: str) -> str:
        return name if self.run == "." else f"{self.run}/{name}"

    def _store_shards(self) -> list[str]:
        """The token shards the store's manifest records (as ``Corpus`` serves them), checked against their
        records (size, rows) and to stay inside RESULTS_DIR; a damaged one is named, never read."""
        from ..corpus.integrity import check_store
        from ..corpus.run import read_manifest

        assert self.base is not None
        try:
            manifest = read_manifest(self.base)
        except InputError as exc:
            reason = str(exc).split(": ", 1)[-1].replace(str(self.base), self.run)  # no absolute paths
            raise InputError("run", reason) from None
        files, problems = check_store(self.base, manifest, verify=False)
        if problems:
            raise DamagedStore(self.run, [f"{self._sub(p)}" for p in problems])
        out = []
        for kind in (TOKENS_DIR, DOCUMENTS_DIR):
            for path in files[kind]:
                real = self.results.resolve(self._sub(f"{kind}/{path.name}"), suffix=".parquet")
                if real is None or _GLOB_CHARS & set(str(real)):
                    raise InputError("run", f"{self.run}: a shard is a link out of the results folder")
                if kind == TOKENS_DIR:
                    out.append(str(real))
        return out

    def _query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            rows = self.con.execute(f"WITH t AS (SELECT * FROM read_parquet(?)) {sql}", [self.shards, *(params or [])])
            return [tuple(r) for r in rows.fetchall()]
        except _duckdb().Error as exc:  # corrupt or foreign shards: a clear message, not a crash
            raise InputError("run", f"{self.run}: cannot read the shards ({type(exc).__name__})") from exc

    def _columns(self) -> list[str]:
        try:
            cursor = self.con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [self.shards])
        except _duckdb().Error as exc:
            raise InputError("run", f"{self.run}: cannot read the shards ({type(exc).__name__})") from exc
        return [str(d[0]) for d in cursor.description or []]

    def close(self) -> None:
        self.con.close()

    def manifest(self) -> dict[str, str]:
        path = None if self.base is None else self.base / CORPUS_MANIFEST
        if path is None or not path.is_file() or path.is_symlink():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"error": "unreadable manifest.json"}
        if not isinstance(data, dict):
            return {}
        return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in data.items()}

    def class_column(self) -> str | None:
        return self.roles.prediction or self.roles.label

    def summary(self) -> CorpusSummary:
        if not self.shards:
            return CorpusSummary(path=self.run, shards=0, manifest=self.manifest(), error="no Parquet shards yet")
        (docs, tokens), = self._query("SELECT count(DISTINCT doc_id), count(*) FROM t")
        classes: list[str] = []
        cls = self.class_column()
        if cls is not None:
            rows = self._query(f'SELECT DISTINCT CAST("{cls}" AS VARCHAR) AS c FROM t WHERE c IS NOT NULL ORDER BY c')
            classes = [str(r[0]) for r in rows]
        return CorpusSummary(
            path=self.run, shards=len(self.shards), documents=int(docs), tokens=int(tokens), classes=classes,
            manifest=self.manifest(), columns=self.columns_all,
        )

    def _documents_sql(self) -> str:
        order = f' ORDER BY "{self.roles.position}"' if self.roles.position else ""
        return (
            "SELECT CAST(doc_id AS VARCHAR) AS doc_id, "
            f"any_value({self.roles.sql('label')}) AS label, any_value({self.roles.sql('prediction')}) AS prediction, "
            f"max({self.roles.sql('error', 'DOUBLE')}) AS err, count(*) AS n, "
            f"string_agg(CAST(token AS VARCHAR), ' '{order}) AS preview "
            "FROM t GROUP BY 1"
        )

    def documents(self, filters: Filters, limit: int, offset: int) -> tuple[int, list[DocumentRow]]:
        where = ["TRUE"]
        params: list[Any] = []
        for column, value in (("label", filters.label), ("prediction", filters.prediction)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if filters.min_error is not None:
            where.append("err >= ?")
            params.append(filters.min_error)
        if filters.max_error is not None:
            where.append("err <= ?")
            params.append(filters.max_error)
        base = f"SELECT * FROM ({self._documents_sql()}) WHERE {' AND '.join(where)}"
        # Ids in natural order ("2" before "10"): sort the matching ids here, then read only the page's rows.
        ids = sorted((str(r[0]) for r in self._query(f"SELECT doc_id FROM ({base})", params)), key=natural_key)
        page = ids[offset : offset + limit]
        chosen = self._query(f"{base} AND list_contains(CAST(? AS VARCHAR[]), doc_id)", [*params, page]) if page else []
        found = {r[0]: r for r in chosen}
        rows = [found[i] for i in page if i in found]
        return len(ids), [
            DocumentRow(doc_id=r[0], label=r[1], prediction=r[2], relative_error=num(r[3]), tokens=int(r[4]),
                        preview=(r[5] or "")[:200])
            for r in rows
        ]

    def document(self, doc_id: str) -> tuple[list[str], list[float | None]]:
        # Without a position column, the shards' own row order is the token order.
        order = f' ORDER BY "{self.roles.position}"' if self.roles.position else ""
        rows = self._query(
            f"SELECT CAST(token AS VARCHAR), CAST(score AS DOUBLE) FROM t WHERE CAST(doc_id AS VARCHAR) = ?{order}",
            [doc_id],
        )
        return [str(r[0]) for r in rows], [num(r[1]) for r in rows]

    def _store_cues(self, top: int, min_df: int, cls: str | None) -> tuple[str, list[CueRow]]:
        """The store's own lexical-cue query (words, TF-IDF weighted), after checking every shard stays inside."""
        from ..corpus import Corpus

        assert self.base is not None
        for sub in (TOKENS_DIR, DOCUMENTS_DIR):
            found = sorted(str(p.resolve()) for p in (self.base / sub).glob("part-*.parquet"))
            if found != [s for s in self.results.shards(self._sub(sub)) if Path(s).name.startswith("part-")]:
                raise InputError("run", f"{self.run}: a shard is a link out of the results folder")
        with Corpus(self.base) as corpus:
            classes = corpus.classes("predicted") if cls is None else [cls]
            rows = []
            for c in classes:
                table = corpus.top(c, by="predicted", level="word", min_df=min_df, top=top)
                for rank, (unit, weight, attribution, documents, _df) in enumerate(table.rows, start=1):
                    rows.append(CueRow(cls=c, rank=rank, token=str(unit), mean_score=num(attribution),
                                       total_score=None, weight=num(weight), documents=int(documents)))
        return "predicted_label", rows

    def cues(self, top: int, min_df: int, cls: str | None) -> tuple[str, list[CueRow]]:
        """Per class, the strongest cues: the store's TF-IDF word query for runs of ``integrand.run``, else the
        tokens with the highest mean attribution among those seen in >= ``min_df`` documents."""
        if self.is_store:
            return self._store_cues(top, min_df, cls)
        column = self.class_column()
        if column is None:
            raise InputError("run", f"{self.run}: no predicted or gold label column to group by")
        where, params = ("WHERE c = ?", [cls]) if cls is not None else ("", [])
        sql = (
            f'SELECT * FROM (SELECT c, token, m, s, df, row_number() OVER (PARTITION BY c ORDER BY m DESC, token) AS r '
            f'FROM (SELECT CAST("{column}" AS VARCHAR) AS c, CAST(token AS VARCHAR) AS token, avg(score) AS m, '
            "sum(score) AS s, count(DISTINCT doc_id) AS df FROM t GROUP BY 1, 2 HAVING count(DISTINCT doc_id) >= ?) "
            f"{where}) WHERE r <= ? AND c IS NOT NULL ORDER BY c, r"
        )
        rows = self._query(sql, [min_df, *params, top])
        return column, [
            CueRow(cls=r[0], token=r[1], mean_score=num(r[2]), total_score=num(r[3]), documents=int(r[4]),
                   rank=int(r[5]), weight=None)
            for r in rows
        ]


def damaged_shards(results: ResultsDir, shards: list[str]) -> list[str]:
    """The shards DuckDB cannot read on their own, as paths inside RESULTS_DIR with the error type."""
    out = []
    con = _duckdb().connect(":memory:")
    try:
        con.execute("SET threads TO 1")
        for shard in shards:
            try:
                con.execute("SELECT count(*) FROM read_parquet(?)", [shard]).fetchall()
            except _duckdb().Error as exc:
                out.append(f"{results.relative(Path(shard))} ({type(exc).__name__})")
    finally:
        con.close()
    return out


def _damaged(results: ResultsDir, run: str, shards: list[str], exc: Exception, **known: Any) -> CorpusSummary:
    if isinstance(exc, DamagedStore):
        return CorpusSummary(path=run, shards=len(shards), error=str(exc).split(": ", 2)[-1], damaged=True, **known)
    bad = damaged_shards(results, shards) if isinstance(exc, IntegrandError) else []
    reason = f"damaged shards: {', '.join(bad[:5])}" + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    if not bad:
        reason = str(exc) if isinstance(exc, IntegrandError) else f"unreadable ({type(exc).__name__})"
    return CorpusSummary(path=run, shards=len(shards), error=reason, damaged=True, **known)


def corpus_summary(results: ResultsDir, run: str) -> CorpusSummary:
    """The listing entry of one run; a run that cannot be read is listed as damaged, with the reason (the
    unreadable shards by name when single shards are at fault), so one bad run never hides the others."""
    try:
        corpus = CorpusRun(results, run)
    except Exception as exc:  # any failure of one run must leave the listing intact
        base = results.root if run == "." else results.resolve(run, directory=True)
        tokens = f"{run}/{TOKENS_DIR}" if base is not None and (base / TOKENS_DIR).is_dir() else run
        return _damaged(results, run, results.shards(tokens.removeprefix("./")), exc)
    try:
        return corpus.summary()
    except Exception as exc:  # same
        return _damaged(results, run, corpus.shards, exc, manifest=corpus.manifest(), columns=corpus.columns_all)
    finally:
        corpus.close()
