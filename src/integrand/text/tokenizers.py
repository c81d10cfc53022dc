"""Tokenizer adapters: every tokenizer the explainer accepts is turned into a ``TextTokenizer``.

An ``Encoding`` is one text as the model sees it: ids, display tokens, which word each token
belongs to (so sub-word pieces can be merged), which positions are special tokens or padding,
and whether the text was truncated to the model's maximum length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from ..errors import InputError


@dataclass(frozen=True)
class Encoding:
    """One tokenized text. ``word_ids`` is None for special tokens and padding."""

    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    word_ids: tuple[int | None, ...]
    words: tuple[str, ...]
    special: tuple[bool, ...]
    padding: tuple[bool, ...]
    truncated: bool

    def __len__(self) -> int:
        return len(self.ids)

    def content_tokens(self) -> int:
        """Tokens that are neither special nor padding (what an attribution can credit)."""
        return sum(1 for s, p in zip(self.special, self.padding) if not s and not p)


class TextTokenizer(Protocol):
    """What the explainer needs from a tokenizer."""

    @property
    def pad_id(self) -> int: ...

    @property
    def mask_id(self) -> int | None: ...

    @property
    def unk_id(self) -> int | None: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def padding_side(self) -> str: ...

    def encode(self, text: str) -> Encoding: ...

    def token(self, token_id: int) -> str: ...


def check_text(text: Any, index: int) -> str:
    """A non-empty ``str`` or an ``InputError`` naming the text."""
    if not isinstance(text, str):
        raise InputError("texts", f"text {index} is a {type(text).__name__}, expected str")
    if not text.strip():
        raise InputError("texts", f"text {index} is empty; there is nothing to attribute")
    return text


class HFTokenizer:
    """Adapter for a Hugging Face tokenizer (``PreTrainedTokenizerBase``); words come from its word ids."""

    def __init__(self, tokenizer: Any, max_length: int | None = None) -> None:
        if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
            raise InputError("tokenizer", f"expected a Hugging Face tokenizer, got {type(tokenizer).__name__}")
        if tokenizer.pad_token_id is None:
            raise InputError("tokenizer", "the tokenizer has no pad token; set tokenizer.pad_token first")
        self.tokenizer = tokenizer
        limit = getattr(tokenizer, "model_max_length", None)
        # Tokenizers without a known limit report a huge sentinel (int(1e30)).
        limit = limit if isinstance(limit, int) and limit < 1_000_000 else None
        self.max_length = max_length if max_length is not None else limit

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def mask_id(self) -> int | None:
        value = self.tokenizer.mask_token_id
        return None if value is None else int(value)

    @property
    def unk_id(self) -> int | None:
        value = self.tokenizer.unk_token_id
        return None if value is None else int(value)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def padding_side(self) -> str:
        return str(getattr(self.tokenizer, "padding_side", "right"))

    def token(self, token_id: int) -> str:
        return str(self.tokenizer.convert_ids_to_tokens(int(token_id)))

    def encode(self, text: str) -> Encoding:
        # verbose=False: the length check is ours; transformers would log its own warning.
        full = self.tokenizer(text, add_special_tokens=True, return_special_tokens_mask=True, verbose=False)
        truncated = self.max_length is not None and len(full["input_ids"]) > self.max_length
        enc = (
            self.tokenizer(
                text,
                add_special_tokens=True,
                truncation=True,
                max_length=self.max_length,
                return_special_tokens_mask=True,
            )
            if truncated
            else full
        )
        ids = [int(i) for i in enc["input_ids"]]
        special = [bool(s) for s in enc["special_tokens_mask"]]
        raw_words = enc.word_ids() if hasattr(enc, "word_ids") and getattr(enc, "encodings", None) else None
        word_ids: list[int | None]
        words: list[str]
        if raw_words is not None:
            # Renumber from 0 over the words that survived truncation and take their text from the offsets.
            order: dict[int, int] = {}
            words = []
            word_ids = []
            for pos, w in enumerate(raw_words):
                if w is None or special[pos]:
                    word_ids.append(None)
                    continue
                if w not in order:
                    order[w] = len(order)
                    span = enc.word_to_chars(w)
                    words.append(text[span.start : span.end] if span is not None else self.token(ids[pos]))
                word_ids.append(order[w])
        else:
            # Slow tokenizers have no word ids: each token is its own word.
            word_ids, words = [], []
            for pos, i in enumerate(ids):
                if special[pos]:
                    word_ids.append(None)
                else:
                    word_ids.append(len(words))
                    words.append(self.token(i))
        return Encoding(
            ids=tuple(ids),
            tokens=tuple(str(t) for t in self.tokenizer.convert_ids_to_tokens(ids)),
            word_ids=tuple(word_ids),
            words=tuple(words),
            special=tuple(special),
            padding=(False,) * len(ids),
            truncated=bool(truncated),
        )


class CallableTokenizer:
    """Adapter for a plain function ``text -> sequence of token ids`` (each token is its own word).

    ``special_ids`` are kept fixed in the baseline; ``vocab`` (id -> token text) is used for display.
    """

    def __init__(
        self,
        fn: Callable[[str], Sequence[int]],
        *,
        pad_id: int = 0,
        mask_id: int | None = None,
        unk_id: int | None = None,
        vocab_size: int | None = None,
        max_length: int | None = None,
        special_ids: Sequence[int] = (),
        vocab: Mapping[int, str] | None = None,
        padding_side: str = "right",
    ) -> None:
        if padding_side not in ("left", "right"):
            raise InputError("padding_side", f"expected 'left' or 'right', got {padding_side!r}")
        if max_length is not None and max_length < 1:
            raise InputError("max_length", f"expected an integer >= 1, got {max_length!r}")
        self.fn = fn
        self._pad_id = pad_id
        self._mask_id = mask_id
        self._unk_id = unk_id
        self._vocab_size = vocab_size
        self.max_length = max_length
        self.special_ids = frozenset(int(i) for i in special_ids)
        self.vocab = dict(vocab or {})
        self._padding_side = padding_side

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def mask_id(self) -> int | None:
        return self._mask_id

    @property
    def unk_id(self) -> int | None:
        return self._unk_id

    @property
    def vocab_size(self) -> int:
        if self._vocab_size is not None:
            return self._vocab_size
        return max([self._pad_id, *self.vocab]) + 1

    @property
    def padding_side(self) -> str:
        return self._padding_side

    def token(self, token_id: int) -> str:
        return self.vocab.get(int(token_id), f"[{int(token_id)}]")

    def encode(self, text: str) -> Encoding:
        raw: Any = self.fn(text)
        if isinstance(raw, Mapping):
            raw = raw["input_ids"]
        try:
            ids = [int(i) for i in raw]
        except (TypeError, ValueError):
            got = type(raw).__name__
            raise InputError("tokenizer", f"the tokenizer must return a sequence of ints, got {got}") from None
        truncated = self.max_length is not None and len(ids) > self.max_length
        if truncated:
            assert self.max_length is not None
            ids = ids[: self.max_length]
        special = [i in self.special_ids for i in ids]
        word_ids: list[int | None] = []
        words: list[str] = []
        for i, s in zip(ids, special):
            word_ids.append(None if s else len(words))
            if not s:
                words.append(self.token(i))
        return Encoding(
            ids=tuple(ids),
            tokens=tuple(self.token(i) for i in ids),
            word_ids=tuple(word_ids),
            words=tuple(words),
            special=tuple(special),
            padding=(False,) * len(ids),
            truncated=bool(truncated),
        )


def as_text_tokenizer(tokenizer: Any, max_length: int | None = None) -> TextTokenizer:
    """Wrap whatever the user passed: an adapter, a Hugging Face tokenizer, or a callable."""
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "pad_id") and hasattr(tokenizer, "vocab_size"):
        return tokenizer  # type: ignore[no-any-return]
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return HFTokenizer(tokenizer, max_length=max_length)
    if callable(tokenizer):
        return CallableTokenizer(tokenizer, max_length=max_length)
    got = type(tokenizer).__name__
    raise InputError("tokenizer", f"expected a Hugging Face tokenizer, a TextTokenizer or a callable, got {got}")
