"""Text tables show evidence on both sides, the toxicity model's multi-label prediction, contrastive foils in
captions, and whitespace tokens as visible labels in every view."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import torch

from integrand.errors import InputError
from integrand.viz.labels import evidence, foil_tokens, quote_tokens, two_sided_order, versus, visible_token
from integrand.viz.views import TokenPanel, token_view

MIXED = "The plot was dull but the acting was superb"
CLEAN = "thanks for fixing the references"
INSULT = "you are a stupid idiot"


@pytest.fixture(scope="module")
def toxicity() -> Any:
    pytest.importorskip("h5py")
    from integrand.text.explainer import TextExplainer

    torch.set_num_threads(1)
    return TextExplainer.from_pretrained("toxicity")


# ---- evidence on both sides ---------------------------------------------------------------------


def test_evidence_keeps_each_sign_on_its_own_side() -> None:
    ev = evidence(["a", "b", "c", "d", "e"], torch.tensor([0.5, -2.0, 0.0, 3.0, -0.1]), k=1)
    assert ev.supporting == (("d", 3.0),) and ev.opposing == (("b", -2.0),)
    # All-negative scores (clean text explained for "toxic"): nothing is "for", the strongest is "against".
    ev = evidence(["x", "y"], torch.tensor([-0.125, -0.75]), k=3)
    assert ev.supporting == () and ev.opposing == (("y", -0.75), ("x", -0.125))
    assert ev.rows()[0] == ("(none)", "", "y", "-0.75") and "for: none" in ev.line()
    with pytest.raises(InputError) as err:
        evidence(["x"], torch.tensor([1.0, 2.0]))
    assert err.value.argument == "scores"


def test_two_sided_order_never_hides_a_sign() -> None:
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, -0.5, 0.0, -0.2])
    order = two_sided_order(scores, 4)
    assert 4 in order and 6 in order  # the two negatives get their half of the places
    assert order == [0, 1, 4, 6]  # strongest magnitude first
    assert two_sided_order(torch.tensor([0.0, 1.0]), 5) == [1, 0]  # zeros fill the remaining places


def test_cli_explain_table_shows_the_negative_word(toxicity: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """'superb' lowers the toxic score most; a top-8-by-signed-score table of the 9 words dropped it."""
    from integrand.cli import main

    assert main(["explain", MIXED, "--target", "toxic", "--steps", "16"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("strongest words on both sides"):]
    assert "against toxic" in table and "superb" in table
    result = toxicity(MIXED, target="toxic", steps=16)
    ev = result.to_rich()  # the same renderable the CLI prints
    assert ev is not None
    from integrand.text.views import summary_text, word_evidence

    words = word_evidence(result)
    assert words.supporting == () and words.opposing[0][0] == "superb"
    text = summary_text(result)
    assert "words for toxic: none" in text and "superb" in text.splitlines()[2]


def test_html_views_show_both_sides(toxicity: Any) -> None:
    result = toxicity(INSULT + " but thanks", target="toxic", steps=16)
    assert (result.word_scores > 0).any() and (result.word_scores < 0).any()
    html = result.to_html()
    assert "for toxic" in html and "against toxic" in html
    from integrand.viz.html import token_html

    panel = TokenPanel("t", ("good", "bad", "meh"), torch.tensor([1.0, -2.0, 0.0]))
    part = token_html(panel)
    evidence_table = part[part.index('data-table="evidence"'):]
    assert "good" in evidence_table and "bad" in evidence_table and "meh" not in evidence_table


def test_terminal_view_shows_both_sides() -> None:
    from rich.console import Console

    from integrand.viz.terminal import print_result

    view = token_view(["good", "bad", "meh"], torch.tensor([1.0, -2.0, 0.0]))
    console = Console(file=io.StringIO(), width=100, color_system=None)
    print_result(view, console=console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "for (+)" in out and "against (-)" in out
    row = next(line for line in out.splitlines() if "good" in line and "bad" in line and "meh" not in line)
    assert "+1" in row and "-2" in row


# ---- the toxicity model's multi-label policy -------------------------------------------------------


def test_toxicity_prediction_is_multi_label(toxicity: Any) -> None:
    from integrand.text.toxicity import classify, predicted_labels

    model, tokenizer = toxicity.model, toxicity.tokenizer
    clean, insult = classify(model, tokenizer, [CLEAN, INSULT])
    assert predicted_labels(clean) == ["none"]
    got = predicted_labels(insult)
    assert "toxic" in got and "insult" in got and "none" not in got
    assert predicted_labels(insult, threshold=0.999) == ["none"]
    for bad in (0.0, 1.0, True, "0.5"):
        with pytest.raises(InputError) as err:
            predicted_labels(insult, threshold=bad)  # type: ignore[arg-type]
        assert err.value.argument == "threshold"
    with pytest.raises(InputError) as err:
        predicted_labels([0.9, 0.1])
    assert err.value.argument == "probabilities"


def test_views_use_the_policy(toxicity: Any) -> None:
    from integrand.text.views import prediction, summary_line
    from integrand.viz.adapters import as_view

    clean = toxicity(CLEAN, target="toxic", steps=8)
    assert prediction(clean) == "none"
    assert summary_line(clean).startswith("predicted none")
    assert as_view(clean).examples[0].info.prediction == "none"
    insult = toxicity(INSULT, steps=8)
    assert as_view(insult).examples[0].info.prediction == "toxic, obscene, insult"


# ---- visible whitespace and contrastive foils ---------------------------------------------------------


def test_whitespace_tokens_get_visible_labels() -> None:
    assert visible_token("\n") == "⏎" and visible_token(" ") == "␣" and visible_token("  ") == "␣␣"
    assert visible_token("\t") == "⇥" and visible_token("") == "∅" and visible_token(" Paris") == " Paris"
    assert visible_token(".\n\n") == ".⏎⏎"
    from integrand.viz.html import result_html
    from integrand.viz.terminal import render

    view = token_view(["Hello", "\n", " ", "world"], torch.tensor([1.0, -1.0, 0.5, 0.2]))
    html = result_html(view)
    spans = re.findall(r'<span class="tok"[^>]*>([^<]*)</span>', html)
    assert spans == ["Hello", "⏎", "␣", "world"]
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(view))
    assert "⏎" in console.file.getvalue()  # type: ignore[attr-defined]


def test_whitespace_labels_in_figures() -> None:
    pytest.importorskip("matplotlib")
    from integrand.viz.figures import matrix_figure, token_figure

    fig = token_figure(["a", "\n", " "], torch.tensor([1.0, 0.0, -1.0]))
    assert {t.get_text() for t in fig.axes[0].texts} == {"a", "⏎", "␣"}
    fig = matrix_figure(["x", "\n"], ["\n"], torch.tensor([[0.5, -0.5]]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "⏎"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["⏎"]


def _generation(params: dict[str, Any]) -> Any:
    from integrand.generation import GenerationAttribution

    tokens = ("The", " capital", "\n", " is", " Paris")
    score_input, score_baseline = torch.tensor([2.0]), torch.tensor([0.5])
    matrix = torch.tensor([[0.5, 0.25, 0.5, 0.25]])
    return GenerationAttribution(
        tokens=tokens, token_ids=torch.arange(5), n_prompt=4, matrix=matrix, step_scores={},
        score_input=score_input, score_baseline=score_baseline, delta=score_input - score_baseline - matrix.sum(1),
        steps=torch.tensor([8]), converged=torch.tensor([True]), method="integrated_gradients",
        score="contrast_log_prob_diff", fixed_positions=(0,), params=params,
    )


def test_foil_in_captions_and_views() -> None:
    assert quote_tokens((" Paris",)) == "' Paris'" and quote_tokens("a\nb") == "'a⏎b'"
    assert versus((" Paris",), (" Lyon",)) == "' Paris' vs ' Lyon'" and versus([" Paris"], None) == "' Paris'"
    assert foil_tokens({"foil_tokens": [" Lyon"]}) == (" Lyon",) and foil_tokens({"contrast": " Lyon"}) == (" Lyon",)
    assert foil_tokens({}) is None and foil_tokens(None) is None and foil_tokens({"contrast": [1]}) is None
    from integrand.viz.adapters import as_view
    from integrand.viz.html import result_html

    res = _generation({"foil_tokens": [" Lyon"]})
    view = as_view(res)
    assert view.title == "integrated_gradients: ' Paris' vs ' Lyon'"
    for html in (res.to_html(), result_html(res)):
        assert "&#x27; Paris&#x27; vs &#x27; Lyon&#x27;" in html and "(&#x27; Paris&#x27;,)" not in html
        assert "⏎" in html  # the newline source token is a visible column label
    plain = as_view(_generation({}))
    assert plain.title == "integrated_gradients: ' Paris'"
