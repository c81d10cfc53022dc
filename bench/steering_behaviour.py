"""Steering SmolLM2-135M-Instruct judged on behaviour: no steering vs GrAInS vs mean-diff vs a random direction.

Three benchmarks (``integrand.steering.load_behaviour``), each with an offline judge of the continuation:
sentiment (VADER compound; steered towards positive and towards negative), toxicity (the toxicity
BiLSTM's P(toxic); steered away from toxic) and politeness (the lexicon rule of ``steering.judges``).
Prompts are split with a seeded permutation into fit and held-out prompts; preference pairs are the
shipped hand-written (preferred, dispreferred) completions attached to the fit prompts only.

Per method (GrAInS with AttnLRP token attributions, mean-diff, a random direction with GrAInS's norms),
the sweep runs blocks x strength shares on the fit prompts; strength is a share ``c`` of the block's
median token norm (``lambda = c * norm / |v|``), so every method gets the same push. The rule, fixed
before any run: the setting with the best mean judge score among those whose continuation perplexity
(under the unsteered model) is at most 1.5x the unsteered one; none qualifies -> no steering. The
chosen settings are then measured on the held-out prompts. Continuations: 20 new tokens, greedy (so two
settings differ only by the steering, not by sampling noise; ``--sample`` draws seeded samples at
temperature 0.8, top-k 50 instead), left-padded batches of 16.

    OMP_NUM_THREADS=1 .venv/bin/python bench/steering_behaviour.py [--quick] [--out FILE.json] [--doc]
        [--attribution lrp|occlusion|ig|input_x_gradient] [--methods grains mean-diff random]

GrAInS rows are labelled ``grains`` with AttnLRP and ``grains-<attribution>`` otherwise, so a run of
``--methods grains --attribution occlusion`` merges (``--merge old.json new.json``) into an earlier run's
table as a second GrAInS variant; the random direction takes GrAInS's norms, so it needs ``grains``.

``--doc`` writes the table into docs/steering.md between the bench markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from integrand.generation.smollm import load_smollm2
from integrand.steering import Encoder, SteeringVector, fit, load_behaviour, split
from integrand.steering.behaviour import MAX_PERPLEXITY_RATIO, Outcome, measure, random_like, select, token_norms
from integrand.steering.judges import judge

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "steering.md"
BEGIN, END = "<!-- bench:steering_behaviour begin -->", "<!-- bench:steering_behaviour end -->"
# (benchmark, label, sign of the strength): sentiment is steered both ways with one vector.
TASKS = {
    "sentiment": [("positive", +1), ("negative", -1)],
    "toxicity": [("non-toxic", +1)],
    "politeness": [("polite", +1)],
}


def log(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def grains_k(model: Any, tokenizer: Any, prompts: list[str]) -> int:
    """3, or fewer when the shortest fit prompt has fewer maskable tokens (not BOS, not the read-out)."""
    encoder = Encoder(model, tokenizer)
    shortest = min(len(encoder.token_ids(p, "prompt", prompt=True)) for p in prompts)
    return max(1, min(3, shortest - (1 if encoder.add_bos else 0) - 1))


def fit_summary(vector: SteeringVector) -> dict[str, Any]:
    p = vector.params
    out: dict[str, Any] = {"method": vector.method, "layers": list(vector.layers), "k": vector.k}
    if vector.method == "grains":
        out.update(
            attribution=p.get("attribution"),
            unconverged_share=p.get("unconverged_share"),
            median_relative_error=p.get("median_relative_error"),
            converged_tol=p.get("converged_tol"),
            positive_tokens=[t for e in p["examples"] for t in e["positive_tokens"]][:24],
            negative_tokens=[t for e in p["examples"] for t in e["negative_tokens"]][:24],
        )
    return out


def run_benchmark(model: Any, tokenizer: Any, name: str, cfg: argparse.Namespace) -> dict[str, Any]:
    bench = load_behaviour(name)
    scorer = judge(bench.judge)
    fit_prompts, held = split(list(bench.prompts), cfg.n_fit, seed=cfg.seed)
    if cfg.quick:
        held = held[: cfg.n_held_quick]
    pairs = bench.preferences(fit_prompts, per_prompt=2)
    k = grains_k(model, tokenizer, fit_prompts)
    t0 = time.time()
    grains = fit(
        model, tokenizer, pairs, layers=cfg.layers, k=k, attribution=cfg.attribution, baseline="unk", progress=False
    )
    t_grains = time.time() - t0
    grains_key = "grains" if cfg.attribution == "lrp" else f"grains-{cfg.attribution}"
    vectors: dict[str, SteeringVector] = {}
    if "grains" in cfg.methods:
        vectors[grains_key] = grains
    if "mean-diff" in cfg.methods:
        vectors["mean-diff"] = fit(model, tokenizer, pairs, layers=cfg.layers, method="mean-diff", progress=False)
    if "random" in cfg.methods:
        vectors["random"] = random_like(grains, seed=cfg.seed)
    log(cfg.quiet, f"[{name}] fitted on {len(pairs)} pairs (GrAInS {t_grains:.0f} s, k={k})")
    norms = token_norms(model, tokenizer, fit_prompts, cfg.layers)
    options = {
        "max_new_tokens": cfg.max_new_tokens,
        "sample": cfg.sample,
        "seed": cfg.seed,
        "batch_size": 16,
        "progress": False,
    }
    base_fit = measure(model, tokenizer, fit_prompts, scorer, **options)
    base_held = measure(model, tokenizer, held, scorer, **options)
    sweep: list[dict[str, Any]] = []
    chosen: dict[str, dict[str, Any]] = {}
    held_rows: list[dict[str, Any]] = [{"direction": "-", **base_held.row(), "examples": list(base_held.texts[:2])}]
    for label, sign in TASKS[name]:
        target = scorer.target * sign if name == "sentiment" else scorer.target
        for method, vector in vectors.items():
            outcomes: list[Outcome] = []
            for layer in cfg.layers:
                for share in cfg.shares:
                    strength = sign * share * norms[layer] / float(vector.vectors[layer].norm())
                    o = measure(
                        model, tokenizer, fit_prompts, scorer, vector=vector, strength=strength, layer=layer, **options
                    )
                    outcomes.append(o)
                    sweep.append({"direction": label, "share": share, **o.row(), "method": method})
                    log(
                        cfg.quiet,
                        f"[{name} {label}] {method} block {layer} c={share}: {scorer.name} {o.score:+.3f}, "
                        f"ppl {o.perplexity:.1f} (unsteered {base_fit.score:+.3f}, ppl {base_fit.perplexity:.1f})",
                    )
            best = select(outcomes, base_fit, target, max_ratio=MAX_PERPLEXITY_RATIO)
            if best is None:
                chosen[f"{label}/{method}"] = {"layer": None, "strength": 0.0, "share": None}
                held_rows.append(
                    {
                        "direction": label,
                        **base_held.row(),
                        "method": method,
                        "note": "no setting qualified",
                        "examples": [],
                    }
                )
                continue
            share = cfg.shares[[o is best for o in outcomes].index(True) % len(cfg.shares)]
            chosen[f"{label}/{method}"] = {"layer": best.layer, "strength": best.strength, "share": share}
            o = measure(
                model, tokenizer, held, scorer, vector=vector, strength=best.strength, layer=best.layer, **options
            )
            row = {**o.row(), "method": method}
            held_rows.append({"direction": label, "share": share, **row, "examples": list(o.texts[:2])})
            log(
                cfg.quiet,
                f"[{name} {label}] held-out {method}: {scorer.name} {o.score:+.3f} ppl {o.perplexity:.1f} "
                f"(unsteered {base_held.score:+.3f}, ppl {base_held.perplexity:.1f})",
            )
    return {
        "judge": scorer.name,
        "judge_description": scorer.description,
        "judge_target": scorer.target,
        "n_fit_prompts": len(fit_prompts),
        "n_held_out_prompts": len(held),
        "n_pairs": len(pairs),
        "fit_prompts": fit_prompts,
        "norms": norms,
        "fits": {m: fit_summary(v) for m, v in vectors.items() if m != "random"},
        "grains_fit_seconds": {grains_key: t_grains},
        "unsteered_fit": base_fit.row(),
        "sweep": sweep,
        "chosen": chosen,
        "held_out": held_rows,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| benchmark (judge, goal) | steered towards | method | block | strength (share c) | held-out judge | "
        "perplexity (x unsteered) | distinct-1 | distinct-2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["benchmarks"].items():
        base = r["held_out"][0]
        goal = "higher" if r["judge_target"] > 0 else "lower"
        for row in r["held_out"]:
            ratio = row["perplexity"] / base["perplexity"]
            layer = "-" if row.get("note") or row["method"] == "none" else row["layer"]
            strength = "-" if layer == "-" else f"{row['strength']:+.1f} ({row.get('share')})"
            method = row["method"] + (" (no setting qualified: unsteered)" if row.get("note") else "")
            lines.append(
                f"| {name} ({r['judge']}, {goal}; {r['n_held_out_prompts']} prompts) | {row['direction']} | {method} | "
                f"{layer} | {strength} | {row['score']:+.3f} | {row['perplexity']:.2f} ({ratio:.2f}x) | "
                f"{row['distinct_1']:.3f} | {row['distinct_2']:.3f} |"
            )
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    """The table, the GrAInS fits' attribution quality, and how and where the numbers were made."""
    runs = results.get("runs") or [results]
    st = runs[0]["settings"]
    lines = [
        f"SmolLM2-135M-Instruct (fp32, CPU, 1 thread); {st['n_fit_prompts']} fit prompts per set (seed {st['seed']}), "
        f"{st['max_new_tokens']} new tokens, {st['decoding']}; sweep on the fit prompts over blocks {st['layers']} x "
        f"c in {st['shares']}; chosen by best judge score at perplexity <= {st['max_perplexity_ratio']}x unsteered. "
        f"Perplexity: continuation tokens under the unsteered model. Held-out numbers below.",
        "",
        table(results),
        "",
    ]
    for name, r in results["benchmarks"].items():
        chosen = ", ".join(
            f"{key}: " + ("none qualified" if c["layer"] is None else f"block {c['layer']}, c={c['share']}")
            for key, c in r["chosen"].items()
        )
        for key, g in r["fits"].items():
            if not key.startswith("grains"):
                continue
            quality = (
                "exact (no integration error)"
                if g["median_relative_error"] is None
                else f"conservation median relative error {g['median_relative_error']:.2f}, "
                f"{g['unconverged_share']:.0%} of {r['n_pairs']} pairs above tol {g['converged_tol']:g}"
            )
            lines.append(
                f"- {name}: {key} ({g['attribution']}, k={g['k']}) {quality}; top-k tokens (first pairs) "
                f"+ {' '.join(map(repr, g['positive_tokens'][:8]))}, - {' '.join(map(repr, g['negative_tokens'][:8]))}."
            )
        lines.append(f"- {name}: chosen: {chosen}.")
    lines.append("")
    for run in runs:
        lines.append(
            f"Run: `{run['command']}` on {run['machine']}, {run['seconds'] / 60:.1f} min; `uptime` at start: "
            f"{run['uptime_at_start']}; at end: {run['uptime_at_end']}."
        )
    return "\n".join(lines)


