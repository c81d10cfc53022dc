"""The ``integrand`` command. Each subcommand is a module of this package listed in COMMANDS.

A command module defines ``add_parser(subparsers) -> None``, which registers its parser and
sets ``handler=run`` as a default; ``run(args) -> int`` imports anything heavy lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import IntegrandError

COMMANDS: tuple[str, ...] = ("demo", "serve", "explain", "run", "cues", "sql", "generate", "steer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integrand", description="Faithful, error-controlled attribution for PyTorch."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except IntegrandError as exc:
        print(f"integrand: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
