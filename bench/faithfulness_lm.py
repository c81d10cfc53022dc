"""Token-level faithfulness of attribution methods on SmolLM2-135M-Instruct (the fact set of issue 14).

Every fact of ``integrand.generation.factset`` is a cloze prompt with a known answer, teacher forced
as the target (multi-token answers: every answer token is a target). Each method attributes each
target token to the prompt tokens; the fixed BOS position the explainer keeps is never a source, and
earlier answer tokens are left alone. Per target token and per way of removing a token:

* deletion AUC: remove the sources most-relevant-first (highest signed attribution first) and
  average log P(target) over the curve (trapezoid over the fraction removed, 0..1). Lower is better.
* insertion AUC: start with every source removed, restore them most-relevant-first. Higher is better.
* both also as the gain over a random order (mean of ``RANDOM_ORDERS`` seeded permutations) of the
  same prompt: ``del_gain = AUC(random) - AUC(method)``, ``ins_gain = AUC(method) - AUC(random)``;
  higher is better and prompts of different difficulty become comparable.
* Spearman correlation with leave-one-out occlusion (mean-embedding removal) over the sources.
* share of |attribution| on function words (``FUNCTION_WORDS``), beside the same share of |LOO effect|.
* wall time of the method's call per target token (single prompt, one torch thread).

Two ways of removing a token: "mean" replaces its input embedding with the mean input embedding of
the ordinary tokens; "neutral" replaces the token with ``NEUTRAL`` (" ...", an ordinary token). Neither
is tuned on the metric, and both are reported. The selection score, fixed before any run, is the mean
of the four gains (deletion and insertion, both removals) on the held-out ("test") split; the default
method is the best by it among methods at <= 10 s per target token.

Mean and 95% interval over prompts: percentile bootstrap (2000 resamples, seed 0). One torch thread.

    OMP_NUM_THREADS=1 .venv/bin/python bench/faithfulness_lm.py --split dev --limit 6   # size a run
    OMP_NUM_THREADS=1 .venv/bin/python bench/faithfulness_lm.py --quick                 # smoke run
    OMP_NUM_THREADS=1 .venv/bin/python bench/faithfulness_lm.py --split test            # the held-out numbers
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("INTEGRAND_PROGRESS", "0")  # the bench draws its own bar

import numpy as np  # noqa: E402
import torch  # noqa: E402

from integrand.generation.explainer import METHODS, GenerationExplainer  # noqa: E402
from integrand.generation.factset import FactItem, factset  # noqa: E402

NEUTRAL = " ..."
RANDOM_ORDERS = 8
MAX_STEPS = 65
TOL = 1e-2
BUDGET_S = 10.0
REMOVALS = ("mean", "neutral")
_WORDS = (
    "the a an of is was are were be in on at to for by and or as with from that this it its which who his her their"
)
FUNCTION_WORDS = frozenset([*_WORDS.split(" "), ",", ".", ":", ";", "'", "-"])
Attributor = Callable[[FactItem], Any]


def method_table(gx: GenerationExplainer, max_steps: int, quick: bool) -> dict[str, Attributor]:
    """Name -> call returning a GenerationAttribution (occlusion is computed by ``loo``, not here)."""

    def call(**options: Any) -> Attributor:
        return lambda f: gx(f.prompt, target=f.answer, **options)

    table: dict[str, Attributor] = {
        "saliency": call(method="saliency"),
        "input_x_gradient": call(method="input_x_gradient"),
        # (x - mean) . grad f(x): IG's one-point right rule, the gradient x input of the mean baseline.
        "grad_x_(input-mean)": call(method="integrated_gradients", baseline="mean", steps=1, rule="right"),
    }
    # Compute budget (docs/faithfulness.md): error control for two baselines, capped at ``max_steps``.
    for b in ("mean", "zeros") if quick else ("mean", "unk", "pad", "zeros"):
        for n in (16,) if quick else (16, 32):
            table[f"ig_{b}_{n}"] = call(method="integrated_gradients", baseline=b, steps=n)
        if b in ("mean", "pad"):
            table[f"ig_{b}_tol"] = call(method="integrated_gradients", baseline=b, tol=TOL, max_steps=max_steps)
    if "lrp" in METHODS:
        table["lrp"] = call(method="lrp")
    return table


class Scorer:
    """log P(target tokens) of one fact's sequence under source removals; each distinct removal set runs once."""

    def __init__(self, model: Any, emb: torch.nn.Module, ids: torch.Tensor, n_prompt: int, removed: torch.Tensor):
        self.model, self.n_prompt, self.ids, self.removed = model, n_prompt, ids, removed
        with torch.no_grad():
            self.x = emb(ids[None])[0]
        self.cache: dict[frozenset[int], torch.Tensor] = {}

    def logp(self, sets: list[frozenset[int]]) -> torch.Tensor:
        """Removed position sets -> log P of every target token [len(sets), T] (float64)."""
        todo = list(dict.fromkeys(m for m in sets if m not in self.cache))
        for start in range(0, len(todo), 32):
            chunk = todo[start : start + 32]
            masks = torch.zeros(len(chunk), self.ids.numel(), dtype=torch.bool)
            for r, m in enumerate(chunk):
                masks[r, list(m)] = True
            e = torch.where(masks[..., None], self.removed.to(self.x), self.x)
            with torch.no_grad():
                logits = self.model(inputs_embeds=e, use_cache=False).logits.double()
            lp = logits[:, self.n_prompt - 1 : -1].log_softmax(-1)
            tgt = self.ids[self.n_prompt :].to(lp.device)
            values = lp.gather(-1, tgt.expand(lp.shape[0], -1)[..., None])[..., 0]
            self.cache.update(zip(chunk, values))
        return torch.stack([self.cache[m] for m in sets])


