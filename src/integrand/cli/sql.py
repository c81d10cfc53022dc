"""``integrand sql``: one read-only SELECT over a corpus run's ``attributions`` and ``documents`` views.

The result is printed, or written by integrand itself with ``--csv OUT`` / ``--parquet OUT``; SQL can
neither write nor read files (``COPY``, ``read_csv`` and friends are refused).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sql", help="run one read-only SELECT over a corpus run (views: attributions, documents)")
    p.add_argument("run_dir", type=Path, help="a folder written by integrand run")
    p.add_argument("query", help="one SELECT over the views 'attributions' and 'documents'")
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--csv", nargs="?", const="-", default=None, metavar="OUT", help="write CSV to OUT (default: print CSV)"
    )
    out.add_argument("--parquet", type=Path, default=None, metavar="OUT", help="write the result to a Parquet file")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256 against the manifest first")
    p.set_defaults(handler=run)


def print_table(table: Any, as_csv: bool = False) -> None:
    """Print a corpus ``Table`` as CSV or as a rich table (plain text when rich is missing)."""
    if as_csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(table.columns)
        writer.writerows(table.rows)
        return
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
        from rich.text import Text
    except ImportError:
        print("\t".join(table.columns))
        for row in table.rows:
            print("\t".join(str(v) for v in row))
        return
    out = RichTable()
    for column in table.columns:
        out.add_column(Text(str(column)))
    for row in table.rows:
        # Text() keeps tokens such as "[CLS]" verbatim instead of reading them as markup.
        out.add_row(*(Text(f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row))
    Console().print(out)


def run(args: argparse.Namespace) -> int:
    from ..corpus import Corpus

    with Corpus(args.run_dir, verify=args.verify) as corpus:
        if args.parquet is not None or args.csv not in (None, "-"):
            fmt, out = ("parquet", args.parquet) if args.parquet is not None else ("csv", Path(args.csv))
            rows = corpus.export(args.query, out, fmt=fmt)
            print(f"{rows} rows -> {out}")
        else:
            print_table(corpus.sql(args.query), as_csv=args.csv == "-")
    return 0
