"""The ``integrand`` command. Each subcommand is a module of this package listed in COMMANDS.

A command module defines ``add_parser(subparsers) -> None``, which registers its parser and
sets ``handler=run`` as a default; ``run(args) -> int`` imports anything heavy lazily.

Exit codes: 0 success, 2 bad input (one line ``integrand: error: <argument>: <what was expected>``,
from argparse or any :class:`~integrand.errors.IntegrandError`), 1 an internal error (one line and a
hint to rerun with ``--debug``, which shows the traceback instead), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Any, Sequence

from ..errors import IntegrandError
from .options import Parser, UsageError

COMMANDS: tuple[str, ...] = ("demo", "serve", "explain", "train", "run", "cues", "sql", "generate", "steer")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="integrand", description="Faithful, error-controlled attribution for PyTorch.")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error (accepted anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def _say(line: str) -> None:
    # Lone surrogates (non-UTF-8 input echoed back) are escaped so that printing cannot fail.
    print(f"integrand: {line}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


def _warning_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """Warnings as one readable line each (a ConvergenceWarning names what did not converge)."""
    _say(f"warning: {message}")


def _quiet_stdout() -> None:
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):  # no real file descriptor (captured output): nothing to protect
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end]
    argv = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        _say(f"error: {exc.line}")
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line  # restored on exit by catch_warnings
            code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe (``| head``) shows up here, inside the handlers below
        return code
    except IntegrandError as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        _say("interrupted")
        return 130
    except BrokenPipeError:
        _quiet_stdout()  # the reader left; the interpreter's last flush must not fail again
        return 1
    except Exception as exc:
        if debug:
            raise
        detail = " ".join(str(exc).split())[:300]
        _say(f"internal error: {type(exc).__name__}: {detail} (rerun with --debug for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
