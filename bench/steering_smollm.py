"""Steering SmolLM2-135M-Instruct toward true answers: no steering vs mean-diff vs GrAInS.

Fits both kinds of vector on a seeded split of the shipped ``facts`` preference set, then
measures held-out preference accuracy (whole-answer log-likelihood comparison), the mean
log-likelihood margin and perplexity on neutral text over a grid of blocks and strengths.
A random unit direction at the same strengths is the control. Strengths are given as a
share ``c`` of the block's median token norm: the added vector ``lambda * v`` has norm
``c * median |h|`` whatever ``|v|`` is, so the methods are compared at equal push.

    .venv/bin/python bench/steering_smollm.py            # writes the table into docs/steering.md

Fitted vectors are cached (safetensors) under the integrand cache dir, keyed by their settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from integrand.cache import cache_dir
from integrand.generation.smollm import load_smollm2
from integrand.steering import (
    SteeringVector,
    fit,
    load_preferences,
    neutral_texts,
    perplexity,
    preference_scores,
    split,
)
from integrand.steering.examples import Encoder
from integrand.steering.hooks import capture

DOC = Path(__file__).resolve().parents[1] / "docs" / "steering.md"
FIT_VERSION = 2  # 2: the read-out position is never masked
BEGIN, END = "<!-- bench:steering_smollm begin -->", "<!-- bench:steering_smollm end -->"


def median_norms(model: Any, tokenizer: Any, texts: list[str], layers: list[int]) -> dict[int, float]:
    """Median token norm of each block's output over the texts, the first (sink) position left out."""
    encoder = Encoder(model, tokenizer)
    norms: dict[int, list[float]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([encoder.token_ids(text, "text", prompt=True)])
            with capture(model, layers) as records:
                model(input_ids=ids, use_cache=False)
            for layer in layers:
                norms[layer] += records[layer][0][0, 1:].norm(dim=-1).tolist()
    return {layer: statistics.median(v) for layer, v in norms.items()}


def fitted(model: Any, tokenizer: Any, examples: list[Any], settings: dict[str, Any], cache: Path) -> SteeringVector:
    # The format tag changes whenever fitting changes, so stale vectors are never reused.
    key = hashlib.sha256(json.dumps({**settings, "fit": FIT_VERSION}, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"steering-{settings['method']}-{key}.safetensors"
    if path.is_file():
        return SteeringVector.load(path)
    options = {k: v for k, v in settings.items() if k not in ("n_fit", "seed", "set")}
    vector = fit(model, tokenizer, examples, model_name="SmolLM2-135M-Instruct", **options)
    cache.mkdir(parents=True, exist_ok=True)
    vector.save(path)
    return vector


def measure(model: Any, tokenizer: Any, held: list[Any], neutral: list[str]) -> dict[str, float]:
    scores = preference_scores(model, tokenizer, held)
    return {
        "accuracy": scores.accuracy,
        "margin": scores.mean_margin,
        "perplexity": perplexity(model, tokenizer, neutral),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=int, default=40, help="fitting examples (the rest is held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, nargs="+", default=[6, 12, 18])
    parser.add_argument("--scales", type=float, nargs="+", default=[-0.25, 0.125, 0.25])
    parser.add_argument("--random-scale", type=float, default=0.25, help="c of the random-direction control")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--baseline", default="unk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/steering.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, cpu = time.perf_counter(), time.process_time()
    model, tokenizer = load_smollm2()
    examples = load_preferences("facts")
    fit_set, held = split(examples, args.fit, seed=args.seed)
    neutral = neutral_texts()
    cache = cache_dir() / "steering"
    # Fitted at every block once (the IG does not depend on the block) and cached; the grid selects.
    every = list(range(model.config.num_hidden_layers))
    common = {"layers": every, "n_fit": args.fit, "seed": args.seed, "set": "facts"}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    grains = fitted(
        model,
        tokenizer,
        fit_set,
        {**common, "method": "grains", "k": args.k, "steps": args.steps, "baseline": args.baseline},
        cache,
    )
    timings["fit grains"] = time.perf_counter() - t
    t = time.perf_counter()
    mean_diff = fitted(model, tokenizer, fit_set, {**common, "method": "mean-diff"}, cache)
    timings["fit mean-diff"] = time.perf_counter() - t
    g = torch.Generator().manual_seed(args.seed)
    random_dirs = {layer: torch.randn(model.config.hidden_size, generator=g) for layer in args.layers}
    random = SteeringVector(
        vectors={layer: v / v.norm() for layer, v in random_dirs.items()},
        model_name="SmolLM2-135M-Instruct",
        method="random",
        variant="both",
        reducer="none",
        k=None,
        n_examples=0,
    )
    norms = median_norms(model, tokenizer, neutral, args.layers)

    t = time.perf_counter()
    rows: list[dict[str, Any]] = [
        {"method": "none", "layer": None, "c": 0.0, "strength": 0.0, **measure(model, tokenizer, held, neutral)}
    ]
    print(json.dumps(rows[-1]), flush=True)
    fit_accuracy = preference_scores(model, tokenizer, fit_set).accuracy
    for name, vector in (("mean-diff", mean_diff), ("GrAInS", grains), ("random", random)):
        for layer in args.layers:
            v = vector.vectors[layer]
            for c in args.scales:
                if name == "random" and c != args.random_scale:
                    continue
                strength = c * norms[layer] / float(v.norm())
                tick = time.perf_counter()
                with vector.apply(model, strength, layers=[layer]):
                    result = measure(model, tokenizer, held, neutral)
                rows.append({"method": name, "layer": layer, "c": c, "strength": strength, **result})
                rows[-1]["seconds"] = time.perf_counter() - tick
                print(json.dumps(rows[-1]), flush=True)
    timings["evaluate grid"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    timings["total CPU"] = time.process_time() - cpu

    errors = [e["relative_error"] for e in grains.params["examples"] if e["relative_error"] is not None]
    lines = [
        f"SmolLM2-135M-Instruct (fp32, CPU, {args.threads} thread), `facts` set: {len(fit_set)} fitting pairs, "
        f"{len(held)} held-out pairs (seed {args.seed}); neutral perplexity over {len(neutral)} texts. "
        f"GrAInS: k={args.k}, baseline/mask token `{args.baseline}`, {args.steps}-point Gauss-Legendre IG "
        f"(median relative completeness error {statistics.median(errors):.3f}); mean-diff: normalised mean of "
        f"h(prompt+preferred) - h(prompt+dispreferred). `c`: push as a share of the block's median token norm "
        f"({', '.join(f'block {k}: {v:.0f}' for k, v in norms.items())}). Accuracy on the fitting pairs without "
        f"steering: {fit_accuracy:.3f}.",
        "",
        "| method | block | c | λ | held-out accuracy | mean margin (nats) | neutral perplexity |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        layer = "-" if r["layer"] is None else str(r["layer"])
        lines.append(
            f"| {r['method']} | {layer} | {r['c']:+.2f} | {r['strength']:.1f} | {r['accuracy']:.3f} | "
            f"{r['margin']:+.3f} | {r['perplexity']:.2f} |"
        )
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    table = "\n".join(lines)
    print(table)
    if not args.no_doc and DOC.is_file():
        text = DOC.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            DOC.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
            print(f"table written to {DOC}")


if __name__ == "__main__":
    main()
