"""Corpus throughput: the local engine (1 and 2 torch threads) vs Ray with 1 and 2 single-threaded workers.

Run: .venv/bin/python bench/corpus_engines.py [N_DOCS]
Workload: the MiniLM sentiment explainer (BERT encoder, 22.7M parameters) on synthetic short texts,
IG with 16 Gauss-Legendre steps, chunks of 16 documents. Rows/s count documents.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from integrand.corpus import ExplainSettings, run
from integrand.corpus.synthetic import make_corpus
from integrand.text import TextExplainer


def main(n: int) -> None:
    import ray

    rows = make_corpus(n, seed=7)
    explainer = TextExplainer.from_pretrained("minilm-sentiment")
    settings = ExplainSettings(target=None, steps=16)
    tmp = Path(tempfile.mkdtemp())
    results: dict[str, float] = {}

    def timed(name: str, **kw: object) -> None:
        out = tmp / name
        start = time.perf_counter()
        run(explainer, rows, out, id_col="id", settings=settings, chunk_docs=16, progress=False, **kw)  # type: ignore[arg-type]
        results[name] = n / (time.perf_counter() - start)
        shutil.rmtree(out)

    run(explainer, rows[:16], tmp / "warm", id_col="id", settings=settings, chunk_docs=16, progress=False)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        timed(f"local, {threads} thread{'s' if threads > 1 else ''}")
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        timed("ray warm-up", engine="ray", workers=1, cpus_per_worker=0.5)
        for workers in (1, 2):
            timed(
                f"ray, {workers} worker{'s' if workers > 1 else ''} x 1 thread",
                engine="ray",
                workers=workers,
                cpus_per_worker=0.5,
            )
    finally:
        ray.shutdown()
    results.pop("ray warm-up")
    print(f"torch {torch.__version__}, {n} documents, MiniLM sentiment, IG 16 steps\n")
    print("| engine | rows/s |\n|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.1f} |")
    r1, r2 = results["ray, 1 worker x 1 thread"], results["ray, 2 workers x 1 thread"]
    local2 = results["local, 2 threads"]
    print(f"\nray 2 workers / 1 worker = {r2 / r1:.2f}x; ray 2 workers / local 2 threads = {r2 / local2:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 192)
