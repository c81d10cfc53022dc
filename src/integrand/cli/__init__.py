"""The ``integrand`` command. Each subcommand is a module of this package listed in COMMANDS.

A command module defines ``add_parser(subparsers) -> None``, which registers its parser and
sets ``handler=run`` as a default; ``run(args) -> int`` imports anything heavy lazily.

Exit codes: 0 success, also when the results were written with a warning (``integrand: warning: ...``,
e.g. attributions that did not converge) unless ``--strict`` turns any warning into 1; 2 bad input (one
line ``integrand: error: <argument>: <what was expected>``, from argparse or any
:class:`~integrand.errors.IntegrandError`), 1 an internal error (one line and a hint to rerun with
``--debug``, which shows the traceback instead), 130 interrupted.

Global flags accepted anywhere on the line: ``--debug``, ``--quiet`` (no progress bars, no coloured
views) and ``--strict``. ``--threads N`` (before the subcommand) sets torch's thread count, else
``INTEGRAND_THREADS``, else 1 (``integrand.defaults.THREADS``). transformers' and huggingface_hub's
loading bars and info logs are always silenced.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from typing import Any, Sequence

from ..errors import IntegrandError
from .options import Parser, UsageError, positive_int

COMMANDS: tuple[str, ...] = ("demo", "serve", "explain", "train", "run", "cues", "sql", "generate", "steer")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="integrand", description="Faithful, error-controlled attribution for PyTorch.")
    parser.add_argument("--version", action="version", version=f"integrand {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error (accepted anywhere on the line)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or coloured views (accepted anywhere on the line)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any warning was printed, e.g. attributions that did not converge (accepted anywhere)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads (default: $INTEGRAND_THREADS, else 1; one thread measured fastest on small models)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("integrand")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from .. import __version__

        return __version__


def _set_threads(requested: int | None) -> None:
    import torch

    from ..defaults import threads

    torch.set_num_threads(threads(requested))


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
    flags = {f for f in ("--debug", "--quiet", "--strict") if f in argv[:end]}
    debug = "--debug" in flags
    argv = [a for a in argv[:end] if a not in flags] + argv[end:]
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        _say(f"error: {exc.line}")
        return 2
    args.quiet = "--quiet" in flags  # one flag: the subcommands' own --quiet is the same switch
    args.progress = False if args.quiet else None  # None: bars on a terminal (integrand.progress)
    warned: list[str] = []

    def _warning(message: Warning | str, *rest: Any, **options: Any) -> None:
        warned.append(str(message))
        _warning_line(message, *rest, **options)

    try:
        from ..progress import quiet_third_party, silenced

        quiet_third_party()
        with warnings.catch_warnings(), silenced() if args.quiet else contextlib.nullcontext():
            warnings.showwarning = _warning  # restored on exit by catch_warnings
            from ..errors import ConvergenceWarning

            warnings.filterwarnings("default", category=ConvergenceWarning)  # also resets the once-per-line memory
            _set_threads(args.threads)
            code = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe (``| head``) shows up here, inside the handlers below
        if code == 0 and warned and "--strict" in flags:
            _say(f"exit status 1: --strict and {len(warned)} warning(s)")
            return 1
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
