"""``integrand serve RESULTS_DIR``: browse saved results and corpus runs in a local web page."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import check_listen, port


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="browse saved results and corpus runs in a local web viewer (read-only)")
    p.add_argument("results_dir", type=Path, help="folder with *.safetensors results, corpus runs and HTML reports")
    p.add_argument("--port", type=port, default=8765, help="port (default 8765)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1: this machine only; other hosts can then reach the results)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..viewer import serve

    if not 0 < args.port < 65536:
        raise InputError("port", f"expected 1..65535, got {args.port}")
    if not args.results_dir.is_dir():
        raise InputError("results_dir", f"{args.results_dir} is not a directory")
    check_listen(args.host, args.port)
    print(f"integrand viewer: http://{args.host}:{args.port}/  (serving {args.results_dir.resolve()}, Ctrl-C to stop)")
    serve(args.results_dir, host=args.host, port=args.port)
    return 0
