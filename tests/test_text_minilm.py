"""The MiniLM sentiment model (head fitted at first use, cached), explained; the explain CLI and the text demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from integrand.cli import main
from integrand.defaults import TOL
from integrand.text import TextExplainer


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private user cache dir for the module: the head is fitted once, then reused from there."""
    home = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def minilm(cache_home: Path) -> Any:
    from integrand.text.minilm import load_minilm_sentiment

    return load_minilm_sentiment()


def test_head_cached_as_safetensors_under_user_cache(minilm: Any, cache_home: Path) -> None:
    from safetensors.torch import load_file

    from integrand.text.minilm import load_minilm_sentiment

    model, _, report = minilm
    assert report.path.suffix == ".safetensors" and report.path.is_relative_to(cache_home)
    assert set(load_file(str(report.path))) == {"weight", "bias"}
    assert not list(report.path.parent.glob("*.pkl")) and not list(report.path.parent.glob("*.pt"))
    assert report.held_out_words > 500 and report.held_out_accuracy > 0.85
    again, _, report2 = load_minilm_sentiment()
    assert report2.path == report.path and torch.equal(again.head.weight, model.head.weight)
    assert report2.held_out_accuracy == report.held_out_accuracy


def test_sentence_predictions_and_pooling(minilm: Any) -> None:
    model, tok, _ = minilm
    texts = ["I love this wonderful movie", "This is a terrible, awful film"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(enc["input_ids"], enc["attention_mask"]).softmax(dim=-1)
        alone = model.embed(tok(texts[1:], return_tensors="pt")["input_ids"])
        batched = model.embed(enc["input_ids"], enc["attention_mask"])[1:]
    assert probs[0, 1] > 0.7 and probs[1, 0] > 0.7
    # Mean pooling ignores padding; embeddings have unit norm (sentence-transformers' recipe).
    assert torch.allclose(alone, batched, atol=1e-5)
    assert torch.allclose(alone.norm(dim=-1), torch.ones(1), atol=1e-6)


def test_explained_sentiment(minilm: Any, state_guard: Any) -> None:
    model, tok, _ = minilm
    explainer = TextExplainer(model, tok)
    assert explainer.attention_mask and explainer.labels == ("negative", "positive")
    guard = state_guard(model)
    texts = ["I love this wonderful movie", "what a terrible film"]
    results = explainer(texts, tol=1e-3)
    guard.assert_unchanged()
    pos, neg = results
    assert pos.predicted == pos.target == "positive" and neg.predicted == neg.target == "negative"
    assert {w for w, _ in pos.top_words(2)} & {"love", "wonderful"}
    assert neg.top_words(1)[0][0] == "terrible"
    for r in results:
        assert r.converged and r.relative_error <= 1e-3
        assert r.tokens[0] == "[CLS]" and r.tokens[-1] == "[SEP]"
        assert torch.equal(r.scores[r.special], torch.zeros(2))
    alone = explainer(texts[1], tol=1e-3)
    assert torch.allclose(alone.scores, neg.scores, rtol=1e-3, atol=1e-4)


def test_cli_explain_writes_json_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    argv = ["explain", "you are a stupid idiot", "<b>hello</b> friend", "--target", "insult",
            "--json", str(out_json), "--html", str(out_html)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "idiot" in printed and "completeness error" in printed
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert [d["target"] for d in data] == ["insult", "insult"]
    assert {w for w, _ in sorted(zip(data[0]["words"], data[0]["word_scores"]), key=lambda p: -p[1])[:2]} == {
        "stupid", "idiot"}
    assert all(d["relative_error"] <= TOL for d in data)  # the CLI's one default tolerance
    html = out_html.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "<b>hello" not in html and "&lt;b&gt;hello" in html


def test_cli_explain_errors_name_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "you idiot", "--target", "insolt", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "target" in err and "did you mean 'insult'" in err
    assert main(["explain", "", "--quiet"]) == 2
    assert "texts" in capsys.readouterr().err


def test_cli_explain_local_hf_dir_and_minilm(minilm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    model, tok, _ = minilm
    folder = tmp_path / "hf"
    tok.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, id2label={0: "meh", 1: "yay"}, label2id={"meh": 0, "yay": 1})
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    out = tmp_path / "hf.json"
    assert main(["explain", "nice film", "--model", str(folder), "--target", "yay", "--steps", "16",
                 "--json", str(out), "--quiet"]) == 0
    (row,) = json.loads(out.read_text(encoding="utf-8"))
    assert row["target"] == "yay" and row["tokens"] == ["[CLS]", "nice", "film", "[SEP]"]
    out = tmp_path / "minilm.json"
    assert main(["explain", "a wonderful day", "--model", "minilm-sentiment", "--json", str(out), "--quiet"]) == 0
    (row,) = json.loads(out.read_text(encoding="utf-8"))
    assert row["predicted"] == "positive" and row["relative_error"] <= TOL


def test_demo_text_section(minilm: Any, tmp_path: Path) -> None:
    from integrand.demo import text

    html = text.run(tmp_path)
    assert "Toxicity" in html and "Sentiment" in html and html.count('<span class="tok') > 20
    saved = sorted(p.name for p in tmp_path.glob("text_*.safetensors"))
    assert len(saved) == len(text.TOXIC_TEXTS) + len(text.SENTIMENT_TEXTS)
