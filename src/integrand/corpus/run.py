"""``integrand.run``: attribute every row of a dataset into a resumable Parquet store.

The documents are cut into fixed chunks; chunk k always holds the same documents, so a
restarted run skips the chunks whose shards exist and redoes the rest. Shards are written to a
hidden temporary name and renamed into place, so a kill at any moment (SIGKILL included) leaves
each chunk either complete or absent: the final store has every row exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import torch

from ..convergence import summarize
from ..errors import ConvergenceWarning, InputError
from ..protocol import ResultMixin
from .integrity import SHARDS, Recorder, discard, plan_resume, refuse_orphans
from .labels import check_threshold
from .shards import DOCUMENTS_DIR, TOKENS_DIR, ExplainSettings, _pyarrow, failures, process_chunk
from .sources import Document, load_documents
from .targets import GOLD, check_gold, check_target, judge_failures

FORMAT = "integrand.corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
ENGINES = ("local", "ray")


@dataclass(frozen=True, repr=False)
class RunSummary(ResultMixin):
    """What one call did: chunks written now and found done, documents, and throughput."""

    out: Path
    documents: int
    chunks: int
    written: int
    skipped: int
    seconds: float
    repaired: tuple[str, ...] = ()
    failed: int = 0
    attributed: int = 0
    n_unconverged: int = 0

    AXES = ("count",)
    COUNTS: ClassVar[tuple[str, ...]] = (
        "documents", "chunks", "written", "skipped", "failed", "attributed", "n_unconverged"
    )

    @property
    def values(self) -> torch.Tensor:
        """The run's counts, named by ``COUNTS``."""
        return torch.tensor([getattr(self, name) for name in self.COUNTS])

    @property
    def delta(self) -> None:
        """``None`` (with ``relative_error``): the per-row errors live in the store."""
        return None

    @property
    def relative_error(self) -> None:
        return None

    @property
    def converged(self) -> bool:
        """Whether every attributed row met its completeness tolerance."""
        return self.n_unconverged == 0

    @property
    def params(self) -> dict[str, Any]:
        return {"out": str(self.out), "seconds": self.seconds, "repaired": list(self.repaired)}

    @property
    def method(self) -> str:
        return "corpus.run"

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"count": self.COUNTS}

    @property
    def unconverged_share(self) -> float:
        """Share of the store's attributed rows whose completeness missed the tolerance."""
        return self.n_unconverged / self.attributed if self.attributed else 0.0

    @property
    def rows_per_second(self) -> float:
        done = self.documents * self.written / max(self.chunks, 1)
        return done / self.seconds if self.seconds > 0 else 0.0


