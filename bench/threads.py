"""Seconds per TextExplainer call on "hello there" (toxicity model) with one and with two torch threads.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/threads.py``. The model is loaded once; each setting is
timed three times, twice, alternating. Justifies the command's default of one thread (README "Threads").
"""

from __future__ import annotations

import time
import warnings

import torch


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    from integrand.text.explainer import TextExplainer

    explainer = TextExplainer.from_pretrained("toxicity")
    explainer("warm up", progress=False)
    for n in (1, 2, 1, 2):
        torch.set_num_threads(n)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            explainer("hello there", tol=1e-2, progress=False)
            times.append(time.perf_counter() - start)
        print(f"threads={n}: " + ", ".join(f"{t:.3f}" for t in times) + " s")


if __name__ == "__main__":
    main()
