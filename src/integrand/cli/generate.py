"""``integrand generate``: attribute a causal LM's generated (or forced) tokens to the prompt."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..defaults import CLI
from .options import integration_from, model_dir, output_file, positive_int, positive_number


def add_parser(sub: Any) -> None:
    p = sub.add_parser("generate", help="attribute each generated token of a causal LM to the tokens before it")
    p.add_argument("prompt", help="the prompt text")
    p.add_argument("--model", type=model_dir, help="a local model folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=None,
        help="greedy tokens to generate (default: 8, generation.explainer.DEFAULT_NEW_TOKENS; not with --target)",
    )
    p.add_argument("--target", default=None, help="force this continuation instead of generating")
    p.add_argument("--contrast", default=None, help="contrastive foil: attribute log P(target) - log P(contrast)")
    p.add_argument(
        "--method",
        default=None,
        help="occlusion, integrated_gradients, saliency, input_x_gradient or lrp (AttnLRP, explains the logit) "
        "(default: generation.explainer.DEFAULT_METHOD, "
        "chosen by the faithfulness benchmark, docs/faithfulness.md)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="what each attributed position starts from: mean, zeros, unk, pad, eos, bos or a token id "
        "(default: mean, the mean embedding of the ordinary tokens)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        help="integrated_gradients: fixed Gauss-Legendre steps instead of error control to --tol",
    )
    p.add_argument(
        "--tol",
        type=positive_number,
        default=None,
        help=f"integrated_gradients: relative completeness tolerance per target token (default: {CLI.tol:g})",
    )
    p.add_argument("--html", type=output_file, default=None, help="write the token x token heatmap here")
    p.add_argument("--save", type=output_file, default=None, help="write the result (.safetensors) here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..generation import GenerationExplainer
    from ..generation.explainer import DEFAULT_METHOD
    from .options import int_or_name

    start = time.perf_counter()
    method = DEFAULT_METHOD if args.method is None else args.method
    given = [flag for flag, value in (("--steps", args.steps), ("--tol", args.tol)) if value is not None]
    if method == "occlusion" and given:
        from ..errors import InputError

        raise InputError(given[0], "occlusion is exact (nothing to integrate); add --method integrated_gradients")
    model: Any
    if args.model is None:
        from ..generation.smollm import load_smollm2

        model, tokenizer = load_smollm2()
    else:
        try:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
        except ImportError as exc:
            from ..errors import MissingExtraError

            raise MissingExtraError("transformers", "text") from exc
        try:
            config = AutoConfig.from_pretrained(args.model)
            seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(args.model)
            tokenizer = AutoTokenizer.from_pretrained(args.model)
        except (OSError, ValueError, KeyError) as exc:
            from ..errors import InputError

            raise InputError("--model", f"cannot load {args.model!r}: {' '.join(str(exc).split())[:200]}") from exc
        model.eval()
    result = GenerationExplainer(model, tokenizer)(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        target=args.target,
        contrast=args.contrast,
        method=method,
        baseline=None if args.baseline is None else int_or_name(args.baseline),
        integration=None if method == "occlusion" else integration_from(args),
        progress=args.progress,
    )
    if not args.quiet:
        print(result.summary())
    written = []
    if args.html is not None:
        args.html.write_text(f"<!doctype html><meta charset='utf-8'>{result.to_html()}", encoding="utf-8")
        written.append(f"html {args.html.resolve()}")
    if args.save is not None:
        written.append(f"saved {result.save(args.save).resolve()}")
    print(_summary_line(result, time.perf_counter() - start, written))
    return 0  # unconverged tokens are a warning line (exit 1 only with --strict)


def _summary_line(result: Any, seconds: float, written: list[str]) -> str:
    """One line: tokens, points, convergence, time and the files written."""
    n = len(result.target_tokens)
    points = int(result.params.get("forward_points") or 0)
    line = f"{n} target tokens, {points} forward points"
    if result.method == "lrp" and result.delta is not None:
        from ..circuits.lrp import conservation_line

        shares = 1 - result.delta.double() / result.score_input.double()
        line += f", {conservation_line(shares.tolist(), 'tokens')}"
    elif result.relative_error is not None:
        bad = int((~result.converged).sum())
        tol = result.params.get("converged_tol")
        state = "all converged" if bad == 0 else f"{bad} of {n} did not converge"
        line += f", {state} at tol {tol:g} (max relative error {float(result.relative_error.max()):.3g})"
    elif result.params.get("exact"):
        line += ", exact (leave-one-out occlusion: nothing to integrate, converged)"
    line += f", {seconds:.1f} s"
    return line + ("; " + "; ".join(written) if written else "; no files written (--html, --save)")
