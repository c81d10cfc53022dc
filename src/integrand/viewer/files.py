"""What the viewer may read: files inside RESULTS_DIR, found without following links out of it.

Every request path goes through :meth:`ResultsDir.resolve`, which refuses absolute paths, ``..``,
backslashes, NUL bytes, hidden components and anything whose real path (symlinks resolved)
leaves the root. Refusals look exactly like missing files, so the viewer leaks nothing about
what exists outside RESULTS_DIR.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..errors import InputError

RESULT_SUFFIX = ".safetensors"
REPORT_SUFFIX = ".html"
CORPUS_MANIFEST = "manifest.json"
SHARD_SUFFIX = ".parquet"
# Shard names go to DuckDB, which expands glob patterns; such names are skipped rather than escaped.
_GLOB_CHARS = frozenset("*?[]{}")


@dataclass(frozen=True)
class ResultsDir:
    """A read-only view of one results folder."""

    root: Path

    @classmethod
    def open(cls, path: str | Path) -> ResultsDir:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise InputError("results_dir", f"{path} is not a directory")
        return cls(root.resolve())

    def _inside(self, path: Path) -> Path | None:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return real if real == self.root or real.is_relative_to(self.root) else None

    def resolve(self, relative: str, *, suffix: str | None = None, directory: bool = False) -> Path | None:
        """The real path of ``relative`` when it is a plain relative path to an existing entry inside the root."""
        if not relative or "\\" in relative or "\x00" in relative or len(relative) > 4096:
            return None
        pure = PurePosixPath(relative)
        if pure.is_absolute() or relative.startswith("/"):
            return None
        if any(part in ("..", ".", "") or part.startswith(".") for part in relative.split("/")):
            return None
        real = self._inside(self.root.joinpath(*pure.parts))
        if real is None:
            return None
        if directory:
            return real if real.is_dir() else None
        if not real.is_file() or (suffix is not None and real.suffix != suffix):
            return None
        return real

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _walk(self) -> Iterator[tuple[Path, list[str]]]:
        """Directories (and their visible file names) under the root; links are not followed."""
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))

    def files(self, suffix: str) -> list[str]:
        """Relative paths of regular files with ``suffix`` whose real path stays inside the root."""
        out = []
        for directory, names in self._walk():
            for name in names:
                path = directory / name
                if name.endswith(suffix) and self._inside(path) is not None and path.resolve().is_file():
                    out.append(self.relative(path))
        return out

    def corpora(self) -> list[str]:
        """Corpus runs: top-most folders holding a ``manifest.json`` or Parquet shards ("." for the root)."""
        runs: list[str] = []
        for directory, names in self._walk():
            rel = "." if directory == self.root else self.relative(directory)
            if any(rel == r or r == "." or rel.startswith(r + "/") for r in runs):
                continue
            if CORPUS_MANIFEST in names or any(n.endswith(SHARD_SUFFIX) for n in names):
                runs.append(rel)
        return runs

    def shards(self, run: str) -> list[str]:
        """Real paths of a run's Parquet shards (recursively), each checked to stay inside the root."""
        base = self.root if run == "." else self.resolve(run, directory=True)
        if base is None:
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.endswith(SHARD_SUFFIX):
                    continue
                real = self._inside(Path(dirpath) / name)
                if real is not None and real.is_file() and not (_GLOB_CHARS & set(str(real))):
                    out.append(str(real))
        return out
