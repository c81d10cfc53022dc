"""A corpus store that checks itself: per-shard records in the manifest, verified on resume and on open.

Each completed chunk is recorded in ``manifest["shards"]`` as ``{"tokens": R, "documents": R}`` with
``R = {"rows", "bytes", "sha256"}`` of the shard file. A chunk is done only when it is recorded and its
files match the record; anything else (damaged, truncated, swapped, or written but not yet recorded) is
recomputed on resume. Shard files are always named explicitly, never found through a glob pattern.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import StoreError, StoreWarning, caller_stacklevel
from .shards import DOCUMENTS_DIR, TOKENS_DIR, shard_name

SHARDS = "shards"
KINDS = (TOKENS_DIR, DOCUMENTS_DIR)
_SHARD_FILE = re.compile(r"part-(\d{6})\.parquet")
_FLUSH_SECONDS = 1.0


def write_manifest(out: Path, manifest: dict[str, Any], name: str = "manifest.json") -> None:
    """Write the manifest atomically (temporary file, fsync, rename)."""
    tmp = out / f".{name}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out / name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def file_record(path: Path) -> dict[str, Any]:
    return {"rows": _rows(path), "bytes": path.stat().st_size, "sha256": _sha256(path)}


def shard_files(out: Path, chunk: int) -> dict[str, Path]:
    return {kind: out / kind / shard_name(chunk) for kind in KINDS}


def check_file(path: Path, record: Any, *, hashes: bool) -> str | None:
    """Why ``path`` differs from its ``record`` (None when it does not): size and row count, sha256 if ``hashes``."""
    label = f"{path.parent.name}/{path.name}"
    if not isinstance(record, dict):
        return f"{label}: the manifest's record of it is malformed"
    if not path.is_file():
        return f"{label}: missing"
    size = path.stat().st_size
    if size != record.get("bytes"):
        return f"{label}: {size} bytes, the manifest records {record.get('bytes')} (truncated or replaced)"
    try:
        rows = _rows(path)
    except Exception as exc:  # pyarrow raises several types for damaged footers
        return f"{label}: not a readable Parquet file ({type(exc).__name__})"
    if rows != record.get("rows"):
        return f"{label}: {rows} rows, the manifest records {record.get('rows')} (replaced by another shard)"
    if hashes and _sha256(path) != record.get("sha256"):
        return f"{label}: its sha256 differs from the manifest's record (damaged or replaced)"
    return None


def check_chunk(out: Path, chunk: int, record: Any, *, hashes: bool) -> list[str]:
    if not isinstance(record, dict):
        return [f"chunk {chunk}: the manifest's record of it is malformed"]
    problems = (check_file(path, record.get(kind), hashes=hashes) for kind, path in shard_files(out, chunk).items())
    return [p for p in problems if p is not None]


def _recorded(manifest: dict[str, Any], argument: str, where: Path) -> dict[int, Any]:
    shards = manifest.get(SHARDS, {})
    if not isinstance(shards, dict) or not all(str(k).isascii() and str(k).isdigit() for k in shards):
        raise StoreError(argument, f"{where}: the manifest's {SHARDS!r} record is malformed")
    return {int(k): v for k, v in shards.items()}


def _listed(out: Path, kind: str) -> dict[int, Path]:
    """Shard files of one kind found by listing the folder (names matched exactly, nothing expanded)."""
    folder = out / kind
    if not folder.is_dir():
        return {}
    found = {}
    for entry in os.scandir(folder):
        match = _SHARD_FILE.fullmatch(entry.name)
        if match and entry.is_file():
            found[int(match.group(1))] = folder / entry.name
    return found


def store_files(out: Path, manifest: dict[str, Any], *, verify: bool) -> dict[str, list[Path]]:
    """The shard files a store serves, per kind, after checking them; raises ``StoreError`` naming bad shards.

    A manifest with a shard record serves the recorded chunks only (sizes and row counts checked, hashes
    too with ``verify``). A manifest without one (written by hand or by an older integrand) serves the
    complete chunk pairs found in the folder, each checked to be readable Parquet.
    """
    files, problems = check_store(out, manifest, verify=verify)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StoreError("path", f"{out} is damaged: {shown}. Resume the run (same command) to recompute them")
    return files


def check_store(out: Path, manifest: dict[str, Any], *, verify: bool) -> tuple[dict[str, list[Path]], list[str]]:
    """The shard files a store would serve, per kind, and the problems found with them (``kind/part-N.parquet:
    reason`` each, relative to ``out``); ``store_files`` without the raising, for callers that report damage."""
    if SHARDS in manifest:
        chunks = sorted(_recorded(manifest, "path", out).items())
        problems = [p for k, rec in chunks for p in check_chunk(out, k, rec, hashes=verify)]
        numbers = [k for k, _ in chunks]
    else:
        listed = [_listed(out, kind) for kind in KINDS]
        numbers = sorted(set(listed[0]) & set(listed[1]))
        problems = []
        for k in numbers:
            for path in shard_files(out, k).values():
                try:
                    _rows(path)
                except Exception as exc:
                    label = f"{path.parent.name}/{path.name}"
                    problems.append(f"{label}: not a readable Parquet file ({type(exc).__name__})")
    return {kind: [shard_files(out, k)[kind] for k in numbers] for kind in KINDS}, problems


def refuse_orphans(out: Path) -> None:
    """Shards without a manifest cannot be verified: refuse them unless the caller rebuilds."""
    count = sum(len(_listed(out, kind)) for kind in KINDS)
    if count:
        raise StoreError(
            "out",
            f"{out} holds {count} shard files but no manifest.json, so nothing says how they were computed; "
            "pass rebuild=True (integrand run --rebuild) to discard them and start over",
        )


def discard(out: Path, manifest_name: str) -> None:
    """Remove a store's manifest, shards and leftover temporary files (only names the store itself writes)."""
    for kind in KINDS:
        for path in _listed(out, kind).values():
            path.unlink()
        folder = out / kind
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.startswith(".part-") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
    (out / manifest_name).unlink(missing_ok=True)


