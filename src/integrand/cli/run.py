"""``integrand run``: attribute every row of a dataset into a resumable Parquet store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..defaults import CLI
from .options import int_or_name, integration_from, output_dir, positive_int, positive_number

_FLAGS = {"target": "--target", "threshold": "--threshold", "max_failures": "--max-failures"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="attribute every row of a dataset (CSV, JSONL, Parquet) into a Parquet store")
    p.add_argument("data", type=Path, help="a .csv, .jsonl or .parquet file")
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    p.add_argument("--label-col", default=None, help="column holding the gold label (needed by --target gold)")
    p.add_argument("--id-col", default=None, help="column holding a document id (default: the row number)")
    p.add_argument(
        "--model",
        default="toxicity",
        help="toxicity (default), minilm-sentiment, or a model dir (e.g. written by integrand train) / hub id",
    )
    p.add_argument(
        "--target",
        default=None,
        help="what each document is explained for: predicted (default: its predicted label), gold (its own "
        "label from --label-col) or a fixed label name/index; a target no document can take fails the run",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="multi-label models: every label with probability >= this is explained, each its own row group; "
        "a document with none gets predicted label 'none' (default: 0.5)",
    )
    p.add_argument(
        "--max-failures",
        type=float,
        default=0.5,
        help="share of documents that may fail to be explained before the run fails (default: 0.5); "
        "fewer failures are kept in the error column with a warning",
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="fixed integration steps per document instead of --tol"
    )
    p.add_argument(
        "--tol", type=positive_number, default=CLI.tol, help="error-controlled integration to this relative tolerance"
    )
    p.add_argument("--out", type=output_dir, required=True, help="folder of the Parquet store (resumable)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    p.add_argument("--workers", type=positive_int, default=2, help="Ray actors (default: 2)")
    p.add_argument("--chunk-docs", type=positive_int, default=64, help="documents per shard, the unit of resumption")
    p.add_argument("--quiet", action="store_true", help="no progress bar (same as the global --quiet)")
    p.add_argument(
        "--rebuild", action="store_true", help="discard the store in --out (manifest and shards) and start over"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from ..corpus import ExplainSettings
    from ..corpus.targets import FailedDocumentsWarning
    from ..errors import InputError
    from ..text import TextExplainer

    explainer = TextExplainer.from_pretrained(args.model)
    target = None if args.target is None else int_or_name(args.target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FailedDocumentsWarning)
        try:
            settings = ExplainSettings(target=target, integration=integration_from(args), threshold=args.threshold)
            summary = _run(explainer, args, settings)
        except InputError as exc:
            if exc.argument in _FLAGS:
                raise InputError(_FLAGS[exc.argument], str(exc).split(": ", 1)[-1]) from None
            raise
    for w in caught:  # shown as one line each by the command (and counted by --strict)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    failed = f", {summary.failed} failed" if summary.failed else ""
    print(
        f"{summary.documents} documents in {summary.chunks} chunks ({summary.written} written now, "
        f"{summary.skipped} already done{failed}) in {summary.seconds:.1f} s -> {summary.out}"
    )
    if summary.attributed:
        print(
            f"completeness: {summary.n_unconverged} of {summary.attributed} attributed rows "
            f"({100 * summary.unconverged_share:.1f}%) did not converge (column 'converged'; use --tol to control it)"
        )
    return 0


def _run(explainer: Any, args: argparse.Namespace, settings: Any) -> Any:
    from ..corpus import run as run_corpus
    from ..progress import enabled

    return run_corpus(
        explainer,
        args.data,
        args.out,
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
        settings=settings,
        chunk_docs=args.chunk_docs,
        engine=args.engine,
        workers=args.workers,
        progress=enabled(args.progress),
        rebuild=args.rebuild,
        max_failures=args.max_failures,
    )
