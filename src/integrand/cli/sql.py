"""``integrand sql``: run any SQL over a corpus run's ``attributions`` and ``documents`` views."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sql", help="run SQL over a corpus run (views: attributions, documents)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("query")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
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

    with Corpus(args.run_dir) as corpus:
        print_table(corpus.sql(args.query), as_csv=args.csv)
    return 0
