"""``integrand run``: attribute every row of a dataset into a resumable Parquet store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import int_or_name, output_dir, positive_int, positive_number


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="attribute every row of a dataset (CSV, JSONL, Parquet) into a Parquet store")
    p.add_argument("data", type=Path, help="a .csv, .jsonl or .parquet file")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default=None)
    p.add_argument("--id-col", default=None)
    p.add_argument("--model", default="toxicity", help="toxicity (default), minilm-sentiment, or a model dir / hub id")
    p.add_argument("--target", default=None, help="label to explain (default: the predicted label)")
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--tol", type=positive_number, default=None)
    p.add_argument("--out", type=output_dir, required=True)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--chunk-docs", type=positive_int, default=64)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..corpus import ExplainSettings
    from ..corpus import run as run_corpus
    from ..text import TextExplainer

    explainer = TextExplainer.from_pretrained(args.model)
    target = None if args.target is None else int_or_name(args.target)
    summary = run_corpus(
        explainer,
        args.data,
        args.out,
        text_col=args.text_col,
        label_col=args.label_col,
        id_col=args.id_col,
        settings=ExplainSettings(target=target, steps=args.steps, tol=args.tol),
        chunk_docs=args.chunk_docs,
        engine=args.engine,
        workers=args.workers,
    )
    print(
        f"{summary.documents} documents in {summary.chunks} chunks ({summary.written} written now, "
        f"{summary.skipped} already done) in {summary.seconds:.1f} s -> {summary.out}"
    )
    if summary.attributed:
        print(
            f"completeness: {summary.n_unconverged} of {summary.attributed} attributed rows "
            f"({100 * summary.unconverged_share:.1f}%) did not converge (column 'converged'; use --tol to control it)"
        )
    return 0
