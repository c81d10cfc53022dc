"""``integrand demo``: run every demo section and write one HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="explain the embedded default models and write an HTML report")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for the report and saved results")
    p.add_argument("--sections", nargs="*", default=None, help="run only these sections (default: all)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(args.out, sections=args.sections)
    print(f"report: {report.resolve()}")
    return 0
