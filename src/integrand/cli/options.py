"""Strict argument types of the ``integrand`` command and the one-line error format.

Every value from the command line goes through one of these types at parse time, before any model
loads, so bad input costs nothing and is reported by argparse as ``<argument>: <what was expected>``:

- text and paths must be valid UTF-8 (a non-UTF-8 byte arrives as a lone surrogate in ``sys.argv``);
- numbers are ASCII only (``int()`` and ``float()`` also take ``²``-free but exotic spellings such as
  ``٣``, ``３``, ``1_0`` or `` 5 ``; ``str.isdigit()`` even says yes to ``²``), and finite;
- output files need an existing parent folder and must not be folders; output folders must not be files.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any, Callable

from ..defaults import CLI
from ..integration import Integration

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_VALUE_ACTIONS = (None, "store", "append", "extend")


def _bad(expected: str, value: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")


def integration_from(args: argparse.Namespace, default: Integration = CLI) -> Integration:
    """The one ``Integration`` of a command: ``--steps`` (a fixed rule) or ``--tol``, over ``default``
    (the command's policy in ``integrand.defaults``)."""
    steps = getattr(args, "steps", None)
    tol = getattr(args, "tol", None)
    return Integration.from_kwargs(default=default, steps=steps, tol=None if steps is not None else tol)


def text(value: str) -> str:
    """The value itself, refused when it is not valid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"expected UTF-8 text, got {value!r} (not valid UTF-8)") from None
    return value


def path(value: str) -> Path:
    return Path(text(value))


def integer(value: str) -> int:
    """An integer written with ASCII digits (and an optional sign)."""
    if not _INT.fullmatch(text(value)):
        raise _bad("an integer", value)
    return int(value)


def number(value: str) -> float:
    """A finite number written with ASCII digits (no ``nan``, ``inf``, underscores or spaces)."""
    if not _FLOAT.fullmatch(text(value)) or not math.isfinite(float(value)):
        raise _bad("a finite number", value)
    return float(value)


def positive_int(value: str) -> int:
    out = integer(value)
    if out < 1:
        raise _bad("an integer >= 1", value)
    return out


def non_negative_int(value: str) -> int:
    out = integer(value)
    if out < 0:
        raise _bad("an integer >= 0", value)
    return out


def positive_number(value: str) -> float:
    out = number(value)
    if out <= 0:
        raise _bad("a finite number > 0", value)
    return out


def port(value: str) -> int:
    out = integer(value)
    if not 0 < out < 65536:
        raise _bad("a port number 1..65535", value)
    return out


def int_or_name(value: str) -> int | str:
    """A label or token given by index (ASCII digits) or by name; ``"²"`` stays a name."""
    return int(value) if _INT.fullmatch(value) and not value.startswith("+") else value


def model_dir(value: str) -> str:
    """A local model folder (with its ``config.json``)."""
    folder = path(value)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"expected a local model folder, but {value!r} {what}")
    if not (folder / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"expected a local model folder with a config.json, got {value!r}")
    return value


def output_file(value: str) -> Path:
    """A file to write: its folder must exist and it must not itself be a folder."""
    out = path(value)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file name, but {value!r} is a folder")
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"expected a file in an existing folder, but {str(parent)!r} {what}")
    return out


def output_dir(value: str) -> Path:
    """A folder to write into (created with its parents): neither it nor any existing ancestor may be a file."""
    out = path(value)
    for candidate in (out, *out.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise argparse.ArgumentTypeError(f"expected a folder, but {str(candidate)!r} is a file")
            break
    return out


def check_listen(host: str, port: int) -> None:
    """Raise an :class:`~integrand.errors.InputError` naming ``--host`` or ``--port`` unless ``host:port``
    can be listened on now (the server binds the same way a moment later)."""
    import socket

    from ..errors import InputError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as exc:
        raise InputError("--host", f"cannot resolve {host!r} ({exc})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a listening port still fails
        try:
            sock.bind(address)
        except OSError as exc:
            raise InputError("--port", f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def strict(kind: Any) -> Callable[[str], Any]:
    """The strict counterpart of an argparse ``type``: str/None -> text, Path -> path, int/float -> ASCII
    numbers; any other callable is wrapped so that non-UTF-8 text is refused before it runs."""
    table: dict[Any, Callable[[str], Any]] = {None: text, str: text, Path: path, int: integer, float: number}
    if kind in table:
        return table[kind]
    if getattr(kind, "__module__", None) == __name__:
        return kind  # type: ignore[no-any-return]

    def checked(value: str) -> Any:
        return kind(text(value))

    checked.__name__ = getattr(kind, "__name__", "value")
    return checked


EXIT_STATUS = (
    "exit status: 0 the results were written (a warning such as 'did not converge' is printed as one "
    "'integrand: warning:' line); 1 with --strict when a warning was printed, or an internal error; "
    "2 bad input (one line naming the argument); 130 interrupted."
)


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default.

    None, False and suppressed defaults are not shown (they mean "not given"); the help text of such
    an option says what happens then."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or isinstance(default, bool):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        shown = " ".join(str(v) for v in default) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse with strict value types, every option's default in ``--help``, the exit status as the
    epilog, and errors raised as :class:`UsageError` (one line, exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        kwargs.setdefault("epilog", EXIT_STATUS)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if kwargs.get("action") in _VALUE_ACTIONS:
            kwargs["type"] = strict(kwargs.get("type"))
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> Any:  # argparse's NoReturn hook
        raise UsageError(self.prog, message)


class UsageError(Exception):
    """A command line argparse rejected; ``line`` is the one-line message ``<argument>: <problem>``."""

    def __init__(self, prog: str, message: str) -> None:
        self.prog = prog
        required = "the following arguments are required: "
        if message.startswith(required):
            message = f"{message[len(required) :]}: required"
        elif message.startswith("unrecognized arguments: "):
            message = f"{message[len('unrecognized arguments: ') :]}: unrecognized argument"
        elif message.startswith("argument "):
            message = message[len("argument ") :]
        self.line = f"{message} (see '{prog} --help')"
        super().__init__(self.line)
