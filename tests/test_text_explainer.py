"""TextExplainer: toxicity insults, completeness, batching, padding, special tokens, HF loading, bad input."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from integrand import InputError, ModelError
from integrand.text import CallableTokenizer, TextExplainer, TokenAttribution, TruncationWarning

# The package re-exports the function under the module's name, so fetch the module itself.
ig_module = importlib.import_module("integrand.methods.integrated_gradients")
INSULT = "you are a stupid idiot"


@pytest.fixture(scope="module")
def toxicity() -> TextExplainer:
    return TextExplainer.from_pretrained("toxicity")


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record every layer-IG call the explainer makes: the padded ids, its kwargs and the result."""
    calls: list[dict[str, Any]] = []
    real = ig_module.integrated_gradients

    def recording(model: Any, inputs: Any, target: Any = None, **kwargs: Any) -> Any:
        result = real(model, inputs, target, **kwargs)
        calls.append({"ids": inputs, "kwargs": kwargs, "result": result})
        return result

    monkeypatch.setattr(ig_module, "integrated_gradients", recording)
    return calls


# ---------------------------------------------------------------- toxicity model (issue point 4)


@pytest.mark.parametrize("target", ["insult", "toxic"])
def test_insults_on_top_and_complete(toxicity: TextExplainer, target: str, state_guard: Any) -> None:
    guard = state_guard(toxicity.model)
    result = toxicity(INSULT, target=target, tol=1e-3)
    guard.assert_unchanged()
    assert isinstance(result, TokenAttribution)
    assert result.words == ("you", "are", "a", "stupid", "idiot")
    assert {w for w, _ in result.top_words(2)} == {"stupid", "idiot"}
    assert result.converged and result.relative_error <= 1e-3
    # Completeness from the numbers in the result itself.
    change = result.score_input - result.score_baseline
    assert abs(change - float(result.scores.sum())) <= 1e-3 * abs(change)
    assert result.target == target and result.predicted == "toxic" and result.multi_label
    assert result.predicted_labels == ("toxic", "obscene", "insult")
    assert float(result.probabilities[result.labels.index("insult")]) > 0.5


def test_probability_score_and_zero_embedding_baseline(toxicity: TextExplainer) -> None:
    prob = toxicity(INSULT, target="insult", score="probability", tol=1e-3)
    # The attributed score is the sigmoid probability the wheel reports.
    assert prob.score_input == pytest.approx(float(prob.probabilities[prob.labels.index("insult")]), abs=1e-6)
    assert prob.relative_error <= 1e-3
    zero = toxicity(INSULT, target="insult", baseline="zero", tol=1e-3)
    assert zero.baseline == "zero-embedding" and zero.relative_error <= 1e-3
    assert zero.score_baseline != pytest.approx(prob.score_baseline)
    assert {w for w, _ in zero.top_words(2)} == {"stupid", "idiot"}


def test_toxicity_padding_is_exactly_zero(toxicity: TextExplainer, spy: list[dict[str, Any]]) -> None:
    results = toxicity(["you idiot", INSULT], target="toxic", steps=16)
    (call,) = spy
    ids, values = call["ids"], call["result"].values
    # Front padding (id 0) is part of the model's input; it stays the pad token in the baseline.
    pad = ids == 0
    assert pad.sum() == 2 * 100 - 2 - 5
    assert torch.equal(values[pad], torch.zeros_like(values[pad]))
    assert all(len(r.tokens) == len(r.words) for r in results)


def test_agrees_with_captum_layer_ig(toxicity: TextExplainer) -> None:
    import copy

    from captum.attr import LayerIntegratedGradients

    model = copy.deepcopy(toxicity.model).double()
    explainer = TextExplainer(model, toxicity.tokenizer)
    ours = explainer(INSULT, target="insult", steps=32)
    ids = torch.tensor([toxicity.tokenizer.encode(INSULT).ids])
    lig = LayerIntegratedGradients(model, model.embedding)
    theirs = lig.attribute(ids, baselines=torch.zeros_like(ids), target=4, n_steps=32, method="gausslegendre")
    theirs = theirs.sum(dim=-1)[0]
    assert torch.equal(theirs[:-5], torch.zeros(95, dtype=theirs.dtype))
    assert torch.allclose(ours.scores, theirs[-5:], rtol=1e-7, atol=1e-9)