def plan_resume(out: Path, manifest: dict[str, Any], chunks: int) -> tuple[list[int], list[str]]:
    """Verify every recorded chunk (hashes included) and return (pending chunks, problems found).

    Files of pending chunks are removed, so any that appear later were written by this run. Damaged
    or foreign shards are reported with a ``StoreWarning`` naming them and dropped from the record.
    """
    recorded = _recorded(manifest, "out", out)
    pending, problems = [], []
    if SHARDS not in manifest and any(_listed(out, kind) for kind in KINDS):
        problems.append("the manifest records no shards (written by an older integrand), so none can be verified")
    for k in range(chunks):
        found = check_chunk(out, k, recorded[k], hashes=True) if k in recorded else None
        if found is None or found:
            pending.append(k)
            problems.extend(found or [])
            recorded.pop(k, None)
            for path in shard_files(out, k).values():
                path.unlink(missing_ok=True)
    manifest[SHARDS] = {str(k): v for k, v in sorted(recorded.items())}
    for problem in problems:
        warnings.warn(f"{out}: {problem}; recomputing", StoreWarning, stacklevel=caller_stacklevel())
    return pending, problems


class Recorder:
    """Records chunks into the manifest as their shards appear; flushes at most once a second and on exit.

    Works for any engine: it watches the pending chunks' files rather than being told which chunk finished
    (a chunk is complete once its document shard, written last, is in place).
    """

    def __init__(self, out: Path, manifest: dict[str, Any], pending: Sequence[int], manifest_name: str) -> None:
        self.out = out
        self.manifest = manifest
        self.waiting = list(pending)
        self.name = manifest_name
        self.last = time.monotonic()
        write_manifest(out, manifest, manifest_name)

    def note(self) -> None:
        """Called after each finished chunk."""
        if time.monotonic() - self.last >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        still = []
        shards = self.manifest.setdefault(SHARDS, {})
        for k in self.waiting:
            files = shard_files(self.out, k)
            if all(p.is_file() for p in files.values()):
                shards[str(k)] = {kind: file_record(path) for kind, path in files.items()}
            else:
                still.append(k)
        if len(still) != len(self.waiting):
            self.manifest[SHARDS] = dict(sorted(shards.items(), key=lambda kv: int(kv[0])))
            write_manifest(self.out, self.manifest, self.name)
        self.waiting = still
        self.last = time.monotonic()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
