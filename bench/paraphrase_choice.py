"""Does choosing a paraphrase by comprehension give better answers? SmolLM2-135M-Instruct on the fact set.

For every fact of ``integrand.generation.facts`` the candidate pool is the original prompt, up to
3 rule paraphrases and up to 4 paraphrases sampled from SmolLM2 itself (seed = fact index; samples
containing the answer are dropped so that no candidate gives the answer away). Each candidate is
scored by ``comprehension`` (leave-one-out occlusion, on its own greedy next token: the known
answer is never used to choose) and evaluated on the known answer:

* log p: the log-probability of the answer's tokens after the candidate (teacher forced, summed);
* accuracy: the answer has the largest log p among the category's candidate answers (facts.CANDIDATES);
* greedy: the greedy next token is the answer's first token.

Conditions: top-ranked / bottom-ranked candidate by a statistic, the original prompt, a random
candidate (seeded), and the candidate whose own greedy token is most probable ("confidence", a
control that needs no attribution). The statistic is chosen on the dev split (best mean log p of
the top-ranked candidate); the test split is reported with it. 95% intervals: percentile
bootstrap over questions (2000 resamples, seed 0). One thread (torch.set_num_threads(1)).

    OMP_NUM_THREADS=1 .venv/bin/python bench/paraphrase_choice.py [--limit N] [--time-ig N] [--quiet]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from integrand.generation.comprehension import DEFAULT_RANK_BY, STATISTICS, comprehension, encode  # noqa: E402
from integrand.generation.explainer import GenerationExplainer  # noqa: E402
from integrand.generation.facts import FACTS, Fact  # noqa: E402
from integrand.generation.paraphrase import llm_paraphrases, rule_paraphrases  # noqa: E402

CONDITIONS = ("top", "bottom", "original", "random", "confidence")


def answer_scores(model: Any, gx: GenerationExplainer, prompt: str, fact: Fact) -> dict[str, float]:
    """log p of the correct answer, whether it is the argmax among the category's answers, greedy hit."""
    ids, _ = encode(gx, prompt)
    answers = [list(gx.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in fact.candidates]
    width = max(len(a) for a in answers)
    seqs = torch.tensor([ids + a + [0] * (width - len(a)) for a in answers])  # right padding: never attended
    with torch.no_grad():
        logp = model(input_ids=seqs, use_cache=False).logits.double().log_softmax(-1)
    n = len(ids)
    totals = [float(sum(logp[i, n - 1 + t, tok] for t, tok in enumerate(a))) for i, a in enumerate(answers)]
    right = fact.candidates.index(fact.answer)
    best = max(range(len(totals)), key=lambda i: totals[i])
    return {
        "log_p": totals[right],
        "accuracy": float(best == right),
        "greedy": float(int(logp[0, n - 1].argmax()) == answers[right][0]),
    }


def run(limit: int | None, quiet: bool, out: Path) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from integrand.generation.smollm import load_smollm2

    model, tok = load_smollm2()
    gx = GenerationExplainer(model, tok)
    facts = FACTS[:limit] if limit else FACTS
    records = []
    columns = (TextColumn("facts"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=quiet) as bar:
        task = bar.add_task("facts", total=len(facts))
        for index, fact in enumerate(facts):
            t0 = time.perf_counter()
            rules = rule_paraphrases(fact.prompt)[:3]
            sampled = llm_paraphrases(
                model, tok, fact.prompt, k=4, seed=index, avoid=[fact.answer], rounds=3, progress=False
            )
            t1 = time.perf_counter()
            pool = list(dict.fromkeys([fact.prompt, *rules, *sampled]))
            scores = comprehension(model, tok, pool, explainer=gx, progress=False)
            t2 = time.perf_counter()
            cands = []
            for s in scores:
                source = "original" if s.paraphrase == fact.prompt else "rules" if s.paraphrase in rules else "llm"
                cands.append(
                    {
                        "text": s.paraphrase,
                        "source": source,
                        "own_token": "".join(s.target),
                        "own_log_p": s.log_prob,
                        "stats": s.stats,
                        **answer_scores(model, gx, s.paraphrase, fact),
                    }
                )
            records.append(
                {
                    "prompt": fact.prompt,
                    "answer": fact.answer,
                    "category": fact.category,
                    "split": fact.split,
                    "candidates": cands,
                    "seconds": {"paraphrase": t1 - t0, "comprehension": t2 - t1, "per_prompt": (t2 - t1) / len(pool)},
                }
            )
            bar.advance(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return records


def pick(cands: list[dict[str, Any]], condition: str, stat: str, seed: int) -> dict[str, Any]:
    if condition == "original":
        return next(c for c in cands if c["source"] == "original")
    if condition == "random":
        return random.Random(seed).choice(cands)
    if condition == "confidence":
        return max(cands, key=lambda c: c["own_log_p"])
    ordered = sorted(cands, key=lambda c: -c["stats"][stat])  # stable: ties keep pool order
    return ordered[0] if condition == "top" else ordered[-1]


def bootstrap(values: list[float], seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    data = torch.tensor(values, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(values), (n, len(values)), generator=gen)
    means = data[idx].mean(dim=1).sort().values
    return float(data.mean()), float(means[int(0.025 * n)]), float(means[int(0.975 * n) - 1])


def table(records: list[dict[str, Any]], stat: str) -> list[str]:
    rows = [
        "| condition | log p of answer | accuracy (argmax among candidates) | greedy first token |",
        "|---|---|---|---|",
    ]
    for cond in CONDITIONS:
        chosen = [pick(r["candidates"], cond, stat, seed=i) for i, r in enumerate(records)]
        cells = []
        for key in ("log_p", "accuracy", "greedy"):
            m, lo, hi = bootstrap([c[key] for c in chosen])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        rows.append(f"| {cond} | " + " | ".join(cells) + " |")
    diffs = [
        pick(r["candidates"], "top", stat, 0)["log_p"] - pick(r["candidates"], "original", stat, 0)["log_p"]
        for r in records
    ]
    m, lo, hi = bootstrap(diffs)
    rows.append(f"\npaired log p, top minus original: {m:.3f} [{lo:.3f}, {hi:.3f}]")
    return rows


def report(records: list[dict[str, Any]]) -> str:
    dev = [r for r in records if r["split"] == "dev"]
    test = [r for r in records if r["split"] == "test"]
    lines = [f"facts: {len(records)} ({len(dev)} dev, {len(test)} test)"]
    sizes = [len(r["candidates"]) for r in records]
    llm = sum(c["source"] == "llm" for r in records for c in r["candidates"])
    lines.append(f"candidates per fact: mean {sum(sizes) / len(sizes):.2f} (LLM paraphrases kept: {llm} in all)")
    per_prompt = [r["seconds"]["per_prompt"] for r in records]
    para = [r["seconds"]["paraphrase"] for r in records]
    lines.append(f"occlusion comprehension: {sum(per_prompt) / len(per_prompt):.2f} s per prompt (mean)")
    lines.append(f"paraphrase generation: {sum(para) / len(para):.2f} s per fact (mean)")
    best = DEFAULT_RANK_BY
    if dev:
        lines.append("\ndev: mean log p of the answer after the top-ranked candidate, per statistic")
        dev_means = {s: sum(pick(r["candidates"], "top", s, 0)["log_p"] for r in dev) / len(dev) for s in STATISTICS}
        lines += [f"  {s:12s} {v:.3f}" for s, v in dev_means.items()]
        best = max(dev_means, key=lambda s: dev_means[s])
        lines.append(f"chosen on dev: {best}")
    for name, part in (("test", test), ("dev", dev)):
        if part:
            lines.append(f"\n{name} ({len(part)} facts), ranked by {best}:")
            lines += table(part, best)
    return "\n".join(lines)


def time_ig(n: int) -> str:
    """Error-controlled IG (tol=1e-2) comprehension on the first ``n`` facts' original prompts."""
    from integrand.generation.smollm import load_smollm2

    model, tok = load_smollm2()
    prompts = [f.prompt for f in FACTS[:n]]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = comprehension(model, tok, prompts, method="integrated_gradients", tol=1e-2, progress=False)
    dt = (time.perf_counter() - t0) / n
    steps = [int(s.attribution.steps.sum()) for s in scores if s.attribution is not None]
    failed = sum(s.converged is False for s in scores)
    return (
        f"IG tol=1e-2: {dt:.1f} s per prompt over {n} prompts, points {steps}, "
        f"not converged {failed}, warnings {len(caught)}"
    )


ISSUE_POOL = (
    "The capital of France is",
    "France's capital city is",
    "What is the capital of France? It is",
    "The capital city of France is called",
    "Capital France city name is",
)


def investigate() -> str:
    """The issue's pool with the forced target " Paris": rankings by attribution method and statistic."""
    from integrand.generation.smollm import load_smollm2

    model, tok = load_smollm2()
    settings: list[tuple[str, dict[str, Any]]] = [
        ("IG steps=32", {"method": "integrated_gradients", "steps": 32}),
        ("IG tol=1e-2", {"method": "integrated_gradients", "tol": 1e-2}),
        ("occlusion", {"method": "occlusion"}),
    ]
    lines = []
    for name, options in settings:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = comprehension(model, tok, list(ISSUE_POOL), target=" Paris", progress=False, **options)
        dt = (time.perf_counter() - t0) / len(ISSUE_POOL)
        lines.append(f"\n{name} ({dt:.1f} s per prompt)")
        for s in scores:
            conv = "" if s.converged is None else f" converged={s.converged} rel.err={s.relative_error:.3g}"
            prof = " ".join(f"{t.strip()}:{v:.2f}" for t, v in zip(s.tokens, s.profile.tolist()))
            lines.append(
                f"  {s.paraphrase!r:42s} mean={s.stats['mean']:.3f} sensitivity={s.stats['sensitivity']:.3f} "
                f"log p={s.log_prob:.2f}{conv} | {prof}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N facts")
    parser.add_argument("--time-ig", type=int, default=0, help="also time IG comprehension on N prompts")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--investigate", action="store_true", help="only the issue's France pool, per method")
    parser.add_argument("--out", type=Path, default=Path("bench/out/paraphrase_choice.json"))
    parser.add_argument("--reuse", action="store_true", help="analyse an earlier --out file again")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"threads: {torch.get_num_threads()}")
    start = time.perf_counter()
    if args.investigate:
        print(investigate())
        print(f"wall time: {time.perf_counter() - start:.0f} s")
        return
    records = json.loads(args.out.read_text()) if args.reuse else run(args.limit, args.quiet, args.out)
    print(report(records))
    if args.time_ig:
        print(time_ig(args.time_ig))
    print(f"wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
