"""The toxicity port against its README, and the restricted unpickler of its tokenizer."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from integrand.text.toxicity import (
    LABELS,
    MAX_LENGTH,
    KerasWordTokenizer,
    _RestrictedUnpickler,
    classify,
    load_toxicity,
    package_dir,
)

# Printed in the toxic-comment-classifier 0.3.0 README (its METADATA).
README_SCORES = {
    "toxic": 0.9889402985572815,
    "severe_toxic": 0.07256772369146347,
    "obscene": 0.620429277420044,
    "threat": 0.01934845559298992,
    "insult": 0.8664075136184692,
    "identity_hate": 0.04072948172688484,
}
README_MEANS = {
    "You are so dumb and stupid!": 0.4347,
    "I hate you so much!": 0.1395,
    "This is wonderful news.": 0.0013,
    "You're disgusting!": 0.3110,
    "Absolutely love your energy!": 0.0088,
    "You're the worst person ever!": 0.0937,
    "Have a nice day :)": 0.0115,
}


@pytest.fixture(scope="module")
def toxicity() -> tuple[torch.nn.Module, KerasWordTokenizer]:
    return load_toxicity()


def test_readme_metadata_holds_the_numbers_we_check() -> None:
    # Guard against the constants drifting from the installed package's README.
    import importlib.metadata

    readme = importlib.metadata.metadata("toxic_comment_classifier").get_payload()  # type: ignore[attr-defined]
    for value in README_SCORES.values():
        assert repr(value) in readme
    for text, mean in README_MEANS.items():
        assert f"{mean:.4f}" in readme and text in readme


def test_readme_probabilities_reproduced(toxicity: tuple[torch.nn.Module, KerasWordTokenizer]) -> None:
    model, tok = toxicity
    probs = classify(model, tok, ["You are so dumb and stupid!"])[0]  # type: ignore[arg-type]
    expected = torch.tensor([README_SCORES[label] for label in LABELS], dtype=torch.float32)
    assert torch.allclose(probs, expected, atol=1e-6, rtol=0)


def test_readme_overall_scores_reproduced(toxicity: tuple[torch.nn.Module, KerasWordTokenizer]) -> None:
    model, tok = toxicity
    texts = list(README_MEANS)
    means = classify(model, tok, texts).mean(dim=1)  # type: ignore[arg-type]
    for text, mean in zip(texts, means.tolist()):
        assert f"{mean:.4f}" == f"{README_MEANS[text]:.4f}", text


def test_keras_tokenizer_semantics(toxicity: tuple[torch.nn.Module, KerasWordTokenizer]) -> None:
    _, tok = toxicity
    # Filters become separators, case is folded, the apostrophe is kept, unknown words are dropped.
    assert tok.words("You're the WORST,person!!") == ["you're", "the", "worst", "person"]
    assert tok.ids("the zzqqxxyy") == [tok.word_index["the"]]
    assert all(0 < i < 20000 for i in tok.word_index.values())
    enc = tok.encode("you are a stupid idiot")
    assert len(enc) == MAX_LENGTH and enc.padding[:95] == (True,) * 95 and not any(enc.padding[95:])
    assert enc.words == ("you", "are", "a", "stupid", "idiot")
    # pad_sequences truncates at the front ("pre"): the last MAX_LENGTH words are kept.
    long = " ".join(["the"] * 150 + ["idiot"])
    enc = tok.encode(long)
    assert enc.truncated and enc.ids[-1] == tok.word_index["idiot"] and not any(enc.padding)


def test_restricted_unpickler_refuses_other_classes(tmp_path: Path) -> None:
    payload = pickle.dumps(Path("/etc/passwd"))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _RestrictedUnpickler(open_bytes(tmp_path, payload)).load()


def test_restricted_unpickler_refuses_code_execution(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|refusing"):
        _RestrictedUnpickler(open_bytes(tmp_path, pickle.dumps(Evil()))).load()


def test_wheel_files_are_found_without_importing_tensorflow() -> None:
    import sys

    folder = package_dir()
    assert (folder / "model.weights.h5").exists() and (folder / "tokenizer.pickle").exists()
    assert "tensorflow" not in sys.modules


def open_bytes(tmp_path: Path, data: bytes):  # type: ignore[no-untyped-def]
    file = tmp_path / "x.pickle"
    file.write_bytes(data)
    return open(file, "rb")  # noqa: SIM115