def _fingerprint(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(json.dumps([d.doc_id, d.text, d.label]).encode())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("integrand", "torch", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _model_name(explainer: Any) -> str:
    model = getattr(explainer, "model", explainer)
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    return str(name) if name else type(model).__name__


def read_manifest(out: Path) -> dict[str, Any]:
    """The run manifest, checked to be an integrand corpus of this format version."""
    path = out / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("out", f"{out} is not an integrand corpus run (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise InputError("out", f"{path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError("out", f"{path} is not an integrand corpus manifest")
    if data.get("version") != FORMAT_VERSION:
        made_by = data.get("versions", {}).get("integrand", "an unknown version")
        raise InputError(
            "out",
            f"{out} was written by integrand {made_by} in store format {data.get('version')}; this integrand "
            f"reads format {FORMAT_VERSION}: re-run it into a new folder",
        )
    return data


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError("out", f"another run is writing to {out} (it holds {out / LOCK})") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; the kernel also releases it if the process dies


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    except ImportError:
        return contextlib.nullcontext(None)
    return Progress(
        TextColumn("attributing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} rows/s"),
        TimeRemainingColumn(),
    )


def run(
    explainer: Any,
    dataset: Any,
    out: str | Path,
    *,
    text_col: str = "text",
    label_col: str | None = None,
    id_col: str | None = None,
    settings: ExplainSettings | None = None,
    chunk_docs: int = 64,
    engine: str = "local",
    workers: int = 2,
    cpus_per_worker: float = 0.5,
    progress: bool = True,
    rebuild: bool = False,
    max_failures: float = 0.5,
) -> RunSummary:
    """Attribute every row of ``dataset`` with ``explainer`` (a ``TextExplainer``) into ``out``.

    Args:
        dataset: a .csv/.jsonl/.parquet path, a pandas or polars frame, a ``datasets.Dataset``, or records.
        text_col, label_col, id_col: the columns holding the text, the gold label and a document id.
        settings: target, method and integration settings for every document (default ``ExplainSettings()``).
        chunk_docs: documents per shard (the unit of resumption).
        engine: "local" (this process) or "ray" (Ray Data actors, each loading the model once).
        workers, cpus_per_worker: Ray actor pool size and CPUs reserved per actor (fractional values
            leave CPU for Ray's read tasks on small machines).
        progress: show a progress bar with rows/s and ETA.
        max_failures: the share of documents (with text) that may fail before the run raises an
            ``InputError`` naming ``target``; fewer failures give a ``FailedDocumentsWarning``.
        rebuild: discard whatever store ``out`` holds (manifest and shards) and start over; needed when
            shards sit there without a manifest, which cannot be verified.

    On resume every recorded shard is checked against the manifest (size, row count, sha256); damaged or
    foreign shards are named in a ``StoreWarning`` and recomputed, never counted as done.

    Every row records its completeness (``relative_error``, ``converged``, see ``integrand.convergence``);
    the summary counts the store's unconverged rows (``n_unconverged``, ``unconverged_share``), and a
    ``ConvergenceWarning`` names their documents when the share exceeds ``UNCONVERGED_WARN_SHARE``.
    """
    settings = settings or ExplainSettings()
    if engine not in ENGINES:
        raise InputError("engine", f"unknown engine {engine!r}; expected one of {list(ENGINES)}")
    if isinstance(chunk_docs, bool) or not isinstance(chunk_docs, int) or chunk_docs < 1:
        raise InputError("chunk_docs", f"expected an integer >= 1, got {chunk_docs!r}")
    out = Path(out)
    docs = load_documents(dataset, text_col, label_col, id_col)
    if not docs:
        raise InputError("dataset", "the dataset has no rows")
    check_threshold(settings.threshold)
    check_target(explainer, settings.target, label_col is not None)
    if settings.target == GOLD:
        check_gold(explainer, docs)
    chunks = [docs[i : i + chunk_docs] for i in range(0, len(docs), chunk_docs)]
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": _model_name(explainer),
        "settings": asdict(settings),
        "columns": {"text": text_col, "label": label_col, "id": id_col},
        "documents": len(docs),
        "chunk_docs": chunk_docs,
        "chunks": len(chunks),
        "fingerprint": _fingerprint(docs),
        "versions": _versions(),
        SHARDS: {},
    }
    start = time.perf_counter()
    with _exclusive(out):
        if rebuild:
            discard(out, MANIFEST)
        if (out / MANIFEST).exists():
            old = read_manifest(out)
            keys = ("model", "settings", "columns", "chunk_docs", "fingerprint")
            changed = [k for k in keys if old.get(k) != manifest[k]]
            if changed:
                raise InputError("out", f"{out} holds a different run (differs in {changed}); use a new folder")
            manifest = old
        else:
            refuse_orphans(out)
        (out / TOKENS_DIR).mkdir(exist_ok=True)
        (out / DOCUMENTS_DIR).mkdir(exist_ok=True)
        pending, repaired = plan_resume(out, manifest, len(chunks))
        with (
            _progress(len(docs), progress) as bar,
            Recorder(out, manifest, pending, MANIFEST) as recorder,
            warnings.catch_warnings(),
        ):
            # Per-text convergence warnings would flood a corpus run: its rows are counted once at the end.
            warnings.simplefilter("ignore", ConvergenceWarning)
            task = None if bar is None else bar.add_task("run", total=len(docs), rate=0.0)
            done_before = len(docs) - sum(len(chunks[k]) for k in pending)
            if bar is not None:
                bar.update(task, completed=done_before)
            finished = done_before
            completed: Iterator[int]
            if engine == "local":
                completed = (process_chunk(explainer, out, k, chunks[k], settings) for k in pending)
            else:
                from .ray_engine import run_chunks

                completed = run_chunks(
                    explainer, out, {k: chunks[k] for k in pending}, settings, workers, cpus_per_worker
                )
            for n in completed:
                finished += n
                recorder.note()
                if bar is not None:
                    elapsed = time.perf_counter() - start
                    bar.update(task, completed=finished, rate=(finished - done_before) / max(elapsed, 1e-9))
        failed, attempted, first = failures(out)
    judge_failures(failed, attempted, first, settings.target, max_failures)
    flags, doc_ids = converged_rows(out)
    checked = summarize(flags, "attributed rows", f"corpus run {out}", names=doc_ids, stacklevel=3)
    return RunSummary(
        out=out,
        documents=len(docs),
        chunks=len(chunks),
        written=len(pending),
        skipped=len(chunks) - len(pending),
        seconds=time.perf_counter() - start,
        repaired=tuple(repaired),
        failed=failed,
        attributed=checked.n_items,
        n_unconverged=checked.n_unconverged,
    )


def converged_rows(out: Path) -> tuple[list[bool], list[str]]:
    """The ``converged`` flag of every attributed row of the store at ``out``, and its name.

    A row is named by its document id, followed by ``/label`` (the explained label: multi-label
    models give a document one row per label).
    """
    _, pq = _pyarrow()
    flags: list[bool] = []
    names: list[str] = []
    for path in sorted((out / DOCUMENTS_DIR).glob("part-*.parquet")):
        for row in pq.read_table(path, columns=["doc_id", "target_label", "converged"]).to_pylist():
            if row["converged"] is not None:
                flags.append(bool(row["converged"]))
                label = row["target_label"]
                names.append(str(row["doc_id"]) + ("" if label is None else f"/{label}"))
    return flags, names
