"""Every command in README.md and docs/*.md runs as written.

```python snippets run as a fresh script (the repository's interpreter, a temporary working
folder); in ```bash / ```sh / ```console / ```shell snippets every ``integrand ...`` line runs
(other lines, such as ``pip install``, do not). Fences without a language or with another one
(```text, ```json, ...) show output and are not run. A comment on the line before a fence marks it:
``<!-- slow -->`` (needs SmolLM2, or takes more than ~10 s: runs with RUN_SLOW=1) or
``<!-- skip: reason -->`` (never run here; keep these few). See docs/design.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "console", "shell"}
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(slow|skip)\s*(?::\s*(.*?))?\s*-->$")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int
    language: str
    code: str
    marker: str | None  # "slow", "skip" or None
    reason: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets(path: Path, text: str | None = None) -> list[Snippet]:
    """The fenced blocks of ``path`` (or of ``text``) with their language and the marker comment before them."""
    found: list[Snippet] = []
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        ticks, language = opening.group(1), opening.group(2).lower()
        end = i + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        mark = MARKER.match(lines[before].strip()) if before >= 0 else None
        code = "\n".join(lines[i + 1 : end]) + "\n"
        marker, reason = (mark.group(1), mark.group(2) or "") if mark else (None, "")
        found.append(Snippet(path, i + 1, language, code, marker, reason))
        i = end + 1
    return found


def commands(code: str, console: bool) -> list[str]:
    """The ``integrand ...`` command lines of a shell snippet (with ``console``: only ``$ `` lines)."""
    joined: list[str] = []
    pending = ""
    for raw in code.splitlines():
        line = raw.strip()
        if not pending and line.startswith("$ "):
            line = line[2:].strip()
        elif not pending and console:
            continue  # output shown in a console session
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [c for c in joined if c.startswith("integrand ")]


def _runnable() -> list[object]:
    params: list[object] = []
    for path in DOCS:
        for snippet in snippets(path):
            if snippet.language != "python" and snippet.language not in SHELL:
                continue
            marks: list[pytest.MarkDecorator] = []
            if snippet.marker == "slow":
                marks.append(pytest.mark.slow)
            elif snippet.marker == "skip":
                marks.append(pytest.mark.skip(reason=f"marked in the doc: {snippet.reason or 'no reason given'}"))
            params.append(pytest.param(snippet, id=snippet.id, marks=marks))
    return params


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("snippet", _runnable())
def test_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.language == "python":
        script = tmp_path / "snippet.py"
        script.write_text("import torch\ntorch.set_num_threads(1)\n" + snippet.code, encoding="utf-8")
        runs = [[sys.executable, str(script)]]
    else:
        lines = commands(snippet.code, console=snippet.language == "console")
        if not lines:
            pytest.skip("no integrand command in this shell snippet")
        runs = [["bash", "-c", f"set -o pipefail; {line}"] for line in lines]
    for argv in runs:
        done = subprocess.run(
            argv, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            pytest.fail(f"{snippet.id}: {' '.join(argv[-1:])[:200]} exited {done.returncode}\n{tail}", pytrace=False)


def test_markers_are_understood() -> None:
    """A marker comment is spelled right and stands before a fence (a typo would silently not apply)."""
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            text = line.strip()
            if text.startswith("<!--") and re.search(r"\b(slow|skip)\b", text[:12]):
                assert MARKER.match(text), f"{path.name}:{n + 1}: write <!-- slow --> or <!-- skip: reason -->"
                rest = [x for x in lines[n + 1 :] if x.strip()]
                assert rest and FENCE.match(rest[0]), f"{path.name}:{n + 1}: a marker must precede a fence"
            if MARKER.match(text) and MARKER.match(text).group(1) == "skip":  # type: ignore[union-attr]
                assert MARKER.match(text).group(2), f"{path.name}:{n + 1}: a skip marker gives its reason"  # type: ignore[union-attr]


def test_the_extractor() -> None:
    """The parser itself: languages, markers, prompts and continuation lines."""
    doc = "\n".join(
        [
            "<!-- slow -->",
            "```python",
            "x = 1",
            "```",
            "```",
            "output",
            "```",
            "<!-- skip: takes an hour -->",
            "",
            "```console",
            "$ pip install integrand",
            "$ integrand demo \\",
            "    --quiet",
            "```",
        ]
    )
    found = snippets(ROOT / "docs" / "example.md", doc)
    assert [(s.language, s.marker, s.line) for s in found] == [
        ("python", "slow", 2),
        ("", None, 5),
        ("console", "skip", 10),
    ]
    assert found[2].reason == "takes an hour"
    assert commands(found[2].code, console=True) == ["integrand demo --quiet"]
    assert commands("pip install x\nintegrand run a | head -3\n", console=False) == ["integrand run a | head -3"]
