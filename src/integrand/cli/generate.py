"""``integrand generate``: attribute a causal LM's generated (or forced) tokens to the prompt."""

from __future__ import annotations

import argparse
from typing import Any

from .options import model_dir, output_file, positive_int, positive_number


def add_parser(sub: Any) -> None:
    p = sub.add_parser("generate", help="attribute each generated token of a causal LM to the tokens before it")
    p.add_argument("prompt", help="the prompt text")
    p.add_argument("--model", type=model_dir, help="a local model folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="greedy tokens to generate (default 8)")
    p.add_argument("--target", default=None, help="force this continuation instead of generating")
    p.add_argument("--contrast", default=None, help="contrastive foil: attribute log P(target) - log P(contrast)")
    p.add_argument(
        "--method", default="integrated_gradients", help="integrated_gradients, saliency or input_x_gradient"
    )
    p.add_argument("--steps", type=positive_int, help="fixed Gauss-Legendre steps (default: error control)")
    p.add_argument("--tol", type=positive_number, default=None, help="relative completeness tolerance per target token")
    p.add_argument("--html", type=output_file, default=None, help="write the token x token heatmap here")
    p.add_argument("--save", type=output_file, default=None, help="write the result (.safetensors) here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..generation import GenerationExplainer

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
        method=args.method,
        steps=args.steps,
        tol=args.tol,
    )
    print(result.summary())
    if result.relative_error is not None:
        bad = int((~result.converged).sum())
        tol = result.params.get("converged_tol")
        print(
            f"completeness: {bad} of {len(result.target_tokens)} target tokens did not converge at tol {tol:g} "
            f"(max relative error {float(result.relative_error.max()):.3g})"
        )
    if args.html is not None:
        args.html.write_text(f"<!doctype html><meta charset='utf-8'>{result.to_html()}", encoding="utf-8")
        print(f"html: {args.html.resolve()}")
    if args.save is not None:
        print(f"saved: {result.save(args.save).resolve()}")
    return 0 if bool(result.converged.all()) else 1