def merge(paths: list[Path]) -> dict[str, Any]:
    """Several runs' JSON (e.g. benchmarks run as parallel processes) as one result with a ``runs`` list."""
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    # An already merged file contributes its own runs, so merged results can be merged again.
    runs = [
        run
        for r in loaded
        for run in (r["runs"] if "runs" in r else [{k: v for k, v in r.items() if k != "benchmarks"}])
    ]
    benchmarks: dict[str, Any] = {}
    for r in loaded:
        for name, b in r["benchmarks"].items():
            if name not in benchmarks:
                benchmarks[name] = b
                continue
            # A later run of other methods on the same benchmark: its rows join the table (its unsteered row,
            # the same greedy continuations of the same prompts, is kept as a check, not repeated).
            old = benchmarks[name]
            old["held_out"] += [row for row in b["held_out"] if row["method"] != "none" and row["direction"] != "-"]
            old["sweep"] += b["sweep"]
            old["chosen"].update(b["chosen"])
            old["fits"].update(b["fits"])
            old.setdefault("unsteered_rechecks", []).append(b["held_out"][0])
    return {"runs": runs, "benchmarks": benchmarks}


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        doc = head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + BEGIN + "\n" + text + "\n" + END + "\n"
    DOC.write_text(doc, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 fit prompts, 1 block, 1 share")
    parser.add_argument("--benchmarks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "steering_behaviour.json")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/steering.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--sample", action="store_true", help="seeded sampling instead of greedy continuations")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--merge", type=Path, nargs="+", help="merge these runs' JSON files into --out; no run")
    parser.add_argument(
        "--attribution", default="lrp", choices=["lrp", "occlusion", "ig", "input_x_gradient"], help="GrAInS's top-k"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["grains", "mean-diff", "random"], choices=["grains", "mean-diff", "random"]
    )
    cfg = parser.parse_args()
    if cfg.merge:
        merged = merge(cfg.merge)
        cfg.out.write_text(json.dumps(merged, indent=1), encoding="utf-8")
        text = report(merged)
        print(text)
        if cfg.doc:
            write_doc(text)
        return 0
    cfg.n_fit = 8 if cfg.quick else 16
    cfg.n_held_quick = 8
    cfg.layers = [6] if cfg.quick else [5, 10]
    cfg.shares = [0.2] if cfg.quick else [0.1, 0.2, 0.3]
    torch.set_num_threads(1)
    started = time.time()
    load = os.getloadavg()
    model, tokenizer = load_smollm2()
    results: dict[str, Any] = {
        "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/steering_behaviour.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        "uptime_at_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "load_at_start": load,
        "settings": {
            "seed": cfg.seed,
            "n_fit_prompts": cfg.n_fit,
            "layers": cfg.layers,
            "shares": cfg.shares,
            "max_new_tokens": cfg.max_new_tokens,
            "decoding": "seeded sampling, temperature 0.8, top-k 50" if cfg.sample else "greedy",
            "max_perplexity_ratio": MAX_PERPLEXITY_RATIO,
            "grains": f"attribution={cfg.attribution!r}, baseline='unk', variant='both', reducer='pca'",
            "methods": cfg.methods,
        },
        "benchmarks": {},
    }
    for name in cfg.benchmarks:
        results["benchmarks"][name] = run_benchmark(model, tokenizer, name, cfg)
        cfg.out.write_text(json.dumps(results, indent=1), encoding="utf-8")  # partial results survive
    results["seconds"] = time.time() - started
    results["uptime_at_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cfg.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = report(results)
    print(text)
    if cfg.doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
