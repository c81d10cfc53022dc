"""``show``, ``to_html`` and ``figure``: one entry point per output for every result type."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal, Mapping

from ..errors import InputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Backend = Literal["auto", "terminal", "html", "figure"]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython is only consulted when already imported)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def to_html(result: Any, *, title: str | None = None, layout: str | Mapping[str, str] | None = None) -> str:
    """A self-contained HTML fragment for any result (every text escaped)."""
    from .html import result_html

    return result_html(result, title=title, layout=layout)


def figure(
    result: Any,
    *,
    mode: Literal["signed", "absolute", "overlay"] = "signed",
    layout: str | Mapping[str, str] | None = None,
) -> Figure:
    """A matplotlib figure for any result (imports matplotlib)."""
    from .figures import result_figure

    return result_figure(result, mode=mode, layout=layout)


def show(result: Any, *, backend: Backend = "auto", layout: str | Mapping[str, str] | None = None) -> Figure | None:
    """Display any result: HTML in a notebook, coloured text in a terminal, or a figure (returned).

    ``backend="auto"`` picks HTML inside Jupyter and the terminal otherwise.
    """
    if backend not in ("auto", "terminal", "html", "figure"):
        raise InputError("backend", f"unknown backend {backend!r}; expected auto, terminal, html or figure")
    if backend == "figure":
        return figure(result, layout=layout)
    if backend == "html" or (backend == "auto" and _in_notebook()):
        try:
            from IPython.display import HTML, display
        except ImportError as exc:
            raise InputError("backend", "backend='html' needs IPython; use to_html() to get the HTML text") from exc
        display(HTML(to_html(result, layout=layout)))
        return None
    from .terminal import print_result

    print_result(result, layout=layout)
    return None
