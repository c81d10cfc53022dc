"""Which label each document of a corpus run is explained for, and the multi-label row policy.

``ExplainSettings.target`` is a fixed label (name or index), ``None``/``"predicted"`` (each document's
predicted label) or ``"gold"`` (each document's own label from the label column). ``"gold"`` and
``"predicted"`` are reserved: a model label of that name is reached by its index.

Multi-class models give one row group per document. Multi-label models give one row group per
(document, label) explained: with ``"predicted"`` every label whose probability is at least
``settings.threshold``, with ``"gold"`` every label of the cell (split on ``|``), or the fixed label.
In such a row group ``target_label`` is that label, ``predicted_label`` is the label if the model
predicts it (else null) and ``gold_label`` is the label if the document is labelled with it (else
null). A document for which no label passes the threshold gets one row with ``predicted_label =
"none"`` and no tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import InputError, IntegrandError, caller_stacklevel
from .labels import NONE, above_threshold, split_labels
from .sources import Document

GOLD = "gold"
PREDICTED = "predicted"


@dataclass(frozen=True)
class Planned:
    """One row group to write: a document, the label to explain (None: the predicted one) and its label columns."""

    doc: Document
    target: str | int | None
    gold_label: str | None
    predicted_label: str | None = None
    error: str | None = None
    attribute: bool = True


def model_labels(explainer: Any) -> tuple[str, ...] | None:
    labels = getattr(explainer, "labels", None)
    return tuple(labels) if labels is not None else None


def check_target(explainer: Any, target: str | int | None, has_labels: bool) -> None:
    """Refuse up front a ``target`` that no document can take."""
    if target == GOLD and not has_labels:
        raise InputError("target", "'gold' explains each document's own label: give the label column (label_col)")
    labels = model_labels(explainer)
    if labels is None or target in (None, GOLD, PREDICTED):
        return
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise InputError("target", f"expected a label name, a label index, 'gold' or 'predicted', got {target!r}")
    if isinstance(target, int) and not 0 <= target < len(labels):
        raise InputError("target", f"label index {target} out of range for the model's labels {list(labels)}")
    if isinstance(target, str) and target not in labels:
        raise InputError("target", f"unknown label {target!r}; the model's labels are {list(labels)}")


def check_gold(explainer: Any, docs: Sequence[Document]) -> None:
    """With ``target="gold"``: at least one document's label must be one of the model's labels."""
    labels = model_labels(explainer)
    if labels is None:
        return
    multi = bool(getattr(explainer, "multi_label", False))
    gold = {g for d in docs for g in (split_labels(d.label) if multi else _single(d.label))}
    if gold and not gold & set(labels):
        raise InputError(
            "target",
            f"'gold' but no document's label is one of the model's labels {list(labels)} "
            f"(the data has {sorted(gold)[:10]}); train a model on this data (integrand train) or pick a label",
        )


def _single(label: str | None) -> tuple[str, ...]:
    return (label,) if label else ()


def _probabilities(explainer: Any, docs: Sequence[Document]) -> dict[str, list[float] | str]:
    """Label probabilities per document id, or the error message of a document the model refuses."""
    try:
        probs = explainer.predict([d.text for d in docs])
        return {d.doc_id: [float(p) for p in row] for d, row in zip(docs, probs.tolist())}
    except IntegrandError:
        out: dict[str, list[float] | str] = {}
        for d in docs:
            try:
                out[d.doc_id] = [float(p) for p in explainer.predict([d.text])[0].tolist()]
            except IntegrandError as exc:
                out[d.doc_id] = str(exc)
        return out


def plan(explainer: Any, docs: Sequence[Document], target: str | int | None, threshold: float) -> list[Planned]:
    """The row groups of ``docs`` (non-empty texts only) under the target policy above."""
    labels = model_labels(explainer) or ()
    multi = bool(getattr(explainer, "multi_label", False))
    if not multi:
        out = []
        for d in docs:
            if target != GOLD:
                out.append(Planned(d, None if target == PREDICTED else target, d.label))
            elif d.label in labels:
                out.append(Planned(d, d.label, d.label))
            else:
                reason = "has no gold label" if not d.label else f"gold label {d.label!r} is not one of {list(labels)}"
                out.append(Planned(d, None, d.label, error=f"target: {reason}", attribute=False))
        return out
    probs = _probabilities(explainer, docs) if target in (None, PREDICTED) else {}
    rows: list[Planned] = []
    for d in docs:
        gold = split_labels(d.label)
        if target in (None, PREDICTED):
            p = probs[d.doc_id]
            if isinstance(p, str):
                rows.append(Planned(d, None, None, error=p, attribute=False))
                continue
            chosen = above_threshold(p, labels, threshold)
            if not chosen:
                rows.append(Planned(d, None, None, predicted_label=NONE, attribute=False))
            names: Sequence[str | int] = chosen
        elif target == GOLD:
            names = gold
            if not gold:
                rows.append(Planned(d, None, None, error="target: has no gold label", attribute=False))
        else:
            assert target is not None
            names = [target]
        for name in names:
            label = labels[name] if isinstance(name, int) else name
            if label not in labels:
                msg = f"target: gold label {label!r} is not one of {list(labels)}"
                rows.append(Planned(d, None, label, error=msg, attribute=False))
            else:
                rows.append(Planned(d, label, label if label in gold else None))
    return rows


class FailedDocumentsWarning(UserWarning):
    """Some documents of a corpus run could not be explained; they are kept with their message in ``error``."""


def judge_failures(failed: int, total: int, first: str | None, target: str | int | None, max_failures: float) -> None:
    """Raise when more than ``max_failures`` of the documents failed (all of them, at the default); else warn."""
    if not failed:
        return
    what = f"{failed} of {total} documents could not be explained for target {target!r}"
    detail = f" (first error: {first})" if first else ""
    if failed == total or failed > max_failures * total:
        raise InputError("target", f"{what}{detail}; they are flagged in the store's error column")
    import warnings

    warnings.warn(
        f"{what}{detail}; they are flagged in the error column", FailedDocumentsWarning, stacklevel=caller_stacklevel()
    )
