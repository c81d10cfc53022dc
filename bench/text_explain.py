"""Token attribution of the two embedded text models: integrand's TextExplainer vs Captum LayerIntegratedGradients.

For each model and text: wall time, relative completeness error |f(x) - f(b) - sum| / |f(x) - f(b)| and
gradient evaluations, for Captum LIG (Gauss-Legendre, 50 steps, one text per call) and integrand (the same
fixed rule with all texts in one padded batch, and error-controlled tol=1e-3). Same embedding layer, same
pad baseline (special tokens kept), same target (the logit of the predicted label). Best of 3 interleaved runs.

Run: .venv/bin/python bench/text_explain.py
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from integrand.text import TextExplainer

torch.set_num_threads(1)
REPEATS = 3
TOXIC = [
    "you are a stupid idiot",
    "You are so dumb and stupid!",
    "I hate you so much!",
    "This is wonderful news.",
    "You're disgusting!",
    "Absolutely love your energy!",
    "You're the worst person ever!",
    "Have a nice day :)",
]
SENTIMENT = [
    "I love this wonderful movie",
    "This is a terrible, awful film",
    "The food was great but the service was horrible",
    "what a disaster",
    "an absolutely delightful evening with friends",
    "I am not happy with this purchase at all",
]


def interleaved(runs: dict[str, Callable[[], Any]]) -> dict[str, tuple[float, Any]]:
    """Best-of-REPEATS wall time of each callable, repetitions interleaved so load changes hit all alike."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    outs: dict[str, Any] = {}
    for _ in range(REPEATS):
        for key, fn in runs.items():
            start = time.perf_counter()
            outs[key] = fn()
            times[key].append(time.perf_counter() - start)
    return {k: (min(times[k]), outs[k]) for k in runs}


def captum_runner(
    explainer: TextExplainer, texts: list[str], steps: int
) -> Callable[[], list[tuple[float, torch.Tensor]]]:
    """Captum LIG, one text per call; the runner returns (relative error, per-token scores) per text."""
    from captum.attr import LayerIntegratedGradients

    model = explainer.model
    mask_arg = explainer.attention_mask

    def forward(ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out = model(ids, attention_mask=mask) if mask_arg else model(ids)
        return out.logits if hasattr(out, "logits") else out

    lig = LayerIntegratedGradients(forward, explainer.embedding)
    encodings = explainer.encode(texts)

    def run() -> list[tuple[float, torch.Tensor]]:
        rows = []
        for enc in encodings:
            ids = torch.tensor([enc.ids])
            fixed = torch.tensor([[s or p for s, p in zip(enc.special, enc.padding)]])
            base = torch.where(fixed, ids, torch.full_like(ids, explainer.tokenizer.pad_id))
            mask = torch.ones_like(ids)
            extra = (mask,) if mask_arg else None
            with torch.no_grad():
                target = int(forward(ids, mask).argmax())
            attr, delta = lig.attribute(
                ids, baselines=base, target=target, n_steps=steps, method="gausslegendre",
                additional_forward_args=extra, return_convergence_delta=True,
            )
            with torch.no_grad():
                change = float(forward(ids, mask)[0, target] - forward(base, mask)[0, target])
            rows.append((abs(float(delta)) / abs(change), attr.sum(dim=-1)[0]))
        return rows

    return run


def bench_model(name: str, explainer: TextExplainer, texts: list[str]) -> list[str]:
    timed = interleaved({
        "captum": captum_runner(explainer, texts, 50),
        "fixed": lambda: explainer(texts, steps=50, text_batch=len(texts)),
        "tol": lambda: explainer(texts, tol=1e-3, text_batch=len(texts)),
    })
    (t_captum, captum_out), (t_fixed, fixed), (t_tol, tol) = timed["captum"], timed["fixed"], timed["tol"]
    # Same rule, same points: the values agree (padding of the fixed-length toxicity input excluded).
    diff = max(float((r.scores - c[1][-len(r.scores):] if name == "toxicity" else r.scores - c[1]).abs().max())
               for r, c in zip(fixed, captum_out))
    lines = [
        f"### {name} ({len(texts)} texts)",
        "",
        "| method | grad evals / text | mean rel. error | max rel. error | converged | wall ms (all texts) |",
        "|---|---|---|---|---|---|",
    ]
    cap_err = [c[0] for c in captum_out]
    lines.append(f"| Captum LIG GL 50, one text per call | 50.0 | {sum(cap_err) / len(cap_err):.2e} | "
                 f"{max(cap_err):.2e} | - | {1000 * t_captum:.0f} |")
    for label, results, seconds in (("integrand GL 50, one padded batch", fixed, t_fixed),
                                    ("integrand tol=1e-3, one padded batch", tol, t_tol)):
        errs = [r.relative_error for r in results]
        steps = sum(r.steps for r in results) / len(results)
        conv = sum(r.converged for r in results) / len(results)
        lines.append(f"| {label} | {steps:.1f} | {sum(errs) / len(errs):.2e} | {max(errs):.2e} | {conv:.0%} | "
                     f"{1000 * seconds:.0f} |")
    lines += ["", f"Largest |integrand GL 50 - Captum GL 50| token score: {diff:.1e}.", ""]
    return lines


def main() -> None:
    lines = bench_model("toxicity", TextExplainer.from_pretrained("toxicity"), TOXIC)
    lines += bench_model("minilm-sentiment", TextExplainer.from_pretrained("minilm-sentiment"), SENTIMENT)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
