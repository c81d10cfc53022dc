"""A synthetic indirect-object-identification task and a small GPT-2 trained on it in minutes.

Every template has the same number of word tokens, with the two names and the repeated subject at
template-dependent positions: "When Mary and John went to the store , John gave a book to" -> Mary.
A corrupted prompt repeats the other name ("..., Mary gave a book to" -> John), so clean and
corrupted differ in one token and the metric is ``logit(IO) - logit(S)`` at the last position.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cache import cache_dir as default_cache_dir
from ..errors import InputError, MissingExtraError

NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Sarah", "Tom", "Emma", "James", "Lucy", "Paul",
    "Anna", "Mark", "Kate", "David", "Laura", "Peter", "Julia", "Sam", "Rose", "Adam",
)  # fmt: skip
PLACES: tuple[str, ...] = ("store", "park", "school", "office", "garden", "station", "market", "library")
OBJECTS: tuple[str, ...] = ("book", "ring", "drink", "letter", "bag", "apple", "key", "gift")
# A, B: the two names in order of appearance; S: the repeated name; P: place; O: object.
TEMPLATES: tuple[str, ...] = (
    "When A and B went to the P , S gave a O to",
    "After A and B went to the P , S gave a O to",
    "A and B went to the P , then S gave a O to",
    "At the P , A and B talked , S gave a O to",
    "A and B had fun at the P , S gave a O to",
    "While A and B were at the P , S handed a O to",
)
BOS = "<bos>"


def vocabulary() -> tuple[str, ...]:
    """All word tokens: BOS, template words, names, places, objects."""
    words = dict.fromkeys([BOS])
    for template in TEMPLATES:
        words.update(dict.fromkeys(w for w in template.split() if w not in ("A", "B", "S", "P", "O")))
    words.update(dict.fromkeys(NAMES + PLACES + OBJECTS))
    return tuple(words)


def encode(text: str) -> list[int]:
    """Word-level token ids of ``text`` (BOS is prepended)."""
    index = {w: i for i, w in enumerate(vocabulary())}
    try:
        return [index[BOS]] + [index[w] for w in text.split()]
    except KeyError as exc:
        raise InputError("text", f"word {exc.args[0]!r} is not in the IOI vocabulary") from exc


@dataclass(frozen=True)
class IOIPairs:
    """N clean/corrupted prompt pairs with the indirect object ``io`` and subject ``s`` token ids."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    io: torch.Tensor
    s: torch.Tensor
    texts: tuple[tuple[str, str], ...]


def ioi_pairs(n: int, *, seed: int = 0) -> IOIPairs:
    """``n`` random IOI pairs; clean answers IO, corrupted (subject swapped to IO) answers S."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("n", f"expected an integer >= 1, got {n!r}")
    rng = random.Random(seed)
    index = {w: i for i, w in enumerate(vocabulary())}
    clean, corrupted, io, s, texts = [], [], [], [], []
    for _ in range(n):
        template = rng.choice(TEMPLATES)
        first, second = rng.sample(NAMES, 2)
        subject, indirect = (first, second) if rng.random() < 0.5 else (second, first)
        fill = {"A": first, "B": second, "P": rng.choice(PLACES), "O": rng.choice(OBJECTS)}
        words = [fill.get(w, w) for w in template.split()]
        clean_words = [subject if w == "S" else w for w in words]
        corrupt_words = [indirect if w == "S" else w for w in words]
        clean.append([index[BOS]] + [index[w] for w in clean_words])
        corrupted.append([index[BOS]] + [index[w] for w in corrupt_words])
        io.append(index[indirect])
        s.append(index[subject])
        texts.append((" ".join(clean_words), " ".join(corrupt_words)))
    return IOIPairs(torch.tensor(clean), torch.tensor(corrupted), torch.tensor(io), torch.tensor(s), tuple(texts))


@dataclass(frozen=True)
class IOIConfig:
    """Model size and training schedule (the defaults take a few minutes on one CPU thread)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    steps: int = 1000
    batch: int = 128
    lr: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True) + "|" + " ".join(vocabulary()) + "|" + "|".join(TEMPLATES)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError("transformers", "text") from exc
    return transformers


def ioi_model(config: IOIConfig = IOIConfig()) -> torch.nn.Module:
    """An untrained GPT-2 of the given size over the IOI vocabulary (no dropout)."""
    tf = _transformers()
    words = vocabulary()
    cfg = tf.GPT2Config(
        vocab_size=len(words), n_positions=1 + len(TEMPLATES[0].split()), n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model: torch.nn.Module = tf.GPT2LMHeadModel(cfg)
    return model.eval()


def accuracy(model: torch.nn.Module, pairs: IOIPairs) -> float:
    """Fraction of clean prompts whose top prediction is the indirect object."""
    with torch.no_grad():
        logits = model(pairs.clean).logits[:, -1]
    return float((logits.argmax(-1) == pairs.io).double().mean())


def train_ioi(config: IOIConfig = IOIConfig()) -> tuple[torch.nn.Module, float]:
    """Train on fresh pairs (cross-entropy at the answer, clean and corrupted prompts); returns the model in
    eval mode and its accuracy on 512 held-out pairs."""
    model = ioi_model(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    for step in range(config.steps):
        data = ioi_pairs(config.batch // 2, seed=10_000 + config.seed * 1_000_003 + step)
        tokens = torch.cat([data.clean, data.corrupted])
        answers = torch.cat([data.io, data.s])
        loss = torch.nn.functional.cross_entropy(model(tokens).logits[:, -1], answers)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, accuracy(model, ioi_pairs(512, seed=config.seed + 1))


def load_or_train(cache_dir: str | Path | None = None, config: IOIConfig = IOIConfig()) -> torch.nn.Module:
    """The trained IOI model, read from ``cache_dir`` (default: the user cache) or trained and saved there."""
    from safetensors.torch import load_file, save_file

    if cache_dir is None:
        cache_dir = default_cache_dir()
    path = Path(cache_dir) / f"ioi-gpt2-{config.key()}.safetensors"
    model = ioi_model(config)
    if path.exists():
        state = load_file(str(path))
        model.load_state_dict(state, strict=False)
        model.eval()
        return model
    model, _ = train_ioi(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    # lm_head shares wte's storage; safetensors refuses shared tensors, and tying restores it.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(path))
    return model