def test_results_plug_into_the_generic_views(toxicity: TextExplainer) -> None:
    from integrand.viz.adapters import as_view

    view = as_view(toxicity(INSULT, target="insult", steps=8))
    assert view.kind == "tokens" and [p.name for p in view.examples[0].panels] == ["tokens", "words"]
    # The multi-label policy: every label with p >= 0.5, not just the first one.
    assert view.examples[0].info.label == "insult" and view.examples[0].info.prediction == "toxic, obscene, insult"


# ---------------------------------------------------------------- a tiny Hugging Face classifier saved and reloaded


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is", "great", "awful", "##ly",
         "not", "a", "film", "<img", "src=x", "onerror=alert(1)>"]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(WORDS), encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab), model_max_length=12)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def bert(bert_dir: Path) -> TextExplainer:
    return TextExplainer.from_pretrained(bert_dir)


def test_from_pretrained_local_dir(bert: TextExplainer, state_guard: Any) -> None:
    assert bert.labels == ("negative", "neutral", "positive") and not bert.multi_label and bert.attention_mask
    assert bert.embedding_name == "bert.embeddings.word_embeddings"
    guard = state_guard(bert.model)
    result = bert("the movie is awfully good", target="positive", tol=1e-3)
    guard.assert_unchanged()
    assert result.tokens == ("[CLS]", "the", "movie", "is", "awful", "##ly", "good", "[SEP]")
    # Sub-word pieces merge into their word; the word text comes from the original string.
    assert result.words == ("the", "movie", "is", "awfully", "good")
    assert result.word_scores[3] == pytest.approx(float(result.scores[4] + result.scores[5]), abs=1e-7)
    assert result.relative_error <= 1e-3
    assert float(result.probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
    assert result.predicted == LABELS[int(result.probabilities.argmax())]


def test_special_tokens_fixed_in_baseline(bert: TextExplainer, spy: list[dict[str, Any]]) -> None:
    kept = bert("the movie is good", target=0, steps=32)
    freed = bert("the movie is good", target=0, steps=32, keep_special=False)
    base_kept = spy[0]["kwargs"]["input_baseline"][0]
    base_free = spy[1]["kwargs"]["input_baseline"][0]
    assert base_kept.tolist() == [2, 0, 0, 0, 0, 3]  # [CLS] and [SEP] stay, content -> [PAD]
    assert base_free.tolist() == [0] * 6
    assert kept.special.tolist() == [True, False, False, False, False, True]
    assert torch.equal(kept.scores[kept.special], torch.zeros(2))
    assert bool((freed.scores[freed.special] != 0).all())
    mask = bert("the movie is good", target=0, steps=8, baseline="mask")
    assert spy[2]["kwargs"]["input_baseline"][0].tolist() == [2, 4, 4, 4, 4, 3] and mask.baseline == "mask"
    unk = bert("the movie is good", target=0, steps=8, baseline=13)
    assert spy[3]["kwargs"]["input_baseline"][0].tolist() == [2, 13, 13, 13, 13, 3] and unk.baseline == "id 13"


def test_batch_of_different_lengths_equals_one_at_a_time(bert_dir: Path, spy: list[dict[str, Any]]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(bert_dir).double().eval()
    explainer = TextExplainer(model, AutoTokenizer.from_pretrained(bert_dir))
    texts = ["good", "the movie is not a great film", "awful film", "the film is great"]
    batched = explainer(texts, target="positive", steps=24)
    assert len(spy) == 1 and spy[0]["ids"].shape == (4, 9)
    for text, together in zip(texts, batched):
        alone = explainer(text, target="positive", steps=24)
        assert alone.tokens == together.tokens
        assert torch.allclose(alone.scores, together.scores, rtol=0, atol=1e-10)
        assert alone.delta == pytest.approx(together.delta, abs=1e-10)
    # Internal padding: attention mask 0 and exactly zero attribution.
    ids, mask, values = spy[0]["ids"], spy[0]["kwargs"]["forward_kwargs"]["attention_mask"], spy[0]["result"].values
    pad = mask == 0
    assert int(pad.sum()) == 9 * 4 - sum(len(r.tokens) for r in batched)
    assert bool((ids[pad] == 0).all()) and torch.equal(values[pad], torch.zeros_like(values[pad]))


def test_float32_batch_matches_single(bert: TextExplainer) -> None:
    texts = ["good", "the movie is not a great film"]
    batched = bert(texts, target="negative", tol=1e-4)
    for text, together in zip(texts, batched):
        alone = bert(text, target="negative", tol=1e-4)
        assert torch.allclose(alone.scores, together.scores, rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip(bert: TextExplainer, tmp_path: Path) -> None:
    result = bert("the movie is awfully good", target="neutral", steps=16)
    loaded = TokenAttribution.load(result.save(tmp_path / "r.safetensors"))
    assert loaded.to_dict() == result.to_dict()
    assert torch.equal(loaded.scores, result.scores) and loaded.word_ids == result.word_ids
    with pytest.raises(InputError) as info:
        TokenAttribution.load(_other_file(tmp_path))
    assert info.value.argument == "path"


def _other_file(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    return path


def test_html_escapes_every_token() -> None:
    xss = "<img src=x onerror=alert(1)>"
    vocab = {0: "[pad]", 1: xss, 2: "good", 3: '"quoted" & <b>bold</b>'}
    tok = CallableTokenizer(lambda text: [1 if w.startswith("<") else 2 if w == "good" else 3 for w in text.split("|")],
                            vocab=vocab, vocab_size=4)
    model = BagModel(vocab=4).eval()
    result = TextExplainer(model, tok, labels=["no", "<script>yes</script>"])(f"{xss}|good|x", target=1, steps=8)
    assert result.tokens == (xss, "good", vocab[3])
    html = result.to_html()
    assert "<img" not in html and "<script>" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;yes" in html
    assert html.count('<span class="tok') == len(result.tokens)


def test_rich_view_prints_tokens_verbatim(bert: TextExplainer) -> None:
    from rich.console import Console

    result = bert("[bold]good[/bold] movie", target="positive", steps=8)
    console = Console(record=True, width=120, color_system="truecolor")
    result.print(console)
    text = console.export_text()
    assert "good" in text and "completeness error" in text
    assert "rgb" in console.export_html() or "background" in console.export_html()


# ---------------------------------------------------------------- custom model + callable tokenizer


class BagModel(nn.Module):
    """Mean of embeddings -> linear: the order-free model has IG = closed form per token."""

    def __init__(self, vocab: int = 12, dim: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(self.emb(ids).mean(dim=1))
        return out


def _char_tokenizer(text: str) -> list[int]:
    return [1] + [2 + (ord(c) % 10) for c in text if c != " "]


def test_custom_model_and_callable_tokenizer_closed_form() -> None:
    model = BagModel().double().eval()
    tok = CallableTokenizer(_char_tokenizer, pad_id=0, special_ids=[1], vocab_size=12)
    explainer = TextExplainer(model, tok, labels=["no", "yes"])
    assert not explainer.attention_mask
    texts = ["abc", "hello", "xyz", "hi"]
    results = explainer(texts, target="yes", steps=4)
    for text, result in zip(texts, results):
        ids = torch.tensor(_char_tokenizer(text))
        # Linear in the embeddings: IG = w . (e(x_i) - e(pad)) / n for content tokens, exactly.
        w = model.out.weight[1]
        expected = (model.emb.weight[ids] - model.emb.weight[0]) @ w / len(ids)
        expected[0] = 0.0
        assert torch.allclose(result.scores, expected.detach(), atol=1e-12)
        assert abs(result.delta) < 1e-12
        alone = explainer(text, target="yes", steps=4)
        assert torch.equal(alone.scores, result.scores)


# ---------------------------------------------------------------- bad input (issue point 5)


def test_empty_text_rejected(toxicity: TextExplainer, bert: TextExplainer) -> None:
    for explainer in (toxicity, bert):
        for bad in ("", "   "):
            with pytest.raises(InputError) as info:
                explainer(["fine text", bad])
            assert info.value.argument == "texts" and "text 1 is empty" in str(info.value)
    with pytest.raises(InputError, match="texts"):
        toxicity([])
    with pytest.raises(InputError, match="no token in the model's vocabulary"):
        toxicity("qqzzxxyy")


def test_long_text_truncated_with_warning(toxicity: TextExplainer, bert: TextExplainer) -> None:
    long_bert = " ".join(["good movie"] * 20)
    with pytest.warns(TruncationWarning, match="truncated"):
        result = bert(long_bert, steps=8)
    assert result.truncated and len(result.tokens) == 12 and result.tokens[-1] == "[SEP]"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not bert("good movie", steps=8).truncated
    with pytest.warns(TruncationWarning):
        tox = toxicity(" ".join(["the"] * 120) + " idiot", steps=8)
    assert tox.truncated and len(tox.tokens) == 100 and tox.tokens[-1] == "idiot"
    assert "truncated" in tox.to_html()


def test_predict_matches_the_wheel_readme(toxicity: TextExplainer) -> None:
    probs = toxicity.predict(["You are so dumb and stupid!", "Have a nice day :)", "You're disgusting!"])
    assert [f"{m:.4f}" for m in probs.mean(dim=1).tolist()] == ["0.4347", "0.0115", "0.3110"]
    assert probs[0, 0] == pytest.approx(0.9889402985572815, abs=1e-6)


def test_unknown_label(toxicity: TextExplainer, state_guard: Any) -> None:
    guard = state_guard(toxicity.model)
    with pytest.raises(InputError) as info:
        toxicity(INSULT, target="insults")
    assert info.value.argument == "target" and "'insult'" in str(info.value) and "identity_hate" in str(info.value)
    with pytest.raises(InputError, match="out of range"):
        toxicity(INSULT, target=6)
    with pytest.raises(InputError, match="2 targets for 1 texts"):
        toxicity([INSULT], target=["toxic", "insult"])
    guard.assert_unchanged()


def test_vocabulary_mismatch(bert_dir: Path, toxicity: TextExplainer) -> None:
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(bert_dir)
    # The toxicity model's 20000-row embedding cannot take ids from another 19-word vocabulary? It can:
    # ids fit, so check the other way round: a 20000-word tokenizer for the 19-row BERT.
    with pytest.raises(InputError) as info:
        TextExplainer(_bert_model(bert_dir), toxicity.tokenizer)
    assert info.value.argument == "tokenizer" and "20000" in str(info.value) and "19" in str(info.value)
    # A callable tokenizer that does not announce its size is caught at encoding time.
    explainer = TextExplainer(BagModel().eval(), lambda text: [3, 40, 5])
    with pytest.raises(InputError) as info:
        explainer("abc")
    assert info.value.argument == "tokenizer" and "outside the model's embedding" in str(info.value)
    assert len(hf_tok) == len(WORDS)


def _bert_model(folder: Path) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def test_other_bad_arguments(bert: TextExplainer, bert_dir: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"method": "shap"}, "method"),
        ({"baseline": "blank"}, "baseline"),
        ({"baseline": 999}, "baseline"),
        ({"score": "softmax"}, "score"),
        ({"text_batch": 0}, "text_batch"),
    ]
    for kwargs, argument in cases:
        with pytest.raises(InputError) as info:
            bert("good movie", **kwargs)
        assert info.value.argument == argument, kwargs
    with pytest.raises(InputError) as info:
        TextExplainer(_bert_model(bert_dir), bert.tokenizer, embedding="bert.embedings.word_embeddings")
    assert info.value.argument == "embedding" and "close matches: bert.embeddings.word_embeddings" in str(info.value)
    with pytest.raises(InputError) as info:
        TextExplainer.from_pretrained(bert_dir.parent / "missing")
    assert info.value.argument == "model"
    model = _bert_model(bert_dir).train()
    with pytest.raises(ModelError, match="training mode"):
        TextExplainer(model, bert.tokenizer)("good movie")
    assert model.training


def test_pad_batch_sides_and_groups() -> None:
    from integrand.text.batching import length_groups, pad_batch

    short = CallableTokenizer(lambda t: [1, 5], special_ids=[1], vocab_size=9, pad_id=0)
    encodings = [short.encode("a"), CallableTokenizer(lambda t: [1, 5, 6, 7], special_ids=[1]).encode("b")]
    for side, ids_row, mask_row in (("right", [1, 5, 0, 0], [1, 1, 0, 0]), ("left", [0, 0, 1, 5], [0, 0, 1, 1])):
        tok = CallableTokenizer(lambda t: [], pad_id=0, padding_side=side)
        ids, mask, padding, special = pad_batch(tok, torch.device("cpu"), encodings)
        assert ids[0].tolist() == ids_row and mask[0].tolist() == mask_row
        assert padding[0].tolist() == [m == 0 for m in mask_row] and not bool(padding[1].any())
        assert special[0].tolist() == [i == 1 for i in ids_row] and special[1].tolist() == [True, False, False, False]
    lengths = [short.encode("x")] * 3 + encodings[1:] * 2
    assert length_groups(lengths, masked=True, text_batch=4) == [[0, 1, 2, 3], [4]]
    assert length_groups(lengths, masked=False, text_batch=4) == [[0, 1, 2], [3, 4]]
