"""Encoder-decoder generation attribution side by side with Inseq in one process.

    .venv/bin/python bench/generation_seq2seq.py [--repeats N]

BART-like model (6 encoder + 6 decoder layers, hidden 256, vocab 32000, random weights, float32; word-level
tokenizer): 32-token source, 16 forced random target tokens, IG with Inseq's
conventions (unk baseline everywhere but the decoder start token) and the target's logit as score (a random
32000-word model gives every token a probability near 3e-5, where relative completeness errors are rounding).
Equal steps (32), then Inseq's default (50 steps) against integrand's error control at the largest of Inseq's
completeness errors.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from generation import measure, word_tokenizer

torch.set_num_threads(1)


def build() -> tuple[Any, Any]:
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=32000,
        d_model=256,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        max_position_embeddings=256,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=3,
        forced_eos_token_id=None,
    )
    model = BartForConditionalGeneration(config).eval()
    model.generation_config.forced_eos_token_id = None
    return model, word_tokenizer(32000)


def main() -> None:
    import inseq

    from integrand.generation import GenerationExplainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, tok = build()
    gen = torch.Generator().manual_seed(1)
    source = " ".join(f"w{int(i)}" for i in torch.randint(4, 32000, (32,), generator=gen))
    # Forced random targets: the random model's greedy continuation is EOS at once.
    target = " ".join(f"w{int(i)}" for i in torch.randint(4, 32000, (16,), generator=gen))
    gx = GenerationExplainer(model, tok, baseline="unk", fixed=0)
    first = gx(source, target=target, method="integrated_gradients", steps=2)
    wrapped = inseq.load_model(model, "integrated_gradients", tokenizer=tok)

    def run_inseq(n: int) -> torch.Tensor:
        out = wrapped.attribute(
            source, target, n_steps=n, attribute_target=True, attributed_fn="logit", show_progress=False
        )
        seq = out.sequence_attributions[0]

        def reduce(raw: torch.Tensor) -> torch.Tensor:
            return torch.nan_to_num(raw.double().sum(dim=-1), nan=0.0).T

        return torch.cat([reduce(seq.source_attributions), reduce(seq.target_attributions)[:, :-1]], dim=1)

    def ours(**kw: Any) -> Any:
        return gx(source, target=target, score="logit", method="integrated_gradients", **kw)

    t_inseq, m_inseq, inseq_32 = measure(lambda: run_inseq(32), args.repeats)
    t_ours, m_ours, res = measure(lambda: ours(steps=32), args.repeats)
    same = float((res.matrix.double() - inseq_32).abs().max() / inseq_32.abs().max())
    total = (res.score_input - res.score_baseline).double()
    t_def, m_def, inseq_50 = measure(lambda: run_inseq(50), args.repeats)
    inseq_err = (total - inseq_50.sum(1)).abs() / total.abs()
    tol = float(inseq_err.max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_tol, m_tol, res_tol = measure(lambda: ours(tol=tol), args.repeats)
    n_targets = len(res.target_tokens)
    lines = [
        f"### BART-like (6+6 layers, hidden 256): {first.n_encoder}-token source, {n_targets} targets "
        f"(best of {args.repeats})",
        "",
        "| run | wall s | peak RSS growth MiB | max rel. completeness error |",
        "|---|---|---|---|",
        f"| Inseq 0.7 integrated_gradients, n_steps=32 | {t_inseq:.2f} | {m_inseq:.0f} | |",
        f"| integrand, steps=32 (max rel. diff to Inseq {same:.1e}) | {t_ours:.2f} | {m_ours:.0f} | "
        f"{float(res.relative_error.max()):.1e} |",
        f"| Inseq 0.7 default n_steps=50 | {t_def:.2f} | {m_def:.0f} | {tol:.1e} |",
        f"| integrand, tol={tol:.1e}, {int(res_tol.steps[0])} points, converged {bool(res_tol.converged.all())} "
        f"| {t_tol:.2f} | {m_tol:.0f} | {float(res_tol.relative_error.max()):.1e} |",
        "",
        f"Speed-up at equal steps: {t_inseq / t_ours:.2f}x; error-controlled vs Inseq default: {t_def / t_tol:.2f}x.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
