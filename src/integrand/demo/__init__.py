"""The demo: each section trains or loads a default model, explains it, and returns an HTML fragment.

A section is a module of this package with ``TITLE`` and ``run(out: Path) -> str``; SECTIONS lists them in order.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..progress import bar as progress_bar
from ..viz.html import STYLE

SECTIONS: tuple[str, ...] = ("image", "text", "generation")


def run_demo(out: Path, sections: Sequence[str] | None = None, progress: bool | None = None) -> Path:
    """Run the chosen sections (all by default) and write ``out/report.html``.

    ``progress``: a bar of sections done, joined by the sections' own bars (None: when stderr is a
    terminal; see ``integrand.progress``)."""
    chosen = list(sections if sections else SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise InputError("sections", f"unknown demo sections {unknown}; expected some of {list(SECTIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    fragments = []
    with progress_bar("demo sections", len(chosen), progress) as bar:
        for name in chosen:
            module = importlib.import_module(f"{__name__}.{name}")
            start = time.perf_counter()
            print(f"== {module.TITLE}")
            bar.update(note=name)
            fragments.append(f"<section><h1>{module.TITLE}</h1>{module.run(out)}</section>")
            print(f"   ({time.perf_counter() - start:.1f} s)")
            bar.advance()
    report = out / "report.html"
    report.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>integrand demo</title>{STYLE}</head>"
        f"<body>{''.join(fragments)}</body></html>",
        encoding="utf-8",
    )
    return report
