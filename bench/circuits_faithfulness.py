"""Faithfulness of attribution, IG and relevance patching to activation patching (docs/circuits.md).

Two cases: the small GPT-2 trained on the synthetic IOI task (integrand.circuits.ioi) and
SmolLM2-135M-Instruct on factual-recall pairs ("The capital of France is" -> Paris vs
"... Italy is" -> Rome). For each, every method scores the same components; we report Pearson and
Spearman correlation with activation patching per component kind, and each method's cost.

Components are restricted to those whose clean and corrupted activations can differ: in a causal
model, positions before the first differing token are identical in both runs, so every method
scores them exactly 0 and they would only inflate the correlations.

    python bench/circuits_faithfulness.py [--skip-smollm] [--ioi-pairs 64] [--smollm-steps 5]

The tables are written into docs/circuits.md between the faithfulness markers, the scatter
plots to docs/circuits_<case>_<method>.png.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch

from integrand.circuits import (
    Faithfulness,
    LRPRules,
    PatchingResult,
    faithfulness,
    logit_diff,
    markdown_table,
    patching,
)
from integrand.circuits.ioi import accuracy, ioi_pairs, load_or_train

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "circuits.md"
BEGIN, END = "<!-- faithfulness:begin -->", "<!-- faithfulness:end -->"

CAPITALS = [
    ("France", "Paris"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"), ("England", "London"), ("Greece", "Athens"),
    ("Canada", "Ottawa"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
]  # fmt: skip


def informative(clean: torch.Tensor, corrupted: torch.Tensor, n_layers: int) -> list[str]:
    """resid/attn/mlp at positions from the first differing token on, and every head."""
    first = int((clean != corrupted).any(0).int().argmax())
    positions = range(first, clean.shape[1])
    names = [f"{k}.{layer}.{p}" for k in ("resid", "attn", "mlp") for layer in range(n_layers) for p in positions]
    return names + ["head"]


# (label, method, extra patching arguments)
Methods = list[tuple[str, str, dict[str, Any]]]


def methods_for(ig: list[dict[str, Any]], gated: bool) -> Methods:
    """Attribution, the IG variants, relevance patching and relevance patching with single rules switched off."""
    out: Methods = [("attribution", "attribution", {})]
    out += [(f"ig ({', '.join(f'{k}={v}' for k, v in kw.items())})", "ig", kw) for kw in ig]
    out += [
        ("relp", "relp", {}),
        ("relp without AH rule", "relp", {"rules": LRPRules(attention="gradient")}),
        ("relp without LN rule", "relp", {"rules": LRPRules(norm="gradient")}),
        ("relp without identity rule", "relp", {"rules": LRPRules(activation="gradient")}),
    ]
    if gated:
        out.append(("relp without half rule", "relp", {"rules": LRPRules(gate="gradient")}))
    return out


def run_case(
    label: str, model: Any, clean: Any, corrupted: Any, metric: Any, components: list[str], methods: Methods,
    **kwargs: Any,
) -> tuple[list[Faithfulness], PatchingResult]:  # fmt: skip
    ref = patching(model, clean, corrupted, metric, components=components, **kwargs)
    print(f"[{label}] activation: {ref.cost}; metric clean {ref.metric_clean:.3f} corrupted {ref.metric_corrupted:.3f}")
    rows = []
    for name, method, extra in methods:
        res = patching(model, clean, corrupted, metric, components=components, method=method, **extra, **kwargs)
        f = faithfulness(res, ref)
        f = Faithfulness(name, f.reference_method, f.rows, f.scores, f.cost, f.reference_cost)
        print(f"[{label}] {f.method}: {res.cost}; " + ", ".join(f"{r.kind} {r.pearson:.3f}" for r in f.rows))
        rows.append(f)
    return rows, ref


def plot(rows: list[Faithfulness], case: str, enabled: bool) -> None:
    """Scatter plots of attribution and relevance patching against activation patching."""
    if not enabled:
        return
    for f in rows:
        if f.method in ("attribution", "relp"):
            f.plot(ROOT / "docs" / f"circuits_{case}_{f.method}.png")


def ioi_case(n_pairs: int, plots: bool) -> tuple[str, list[Faithfulness]]:
    model = load_or_train()
    pairs = ioi_pairs(n_pairs, seed=2024)
    acc = accuracy(model, ioi_pairs(1024, seed=7))
    n_layers = model.config.n_layer
    comps = informative(pairs.clean, pairs.corrupted, n_layers)
    methods = methods_for([{"steps": 8}, {"steps": 8, "ig_path": "component"}], gated=False)
    rows, ref = run_case("ioi", model, pairs.clean, pairs.corrupted, logit_diff(pairs.io, pairs.s), comps, methods)
    plot(rows, "ioi", plots)
    head = (
        f"**Synthetic IOI, GPT-2 ({n_layers} layers, {model.config.n_head} heads, d={model.config.n_embd}), "
        f"{n_pairs} pairs.** Held-out accuracy {acc:.3f}; logit difference IO - S: clean "
        f"{ref.metric_clean:.2f}, corrupted {ref.metric_corrupted:.2f}; {len(ref.components)} components."
    )
    return head, rows


def smollm_case(n_pairs: int, steps: int, plots: bool) -> tuple[str, list[Faithfulness]]:
    from integrand.generation.smollm import load_smollm2

    model, tok = load_smollm2()
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(CAPITALS), generator=gen).tolist()
    chosen = [CAPITALS[i] for i in order[: 2 * n_pairs]]
    clean_rows, corrupt_rows, good, bad = [], [], [], []
    for (c1, a1), (c2, a2) in zip(chosen[0::2], chosen[1::2]):
        clean_rows.append(tok(f"The capital of {c1} is").input_ids)
        corrupt_rows.append(tok(f"The capital of {c2} is").input_ids)
        good.append(tok(f" {a1}").input_ids[0])
        bad.append(tok(f" {a2}").input_ids[0])
    clean, corrupted = torch.tensor(clean_rows), torch.tensor(corrupt_rows)
    n_layers = model.config.num_hidden_layers
    comps = informative(clean, corrupted, n_layers)
    methods = methods_for([{"steps": steps}], gated=True)
    rows, ref = run_case(
        "smollm2", model, clean, corrupted, logit_diff(good, bad), comps, methods,
        forward_kwargs={"logits_to_keep": 1}, batch_size=64,
    )  # fmt: skip
    plot(rows, "smollm2", plots)
    head = (
        f"**SmolLM2-135M-Instruct ({n_layers} layers, {model.config.num_attention_heads} heads), "
        f'{len(good)} factual-recall pairs** ("The capital of X is", clean answer vs the corrupted country\'s '
        f"capital). Logit difference: clean {ref.metric_clean:.2f}, corrupted {ref.metric_corrupted:.2f}; "
        f"{len(ref.components)} components."
    )
    return head, rows


def write_doc(sections: list[tuple[str, list[Faithfulness]]], header: str) -> None:
    body = [header, ""]
    for head, rows in sections:
        body += [head, "", markdown_table(rows), ""]
    text = DOC.read_text() if DOC.exists() else f"{BEGIN}\n{END}\n"
    block = f"{BEGIN}\n" + "\n".join(body) + f"\n{END}"
    DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ioi-pairs", type=int, default=64)
    parser.add_argument("--smollm-pairs", type=int, default=8)
    parser.add_argument("--smollm-steps", type=int, default=5)
    parser.add_argument("--skip-smollm", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ untouched")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    sections = [ioi_case(args.ioi_pairs, not args.no_write)]
    if not args.skip_smollm:
        sections.append(smollm_case(args.smollm_pairs, args.smollm_steps, not args.no_write))
    header = (
        f"Generated by `python bench/circuits_faithfulness.py` ({platform.machine()}, torch "
        f"{torch.__version__}, 1 thread, {time.perf_counter() - start:.0f} s in all). Cells: Pearson r / "
        "Spearman rho with activation patching over the components of that kind; passes: forward + backward "
        "passes over all pairs; seconds: wall clock on a shared 2-core machine."
    )
    for head, rows in sections:
        print(head)
        print(markdown_table(rows))
    if not args.no_write:
        write_doc(sections, header)


if __name__ == "__main__":
    main()