def curves(scorer: Scorer, sources: list[int], order: list[int], t: int) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of target ``t`` for one order of ``sources`` (trapezoid over 0..1)."""
    n = len(order)
    every = frozenset(sources)
    deletion = [frozenset(order[:k]) for k in range(n + 1)]
    insertion = [every - frozenset(order[:k]) for k in range(n + 1)]
    lp = scorer.logp(deletion + insertion)[:, t].numpy()
    return float(np.trapezoid(lp[: n + 1], dx=1 / n)), float(np.trapezoid(lp[n + 1 :], dx=1 / n))


def random_reference(scorer: Scorer, sources: list[int], n_targets: int, seed: int) -> np.ndarray:
    """Mean (deletion, insertion) AUC over ``RANDOM_ORDERS`` seeded random orders, per target: [T, 2]."""
    rng = random.Random(seed)
    orders = [rng.sample(sources, len(sources)) for _ in range(RANDOM_ORDERS)]
    return np.array([np.mean([curves(scorer, sources, o, t) for o in orders], axis=0) for t in range(n_targets)])


def loo(scorer: Scorer, sources: list[int]) -> torch.Tensor:
    """Leave-one-out effects [T, S]: log P(target) with everything minus log P with source j removed."""
    lp = scorer.logp([frozenset(), *(frozenset([j]) for j in sources)])
    return (lp[0:1] - lp[1:]).T.float()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties (nan when either side is constant)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def score_prompt(
    rows: np.ndarray,
    scorers: dict[str, Scorer],
    sources: list[int],
    loo_ref: np.ndarray,
    words: list[bool],
    randoms: dict[str, np.ndarray],
) -> dict[str, float]:
    """All metrics of one method on one prompt (means over its target tokens); ``rows`` is [T, S]."""
    acc: dict[str, list[float]] = {}
    for t, row in enumerate(rows):
        order = [sources[i] for i in sorted(range(len(sources)), key=lambda i: -row[i])]
        for name, sc in scorers.items():
            d, ins = curves(sc, sources, order, t)
            acc.setdefault(f"del_{name}", []).append(d)
            acc.setdefault(f"ins_{name}", []).append(ins)
            acc.setdefault(f"del_gain_{name}", []).append(float(randoms[name][t, 0]) - d)
            acc.setdefault(f"ins_gain_{name}", []).append(ins - float(randoms[name][t, 1]))
        acc.setdefault("spearman_loo", []).append(spearman(row, loo_ref[t]))
        mass = np.abs(row)
        acc.setdefault("function_share", []).append(float(mass[words].sum() / mass.sum()) if mass.sum() > 0 else 0.0)
    out = {k: float(np.nanmean(v)) if not all(np.isnan(v)) else float("nan") for k, v in acc.items()}
    out["selection"] = float(np.mean([out[f"{m}_gain_{r}"] for m in ("del", "ins") for r in scorers]))
    return out


def bootstrap(values: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if not np.isnan(x)])
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    return float(v.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@contextlib.contextmanager
def progress(total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    if quiet:
        yield lambda _: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("faithfulness", total=total)
        yield lambda what: bar.update(task, advance=1, description=what)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from integrand.generation.smollm import load_smollm2

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model, tok = load_smollm2()
    load_s = time.perf_counter() - start
    gx = GenerationExplainer(model, tok)
    emb = model.get_input_embeddings()
    neutral_ids = tok(NEUTRAL, add_special_tokens=False)["input_ids"]
    assert len(neutral_ids) == 1, neutral_ids
    with torch.no_grad():
        removal = {"mean": gx.baseline_embedding("mean"), "neutral": emb(torch.tensor([neutral_ids]))[0, 0]}
    facts = list(factset(args.split))
    if args.quick:
        facts = facts[:3]
    if args.limit:
        facts = facts[: args.limit]
    table = method_table(gx, args.max_steps, args.quick)
    if args.methods:
        table = {k: v for k, v in table.items() if k in args.methods.split(",")}
    names = ["occlusion_loo_mean", "occlusion_loo_neutral", *table]
    raw: dict[str, list[dict[str, Any]]] = {m: [] for m in names}
    with progress(len(facts) * len(names), args.quiet) as advance, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, fact in enumerate(facts):
            ref = gx(fact.prompt, target=fact.answer, method="saliency")  # ids, n_prompt, fixed positions
            ids, n_prompt, n_t = ref.token_ids, ref.n_prompt, len(ref.target_tokens)
            sources = list(range(len(ref.fixed_positions), n_prompt))
            scorers = {r: Scorer(model, emb, ids, n_prompt, v) for r, v in removal.items()}
            words = [ref.tokens[j].strip().lower() in FUNCTION_WORDS for j in sources]
            outputs: dict[str, tuple[np.ndarray, float, dict[str, Any]]] = {}
            for r in REMOVALS:
                t0 = time.perf_counter()
                effects = loo(scorers[r], sources).numpy()
                outputs[f"occlusion_loo_{r}"] = (effects, time.perf_counter() - t0, {})
            loo_ref = outputs["occlusion_loo_mean"][0]
            # After the timed leave-one-out passes, so that they start from an empty cache.
            randoms = {r: random_reference(sc, sources, n_t, args.seed + i) for r, sc in scorers.items()}
            for name, attribute in table.items():
                t0 = time.perf_counter()
                res = attribute(fact)
                wall = time.perf_counter() - t0
                extra: dict[str, Any] = {}
                if res.relative_error is not None and name.startswith("ig_"):
                    extra = {
                        "converged": float(res.converged.float().mean()),
                        "steps": int(res.steps.max()),
                        "max_rel_error": float(res.relative_error.max()),
                    }
                outputs[name] = (res.matrix[:, sources].numpy(), wall, extra)
            for name in names:
                rows, wall, extra = outputs[name]
                metrics = score_prompt(rows, scorers, sources, loo_ref, words, randoms)
                raw[name].append(
                    {
                        "prompt": fact.prompt,
                        "answer": fact.answer,
                        "category": fact.category,
                        "targets": n_t,
                        "tokens": [ref.tokens[j] for j in sources],
                        "attribution": rows.tolist(),
                        "time_per_token_s": wall / n_t,
                        **metrics,
                        **extra,
                    }
                )
                advance(f"{fact.category}: {name}")
    return {"raw": raw, "load_s": load_s, "n_prompts": len(facts)}


COLUMNS = (
    ("selection", "selection ↑"),
    ("del_gain_mean", "del gain (mean) ↑"),
    ("ins_gain_mean", "ins gain (mean) ↑"),
    ("del_gain_neutral", "del gain (neutral) ↑"),
    ("ins_gain_neutral", "ins gain (neutral) ↑"),
    ("del_mean", "del AUC (mean) ↓"),
    ("ins_mean", "ins AUC (mean) ↑"),
    ("spearman_loo", "Spearman vs LOO ↑"),
    ("function_share", "function-word share"),
    ("time_per_token_s", "s / target token"),
)


def markdown(raw: dict[str, list[dict[str, Any]]]) -> str:
    head = "| method | " + " | ".join(c for _, c in COLUMNS) + " | converged |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    ranked = sorted(raw, key=lambda m: -bootstrap([r["selection"] for r in raw[m]])[0])
    for m in ranked:
        cells = []
        for key, _ in COLUMNS:
            mean, lo, hi = bootstrap([r[key] for r in raw[m]])
            cells.append(f"{mean:.2f}" if key == "time_per_token_s" else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]")
        conv = [r["converged"] for r in raw[m] if "converged" in r]
        conv_cell = f"{np.mean(conv):.0%} (max {max(r['steps'] for r in raw[m])} pts)" if conv else ""
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {conv_cell} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", choices=("dev", "test"), default="dev")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 prompts, fewer methods")
    p.add_argument("--limit", type=int, default=0, help="first N prompts of the split")
    p.add_argument("--methods", default="", help="comma-separated subset of the method names")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS, help="cap of error-controlled IG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    out = run(args)
    wall = time.perf_counter() - t0
    table = markdown(out["raw"])
    tag = f"faithfulness_lm_{args.split}" + ("_quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/faithfulness_lm.py " + " ".join(sys.argv[1:]),
        "split": args.split,
        "n_prompts": out["n_prompts"],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "wall_s": wall,
        "model_load_s": out["load_s"],
        "max_steps": args.max_steps,
        "tol": TOL,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    (args.out / f"{tag}.json").write_text(json.dumps({"meta": meta, "raw": out["raw"]}, indent=1), encoding="utf-8")
    header = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    (args.out / f"{tag}.md").write_text(f"# {tag}\n\n{header}\n\n{table}\n", encoding="utf-8")
    print(header)
    print(table)


if __name__ == "__main__":
    main()
