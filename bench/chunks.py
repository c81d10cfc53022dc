"""Points per forward/backward: the default chunk against every fixed chunk size, in time and memory.

Five workloads, one torch thread, float32, each attributed with 64 Gauss-Legendre steps:

- ``gpt2-512``: a GPT-2-like LM (6 layers x 256, 4 heads) on one 512-token sequence, layer IG at the
  token embeddings (``transformer.wte``) of the last position's top logit; Captum's
  ``LayerIntegratedGradients(internal_batch_size=8)`` runs beside it.
- ``digits-cnn``: the demo's digits CNN (8x8 inputs, 8/16 channels), input IG on 32 digits.
- ``cnn-32``: a 3-conv CNN on 3x32x32 inputs (32/64/128 channels), input IG on 16 images.
- ``bert-128``: a BERT-like encoder (6 x 256, FFN 1024) on 8 x 128 tokens with a mask, layer IG at
  ``bert.embeddings``.
- ``minilm``: the embedded all-MiniLM-L6-v2 encoder with a linear head on 8 x 24 tokens, layer IG at
  its word embeddings.

Time: median wall and CPU time of ``--reps`` calls after one warm-up, in one process per
configuration. Memory: that process resets the kernel's peak-RSS counter (``/proc/self/clear_refs``)
after the warm-up and reports ``VmHWM - VmRSS`` measured just before the timed calls: the extra
resident memory the call needs at its peak. ``MALLOC_MMAP_THRESHOLD_=131072`` makes RSS follow live
tensors rather than the heap's history.

    .venv/bin/python bench/chunks.py [--workloads gpt2-512,digits-cnn] [--chunks 1,2,4,...] [--reps 3] [--captum]

``--chunks`` takes one list for every workload, or ``workload=c1:c2,...`` pairs separated by ``;``.
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
from torch import nn

from peak_rss import extra_peak, reset_peak

STEPS = 64


class LastLogits(nn.Module):
    """A causal LM as a classifier of its next token: logits at the last position."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # Only the last position goes through the 50257-way head, as generation does.
        hidden = self.lm.transformer(input_ids=input_ids).last_hidden_state[:, -1]
        logits: torch.Tensor = self.lm.lm_head(hidden)
        return logits


def gpt2_512() -> tuple[nn.Module, dict[str, torch.Tensor], str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_layer=6, n_embd=256, n_head=4, n_positions=512)).eval()
    ids = torch.randint(0, 50257, (1, 512), generator=torch.Generator().manual_seed(1))
    return LastLogits(lm).eval(), {"input_ids": ids}, "lm.transformer.wte", {"input_ids": 0}


def bert_128() -> tuple[nn.Module, dict[str, torch.Tensor], str, Any]:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024,
                        num_labels=2)
    model = BertForSequenceClassification(config).eval()

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.bert(input_ids=input_ids, attention_mask=attention_mask).logits
            return out

    ids = torch.randint(1000, config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    return Logits().eval(), {"input_ids": ids, "attention_mask": mask}, "bert.bert.embeddings", {"input_ids": 0}


def minilm() -> tuple[nn.Module, dict[str, torch.Tensor], str, Any]:
    from transformers import AutoModel

    from integrand.text.minilm import MiniLMSentiment, encoder_dir

    torch.manual_seed(0)
    model = MiniLMSentiment(AutoModel.from_pretrained(str(encoder_dir())), nn.Linear(384, 2)).eval()
    ids = torch.randint(1000, 30000, (8, 24), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    return model, {"input_ids": ids, "attention_mask": mask}, "encoder.embeddings.word_embeddings", {"input_ids": 0}


def digits_cnn() -> tuple[nn.Module, dict[str, torch.Tensor], str | None, Any]:
    from integrand.demo.digits import DigitsConfig, build_cnn

    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return build_cnn(DigitsConfig()).eval(), {"x": x}, None, None


def cnn_32() -> tuple[nn.Module, dict[str, torch.Tensor], str | None, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, 10),
    ).eval()  # fmt: skip
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return model, {"x": x}, None, None


WORKLOADS: dict[str, Callable[[], tuple[nn.Module, dict[str, torch.Tensor], Any, Any]]] = {
    "gpt2-512": gpt2_512, "digits-cnn": digits_cnn, "cnn-32": cnn_32, "bert-128": bert_128, "minilm": minilm,
}  # fmt: skip


def runner(workload: str, impl: str, chunk: int | None) -> Callable[[], torch.Tensor]:
    model, inputs, layer, input_baseline = WORKLOADS[workload]()
    with torch.no_grad():
        target = int(model(**inputs)[0].argmax()) if layer else 0
    if impl == "captum":
        from captum.attr import IntegratedGradients, LayerIntegratedGradients

        names = list(inputs)
        if names == ["x"]:
            forward: Any = model
        else:
            forward = (lambda *t: model(**dict(zip(names, t))))  # noqa: E731
        if layer is None:
            ig: Any = IntegratedGradients(forward)
        else:
            ig = LayerIntegratedGradients(forward, dict(model.named_modules())[layer])
        first, rest = inputs[names[0]], tuple(inputs[n] for n in names[1:])

        def captum() -> torch.Tensor:
            out = ig.attribute(first, baselines=torch.zeros_like(first), target=target, n_steps=STEPS,
                               method="gausslegendre", internal_batch_size=chunk or 8,
                               additional_forward_args=rest or None)
            return out[0] if isinstance(out, tuple) else out

        return captum
    import integrand

    single = inputs["x"] if list(inputs) == ["x"] else inputs

    def ours() -> torch.Tensor:
        result = integrand.integrated_gradients(
            model, single, target, layer=layer, input_baseline=input_baseline, steps=STEPS, rule="gauss-legendre",
            batch_size=chunk,
        )
        assert isinstance(result.values, torch.Tensor)
        return result.values

    return ours


def measure_one(workload: str, impl: str, chunk: int | None, reps: int) -> dict[str, float]:
    """In a fresh process: one warm-up, then peak extra RSS and median wall/CPU time of ``reps`` calls."""
    run = runner(workload, impl, chunk)
    run()
    before = reset_peak()
    walls, cpus = [], []
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "peak": extra_peak(before)}


