"""``integrand cues``: the lexical cues of each class in a corpus run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cues", help="top words per class (TF-IDF weighted attribution) in a corpus run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--class", dest="cls", default=None, help="one class (default: every class)")
    p.add_argument("--versus", default=None, help="contrast --class against this class")
    p.add_argument("--by", choices=("predicted", "gold", "target"), default="predicted")
    p.add_argument("--level", choices=("word", "token"), default="word")
    p.add_argument("--min-df", type=int, default=2)
    p.add_argument("--top", type=int, default=20)
    p.set_defaults(handler=run)


def _print(title: str, table: Any) -> None:
    from .sql import print_table

    print(f"# {title}")
    print_table(table)


def _completeness(run_dir: Path) -> None:
    """How many of the attributions the cue tables sum did not converge (a warning line above the share)."""
    import sys

    from ..convergence import UNCONVERGED_WARN_SHARE, ConvergenceSummary
    from ..corpus.run import converged_rows

    flags, _ = converged_rows(run_dir)
    summary = ConvergenceSummary(len(flags), sum(1 for f in flags if not f))
    if summary.n_items:
        print(f"# completeness: {summary.line('attributed rows')}")
    if summary.unconverged_share > UNCONVERGED_WARN_SHARE:
        print(
            f"integrand: warning: {summary.line('attributions')} in {run_dir}: above "
            f"{100 * UNCONVERGED_WARN_SHARE:g}%, these cue tables rest on inexact attributions (re-run with --tol)",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    from ..corpus import Corpus
    from ..errors import InputError

    with Corpus(args.run_dir) as corpus:
        _completeness(args.run_dir)
        if args.versus is not None:
            if args.cls is None:
                raise InputError("--versus", "needs --class")
            table = corpus.contrast(
                args.cls, args.versus, by=args.by, level=args.level, min_df=args.min_df, top=args.top
            )
            _print(f"{args.cls} versus {args.versus}", table)
            return 0
        for cls in [args.cls] if args.cls else corpus.classes(args.by):
            _print(cls, corpus.top(cls, by=args.by, level=args.level, min_df=args.min_df, top=args.top))
    return 0
