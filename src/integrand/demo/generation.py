"""Demo section: which prompt tokens make SmolLM2-135M-Instruct answer " Paris" (and not " Lyon")."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ..defaults import TOL

TITLE = "Generation: attributing an LLM's answer to its prompt"
PROMPT = "The capital of France is"


def run(out: Path) -> str:
    from ..generation import GenerationExplainer
    from ..generation.smollm import load_smollm2
    from ..viz.labels import foil_tokens, quote_tokens, versus

    model, tokenizer = load_smollm2()
    gx = GenerationExplainer(model, tokenizer)
    forced = gx(PROMPT, target=" Paris", method="integrated_gradients", tol=TOL)
    contrast = gx(PROMPT, target=" Paris", contrast=" Lyon", method="integrated_gradients", tol=TOL)
    parts = []
    for name, res in (("forced", forced), ("contrast", contrast)):
        print("   " + res.summary().replace("\n", "\n   "))
        res.save(out / f"generation_{name}.safetensors")
        attributed = versus(res.target_tokens, foil_tokens(res.params))  # the result records its foil
        parts.append(res.to_html(title=f"{quote_tokens(PROMPT)} -> {attributed}: {res.score}"))
    top = ", ".join(f"{tok!r} ({value:+.2f})" for _, tok, value in forced.top_sources(3))
    rel = forced.relative_error
    note = (
        f"SmolLM2-135M-Instruct; the first position (attention sink) stays fixed, other positions start from the "
        f"{forced.params['baseline']!r} baseline ('mean': the mean embedding of the non-special tokens). "
        f"Top sources of ' Paris': {top}; relative completeness error "
        f"{float(rel[0]) if rel is not None else float('nan'):.1e} after {int(forced.steps[0])} points."
    )
    return f"<p>{escape(note)}</p>" + "".join(parts)