def default_chunk(workload: str) -> int:
    """The chunk the default call picks (read back from the engine)."""
    from integrand import engine

    seen: list[int] = []
    original = engine.Engine.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(self.chunk)

    engine.Engine.__init__ = spy  # type: ignore[method-assign]
    try:
        runner(workload, "integrand", None)()
    finally:
        engine.Engine.__init__ = original  # type: ignore[method-assign]
    return seen[-1]


def child(workload: str, impl: str, chunk: int | None, reps: int) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    arg = "default" if chunk is None else str(chunk)
    out = subprocess.run(
        [sys.executable, __file__, "--one", workload, impl, arg, "--reps", str(reps)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _chunks(spec: str, workload: str) -> list[int]:
    if "=" not in spec:
        return [int(c) for c in spec.split(",") if c]
    for part in spec.split(";"):
        name, _, sizes = part.partition("=")
        if name.strip() == workload:
            return [int(c) for c in sizes.split(":") if c]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--chunks", default="", help="fixed chunk sizes (default: powers of two up to all points)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--captum", action="store_true", help="also run Captum at internal_batch_size=8")
    parser.add_argument("--one", nargs=3, metavar=("WORKLOAD", "IMPL", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one:
        workload, impl, chunk = args.one
        print(json.dumps(measure_one(workload, impl, None if chunk == "default" else int(chunk), args.reps)))
        return
    print(f"torch {torch.__version__}, 1 thread, {STEPS} Gauss-Legendre steps; load {os.getloadavg()[0]:.2f}")
    for workload in args.workloads.split(","):
        _model, inputs, _layer, _b = WORKLOADS[workload]()
        points = next(iter(inputs.values())).shape[0] * STEPS
        fixed = _chunks(args.chunks, workload) or [
            c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048) if c <= points
        ]  # fmt: skip
        picked = default_chunk(workload)
        rows: list[tuple[str, dict[str, float]]] = []
        for chunk in fixed:
            rows.append((f"fixed {chunk}", child(workload, "integrand", chunk, args.reps)))
            print(f"  {workload} fixed {chunk}: {rows[-1][1]}", file=sys.stderr, flush=True)
        default = child(workload, "integrand", None, args.reps)
        if args.captum:
            rows.append(("captum ibs=8", child(workload, "captum", 8, args.reps)))
        best_name, best = min(rows[: len(fixed)], key=lambda r: r[1]["wall"])
        print(f"\n### {workload} ({points} points; default picks {picked}; load {os.getloadavg()[0]:.2f})\n")
        print("| chunk | wall s | CPU s | peak extra MiB | wall / best | memory / best |")
        print("|---|---|---|---|---|---|")
        for name, r in [*rows, (f"**default ({picked})**", default)]:
            print(f"| {name} | {r['wall']:.3f} | {r['cpu']:.3f} | {r['peak'] / 2**20:.0f} | "
                  f"{r['wall'] / best['wall']:.2f} | {r['peak'] / max(best['peak'], 1):.2f} |")
        print(f"\nbest fixed: {best_name}", flush=True)


if __name__ == "__main__":
    main()
