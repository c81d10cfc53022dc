"""AttnLRP for classifiers: TextExplainer(method="lrp") and integrand.attribute(method="lrp") on a tiny BERT.

Conservation (exact with biases, position embeddings and attention outputs zeroed; reported otherwise),
forward bit-identical, model state unchanged after success and after an error, agreement between the
two entry points, refusal of models the rules are not defined for, and a MiniLM smoke test (slow).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

import integrand
from integrand.circuits import ATTNLRP, LRPRules, layout_for, lrp_rules
from integrand.circuits.lrp import LRP_TOL
from integrand.errors import ConvergenceWarning, InputError
from integrand.text import TextExplainer
from tests.test_lrp_transformers import _without_attention

D = torch.float64
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "is", "great", "awful",
         "##ly", "not", "a", "film"]  # fmt: skip
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
TEXTS = ["the movie is awfully good", "a bad film", "not a great movie is the film"]


def _classifier() -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        initializer_range=0.2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    return BertForSequenceClassification(config).to(D).eval()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import BertTokenizer

    vocab = tmp_path_factory.mktemp("lrp-bert") / "vocab.txt"
    vocab.write_text("\n".join(WORDS), encoding="utf-8")
    return BertTokenizer(str(vocab), model_max_length=12)


def _batch(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def test_conserved_with_biases_and_attention_outputs_zeroed(tokenizer: Any) -> None:
    model = _without_attention(_classifier())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # conserved: no warning
        results = TextExplainer(model, tokenizer)(TEXTS, target="positive", method="lrp")
        ids, mask = _batch(tokenizer)
        attr = integrand.attribute(model, ids, 2, method="lrp", forward_kwargs={"attention_mask": mask})
    # Only the epsilon stabiliser (1e-6 in every linear layer) keeps a share: tiny next to LRP_TOL.
    for r in results:
        assert r.method == "lrp" and r.baseline == "none" and r.score_baseline == 0.0 and r.steps == 1
        assert abs(float(r.scores.sum()) - r.score_input) <= 1e-4 * abs(r.score_input)
        assert r.relative_error <= 1e-4 and r.converged and r.params["lrp_conservation"] == pytest.approx(1, abs=1e-4)
    assert isinstance(attr.values, torch.Tensor) and attr.values.shape == (*ids.shape, 16)
    torch.testing.assert_close(attr.values.sum(dim=(1, 2)), attr.score_input, rtol=1e-4, atol=0)
    assert attr.relative_error is not None and float(attr.relative_error.max()) <= 1e-4
    assert bool(attr.converged.all()) and attr.params["converged_tol"] == LRP_TOL
    # Without the stabiliser the rules are exactly conservative here.
    exact = integrand.attribute(
        model, ids, 2, method="lrp", forward_kwargs={"attention_mask": mask}, rules=LRPRules(attention="attnlrp")
    )
    torch.testing.assert_close(exact.values.sum(dim=(1, 2)), exact.score_input, rtol=1e-9, atol=0)
    torch.testing.assert_close(exact.params["lrp_conservation"], [1.0] * len(TEXTS), rtol=0, atol=1e-9)

def test_unconserved_share_is_reported_and_judged(tokenizer: Any) -> None:
    model = _classifier()
    ids, mask = _batch(tokenizer)
    with pytest.warns(ConvergenceWarning, match="relevance misses more than 0.1"):
        attr = integrand.attribute(model, ids, 2, method="lrp", forward_kwargs={"attention_mask": mask})
    total = attr.values.sum(dim=(1, 2)).double()  # type: ignore[union-attr]
    score = attr.score_input.double()
    assert attr.delta is not None and attr.relative_error is not None
    torch.testing.assert_close(attr.delta.double(), score - total)
    torch.testing.assert_close(attr.relative_error.double(), (score - total).abs() / score.abs())
    torch.testing.assert_close(torch.tensor(attr.params["lrp_conservation"], dtype=D), total / score)
    assert attr.converged.tolist() == (attr.relative_error <= LRP_TOL).tolist()
    assert not bool(attr.converged.all())  # biases and the softmax's Taylor term keep a share here
    assert attr.params["rules"]["attention"] == "attnlrp" and attr.params["rules"]["linear"] == "epsilon"


def test_forward_bit_identical_and_scores_are_the_plain_logits(tokenizer: Any) -> None:
    model = _classifier()
    ids, mask = _batch(tokenizer)
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
        with lrp_rules(model, layout_for(model), ATTNLRP):
            ruled = model(ids, attention_mask=mask).logits
    assert torch.equal(plain, ruled)
    attr = _quiet(integrand.attribute, model, ids, 1, method="lrp", forward_kwargs={"attention_mask": mask})
    assert torch.equal(attr.score_input, plain[:, 1])
    # The rules change the backward pass: relevance differs from gradient x input.
    gxi = integrand.attribute(
        model, ids, 1, method="input_x_gradient", layer=model.get_input_embeddings(),
        forward_kwargs={"attention_mask": mask},
    )  # fmt: skip
    assert float((gxi.values - attr.values).abs().max()) > 1e-3 * float(gxi.values.abs().max())


def test_model_state_unchanged_after_success_and_after_errors(tokenizer: Any, state_guard: Any) -> None:
    model = _classifier()
    guard = state_guard(model)
    ids, mask = _batch(tokenizer)
    _quiet(TextExplainer(model, tokenizer), TEXTS, method="lrp")
    _quiet(integrand.attribute, model, ids, 0, method="lrp", forward_kwargs={"attention_mask": mask})
    guard.assert_unchanged()
    # Errors raised after the rules are switched on and the forward pass ran.
    with pytest.raises(InputError) as err:
        integrand.attribute(model, ids, 7, method="lrp", forward_kwargs={"attention_mask": mask})
    assert err.value.argument == "target"
    guard.assert_unchanged()

    def failing(output: torch.Tensor) -> torch.Tensor:
        raise InputError("target", "refused on purpose after the forward pass")

    with pytest.raises(InputError, match="on purpose"):
        integrand.attribute(model, ids, failing, method="lrp", forward_kwargs={"attention_mask": mask})
    guard.assert_unchanged()


def test_text_explainer_agrees_with_attribute(tokenizer: Any) -> None:
    model = _classifier()
    explainer = TextExplainer(model, tokenizer)
    results = _quiet(explainer, TEXTS, target=["negative", "neutral", "positive"], method="lrp")
    ids, mask = _batch(tokenizer)
    target = torch.tensor([0, 1, 2])
    attr = _quiet(integrand.attribute, model, ids, target, method="lrp", forward_kwargs={"attention_mask": mask})
    tokens = attr.values.sum(dim=-1)  # type: ignore[union-attr]
    for b, r in enumerate(results):
        n = len(r.tokens)
        torch.testing.assert_close(r.scores, tokens[b, :n], rtol=1e-12, atol=1e-15)
        assert float(tokens[b, n:].abs().sum()) == 0.0  # padding gets nothing
        assert r.score_input == float(attr.score_input[b]) and r.delta == pytest.approx(float(attr.delta[b]))
        assert r.params["lrp_conservation"] == pytest.approx(attr.params["lrp_conservation"][b])
    # A text alone scores as in the batch; token embeddings given directly agree with token ids;
    # one example per pass agrees with all at once.
    alone = _quiet(explainer, TEXTS[1], target="neutral", method="lrp")
    torch.testing.assert_close(alone.scores, results[1].scores, rtol=1e-10, atol=1e-14)
    embeds = model.get_input_embeddings()(ids).detach()
    direct = _quiet(integrand.methods.lrp, model, embeds, target, forward_kwargs={"attention_mask": mask})
    chunked = _quiet(integrand.methods.lrp, model, ids, target, forward_kwargs={"attention_mask": mask}, batch_size=1)
    torch.testing.assert_close(direct.values, attr.values, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(chunked.values, attr.values, rtol=1e-10, atol=1e-14)


def test_refusals_name_their_argument(tokenizer: Any) -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).to(D).eval()
    with pytest.raises(InputError) as err:
        integrand.attribute(mlp, torch.randn(2, 4, dtype=D), 0, method="lrp")
    assert err.value.argument == "method"
    assert "epsilon" in str(err.value) and "GPT-2, Llama-family and BERT" in str(err.value)

    class Recurrent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(len(WORDS), 4)
            self.rnn = torch.nn.GRU(4, 4, batch_first=True)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.head(self.rnn(self.emb(input_ids))[0][:, -1])
            return out

    with pytest.raises(InputError) as err:
        TextExplainer(Recurrent().eval(), tokenizer)("a good movie", method="lrp")
    assert err.value.argument == "method"
    model = _classifier()
    with pytest.raises(InputError) as err:
        TextExplainer(model, tokenizer)("a good movie", method="lrp", steps=8)
    assert err.value.argument == "steps"
    with pytest.raises(InputError) as err:
        integrand.attribute(model, torch.zeros(2, 3, 4, 5, dtype=torch.long), 0, method="lrp")
    assert err.value.argument == "inputs"
    with pytest.raises(InputError) as err:
        integrand.attribute(model, torch.zeros(2, 3, dtype=torch.long), 0, method="lrp", layer_side="input")
    assert err.value.argument == "layer_side"


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TextExplainer]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield TextExplainer.from_pretrained("minilm-sentiment")


@pytest.mark.slow
def test_minilm_top_words_are_the_sentiment_words(minilm: TextExplainer) -> None:
    # MiniLM's sentence embedding is L2-normalised, which LRP's rules leave scale-invariant, so
    # relevance keeps only a small share of the logit (reported, and warned about), yet it ranks words.
    texts = ["I love this wonderful movie", "This is a terrible, awful film"]
    with pytest.warns(ConvergenceWarning, match="LRP"):
        results = minilm(texts, target=["positive", "negative"], method="lrp")
    assert {w for w, _ in results[0].top_words(2)} == {"love", "wonderful"}
    assert {w for w, _ in results[1].top_words(2)} == {"terrible", "awful"}
    for r in results:
        assert not r.converged and r.relative_error > LRP_TOL
        assert r.params["lrp_conservation"] == pytest.approx(float(r.scores.sum()) / r.score_input, rel=1e-4)



# ---------------------------------------------------------------- the command line says "relevance conserved"


def test_cli_explain_and_generate_report_conservation_not_convergence(
    tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from integrand.cli import main
    from tests.reference.generation_oracle import tiny_lm

    classifier = tmp_path / "classifier"
    _classifier().save_pretrained(classifier)
    tokenizer.save_pretrained(classifier)
    assert main(["explain", "the movie is good", "a bad film", "--model", str(classifier), "--method", "lrp"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^relevance conserved: -?\d+%( to -?\d+%)? \(LRP tolerance 10%\)", out, re.M), out
    assert "converge" not in out.lower() and "Traceback" not in err
    assert main(["explain", "good", "--model", str(classifier), "--method", "lrp", "--steps", "4"]) == 2
    assert "steps" in capsys.readouterr().err

    lm, tok = tiny_lm("gpt2")
    folder = tmp_path / "lm"
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert main(["generate", "the cat sat on", "--model", str(folder), "--target", " the mat", "--method", "lrp"]) == 0
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert re.search(r"relevance conserved: -?\d+%( to -?\d+%)? \(LRP tolerance 10%\)", last), last
    assert "converge" not in out.lower() and "Traceback" not in err
