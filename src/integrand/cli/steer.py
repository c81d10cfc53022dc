"""``integrand steer fit ...`` and ``integrand steer generate ...``: fit a steering vector, generate with it."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from ..defaults import STEER_STEPS, STEERING
from .options import int_or_name, integration_from, output_file, positive_int, positive_number

DEFAULT_MODEL = "smollm2"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("steer", help="fit attribution-guided steering vectors (GrAInS) and generate with them")
    verbs = p.add_subparsers(dest="steer_command", required=True)

    f = verbs.add_parser("fit", help="fit a steering vector from preference pairs and save it")
    _model_option(f)
    f.add_argument(
        "--examples",
        default="facts",
        help="built-in set ('facts'; 'sentiment', 'toxicity', 'politeness': the behaviour benchmarks' fit pairs) "
        "or a JSONL file of preference pairs",
    )
    f.add_argument(
        "--fit", type=positive_int, default=None, help="use a seeded split: this many pairs to fit, the rest held out"
    )
    f.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    f.add_argument("--layers", type=int, nargs="+", required=True, help="decoder block indices to steer")
    f.add_argument(
        "--method",
        default="grains",
        choices=["grains", "mean-diff"],
        help="grains: attribution-guided (mask the most attributed tokens); mean-diff: difference of mean activations",
    )
    f.add_argument(
        "--attribution",
        default="ig",
        choices=["ig", "lrp", "input_x_gradient", "occlusion"],
        help="grains: token attributions that choose the masked tokens: ig (contrastive IG, --steps/--tol), "
        "lrp (AttnLRP, one pass), input_x_gradient (one pass) or occlusion (leave-one-out, exact) (default ig)",
    )
    f.add_argument(
        "--variant",
        default="both",
        choices=["both", "positive", "negative"],
        help="grains: mask the tokens attributed towards the preferred, the dispreferred, or both answers",
    )
    f.add_argument("--reducer", default=None, choices=["pca", "mean"], help="default: pca (grains), mean (mean-diff)")
    f.add_argument("--k", type=positive_int, default=3, help="prompt tokens masked per side (grains; default 3)")
    f.add_argument("--baseline", default="pad", help="mask/baseline token: pad, unk, eos, bos, zeros or a token id")
    f.add_argument(
        "--steps", type=positive_int, default=None, help=f"IG points per pair (default: {STEER_STEPS}, unless --tol)"
    )
    f.add_argument("--tol", type=positive_number, help="error-controlled IG to this relative error instead")
    f.add_argument("--out", type=output_file, required=True, help="where to write the vector (.safetensors)")
    f.add_argument("--strength", type=float, default=None, help="also evaluate the held-out pairs at this strength")
    f.set_defaults(handler=run)

    g = verbs.add_parser("generate", help="greedy continuations without and with steering")
    _model_option(g)
    g.add_argument("prompts", nargs="+", help="one or more prompts")
    g.add_argument("--vector", type=Path, required=True, help="a file written by 'integrand steer fit'")
    g.add_argument("--strength", type=float, required=True, help="lambda: the added vector is lambda * v")
    g.add_argument("--layers", type=int, nargs="+", default=None, help="steer only these of the vector's blocks")
    g.add_argument("--max-new-tokens", type=positive_int, default=30, help="greedy tokens per continuation")
    g.add_argument("--chat", action="store_true", help="wrap each prompt in the tokenizer's chat template")
    g.add_argument(
        "--judge",
        default=None,
        choices=["vader", "toxicity", "politeness"],
        help="score each continuation offline and print the score unsteered and steered: vader (sentiment, -1..1), "
        "toxicity (BiLSTM P(toxic)), politeness (lexicon rule, -1..1)",
    )
    g.set_defaults(handler=run)


def _model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="'smollm2' (default, bundled) or a local Hugging Face causal LM dir",
    )


def load_model(name: str) -> tuple[Any, Any]:
    """(model, tokenizer): the bundled SmolLM2 or a local causal LM directory, in eval mode."""
    from ..errors import InputError, MissingExtraError

    if name == DEFAULT_MODEL:
        from ..generation.smollm import load_smollm2

        return load_smollm2()
    if not Path(name).is_dir():
        raise InputError("model", f"{name!r} is neither 'smollm2' nor a local model directory")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError("transformers", "text") from exc
    model: Any = AutoModelForCausalLM.from_pretrained(name)
    model.eval()
    return model, AutoTokenizer.from_pretrained(name)


def run(args: argparse.Namespace) -> int:
    if args.steer_command == "fit":
        return _fit(args)
    return _generate(args)


def _fit(args: argparse.Namespace) -> int:
    from ..steering import evaluate, fit, load_preferences, neutral_texts, split
    from ..steering.examples import Encoder
    from ..steering.hooks import capture

    model, tokenizer = load_model(args.model)
    examples = load_preferences(args.examples)
    fit_set, held = split(examples, args.fit, seed=args.seed) if args.fit is not None else (examples, [])
    vector = fit(
        model,
        tokenizer,
        fit_set,
        layers=args.layers,
        k=args.k,
        method=args.method,
        attribution=args.attribution,
        variant=args.variant,
        reducer=args.reducer,
        baseline=int_or_name(args.baseline),
        integration=integration_from(args, STEERING),
        progress=args.progress,
    )
    path = vector.save(args.out)
    print(f"{vector.method} vector from {vector.n_examples} pairs ({vector.model_name}) -> {path}")
    # Typical token norms: a sensible strength is a fraction of these.
    encoder = Encoder(model, tokenizer)
    import torch

    with torch.no_grad(), capture(model, vector.layers) as records:
        for text in neutral_texts()[:3]:
            model(input_ids=torch.tensor([encoder.token_ids(text, "text", prompt=True)]), use_cache=False)
    for layer in vector.layers:
        norms = [float(n) for r in records[layer] for n in r[0, 1:].norm(dim=-1)]
        shares = ", ".join(f"{kind} {values[layer]:.2f}" for kind, values in vector.explained.items())
        print(
            f"  block {layer}: |v| = {float(vector.vectors[layer].norm()):.3f}, median token norm "
            f"{statistics.median(norms):.1f}, explained share: {shares}"
        )
    if vector.method == "grains" and vector.params.get("exact"):
        print(f"  {vector.params['attribution']} attribution: exact (no integration error)")
    if vector.method == "grains" and vector.params.get("median_relative_error") is not None:
        kind = {"lrp": "LRP conservation", "input_x_gradient": "input x gradient completeness"}.get(
            str(vector.params.get("attribution")), "contrastive IG completeness"
        )
        print(
            f"  {kind}: median relative error {vector.params['median_relative_error']:.3g}, "
            f"max {vector.params['max_relative_error']:.3g}; {vector.params['n_unconverged']} of "
            f"{vector.n_examples} pairs ({vector.params['unconverged_share']:.0%}) did not converge at tol "
            f"{vector.params['converged_tol']:g}"
        )
    if args.strength is not None:
        if not held:
            print("  (no held-out pairs to evaluate: pass --fit N to split)")
            return 0
        result = evaluate(model, tokenizer, held, vector, strength=args.strength, neutral=neutral_texts())
        print(
            f"  held-out ({result.n_examples} pairs) at strength {args.strength:g}: accuracy "
            f"{result.accuracy_before:.3f} -> {result.accuracy_after:.3f}, mean margin "
            f"{result.margin_before:+.3f} -> {result.margin_after:+.3f}, neutral perplexity "
            f"{result.perplexity_before:.2f} -> {result.perplexity_after:.2f}"
        )
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch

    from ..errors import InputError
    from ..steering import SteeringVector
    from ..steering.examples import Encoder

    if args.max_new_tokens < 1:
        raise InputError("max_new_tokens", f"expected an integer >= 1, got {args.max_new_tokens}")
    model, tokenizer = load_model(args.model)
    vector = SteeringVector.load(args.vector)
    encoder = Encoder(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: dict[str, list[str]] = {"unsteered": [], "steered": []}
    for prompt in args.prompts:
        text = prompt
        if args.chat:
            if getattr(tokenizer, "chat_template", None) is None:
                raise InputError("chat", "the tokenizer has no chat template")
            messages = [{"role": "user", "content": prompt}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([encoder.token_ids(text, "prompts", prompt=not args.chat)])
        options = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "pad_token_id": pad}
        with torch.no_grad():
            plain = model.generate(input_ids=ids, **options)
            with vector.apply(model, args.strength, layers=args.layers):
                steered = model.generate(input_ids=ids, **options)
        print(f"prompt: {prompt}")
        for key, label, out in (
            ("unsteered", "unsteered", plain),
            ("steered", f"steered (strength {args.strength:g})", steered),
        ):
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            outputs[key].append(text)
            print(f"  {label}: {text}")
    if args.judge is not None:
        from ..steering.judges import judge

        scorer = judge(args.judge)
        before, after = scorer(outputs["unsteered"]), scorer(outputs["steered"])
        mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
        goal = "higher" if scorer.target > 0 else "lower"
        print(
            f"judge {scorer.name} ({scorer.description}; {goal} is the goal): unsteered {mean_before:+.3f} -> "
            f"steered {mean_after:+.3f} (mean of {len(before)} continuation{'s' if len(before) != 1 else ''}; "
            f"per prompt: {', '.join(f'{b:+.2f}->{a:+.2f}' for b, a in zip(before, after))})"
        )
    return 0
