"""``integrand explain "some text"``: token attributions of a text classifier, in the terminal and as files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..defaults import CLI, METHOD, TEXT_BASELINE
from .options import int_or_name, integration_from, output_file, positive_int, positive_number

DEFAULT_MODEL = "toxicity"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("explain", help="attribute a text classifier's prediction to the words of a text")
    p.add_argument("texts", nargs="+", help="one or more texts")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="'toxicity' (default), 'minilm-sentiment', or a Hugging Face sequence classifier (local dir or hub id)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="label name or index to explain (default: the most probable label; when a multi-label model "
        "predicts no label, it is still explained and the output says 'predicted none')",
    )
    p.add_argument(
        "--method",
        default=METHOD,
        help="attribution method: integrated_gradients ('ig' is accepted for it) or lrp (AttnLRP, for "
        "transformer classifiers such as minilm-sentiment; one pass, --tol and --steps do not apply)",
    )
    p.add_argument(
        "--baseline",
        default=TEXT_BASELINE,
        help="the token each content token becomes: pad, mask, unk, zeros (a zero embedding; 'zero' is "
        "accepted), or a token id",
    )
    p.add_argument(
        "--score",
        default="logit",
        choices=["logit", "probability", "log-probability"],
        help="what is attributed: the target's logit, probability or log-probability",
    )
    p.add_argument("--tol", type=positive_number, default=CLI.tol, help="relative completeness tolerance")
    p.add_argument("--steps", type=positive_int, help="fixed number of integration points instead of --tol")
    p.add_argument("--html", type=output_file, default=None, help="write an HTML report here")
    p.add_argument("--json", type=output_file, default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true", help="do not print the coloured view (same as the global --quiet)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..text.explainer import TextExplainer
    from ..viz.html import STYLE

    explainer = TextExplainer.from_pretrained(args.model)
    baseline = int_or_name(args.baseline)
    lrp = args.method == "lrp"
    results = explainer(
        list(args.texts),
        target=None if args.target is None else int_or_name(args.target),
        method=args.method,
        baseline=baseline,
        score=args.score,
        integration=None if lrp else integration_from(args),
        steps=args.steps if lrp else None,  # refused by LRP, naming steps
        progress=args.progress,
    )
    if not args.quiet:
        for result in results:
            result.print()
    bad = [i for i, r in enumerate(results) if not r.converged]
    worst = max(r.relative_error for r in results)
    from ..convergence import DEFAULT_TOL

    if lrp:
        from ..circuits.lrp import conservation_line

        shares = [r.params["lrp_conservation"] for r in results]
        print(conservation_line(shares, "texts") + (f": texts {bad}" if bad and len(results) > 1 else ""))
    else:
        tol = f"tol {DEFAULT_TOL if args.steps is not None else args.tol:g}"
        print(
            f"completeness: {len(bad)} of {len(results)} texts did not converge at {tol} "
            f"(max relative error {worst:.3g})" + (f": texts {bad}" if bad else "")
        )
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=1), encoding="utf-8")
        print(f"json: {args.json.resolve()}")
    if args.html is not None:
        body = "".join(r.to_html() for r in results)
        args.html.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>integrand explain</title>{STYLE}</head>"
            f"<body>{body}</body></html>",
            encoding="utf-8",
        )
        print(f"html: {args.html.resolve()}")
    return 0
