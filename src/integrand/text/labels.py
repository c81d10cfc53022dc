"""Labels and baseline tokens of the text explainer: names, target indices and the baseline's token id."""

from __future__ import annotations

import difflib
from typing import Union

from ..defaults import canonical_baseline
from ..errors import InputError, ModelError
from .tokenizers import TextTokenizer

BaselineToken = Union[str, int]
LabelSpec = Union[int, str, None]
BASELINES = ("pad", "mask", "unk", "zeros")  # "zero" is accepted for "zeros" (integrand.defaults)


def label_names(labels: tuple[str, ...] | None, count: int) -> tuple[str, ...]:
    """The model's label names (``LABEL_i`` when it has none), checked against its ``count`` outputs."""
    if labels is None:
        return tuple(f"LABEL_{i}" for i in range(count))
    if len(labels) != count:
        names = list(labels)
        raise ModelError("model", f"the model has {count} outputs but {len(names)} labels: {names}")
    return labels


def target_index(spec: LabelSpec, labels: tuple[str, ...], predicted: int) -> int:
    """The output index ``spec`` names: a label name, an index, or None for ``predicted``."""
    if spec is None:
        return predicted
    if isinstance(spec, bool):
        raise InputError("target", "expected a label name, a label index or None, got a bool")
    if isinstance(spec, int):
        if not 0 <= spec < len(labels):
            raise InputError("target", f"label index {spec} out of range for {len(labels)} labels {list(labels)}")
        return spec
    if isinstance(spec, str):
        if spec in labels:
            return labels.index(spec)
        close = difflib.get_close_matches(spec, labels, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise InputError("target", f"unknown label {spec!r}; the model's labels are {list(labels)}{hint}")
    raise InputError("target", f"expected a label name, a label index or None, got {type(spec).__name__}")


def baseline_token_id(tokenizer: TextTokenizer, baseline: BaselineToken, vocab_rows: int | None) -> int | None:
    """The token id replacing content tokens in the baseline (None: zero embedding)."""
    if isinstance(baseline, bool):
        raise InputError("baseline", "expected a baseline name or a token id, got a bool")
    if isinstance(baseline, int):
        limit = vocab_rows if vocab_rows is not None else tokenizer.vocab_size
        if not 0 <= baseline < limit:
            raise InputError("baseline", f"token id {baseline} is outside the vocabulary (0..{limit - 1})")
        return baseline
    baseline = canonical_baseline(baseline, BASELINES)
    if baseline == "zeros":
        return None
    if baseline == "pad":
        return tokenizer.pad_id
    if baseline in ("mask", "unk"):
        found = tokenizer.mask_id if baseline == "mask" else tokenizer.unk_id
        if found is None:
            raise InputError("baseline", f"the tokenizer has no {baseline} token; use 'pad', 'zero' or a token id")
        return found
    raise InputError("baseline", f"unknown baseline {baseline!r}; expected one of {list(BASELINES)} or a token id")
