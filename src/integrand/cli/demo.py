"""``integrand demo``: run every demo section and write one HTML report."""

from __future__ import annotations

import argparse
from typing import Any

from .options import check_listen, output_dir, port


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="explain the embedded default models and write an HTML report")
    p.add_argument("--out", type=output_dir, default="out/demo", help="folder for the report and saved results")
    p.add_argument(
        "--sections", nargs="*", default=None, help="run only these sections (default: all of image, text, generation)"
    )
    p.add_argument("--serve", action="store_true", help="then open the results in the local viewer (127.0.0.1)")
    p.add_argument("--port", type=port, default=8765, help="viewer port with --serve")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if args.serve:
        check_listen("127.0.0.1", args.port)  # before the demo runs, not after
    report = run_demo(args.out, sections=args.sections, progress=args.progress)
    print(f"report: {report.resolve()}")
    if args.serve:
        from ..viewer import serve

        print(f"integrand viewer: http://127.0.0.1:{args.port}/  (serving {args.out.resolve()}, Ctrl-C to stop)")
        serve(args.out, host="127.0.0.1", port=args.port)
    return 0
