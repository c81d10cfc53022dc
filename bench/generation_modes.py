"""Forward- vs reverse-mode gradients for generation attribution: wall time, peak memory, agreement.

    .venv/bin/python bench/generation_modes.py [--repeats N]

GPT-2-like model of ``bench/generation.py`` (6 layers, hidden 256, GPT-2 vocab, random weights, float32),
16 Gauss-Legendre IG steps, one thread: a 4-token prompt with 32 forced targets and a 32-token prompt
with 4. Wall times are measured in one process; peak memory (RSS growth) in a fresh process per run.

Reverse mode starts each target's backward pass from that target's own score (see ``Scorer.gradients``).
"""

from __future__ import annotations

import argparse
import multiprocessing
from typing import Any

import torch

from generation import measure, word_tokenizer

torch.set_num_threads(1)
CASES = ((4, 32), (32, 4))


def words(n: int, seed: int) -> str:
    gen = torch.Generator().manual_seed(seed)
    return " ".join(f"w{int(i)}" for i in torch.randint(4, 50257, (n,), generator=gen))


def build(batch_size: int | None = None) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    from integrand.generation import GenerationExplainer

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=6, n_embd=256, n_head=8, vocab_size=50257, n_positions=1024, bos_token_id=2, eos_token_id=3
    )
    model = GPT2LMHeadModel(config).eval()
    return GenerationExplainer(
        model, word_tokenizer(50257), baseline="unk", fixed=0, add_bos=False, batch_size=batch_size
    )


def run(gx: Any, n_prompt: int, n_targets: int, mode: str) -> Any:
    return gx(words(n_prompt, 1), target=words(n_targets, 2), steps=16, gradient_mode=mode)


def peak_child(args: tuple[int, int, str, int | None]) -> float:
    """Peak RSS growth (MiB) of one attribution in this fresh process, after a small warm-up."""
    torch.set_num_threads(1)
    n_prompt, n_targets, mode, batch_size = args
    gx = build(batch_size)
    run(gx, 2, 2, mode)
    return measure(lambda: run(gx, n_prompt, n_targets, mode), 1)[1]


def peak(n_prompt: int, n_targets: int, mode: str, batch_size: int | None = None) -> float:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return float(pool.map(peak_child, [(n_prompt, n_targets, mode, batch_size)])[0])


def main() -> None:
    from integrand.generation.forward_mode import TANGENTS_PER_POINT

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gx = build()
    modes = ("reverse", "forward")
    lines = [
        "| prompt tokens | targets | source positions S | mode | wall s | peak RSS growth MiB "
        "| wall / reverse | max rel. diff to reverse |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n_prompt, n_targets in CASES:
        times: dict[str, float] = {}
        results: dict[str, Any] = {}
        for mode in modes:
            times[mode], _, results[mode] = measure(
                lambda m=mode, p=n_prompt, t=n_targets: run(gx, p, t, m), args.repeats
            )
            print(f"{n_prompt}/{n_targets} {mode}: {times[mode]:.2f} s", flush=True)
        n_src = results["forward"].params["gradient_mode_note"].split()[0]
        ref = results["reverse"].matrix
        for mode in modes:
            diff = float((results[mode].matrix - ref).abs().max() / ref.abs().max())
            lines.append(
                f"| {n_prompt} | {n_targets} | {n_src} | {mode} | {times[mode]:.2f} | "
                f"{peak(n_prompt, n_targets, mode):.0f} | {times[mode] / times['reverse']:.2f} "
                f"| {diff:.1e} |"
            )
    small = {mode: peak(4, 32, mode, batch_size=2) for mode in ("reverse", "forward")}
    lines += [
        "",
        f"batch_size=2 (4-token prompt, 32 targets), peak RSS growth: reverse (2 points per pass) "
        f"{small['reverse']:.0f} MiB, forward ({2 * TANGENTS_PER_POINT} tangent rows per pass) "
        f"{small['forward']:.0f} MiB.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
