"""The Ray engine: Ray Data ``map_batches`` over pending chunks with an actor pool.

Each actor receives the explainer once (it is serialised to the object store and loaded at
actor start), attributes whole chunks and writes their shards itself, so results are identical
to the local engine. On a cluster, ``out`` must be a path every node can write (shared storage);
connect first with ``ray.init(address=...)``, otherwise a local Ray instance is started.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

from ..errors import MissingExtraError
from .shards import ExplainSettings, process_chunk
from .sources import Document


class _ChunkWorker:
    def __init__(self, explainer: Any, out: str, settings: dict[str, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.explainer = explainer
        self.out = Path(out)
        self.settings = ExplainSettings(**settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        done = []
        for chunk, docs in zip(batch["chunk"], batch["docs"]):
            documents = [Document(**d) for d in docs]
            done.append(process_chunk(self.explainer, self.out, int(chunk), documents, self.settings))
        return {"chunk": [int(c) for c in batch["chunk"]], "documents": done}


def run_chunks(
    explainer: Any,
    out: Path,
    chunks: dict[int, list[Document]],
    settings: ExplainSettings,
    workers: int,
    cpus_per_worker: float,
) -> Iterator[int]:
    """Attribute ``chunks`` on Ray; yields each chunk's document count as it completes."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    if not chunks:
        return
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    items = [{"chunk": k, "docs": [dataclasses.asdict(d) for d in docs]} for k, docs in chunks.items()]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    mapped = dataset.map_batches(
        _ChunkWorker,
        fn_constructor_args=(explainer, str(out.resolve()), dataclasses.asdict(settings), 1),
        batch_size=1,
        batch_format="default",
        concurrency=workers,
        num_cpus=cpus_per_worker,
    )
    for row in mapped.iter_rows():
        yield int(row["documents"])
