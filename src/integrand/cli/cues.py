"""``integrand cues``: the lexical cues of each class in a corpus run, and how well they screen documents."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cues", help="top words per class (TF-IDF weighted attribution) in a corpus run")
    p.add_argument("run_dir", type=Path, help="a folder written by integrand run")
    p.add_argument("--class", dest="cls", default=None, help="one class (default: every class)")
    p.add_argument("--versus", default=None, help="contrast --class against this class")
    p.add_argument(
        "--by",
        choices=("predicted", "gold", "target"),
        default="predicted",
        help="group documents by their predicted (default), gold or explained (target) label",
    )
    p.add_argument("--level", choices=("word", "token"), default="word", help="rank words (default) or tokens")
    p.add_argument("--min-df", type=int, default=2, help="ignore words/tokens found in fewer documents (default: 2)")
    p.add_argument("--top", type=int, default=20, help="words/tokens listed per class (default: 20)")
    p.add_argument(
        "--screen-top",
        type=int,
        default=10,
        help="screening: the most cues per class (mined towards the class on the non-held-out documents; default: 10)",
    )
    p.add_argument(
        "--holdout", type=float, default=0.3, help="screening: share of documents held out from mining (default: 0.3)"
    )
    p.add_argument("--seed", type=int, default=0, help="screening: seed of the held-out split (default: 0)")
    p.add_argument("--no-screen", action="store_true", help="skip the screening scores")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 against the manifest first")
    p.set_defaults(handler=run)


def _print(title: str, table: Any) -> None:
    from .sql import print_table

    print(f"# {title}")
    print_table(table)


def _screen(corpus: Any, args: argparse.Namespace) -> None:
    from ..corpus.screening import screen_against_model
    from ..corpus.store import Table
    from ..errors import InputError

    try:
        result = screen_against_model(
            corpus, level=args.level, top=args.screen_top, min_df=args.min_df, holdout=args.holdout, seed=args.seed
        )
    except InputError as exc:
        flag = {"top": "--screen-top", "holdout": "--holdout", "min_df": "--min-df"}.get(exc.argument)
        if flag is None:
            raise
        raise InputError(flag, str(exc).split(": ", 1)[-1]) from None
    cues = Table(("class", "cues"), tuple((c, " ".join(w)) for c, w in result.cues.items()))
    _print(f"screening cues (mined on {result.mined} documents)", cues)
    rounded = tuple(r[:5] + tuple(round(float(x), 3) for x in r[5:]) for r in result.scores.rows)
    _print(
        f"screening: 'contains a cue of the class' vs the classifier's prediction / gold label on "
        f"{result.held_out} held-out documents",
        Table(result.scores.columns, rounded),
    )


def _completeness(corpus: Any, run_dir: Path) -> None:
    """How many of the attributions the cue tables sum did not converge (a warning line above the share).

    Counted over the store's verified shards (the ``documents`` view), never over files found in the folder.
    """
    import sys

    from ..convergence import UNCONVERGED_WARN_SHARE, ConvergenceSummary

    ((rows, unconverged),) = corpus.sql(
        "SELECT count(converged), count(*) FILTER (WHERE NOT converged) FROM documents"
    ).rows
    summary = ConvergenceSummary(int(rows), int(unconverged))
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

    with Corpus(args.run_dir, verify=args.verify) as corpus:
        _completeness(corpus, args.run_dir)
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
        if not args.no_screen:
            _screen(corpus, args)
    return 0
