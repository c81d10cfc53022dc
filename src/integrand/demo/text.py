"""Demo section: token attributions of the two embedded text models (toxicity BiLSTM, MiniLM sentiment)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from ..defaults import TOL

TITLE = "Text: which words drive a toxicity and a sentiment prediction"
TOLERANCE = TOL
TOXIC_TEXTS = (
    "you are a stupid idiot",
    "You are so dumb and stupid!",
    "I hate you so much!",
    "Have a nice day :)",
)
SENTIMENT_TEXTS = (
    "I love this wonderful movie",
    "This is a terrible, awful film",
    "The food was great but the service was horrible",
)


def _report(name: str, results: list, out: Path) -> str:  # type: ignore[type-arg]
    from ..text.views import prediction, word_evidence

    parts = []
    for i, r in enumerate(results):
        top = word_evidence(r, 3).line()
        print(f"   [{name}] {r.text!r}: predicted {prediction(r)}, target {r.target}, words {top}, "
              f"rel. completeness error {r.relative_error:.1e}, steps {r.steps}")
        r.save(out / f"text_{name}_{i}.safetensors")
        parts.append(r.to_html(title=r.text))
    return "".join(parts)


def run(out: Path) -> str:
    from ..text.explainer import TextExplainer

    toxicity = TextExplainer.from_pretrained("toxicity")
    tox = toxicity(list(TOXIC_TEXTS), target="toxic", tol=TOLERANCE)
    sentiment = TextExplainer.from_pretrained("minilm-sentiment")
    senti = sentiment(list(SENTIMENT_TEXTS), tol=TOLERANCE)
    intro = (
        f"<p>Integrated gradients at the embedding layer, pad-token baseline, error-controlled to "
        f"tol={escape(str(TOLERANCE))} relative completeness error. Toxicity: the Jigsaw BiLSTM shipped in the "
        "toxic-comment-classifier wheel (ported to PyTorch), target 'toxic'. Sentiment: the MiniLM-L6 encoder with "
        "a head fitted on VADER lexicon words, target = predicted label.</p>"
    )
    return intro + "<h2>Toxicity</h2>" + _report("toxicity", tox, out) + "<h2>Sentiment</h2>" + _report(
        "sentiment", senti, out
    )
