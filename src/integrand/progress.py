"""Progress bars for long work, and the rule that decides when they show.

``progress=None`` (the default of every API that takes it) shows a bar when standard error is a
terminal, unless the environment variable ``INTEGRAND_PROGRESS`` says ``0`` (never) or ``1``
(always) or the code runs inside ``silenced()``; ``True``/``False`` decide outright. Bars are drawn
with rich on standard error; without rich installed they are skipped. A bar opened while another
is showing joins it as one more line (a text batch inside a corpus run, a generation inside the
demo) instead of fighting for the screen.

``quiet_third_party()`` silences the loading bars and info logs of transformers and huggingface_hub.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from typing import Any, Iterator

PROGRESS_ENV = "INTEGRAND_PROGRESS"

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("integrand_progress", default=None)
_SILENCED: contextvars.ContextVar[bool] = contextvars.ContextVar("integrand_progress_silenced", default=False)


def enabled(progress: bool | None) -> bool:
    """Whether a bar shows: ``progress`` if given, else ``INTEGRAND_PROGRESS`` (0/1), else stderr is a TTY."""
    if progress is not None:
        return bool(progress)
    if _SILENCED.get():
        return False
    env = os.environ.get(PROGRESS_ENV, "").strip()
    if env in ("0", "1"):
        return env == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Bar:
    """One task of a progress display; every method is a no-op when the bar is off."""

    def __init__(self, display: Any = None, task: Any = None) -> None:
        self._display = display
        self._task = task

    @property
    def active(self) -> bool:
        return self._display is not None

    def advance(self, n: float = 1) -> None:
        if self._display is not None:
            self._display.update(self._task, advance=n)

    def update(self, *, completed: float | None = None, total: float | None = None, note: str | None = None) -> None:
        if self._display is None:
            return
        fields: dict[str, Any] = {}
        if completed is not None:
            fields["completed"] = completed
        if total is not None:
            fields["total"] = total
        if note is not None:
            fields["note"] = note
        self._display.update(self._task, **fields)


def _columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def bar(description: str, total: float | None, progress: bool | None = None) -> Iterator[Bar]:
    """A progress bar for ``total`` units (None: unknown), shown under :func:`enabled`'s rule."""
    if not enabled(progress):
        yield Bar()
        return
    outer = _ACTIVE.get()
    if outer is not None:  # join the display already on screen
        task = outer.add_task(description, total=total, note="")
        try:
            yield Bar(outer, task)
        finally:
            outer.remove_task(task)
        return
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        yield Bar()
        return
    display = Progress(*_columns(), console=Console(stderr=True), transient=False)
    token = _ACTIVE.set(display)
    try:
        with display:
            yield Bar(display, display.add_task(description, total=total, note=""))
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Within this block ``progress=None`` means no bar (the command line's ``--quiet``)."""
    token = _SILENCED.set(True)
    try:
        yield
    finally:
        _SILENCED.reset(token)


def quiet_third_party() -> None:
    """Silence transformers' and huggingface_hub's loading bars and info logs (this process)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    hub: Any = sys.modules.get("huggingface_hub")
    if hub is not None:
        with contextlib.suppress(Exception):
            hub.utils.disable_progress_bars()
    if "transformers" in sys.modules:
        with contextlib.suppress(Exception):
            import importlib

            hf_logging: Any = importlib.import_module("transformers.utils.logging")
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
