"""Layer IG side by side with Captum's LayerIntegratedGradients on a BERT-like classifier.

Model: BertForSequenceClassification built locally (6 layers, hidden 256, 4 heads, FFN 1024,
float32, eval), inputs 8 x 128 token ids with an attention mask, baseline = pad ids (0) in input
space, target class 1, 50 Gauss-Legendre steps, the same number of points per forward/backward
(``--chunk`` rows: Captum's ``internal_batch_size``, integrand's ``batch_size``).

Time: one torch thread, the two implementations interleaved (A B B A A B ...), medians of
``--reps`` runs after one warm-up each, as wall time and as this process's CPU time (on a
shared machine the CPU time is the steadier of the two). Memory: each (implementation, layer) runs once in a
fresh subprocess that resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) right
before the attribution and reports ``VmHWM - VmRSS`` at that point: the extra resident
memory the attribution needed at its peak. The subprocess runs with
``MALLOC_MMAP_THRESHOLD_=131072`` so glibc maps every large tensor separately and unmaps it on
free: RSS then follows live tensor memory instead of the heap's fragmentation history.

    .venv/bin/python bench/layer_ig.py [--reps 5] [--chunk 80] [--sweep 40,80,200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch

from peak_rss import extra_peak, reset_peak

LAYERS = {"embeddings": "bert.embeddings", "block 3": "bert.encoder.layer.3", "block 5": "bert.encoder.layer.5"}
BATCH, LENGTH, STEPS, TARGET = 8, 128, 50, 1


def build() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
                        num_labels=2)
    model = BertForSequenceClassification(config).eval()
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, config.vocab_size, (BATCH, LENGTH), generator=gen)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    for row in range(BATCH):
        mask[row, LENGTH - 8 * row :] = 0 if row else 1
    return model, ids, mask


def runner(impl: str, layer: str, chunk: int) -> Callable[[], torch.Tensor]:
    model, ids, mask = build()
    if impl == "captum":
        from captum.attr import LayerIntegratedGradients

        module = dict(model.named_modules())[layer]
        lig = LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits, module)

        def captum() -> torch.Tensor:
            out = lig.attribute(ids, baselines=torch.zeros_like(ids), target=TARGET, additional_forward_args=(mask,),
                                n_steps=STEPS, method="gausslegendre", internal_batch_size=chunk)
            return out[0] if isinstance(out, tuple) else out

        return captum
    import integrand

    def ours() -> torch.Tensor:
        result = integrand.integrated_gradients(
            model, {"input_ids": ids, "attention_mask": mask}, TARGET, layer=layer, input_baseline={"input_ids": 0},
            steps=STEPS, rule="gauss-legendre", batch_size=chunk,
        )
        assert isinstance(result.values, torch.Tensor)
        return result.values

    return ours


def peak_memory(impl: str, layer: str, chunk: int) -> int:
    """Run in a fresh process: extra peak RSS of one attribution, in bytes."""
    run = runner(impl, layer, chunk)
    before = reset_peak()
    run()
    return extra_peak(before)


def timed(run: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=80, help="points (rows) per forward/backward for both")
    parser.add_argument("--sweep", default="", help="comma-separated chunk sizes: report each implementation's best")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--memory-one", nargs=3, metavar=("IMPL", "LAYER", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_one:
        impl, layer, chunk = args.memory_one
        print(json.dumps({"peak": peak_memory(impl, layer, int(chunk))}))
        return
    chunks = [int(c) for c in args.sweep.split(",")] if args.sweep else [args.chunk]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {BATCH}x{LENGTH} tokens, {STEPS} steps")
    for label in args.layers.split(","):
        layer = LAYERS[label]
        times: dict[tuple[str, int], list[float]] = {}
        cpu: dict[tuple[str, int], list[float]] = {}
        for chunk in chunks:
            runs = {impl: runner(impl, layer, chunk) for impl in ("captum", "integrand")}
            a, b = runs["captum"](), runs["integrand"]()
            diff = float((a - b).abs().max() / a.abs().max())
            for rep in range(args.reps):
                order = list(runs) if rep % 2 == 0 else list(runs)[::-1]  # alternate who goes first
                for impl in order:
                    wall, used = timed(runs[impl])
                    times.setdefault((impl, chunk), []).append(wall)
                    cpu.setdefault((impl, chunk), []).append(used)
            med = {impl: statistics.median(times[(impl, chunk)]) for impl in runs}
            med_cpu = {impl: statistics.median(cpu[(impl, chunk)]) for impl in runs}
            print(f"{label:10s} chunk {chunk:4d}: wall captum {med['captum']:.2f}s integrand {med['integrand']:.2f}s "
                  f"ratio {med['captum'] / med['integrand']:.2f}x | cpu captum {med_cpu['captum']:.2f}s integrand "
                  f"{med_cpu['integrand']:.2f}s ratio {med_cpu['captum'] / med_cpu['integrand']:.2f}x "
                  f"(max rel diff {diff:.1e})", flush=True)
        impls = ("captum", "integrand")
        best = {impl: min(chunks, key=lambda c, i=impl: statistics.median(times[(i, c)])) for impl in impls}
        best_time = {impl: statistics.median(times[(impl, best[impl])]) for impl in best}
        memory = {}
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
        for impl in ("captum", "integrand"):
            out = subprocess.run([sys.executable, __file__, "--memory-one", impl, layer, str(best[impl])],
                                 capture_output=True, text=True, check=True, env=env)
            memory[impl] = json.loads(out.stdout.strip().splitlines()[-1])["peak"] / 2**20
        print(f"{label:10s} best: captum {best_time['captum']:.2f}s (chunk {best['captum']}), integrand "
              f"{best_time['integrand']:.2f}s (chunk {best['integrand']}), ratio "
              f"{best_time['captum'] / best_time['integrand']:.2f}x; peak extra RSS captum {memory['captum']:.0f} MiB, "
              f"integrand {memory['integrand']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
